"""``toponas rank``: score sampled NAS-Bench-201 cells with one indicator and correlate with the benchmark."""

from __future__ import annotations

import click

from ..data import DATASETS
from .errors import SIGINT_EXIT, fail


def _cells(value: str) -> int | None:
    if value.strip().lower() == "all":
        return None
    try:
        return int(value)
    except ValueError:
        fail(f"--cells expects a number of cells or 'all', got {value!r}")
        return None


@click.command()
@click.option("--space", default="nb201", show_default=True, help="An NB201-style space (registered or .json).")
@click.option("--indicator", required=True,
              help="grad_norm, snip, synflow, naswot, nasi, bn-gamma, supernet, flops, params, or a sum of "
                   "ranks such as synflow+naswot.")
@click.option("--cells", "cells_text", default="1000", show_default=True, help="N sampled cells, or 'all'.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seeds the sample and the networks.")
@click.option("--dataset", default="cifar10", show_default=True, type=click.Choice(DATASETS),
              help="Images for the indicators and the benchmark column to correlate with.")
@click.option("--data", type=click.Path(), help="Dataset path, as for search.")
@click.option("--benchmark", type=click.Path(), envvar="TOPONAS_BENCHMARK", help="Benchmark CSV.")
@click.option("--json", "json_out", required=True, type=click.Path(), help="Write the ranking here (resumable).")
@click.option("--channels", default=16, show_default=True, type=click.IntRange(min=1), help="C of the scored net.")
@click.option("--layers", default=5, show_default=True, type=click.IntRange(min=1), help="N cells per stage.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=2), help="Images per score.")
@click.option("--image-size", type=click.IntRange(min=4), help="Resize images (cheaper proxies).")
@click.option("--supernet", type=click.Path(), help="supernet / bn-gamma: a spos, pi-nas or bn-nas run directory.")
@click.option("--nasi-mu", default=1.0, show_default=True, type=click.FloatRange(min=0))
@click.option("--nasi-nu", default=0.0, show_default=True, type=click.FloatRange(min=0), help="0: no cap.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="Processes scoring chunks of cells (flops, params and the zero-cost indicators).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=0),
              help="Torch threads (0: torch's default; 1 is fastest on a shared CPU).")
@click.option("--cache-dir", type=click.Path(), help="Where decoded datasets are cached.")
@click.option("--no-progress", is_flag=True)
def rank(space: str, indicator: str, cells_text: str, seed: int, dataset: str, data: str | None,
         benchmark: str | None, json_out: str, channels: int, layers: int, batch_size: int,
         image_size: int | None, supernet: str | None, nasi_mu: float, nasi_nu: float, jobs: int, threads: int,
         cache_dir: str | None, no_progress: bool) -> None:
    """Score N cells (or all) with an indicator; Kendall tau and Spearman rho against the benchmark, top-5."""
    from ..ranking import RankSettings, check_indicator, summary
    from ..ranking import rank as run_rank

    try:
        check_indicator(indicator)
        settings = RankSettings(indicator=indicator, space=space, cells=_cells(cells_text), seed=seed,
                                dataset=dataset, channels=channels, layers=layers, batch_size=batch_size,
                                image_size=image_size, supernet=supernet, threads=threads, nasi_mu=nasi_mu,
                                nasi_nu=nasi_nu)
        result = run_rank(settings, json_out, data=data, benchmark=benchmark, cache_dir=cache_dir,
                          progress=not no_progress, log=lambda m: click.echo(m, err=True),
                          jobs=1 if supernet else jobs)
    except KeyboardInterrupt:
        click.echo(f"error: interrupted; scores so far are kept in {json_out}.partial, run again to continue",
                   err=True)
        raise SystemExit(SIGINT_EXIT) from None
    click.echo(summary(result))
    click.echo(f"wrote {json_out}")


COMMANDS = [rank]
