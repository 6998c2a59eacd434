"""``toponas latency build|predict|check``: a latency look-up table measured on this device, and its use."""

from __future__ import annotations

import click

from ..hardware.fit import CORRECTIONS
from ..hardware.timing import CLOCKS, STATISTICS
from .common import SPACE_HELP, load_space, show_progress
from .errors import guarded


@click.group()
def latency() -> None:
    """Latency look-up tables measured on this device (docs/hardware.md)."""


@latency.command()
@click.option("--space", default="mobile", show_default=True, help=SPACE_HELP)
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(min=1), help="Input side S.")
@click.option("--device", default="cpu", show_default=True, type=click.Choice(["cpu", "cuda"]))
@click.option("--batch-size", default=1, show_default=True, type=click.IntRange(min=1))
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=0),
              help="Torch intra-op threads (0: torch's default).")
@click.option("--channels", default=16, show_default=True, type=click.IntRange(min=1), help="C of the networks.")
@click.option("--classes", default=10, show_default=True, type=click.IntRange(min=1), help="Classifier outputs.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0), help="Untimed calls.")
@click.option("--repeats", default=30, show_default=True, type=click.IntRange(min=1), help="Timed calls.")
@click.option("--statistic", default="median", show_default=True, type=click.Choice(STATISTICS),
              help="Of the timed calls.")
@click.option("--clock", default="wall", show_default=True, type=click.Choice(CLOCKS),
              help="wall: elapsed time; cpu: the thread's CPU time (a shared machine; --threads 1).")
@click.option("--fit-networks", default=60, show_default=True, type=click.IntRange(min=1),
              help="Random networks (seed 7919) the entries' correction and the overhead are fitted on.")
@click.option("--correction", default="stages", show_default=True, type=click.Choice(CORRECTIONS),
              help="stages: a ridge fit of a scale and offset per stage; parts: and a delta per part; "
                   "overhead: the median overhead alone (docs/hardware.md).")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(min=1),
              help="Round-robin passes over the entries and the fit networks (minimum over the passes).")
@click.option("--out", required=True, type=click.Path(), help="The table (JSON); an existing one is continued.")
@click.option("--no-progress", is_flag=True)
def build(space: str, image_size: int, device: str, batch_size: int, threads: int, channels: int, classes: int,
          warmup: int, repeats: int, statistic: str, clock: str, fit_networks: int, correction: str, rounds: int,
          out: str, no_progress: bool) -> None:
    """Time every (block position, candidate, channels) of the space, the stem and the head; fit them in context."""
    from ..hardware import lut
    from ..runtime import resolve_device
    from ..runtime.files import check_writable

    sp = load_space(space)
    check_writable(out, what="--out")
    table = lut.build(sp, out, image_size, resolve_device(device), batch_size, threads, channels, classes, warmup,
                      repeats, fit_networks, statistic, rounds, clock, progress=show_progress(no_progress),
                      log=lambda m: click.echo(m, err=True), correction=correction)
    fit = table.overhead
    loo = f", leave-one-out MAPE {fit['loo_mape']:.2f}%" if "loo_mape" in fit else ""
    click.echo(f"{len(table.entries)} entries, correction {table.correction}, overhead {table.overhead_ms:.3f} ms "
               f"per network (fitted on {len(fit['networks'])} networks{loo}); {table.made_for()}")
    click.echo(f"wrote {out}")


@latency.command()
@click.argument("arch")
@click.option("--lut", "lut_path", required=True, type=click.Path(), help="A table from `latency build`.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def predict(arch: str, lut_path: str, as_json: bool) -> None:
    """The predicted latency of ARCH: the sum of its (corrected) entries plus the fitted overhead."""
    import json

    from ..hardware import LatencyTable

    table = LatencyTable.load(lut_path)
    sp = load_space(table.space)
    table.check_complete(sp, lut_path)
    total = table.sum_ms(sp, sp.parse(arch))
    out = {"arch": str(sp.parse(arch)), "predicted_ms": total + table.overhead_ms, "sum_ms": total,
           "overhead_ms": table.overhead_ms, "table": table.made_for()}
    if as_json:
        click.echo(json.dumps(out))
    else:
        click.echo(f"{out['predicted_ms']:.3f} ms  (entries {total:.3f} + overhead {table.overhead_ms:.3f}; "
                   f"{table.made_for()})")


@latency.command()
@click.option("--lut", "lut_path", required=True, type=click.Path(), help="A table from `latency build`.")
@click.option("--networks", default=50, show_default=True, type=click.IntRange(min=1), help="Random networks N.")
@click.option("--json", "json_out", required=True, type=click.Path(), help="Write the per-network figures here.")
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Draws the networks.")
@click.option("--rounds", default=None, type=click.IntRange(min=1),
              help="Round-robin passes over the networks (minimum over the passes); default: the table's build's.")
@click.option("--no-progress", is_flag=True)
def check(lut_path: str, networks: int, json_out: str, seed: int, rounds: int | None, no_progress: bool) -> None:
    """Measure N random networks end to end (not those the overhead was fitted on) against the prediction."""
    from ..hardware import LatencyTable
    from ..hardware import check as run_check
    from ..runtime import resolve_device, write_json
    from ..runtime.files import check_writable

    table = LatencyTable.load(lut_path)
    sp = load_space(table.space)
    table.check_complete(sp, lut_path)
    check_writable(json_out, what="--json")
    result = run_check(table, sp, networks, seed, resolve_device(str(table.device.get("kind", "cpu"))), rounds,
                       progress=show_progress(no_progress))
    for row in result["networks"]:
        click.echo(f"{row['predicted_ms']:8.3f} ms predicted  {row['measured_ms']:8.3f} ms measured  {row['arch']}")
    click.echo(f"MAPE {result['mape']:.2f}% over {networks} networks (max {result['max_ape']:.1f}%, "
               f"{100 * result['within_5pct']:.0f}% within 5%, {100 * result['within_10pct']:.0f}% within 10%)")
    if result["drift"] is not None:
        click.echo(f"drift {result['drift']:.3f}: {result['drift_networks']} of the fit networks measure that many "
                   "times their time at the build (the machine's load since)")
    write_json(json_out, result)
    click.echo(f"wrote {json_out}")


for _command in latency.commands.values():  # the group is guarded by the CLI; its subcommands here
    guarded(_command)

COMMANDS = [latency]
