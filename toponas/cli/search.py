"""``toponas search``: layering defaults, a config file and flags into a SearchConfig, then the run loop."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import click

from ..config import ConfigError, SearchConfig
from ..data import DATASETS
from ..separation import DEFAULT_MARGIN
from ..strategies import STRATEGIES
from ..topo import MODES, RULES
from .common import SPACE_HELP, show_progress
from .layers import given, layered, parse_pairs
from .query import SEARCH_STRATEGIES, query_dispatch

# Options whose value goes into SearchConfig under the same name.
CONFIG_OPTIONS = ("space", "strategy", "dataset", "data", "subset", "image_size", "batch_size", "channels", "cells",
                  "seed", "out", "benchmark", "topo", "device", "cache_dir", "topo_disable", "decided_margin",
                  "task", "sigma", "scale", "patch_size", "grey", "loss", "patches", "lut", "latency_target")


def hyper_epilog() -> str:
    """Each strategy's ``--hp`` keys with their defaults (for ``search --help``)."""
    lines = ["\b", "Strategy hyperparameters (--hp KEY=VALUE) and their defaults:"]
    for name in STRATEGIES.names():
        hyper = STRATEGIES.get(name).Hyper()
        pairs = ", ".join(f"{f.name}={getattr(hyper, f.name)}" for f in dataclasses.fields(hyper))
        lines.append(f"  {name}: {pairs}")
    return "\n".join(lines)


@click.command(epilog=hyper_epilog())
@query_dispatch
@click.option("--space", default="nb201", show_default=True, help=SPACE_HELP)
@click.option("--strategy", default="darts-v1", show_default=True, type=click.Choice(SEARCH_STRATEGIES))
@click.option("--task", default="classify", show_default=True,
              help="classify, or image restoration: denoise (--space mod-nas), sr (--space trilevel).")
@click.option("--sigma", default=25.0, show_default=True, type=float,
              help="denoise: Gaussian noise sigma on the 0..255 scale (15, 25, 50).")
@click.option("--scale", default=2, show_default=True, type=int, help="sr: the upscaling factor (2, 3, 4).")
@click.option("--patch-size", default=48, show_default=True, type=int,
              help="restoration: side of the clean training patches.")
@click.option("--grey", is_flag=True, help="restoration: grey images and a 1-channel network.")
@click.option("--loss", default="l2", show_default=True, help="restoration: l2 or l1.")
@click.option("--patches", default=1024, show_default=True, type=click.IntRange(min=1),
              help="restoration: training patches per epoch.")
@click.option("--dataset", default="cifar10", show_default=True, type=click.Choice(DATASETS + ("skimage",)),
              help="skimage: scikit-image's bundled photographs (restoration; pip install 'toponas[restoration]').")
@click.option("--data", type=click.Path(), help="Dataset path: official archive/batches, image folder or "
              "archive of one (downloads CIFAR into the cache when omitted and online).")
@click.option("--subset", type=click.IntRange(min=2), help="Keep N stratified training images (quick runs).")
@click.option("--image-size", type=click.IntRange(min=4), help="Resize images to this side (cheaper searches).")
@click.option("--epochs", type=click.IntRange(min=1), help="Search epochs [default: the strategy's].")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--channels", default=16, show_default=True, type=click.IntRange(min=1), help="C")
@click.option("--cells", "--layers", "cells", type=click.IntRange(min=1),
              help="Cells per stage N (nb201, default 5) or layers (darts, default 8).")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0, max=2**63 - 1))
@click.option("--seeds", metavar="S,S,...", help="Many seeds in one pass: run these seeds' searches batched in one "
              "process, each into --out/seed-S (docs/scaling.md); not with --seed.")
@click.option("--out", default="runs/search", show_default=True, type=click.Path(), help="Run directory.")
@click.option("--benchmark", type=click.Path(), envvar="TOPONAS_BENCHMARK",
              help="Benchmark CSV (or $TOPONAS_BENCHMARK) to look up the found cell.")
@click.option("--topo", default="full", show_default=True, type=click.Choice(MODES),
              help="Simplifier mode: off (plain supernet), exact (rules 1-2), full (all rules).")
@click.option("--topo-disable", multiple=True, type=click.Choice(RULES), help="Switch a rule off (ablation).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:1 ...")
@click.option("--cache-dir", type=click.Path(), help="Where decoded datasets are cached.")
@click.option("--decided-margin", default=DEFAULT_MARGIN, show_default=True, type=click.FloatRange(0, 1),
              help="Median edge margin (top-2 probability gap) below which the search is reported as not decided.")
@click.option("--hp", "hyper", multiple=True, metavar="KEY=VALUE",
              help="Override a strategy hyperparameter, e.g. --hp w_lr=0.05 --hp tau_max=5 (keys below).")
@click.option("--samples", type=click.IntRange(min=1), help="parsec: architectures sampled per step (--hp samples).")
@click.option("--sample-scale", type=click.FloatRange(min=0, min_open=True),
              help="fp-nas: K = ceil(scale * entropy) (--hp sample_scale).")
@click.option("--joint-after", type=int, help="fp-nas: epoch of the factorized-to-joint switch (--hp joint_after).")
@click.option("--flops-target", type=float, help="FLOPs target in MFLOPs: fp-nas' --hp flops_target, a cost term "
              "for the DARTS family and GDAS, the budget of hurricane and fox-nas (docs/hardware.md).")
@click.option("--lut", type=click.Path(), help="A latency table (toponas latency build): the found network's "
              "predicted and measured latency, and --latency-target.")
@click.option("--latency-target", type=click.FloatRange(min=0, min_open=True),
              help="Latency budget in ms on the LUT's device (needs --lut; docs/hardware.md).")
@click.option("--config", "config_file", type=click.Path(), help="Start from a config.json (e.g. RUN/config.json).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint "
              "(with a larger --epochs: extend a finished search).")
@click.option("--no-progress", is_flag=True, help="No progress bar (also off when stderr is not a terminal).")
@click.option("--tensorboard", is_flag=True, help="Also write TensorBoard event files into OUT/tensorboard "
              "(needs the tensorboard extra).")
@click.option("--compile", is_flag=True, help="torch.compile the supernet's forward and backward "
              "(reduce-overhead on CUDA, default elsewhere); the first step compiles.")
@click.pass_context
def search(ctx: click.Context, epochs: int | None, samples: int | None, sample_scale: float | None,
           joint_after: int | None, flops_target: float | None, hyper: tuple[str, ...],
           config_file: str | None, resume: bool, no_progress: bool, tensorboard: bool, compile: bool,
           seeds: str | None, **options: Any) -> None:
    """Search an architecture: alternating weight and architecture steps on split training data."""
    from ..loop import Search
    from ..loop.seeds import SeedsSearch, parse_seeds
    from ..runtime.files import check_writable

    config = resolve_config(ctx, options, config_file, resume, hyper,
                            {"epochs": epochs, "samples": samples, "sample_scale": sample_scale,
                             "joint_after": joint_after, "flops_target": flops_target})
    if seeds is not None:
        config = config.replace(seeds=parse_seeds(seeds))
    if config.seeds is not None and given(ctx, "seed"):
        raise ConfigError("--seeds and --seed do not go together: --seeds S,S,... runs each seed in --out/seed-S, "
                          "--seed S one run in --out")
    check_writable(config.out, directory=True, what="--out")
    command = ["toponas", *sys.argv[1:]]
    if config.seeds is not None:
        many = SeedsSearch(config, resume=resume, progress=show_progress(no_progress), log=click.echo,
                           command=command, tensorboard=tensorboard, compile=compile)
        results = many.run()
        for result in results:
            click.echo(f"seed {result.seed}: {result.summary()}")
        if not many.noop:
            click.echo(f"wrote {', '.join(str(Path(r.out_dir) / 'result.json') for r in results)}")
        return
    runner = Search(config, resume=resume, progress=show_progress(no_progress), log=click.echo,
                    command=command, tensorboard=tensorboard, compile=compile)
    result = runner.run()
    if not runner.world.is_main:  # under torchrun rank 0 alone reports
        return
    click.echo(result.summary())
    if not runner.noop:
        click.echo(f"wrote {Path(result.out_dir) / 'result.json'}")


def resolve_config(ctx: click.Context, options: dict[str, Any], config_file: str | None, resume: bool,
                   hyper: tuple[str, ...], named: dict[str, Any]) -> SearchConfig:
    """Defaults, then ``--config`` (or, with ``--resume``, the run's own config.json), then the flags given."""
    base, has_base = SearchConfig(), False
    saved = Path(options["out"]) / "config.json"
    if config_file:
        base, has_base = SearchConfig.load(config_file), True
    elif resume and saved.is_file():
        base, has_base = SearchConfig.load(saved), True
    changes = layered(ctx, options, CONFIG_OPTIONS, has_base)
    if not has_base or given(ctx, "out"):
        changes["out"] = options["out"]
    if not given(ctx, "dataset") and (not has_base or given(ctx, "task")):
        from ..loop.task import default_dataset

        changes["dataset"] = default_dataset(changes.get("task", base.task))  # restoration: skimage
    hp = dict(base.hyper)
    hp.update(parse_pairs(hyper, "--hp"))
    strategy = changes.get("strategy", base.strategy)
    fields = {f.name for f in dataclasses.fields(STRATEGIES.get(strategy).Hyper)} if strategy in STRATEGIES else set()
    if named.get("flops_target") is not None and "flops_target" not in fields:  # a budget, not a hyperparameter
        changes["flops_target"] = named.pop("flops_target")
    hp.update({k: v for k, v in named.items() if v is not None})
    try:
        return base.replace(**changes, hyper=hp)
    except TypeError as e:
        raise ConfigError(str(e)) from None


COMMANDS = [search]
