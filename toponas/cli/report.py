"""``toponas report``: figures and a Markdown page for a run or a sweep."""

from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.argument("run_dir", type=click.Path())
@click.option("--out", type=click.Path(), help="Where to write the report [default: RUN_DIR/report].")
def report(run_dir: str, out: str | None) -> None:
    """Figures (PNG) and a Markdown page for a search, a training run or a sweep directory."""
    from ..report import report as run_report
    from ..runtime import check_writable

    check_writable(out or Path(run_dir) / "report", directory=True, what="--out")
    page = run_report(run_dir, out)
    figures = sorted(p.name for p in page.parent.glob("*.png"))
    click.echo(f"wrote {page} with {len(figures)} figures: {', '.join(figures)}")



COMMANDS = [report]
