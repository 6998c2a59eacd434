"""The ``toponas`` command line: search, look up, and inspect the simplifier.

User errors (bad options, missing data, malformed cells) print one ``error:`` line and exit with
status 1, never a traceback; a diverged search exits 3 and an interrupted one 130.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from .benchmark import BenchmarkError, BenchmarkTable
from .config import ConfigError, SearchConfig
from .data import DATASETS, DataError
from .registry import UnknownNameError
from .separation import DEFAULT_MARGIN
from .spaces import SPACES
from .spaces.cell import CellError
from .strategies import STRATEGIES
from .topo import MODES, RULES

USER_ERRORS = (ConfigError, DataError, BenchmarkError, CellError, UnknownNameError, FileNotFoundError)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="toponas")
def main() -> None:
    """TopoNAS: fast gradient-based neural architecture search."""


def load_space(name: str):
    """The space named on the command line, or one ``error:`` line."""
    from .spaces import create_space

    try:
        return create_space(name)
    except (UnknownNameError, CellError) as e:
        fail(str(e))


def parse_hyper(values: tuple[str, ...]) -> dict[str, str]:
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--hp expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out


SPACE_HELP = f"A registered space ({', '.join(SPACES.names())}) or a .json declaration (docs/spaces.md)."

# Options whose value goes into SearchConfig under the same name.
CONFIG_OPTIONS = ("space", "strategy", "dataset", "data", "subset", "image_size", "batch_size", "channels", "cells",
                  "seed", "out", "benchmark", "topo", "device", "cache_dir", "decided_margin")


@main.command()
@click.option("--space", default="nb201", show_default=True, help=SPACE_HELP)
@click.option("--strategy", default="darts-v1", show_default=True, type=click.Choice(STRATEGIES.names()))
@click.option("--dataset", default="cifar10", show_default=True, type=click.Choice(DATASETS))
@click.option("--data", type=click.Path(), help="Dataset path: official archive/batches, image folder or "
              "archive of one (downloads CIFAR into the cache when omitted and online).")
@click.option("--subset", type=click.IntRange(min=2), help="Keep N stratified training images (quick runs).")
@click.option("--image-size", type=click.IntRange(min=4), help="Resize images to this side (cheaper searches).")
@click.option("--epochs", type=click.IntRange(min=1), help="Search epochs [default: the strategy's].")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--channels", default=16, show_default=True, type=click.IntRange(min=1), help="C")
@click.option("--cells", "--layers", "cells", type=click.IntRange(min=1),
              help="Cells per stage N (nb201, default 5) or layers (darts, default 8).")
@click.option("--seed", default=0, show_default=True, type=int)
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
              help="Override a strategy hyperparameter, e.g. --hp w_lr=0.05 --hp tau_max=5.")
@click.option("--samples", type=click.IntRange(min=1), help="parsec: architectures sampled per step (--hp samples).")
@click.option("--sample-scale", type=click.FloatRange(min=0, min_open=True),
              help="fp-nas: K = ceil(scale * entropy) (--hp sample_scale).")
@click.option("--joint-after", type=int, help="fp-nas: epoch of the factorized-to-joint switch (--hp joint_after).")
@click.option("--flops-target", type=float, help="fp-nas: FLOPs target in MFLOPs (--hp flops_target).")
@click.option("--config", "config_file", type=click.Path(), help="Start from a config.json (e.g. RUN/config.json).")
@click.option("--resume", is_flag=True, help="Continue the run in --out from its last checkpoint.")
@click.option("--no-progress", is_flag=True, help="No progress bar (log lines only).")
@click.pass_context
def search(ctx: click.Context, epochs: int | None, samples: int | None, sample_scale: float | None,
           joint_after: int | None, flops_target: float | None, topo_disable: tuple[str, ...], hyper: tuple[str, ...],
           config_file: str | None, resume: bool, no_progress: bool, **options: Any) -> None:
    """Search an architecture: alternating weight and architecture steps on split training data."""
    from .loop import Search, SearchDiverged, SearchInterrupted

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)

    try:
        base = SearchConfig()
        if config_file:
            base = SearchConfig.load(config_file)
        elif resume and (Path(options["out"]) / "config.json").exists():
            base = SearchConfig.load(Path(options["out"]) / "config.json")
        changes = {k: options[k] for k in CONFIG_OPTIONS if given(k) or (not config_file and not resume)}
        if given("out"):
            changes["out"] = options["out"]
        if given("topo_disable") or (not config_file and not resume):
            changes["topo_disable"] = topo_disable
        hp = dict(base.hyper)
        hp.update(parse_hyper(hyper))
        named = {"epochs": epochs, "samples": samples, "sample_scale": sample_scale, "joint_after": joint_after,
                 "flops_target": flops_target}
        hp.update({k: v for k, v in named.items() if v is not None})
        config = base.replace(**changes, hyper=hp)
        result = Search(config, resume=resume, progress=not no_progress, log=click.echo).run()
    except SearchInterrupted as e:
        fail(str(e), 130)
    except SearchDiverged as e:
        fail(str(e), 3)
    except USER_ERRORS as e:
        fail(str(e))
    click.echo(result.summary())
    click.echo(f"wrote {Path(result.out_dir) / 'result.json'}")


@main.command()
@click.argument("arch")
@click.option("--benchmark", type=click.Path(), envvar="TOPONAS_BENCHMARK",
              help="Benchmark CSV (or $TOPONAS_BENCHMARK).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def lookup(arch: str, benchmark: str | None, as_json: bool) -> None:
    """Print the benchmark accuracies of a NAS-Bench-201 cell string."""
    try:
        table = BenchmarkTable.load(benchmark)
        values = table.lookup(arch)
    except (BenchmarkError, CellError) as e:
        fail(str(e))
    if as_json:
        click.echo(json.dumps({"arch": arch, **values}))
    else:
        for name, value in values.items():
            click.echo(f"{name}: {value:.2f}")


@main.command()
@click.option("--space", default="nb201", show_default=True, help=SPACE_HELP)
@click.option("--topo", "mode", default="full", show_default=True, type=click.Choice(MODES))
@click.option("--topo-disable", multiple=True, type=click.Choice(RULES), help="Switch a rule off (ablation).")
@click.option("--channels", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(min=4))
def explain(space: str, mode: str, topo_disable: tuple[str, ...], channels: int, batch_size: int,
            image_size: int) -> None:
    """Show an edge before and after simplification: primitives, convolutions, saved tensors, MACs."""
    from . import topo

    click.echo(topo.explain(load_space(space), mode, disable=topo_disable, channels=channels,
                            height=image_size, width=image_size, batch=batch_size))


@main.command()
@click.option("--space", default="nb201", show_default=True, help=SPACE_HELP)
@click.option("--topo", "mode", default="full", show_default=True, type=click.Choice(("exact", "full")))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--trials", default=3, show_default=True, type=click.IntRange(min=1))
def verify(space: str, mode: str, seed: int, trials: int) -> None:
    """Check the simplifier's promises on random inputs; exit status 1 when one fails."""
    from . import topo

    report = topo.verify(load_space(space), mode, seed=seed, trials=trials)
    click.echo(str(report))
    if not report.ok:
        fail(f"topo={mode} broke a promise (see the table above)")


@main.command()
@click.option("--space", default="nb201", show_default=True, help=SPACE_HELP)
@click.option("--strategy", default="darts-v1", show_default=True, type=click.Choice(STRATEGIES.names()))
@click.option("--topo", "modes", default="off,exact,full", show_default=True,
              help="Comma-separated simplifier modes to compare.")
@click.option("--topo-disable", multiple=True, type=click.Choice(RULES), help="Switch a rule off (ablation).")
@click.option("--channels", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--cells", "--layers", "cells", type=click.IntRange(min=1), help="Default: the space's.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(min=4))
@click.option("--steps", default=3, show_default=True, type=click.IntRange(min=1), help="Timed steps of each.")
@click.option("--warmup", default=1, show_default=True, type=click.IntRange(min=0))
@click.option("--device", default="auto", show_default=True)
@click.option("--no-single", is_flag=True, help="Skip the largest single network.")
@click.option("--json", "json_path", type=click.Path(), help="Write the figures as JSON here.")
@click.option("--scaling", is_flag=True, help="The scaling study: off, full and the largest single network of each "
              "of --spaces, against the number of convolution candidates (JSON, Markdown table, PNG in --out).")
@click.option("--spaces", default="nb201,nb201-wide3,nb201-wide4,nb201-wide6,darts", show_default=True,
              help="--scaling: comma-separated spaces (registered names or .json declarations).")
@click.option("--out", "out_dir", default="runs/scaling", show_default=True, type=click.Path(),
              help="--scaling: directory for scaling-<device>.json/.md/.png.")
@click.pass_context
def profile(ctx: click.Context, space: str, strategy: str, modes: str, topo_disable: tuple[str, ...], channels: int,
            cells: int | None, batch_size: int, image_size: int, steps: int, warmup: int, device: str,
            no_single: bool, json_path: str | None, scaling: bool, spaces: str, out_dir: str) -> None:
    """Time and memory of one search step per simplifier mode, interleaved on the same batch.

    With --scaling: the same over several spaces (off, full and the largest single network of each),
    written as JSON, a Markdown table and a plot against the number of convolution candidates.
    """
    import torch

    from .loop.search import resolve_device
    from .profiling import format_table, rows_to_json
    from .profiling import profile as run_profile

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE

    if scaling:
        clash = [f"--{n.replace('_', '-')}" for n in ("space", "modes", "topo_disable", "no_single", "json_path")
                 if given(n)]
        if clash:
            fail(f"--scaling runs off and full with the single network over --spaces and writes into --out; "
                 f"drop {', '.join(clash).replace('--modes', '--topo').replace('--json-path', '--json')}", 2)
        _profile_scaling(strategy, spaces, channels, cells, batch_size, image_size, steps, warmup, device, out_dir)
        return
    if given("spaces") or given("out_dir"):
        fail("--spaces and --out go with --scaling", 2)

    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in mode_list if m not in MODES]
    if bad or not mode_list:
        fail(f"unknown --topo mode(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    try:
        dev = resolve_device(device)
    except ConfigError as e:
        fail(str(e))
    load_space(space)  # a clear error for an unknown space before any work
    rows = run_profile(space, strategy, mode_list, channels=channels, cells=cells, batch_size=batch_size,
                       image_size=image_size, steps=steps, warmup=warmup, device=dev, disable=topo_disable,
                       single=not no_single, log=lambda m: click.echo(m, err=True))
    click.echo(f"{space}, {strategy}, C={channels}, N={cells or 'default'}, batch {batch_size}, "
               f"{image_size}x{image_size}, device {dev}, torch threads {torch.get_num_threads()}, "
               f"median of {steps} interleaved steps")
    click.echo(format_table(rows))
    if json_path:
        Path(json_path).write_text(json.dumps({
            "space": space, "strategy": strategy, "channels": channels, "cells": cells,
            "batch_size": batch_size, "image_size": image_size, "device": str(dev), "steps": steps,
            "torch": torch.__version__, "rows": rows_to_json(rows)}, indent=2) + "\n")


def _profile_scaling(strategy: str, spaces: str, channels: int, cells: int | None, batch_size: int, image_size: int,
                     steps: int, warmup: int, device: str, out_dir: str) -> None:
    """``toponas profile --scaling``: :func:`toponas.profiling.scaling_study` and its three files."""
    from .loop.search import resolve_device
    from .profiling import scaling_caption, scaling_markdown, scaling_study, write_scaling
    from .report import HINT

    names = [s.strip() for s in spaces.split(",") if s.strip()]
    if not names:
        fail("--spaces names no space")
    try:
        dev = resolve_device(device)
    except ConfigError as e:
        fail(str(e))
    for name in names:
        load_space(name)  # a clear error for an unknown space before any work
    try:
        import matplotlib  # noqa: F401  (plots are drawn after the first space: fail before any work)
    except ImportError:
        fail(HINT)
    previous = Path(out_dir) / f"scaling-{dev.type}.json"  # a killed run continues where it stopped
    earlier = json.loads(previous.read_text()) if previous.is_file() else None
    study = scaling_study(names, strategy, channels=channels, cells=cells, batch_size=batch_size,
                          image_size=image_size, steps=steps, warmup=warmup, device=dev,
                          log=lambda m: click.echo(m, err=True),
                          on_space=lambda partial: write_scaling(partial, out_dir),  # kept if killed later
                          earlier=earlier)
    paths = write_scaling(study, out_dir)
    click.echo(scaling_caption(study))
    click.echo(scaling_markdown(study))
    for path in paths.values():
        click.echo(f"wrote {path}")


@main.command()
@click.option("--out", required=True, type=click.Path(), help="Sweep directory (one sub-directory per run).")
@click.option("--strategies", default=",".join(STRATEGIES.names()), show_default=True)
@click.option("--topo", "modes", default="off,full", show_default=True)
@click.option("--seeds", default="0,1", show_default=True)
@click.option("--budget", default="cpu", show_default=True, type=click.Choice(["cpu", "reference", "none"]),
              help="Preset search options shared by every run (see docs/quality.md).")
@click.option("--jobs", default=2, show_default=True, type=click.IntRange(min=1), help="Runs in parallel.")
@click.option("--dataset", default="cifar10", show_default=True, type=click.Choice(DATASETS))
@click.option("--data", type=click.Path(), help="Dataset path, as for search.")
@click.option("--benchmark", type=click.Path(), envvar="TOPONAS_BENCHMARK", help="Benchmark CSV.")
@click.option("--set", "sets", multiple=True, metavar="OPTION=VALUE",
              help="Override a budget option, e.g. --set epochs=20 --set subset=5000.")
@click.option("--summary-only", is_flag=True, help="Only rebuild summary.csv / summary.md from finished runs.")
def sweep(out: str, strategies: str, modes: str, seeds: str, budget: str, jobs: int, dataset: str,
          data: str | None, benchmark: str | None, sets: tuple[str, ...], summary_only: bool) -> None:
    """Run a grid of searches (strategies x topo modes x seeds), resumable, and summarize it."""
    from .sweep import BUDGETS, plan, summarize
    from .sweep import markdown as to_markdown
    from .sweep import sweep as run_sweep

    names = [s.strip() for s in strategies.split(",") if s.strip()]
    unknown = [s for s in names if s not in STRATEGIES]
    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    bad_modes = [m for m in mode_list if m not in MODES]
    if unknown or bad_modes:
        fail(f"unknown strategies/modes {', '.join(unknown + bad_modes)}; strategies: "
             f"{', '.join(STRATEGIES.names())}; modes: {', '.join(MODES)}")
    try:
        seed_list = [int(s) for s in seeds.split(",") if s.strip()]
    except ValueError:
        fail(f"--seeds expects comma-separated integers, got {seeds!r}")
    options = dict(BUDGETS.get(budget, {}))
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep:
            fail(f"--set expects OPTION=VALUE, got {item!r}")
        options[key.strip().replace("_", "-")] = value.strip()
    options["dataset"] = dataset
    if data:
        options["data"] = str(Path(data).resolve())
    if benchmark:
        options["benchmark"] = str(Path(benchmark).resolve())
    if summary_only:
        rows = summarize(out, plan(names, mode_list, seed_list))
    else:
        rows = run_sweep(out, names, mode_list, seed_list, options, jobs=jobs, log=click.echo)
    click.echo(to_markdown(rows) if rows else "no finished runs yet")


def _register_extra_commands() -> None:
    from .commands_extra import export, report, train

    for command in (train, export, report):
        main.add_command(command)


_register_extra_commands()

if __name__ == "__main__":
    main()
