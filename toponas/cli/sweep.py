"""``toponas sweep``: a grid of searches (strategies x simplifier modes x seeds) and its summary."""

from __future__ import annotations

from pathlib import Path

import click

from ..data import DATASETS
from ..strategies import STRATEGIES
from ..sweep import BUDGET_NAMES
from ..topo import MODES
from .errors import fail
from .layers import parse_pairs


@click.command()
@click.option("--out", required=True, type=click.Path(), help="Sweep directory (one sub-directory per run).")
@click.option("--strategies", default=",".join(STRATEGIES.names()), show_default=True)
@click.option("--topo", "modes", default="off,full", show_default=True)
@click.option("--seeds", default="0,1", show_default=True)
@click.option("--budget", default="cpu", show_default=True, type=click.Choice(BUDGET_NAMES),
              help="Preset search options shared by every run (see docs/quality.md).")
@click.option("--jobs", default=2, show_default=True, type=click.IntRange(min=1), help="Runs in parallel.")
@click.option("--dataset", default="cifar10", show_default=True, type=click.Choice(DATASETS))
@click.option("--data", type=click.Path(), help="Dataset path, as for search.")
@click.option("--benchmark", type=click.Path(), envvar="TOPONAS_BENCHMARK", help="Benchmark CSV.")
@click.option("--set", "sets", multiple=True, metavar="OPTION=VALUE",
              help="Override a budget option, e.g. --set epochs=20 --set subset=5000 --set a-lr-scale=10 "
              "(every strategy's a_lr times 10).")
@click.option("--summary-only", is_flag=True, help="Only rebuild summary.csv / summary.md from finished runs.")
@click.option("--backend", default="local", show_default=True, type=click.Choice(["local", "ray"]),
              help="local: a pool of --jobs processes here; ray: one Ray task per run (needs the ray extra).")
@click.option("--address", help="--backend ray: the cluster (host:port, ray://host:port or auto) [default: a new "
              "local Ray instance].")
@click.option("--cpus-per-run", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="--backend ray: CPUs each run's task asks for (also its thread count).")
@click.option("--gpus-per-run", default=0.0, show_default=True, type=click.FloatRange(min=0),
              help="--backend ray: GPUs each run's task asks for (fractions share a GPU).")
def sweep(out: str, strategies: str, modes: str, seeds: str, budget: str, jobs: int, dataset: str,
          data: str | None, benchmark: str | None, sets: tuple[str, ...], summary_only: bool, backend: str,
          address: str | None, cpus_per_run: float, gpus_per_run: float) -> None:
    """Run a grid of searches (strategies x topo modes x seeds), resumable, and summarize it.

    The runs go to a local pool (default) or, with --backend ray, to a Ray cluster as tasks."""
    from ..runtime import check_writable
    from ..sweep import BUDGETS, SweepFailed, plan, summarize
    from ..sweep import markdown as to_markdown
    from ..sweep import sweep as run_sweep

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
    if not names or not mode_list or not seed_list:
        fail("--strategies, --topo and --seeds must each name at least one value")
    options = dict(BUDGETS.get(budget, {}))
    options.update({k.replace("_", "-"): v for k, v in parse_pairs(sets, "--set").items()})
    options["dataset"] = dataset
    if data:
        options["data"] = str(Path(data).resolve())
    if benchmark:
        options["benchmark"] = str(Path(benchmark).resolve())
    if address and backend != "ray":
        fail("--address is for --backend ray")
    check_writable(out, directory=True, what="--out")
    if summary_only:
        rows = summarize(out, plan(names, mode_list, seed_list))
    else:
        try:
            rows = run_sweep(out, names, mode_list, seed_list, options, jobs=jobs, log=click.echo, backend=backend,
                             address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
        except SweepFailed as e:
            if e.rows:
                click.echo(to_markdown(e.rows))
            fail(str(e))
    click.echo(to_markdown(rows) if rows else "no finished runs yet")



COMMANDS = [sweep]
