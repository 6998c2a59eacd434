"""``toponas lookup``: the benchmark accuracies of a cell."""

from __future__ import annotations

import json

import click

from ..benchmark import BenchmarkTable


@click.command()
@click.argument("arch")
@click.option("--benchmark", type=click.Path(), envvar="TOPONAS_BENCHMARK",
              help="Benchmark CSV (or $TOPONAS_BENCHMARK).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def lookup(arch: str, benchmark: str | None, as_json: bool) -> None:
    """Print the benchmark accuracies of a NAS-Bench-201 cell string."""
    table = BenchmarkTable.load(benchmark)
    values = table.lookup(arch)
    if as_json:
        click.echo(json.dumps({"arch": arch, **values}))
    else:
        for name, value in values.items():
            click.echo(f"{name}: {value:.2f}")


COMMANDS = [lookup]
