"""``toponas train`` (retrain a found cell from scratch) and ``toponas export`` (TorchScript / ONNX)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from ..data import DATASETS
from ..training.protocol import NB201_SOURCES, PRESETS
from .common import show_progress
from .layers import given


def _protocol_epilog() -> str:
    lines = ["\b", "Defaults without --preset (NAS-Bench-201 space, the benchmark's 200-epoch protocol):"]
    lines += [f"  {name}: {text}" for name, text in NB201_SOURCES.items()]
    lines += ["\b", "Presets: " + "; ".join(f"{n}: " + ", ".join(f"{k}={v}" for k, v in p.items())
                                     for n, p in PRESETS.items())]
    return "\n".join(lines)


# Options whose value goes into TrainConfig under the same name (None: not given, the protocol's value).
TRAIN_OPTIONS = ("dataset", "data", "cache_dir", "subset", "epochs", "batch_size", "lr", "weight_decay", "channels",
                 "cells", "cutout", "aux_weight", "drop_path", "grad_clip", "seed", "out", "device", "amp",
                 "eval_every")


@click.command(epilog=_protocol_epilog())
@click.argument("arch")
@click.option("--space", help="Search space of ARCH [default: from the run, or the space that parses it].")
@click.option("--dataset", default="cifar10", show_default=True, type=click.Choice(DATASETS + ("skimage",)),
              help="[default: a run's own dataset, else cifar10; restoration: skimage]")
@click.option("--task", help="Restoration: denoise or sr [default: a restoration run's own; ARCH baseline:NAME too].")
@click.option("--sigma", type=float, help="denoise: noise sigma on 0..255 [default: the run's, else 25].")
@click.option("--scale", type=int, help="sr: upscaling factor [default: the run's, else 2].")
@click.option("--patch-size", type=int, help="Restoration: training patch side [default: the run's, else 48].")
@click.option("--grey", is_flag=True, default=None, help="Restoration: grey images (as the run searched).")
@click.option("--loss", help="Restoration: l2 or l1 [default: the run's, else l2].")
@click.option("--patches", type=click.IntRange(min=1), help="Restoration: training patches per epoch [default: 1024].")
@click.option("--data", type=click.Path(),
              help="Dataset path, as for search (e.g. ../shared/data/cifar10-jpeg.tar.gz).")
@click.option("--cache-dir", type=click.Path(), help="Where decoded datasets are cached.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)),
              help="A smaller budget over the protocol (cpu: a quick check; restoration: docs/restoration.md).")
@click.option("--subset", type=click.IntRange(min=2), help="Train on N stratified training images (quick runs).")
@click.option("--epochs", type=click.IntRange(min=1), help="[default: the protocol's, 200]")
@click.option("--batch-size", type=click.IntRange(min=1), help="[default: the protocol's, 256]")
@click.option("--lr", type=click.FloatRange(min=0), help="Initial learning rate [default: the protocol's, 0.1].")
@click.option("--weight-decay", type=click.FloatRange(min=0), help="[default: the protocol's, 5e-4]")
@click.option("--channels", type=click.IntRange(min=1), help="C, channels of the first stage [default: 16].")
@click.option("--cells", type=click.IntRange(min=1), help="N, cells per stage [default: 5].")
@click.option("--cutout", type=click.IntRange(min=0), help="Cutout square side, 0 for none [default: the protocol's].")
@click.option("--aux-weight", type=click.FloatRange(min=0), help="Auxiliary-head loss weight (spaces with one).")
@click.option("--drop-path", type=click.FloatRange(min=0, max=1, max_open=True),
              help="Drop-path probability (spaces with one).")
@click.option("--grad-clip", type=click.FloatRange(min=0, min_open=True), help="Clip the gradient norm at this.")
@click.option("--seed", type=click.IntRange(min=0, max=2**63 - 1), help="[default: 0]")
@click.option("--out", default="runs/train", show_default=True, type=click.Path(), help="Run directory.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--amp/--no-amp", default=None,
              help="Mixed precision on CUDA (bf16, else fp16) [default: the protocol's; off for nb201].")
@click.option("--eval-every", type=click.IntRange(min=1), help="Test every N epochs (and after the last) [default: 1].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--no-progress", is_flag=True, help="No progress bar (also off when stderr is not a terminal).")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard event files into OUT/tensorboard.")
@click.option("--compile", is_flag=True, help="torch.compile the network's forward and backward "
              "(reduce-overhead on CUDA, default elsewhere); the first step compiles.")
@click.pass_context
def train(ctx: click.Context, arch: str, space: str | None, preset: str | None, resume: bool, no_progress: bool,
          tensorboard: bool, compile: bool, **options: Any) -> None:
    """Train the discrete network of ARCH from scratch and test it.

    ARCH is a cell string, a search's result.json or run directory (its genotype), or a training
    run. Writes OUT/train.json (curves and final figures), OUT/model.pt (the trained weights),
    OUT/log.txt and OUT/checkpoint.pt (resume with --resume).
    """
    from ..runtime import check_writable
    from ..training import TrainConfig, Trainer, resolve_arch, summary
    from ..training.network import read_checkpoint

    if _train_restoration(ctx, arch, space, preset, resume, no_progress, options):
        return
    source = resolve_arch(arch, space)
    explicit = {k: options[k] for k in TRAIN_OPTIONS if given(ctx, k)}
    check_writable(options["out"], directory=True, what="--out")
    checkpoint = Path(options["out"]) / "checkpoint.pt"
    if resume and checkpoint.exists():  # the saved configuration, changed only where a flag is given
        saved = TrainConfig.from_dict(read_checkpoint(checkpoint).get("config") or {"arch": ""})
        config = saved.replace(**explicit, arch=source.genotype, space=source.space,
                               preset=preset if preset is not None else saved.preset)
    else:
        # a run's own dataset (and data path) unless given: a search on digits retrains on digits
        run_defaults = {k: v for k, v in source.defaults.items() if not given(ctx, k)}
        defaults = {k: options[k] for k in ("dataset", "out", "device", "amp")}
        config = TrainConfig.resolve(source.genotype, source.space, preset,
                                     **{**defaults, **run_defaults, **explicit})
    config = config.replace(source=source.origin)
    runner = Trainer(config, resume=resume, progress=show_progress(no_progress), log=click.echo,
                     command=["toponas", *sys.argv[1:]], tensorboard=tensorboard, compile=compile)
    result = runner.run()
    click.echo(summary(result))
    if not runner.noop:
        click.echo(f"wrote {Path(config.out) / 'train.json'} and {Path(config.out) / 'model.pt'}")


def _train_restoration(ctx: click.Context, arch: str, space: str | None, preset: str | None, resume: bool,
                       no_progress: bool, options: dict[str, Any]) -> bool:
    """Train a restoration run or baseline (``toponas.restoration``); False when ARCH is a classification one."""
    from ..restoration.runs import RESTORE_OPTIONS, restoration_config
    from ..restoration.train import RestoreTrainer
    from ..restoration.train import summary as restore_summary
    from ..runtime import check_writable

    flags = {k: options[k] for k in RESTORE_OPTIONS if k in options and given(ctx, k)}
    config = restoration_config(arch, space, flags, preset)
    if config is None:
        return False
    check_writable(config.out, directory=True, what="--out")
    runner = RestoreTrainer(config, resume=resume, progress=show_progress(no_progress), log=click.echo,
                            command=["toponas", *sys.argv[1:]])
    result = runner.run()
    click.echo(restore_summary(result))
    if not runner.noop:
        click.echo(f"wrote {Path(config.out) / 'train.json'} and {Path(config.out) / 'model.pt'}")
    return True


@click.command()
@click.argument("arch")
@click.option("--format", "fmt", default="torchscript", show_default=True, type=click.Choice(["torchscript", "onnx"]))
@click.option("--out", required=True, type=click.Path(), help="File to write (a FILE.json with its description too).")
@click.option("--space", help="Search space of ARCH [default: from the run, or the space that parses it].")
@click.option("--channels", default=16, show_default=True, type=click.IntRange(min=1),
              help="C, for a fresh network (a training run has its own).")
@click.option("--cells", default=5, show_default=True, type=click.IntRange(min=1), help="N, for a fresh network.")
@click.option("--num-classes", default=10, show_default=True, type=click.IntRange(min=1), help="For a fresh network.")
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(min=4), help="For a fresh network.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0, max=2**63 - 1),
              help="Initialization of a fresh network.")
def export(arch: str, fmt: str, out: str, space: str | None, channels: int, cells: int, num_classes: int,
           image_size: int, seed: int) -> None:
    """Export the network of ARCH as TorchScript or ONNX, checked against the PyTorch model.

    ARCH is a training run (directory, train.json, model.pt or checkpoint.pt: its trained weights)
    or a cell string / search result (a freshly initialized network of the given size).
    """
    from ..export import export as run_export
    from ..runtime import check_writable
    from ..training.cost import format_count

    check_writable(out, what="--out")
    rep = run_export(arch, fmt, out, space=space, channels=channels, cells=cells, num_classes=num_classes,
                     image_size=image_size, seed=seed)
    meta = rep.meta
    click.echo(f"cell        {meta['arch']} ({meta['space']}, C={meta['channels']}, N={meta['cells']}, "
               f"{'trained' if rep.trained else f'freshly initialized, seed {seed}'})")
    click.echo(f"network     {format_count(rep.parameters)} parameters ({rep.parameters:,}), "
               f"{format_count(rep.mult_adds)} multiply-adds per image")
    check = ("not run (pip install onnxruntime to check)" if rep.max_abs_diff is None
             else f"outputs equal the PyTorch model's (max abs difference {rep.max_abs_diff:.2g})")
    click.echo(f"check       {check}")
    click.echo(f"input       float32 (batch, {meta.get('in_channels', 3)}, {meta['image_size']}, "
               f"{meta['image_size']}), normalized (x/255 - mean) / std with mean "
               f"{[round(v, 4) for v in meta['mean']]}, std {[round(v, 4) for v in meta['std']]}")
    click.echo(f"wrote {rep.path} ({rep.format}, {rep.method}) and {rep.path.name}.json")



COMMANDS = [train, export]
