"""The ``train``, ``export`` and ``report`` commands (registered on ``toponas.cli.main``).

As in ``toponas.cli``: user errors print one ``error:`` line and exit with status 1, never a
traceback; a diverged training run exits 3 and an interrupted one 130.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .config import ConfigError
from .data import DATASETS, DataError
from .registry import UnknownNameError
from .spaces.cell import CellError
from .training.protocol import NB201_SOURCES, PRESETS

USER_ERRORS = (ConfigError, DataError, CellError, UnknownNameError, FileNotFoundError)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


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
@click.option("--dataset", default="cifar10", show_default=True, type=click.Choice(DATASETS))
@click.option("--data", type=click.Path(),
              help="Dataset path, as for search (e.g. ../shared/data/cifar10-jpeg.tar.gz).")
@click.option("--cache-dir", type=click.Path(), help="Where decoded datasets are cached.")
@click.option("--preset", type=click.Choice(sorted(PRESETS)),
              help="A smaller budget over the protocol (cpu: a quick check).")
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
@click.option("--seed", type=int, help="[default: 0]")
@click.option("--out", default="runs/train", show_default=True, type=click.Path(), help="Run directory.")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--amp/--no-amp", default=None,
              help="Mixed precision on CUDA (bf16, else fp16) [default: the protocol's; off for nb201].")
@click.option("--eval-every", type=click.IntRange(min=1), help="Test every N epochs (and after the last) [default: 1].")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--no-progress", is_flag=True, help="No progress bar (log lines only).")
@click.pass_context
def train(ctx: click.Context, arch: str, space: str | None, preset: str | None, resume: bool, no_progress: bool,
          **options: Any) -> None:
    """Train the discrete network of ARCH from scratch and test it.

    ARCH is a cell string, a search's result.json or run directory (its genotype), or a training
    run. Writes OUT/train.json (curves and final figures), OUT/model.pt (the trained weights),
    OUT/log.txt and OUT/checkpoint.pt (resume with --resume).
    """
    from .training import TrainConfig, TrainDiverged, Trainer, TrainInterrupted, resolve_arch, summary
    from .training.network import read_checkpoint

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    try:
        source = resolve_arch(arch, space)
        explicit = {k: options[k] for k in TRAIN_OPTIONS if given(k)}
        checkpoint = Path(options["out"]) / "checkpoint.pt"
        if resume and checkpoint.exists():  # the saved configuration, changed only where a flag is given
            saved = TrainConfig.from_dict(read_checkpoint(checkpoint).get("config") or {"arch": ""})
            config = saved.replace(**explicit, arch=source.genotype, space=source.space,
                                   preset=preset if preset is not None else saved.preset)
        else:
            defaults = {k: options[k] for k in ("dataset", "out", "device", "amp")}
            config = TrainConfig.resolve(source.genotype, source.space, preset, **{**defaults, **explicit})
        config = config.replace(source=source.origin)
        result = Trainer(config, resume=resume, progress=not no_progress, log=click.echo).run()
    except TrainInterrupted as e:
        fail(str(e), 130)
    except TrainDiverged as e:
        fail(str(e), 3)
    except USER_ERRORS as e:
        fail(str(e))
    click.echo(summary(result))
    click.echo(f"wrote {Path(config.out) / 'train.json'} and {Path(config.out) / 'model.pt'}")


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
@click.option("--seed", default=0, show_default=True, type=int, help="Initialization of a fresh network.")
def export(arch: str, fmt: str, out: str, space: str | None, channels: int, cells: int, num_classes: int,
           image_size: int, seed: int) -> None:
    """Export the network of ARCH as TorchScript or ONNX, checked against the PyTorch model.

    ARCH is a training run (directory, train.json, model.pt or checkpoint.pt: its trained weights)
    or a cell string / search result (a freshly initialized network of the given size).
    """
    from .export import ExportError
    from .export import export as run_export
    from .training.cost import format_count

    try:
        rep = run_export(arch, fmt, out, space=space, channels=channels, cells=cells, num_classes=num_classes,
                         image_size=image_size, seed=seed)
    except (*USER_ERRORS, ExportError) as e:
        fail(str(e))
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


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(), help="Where to write the report [default: RUN_DIR/report].")
def report(run_dir: str, out: str | None) -> None:
    """Figures (PNG) and a Markdown page for a search, a training run or a sweep directory."""
    from .report import ReportError
    from .report import report as run_report

    try:
        page = run_report(run_dir, out)
    except (*USER_ERRORS, ReportError) as e:
        fail(str(e))
    figures = sorted(p.name for p in page.parent.glob("*.png"))
    click.echo(f"wrote {page} with {len(figures)} figures: {', '.join(figures)}")


__all__ = ["export", "report", "train"]
