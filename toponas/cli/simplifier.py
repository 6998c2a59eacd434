"""The simplifier's commands: ``explain``, ``verify`` and ``profile`` (timing and memory per simplifier mode)."""

from __future__ import annotations

import json
from pathlib import Path

import click
from click.core import ParameterSource

from ..config import ConfigError
from ..strategies import STRATEGIES
from ..topo import MODES, RULES
from .common import SPACE_HELP, load_space
from .errors import USAGE, VERIFY_FAILED, fail


def read_earlier(path: Path) -> dict | None:
    """An earlier scaling study's JSON (a killed study continues); a broken file is a user error."""
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not valid JSON ({e}); delete it to measure afresh") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} is not a scaling study (expected a JSON object); delete it to measure afresh")
    return data


@click.command()
@click.option("--space", default="nb201", show_default=True, help=SPACE_HELP)
@click.option("--topo", "mode", default="full", show_default=True, type=click.Choice(MODES))
@click.option("--topo-disable", multiple=True, type=click.Choice(RULES), help="Switch a rule off (ablation).")
@click.option("--channels", default=16, show_default=True, type=click.IntRange(min=1))
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(min=1))
@click.option("--image-size", default=32, show_default=True, type=click.IntRange(min=4))
def explain(space: str, mode: str, topo_disable: tuple[str, ...], channels: int, batch_size: int,
            image_size: int) -> None:
    """Show an edge before and after simplification: primitives, convolutions, saved tensors, MACs."""
    from .. import topo

    click.echo(topo.explain(load_space(space), mode, disable=topo_disable, channels=channels,
                            height=image_size, width=image_size, batch=batch_size))


@click.command()
@click.option("--space", default="nb201", show_default=True, help=SPACE_HELP)
@click.option("--topo", "mode", default="full", show_default=True, type=click.Choice(("exact", "full")))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--trials", default=3, show_default=True, type=click.IntRange(min=1))
def verify(space: str, mode: str, seed: int, trials: int) -> None:
    """Check the simplifier's promises on random inputs; exit status 4 when one fails."""
    from .. import topo

    report = topo.verify(load_space(space), mode, seed=seed, trials=trials)
    click.echo(str(report))
    if not report.ok:
        fail(f"topo={mode} broke a promise (see the table above)", VERIFY_FAILED)


@click.command()
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
@click.option("--spaces", default="nb201,nb201-wide3,nb201-wide4,nb201-wide6,darts,mobile", show_default=True,
              help="--scaling: comma-separated spaces (registered names or .json declarations).")
@click.option("--out", "out_dir", default="runs/scaling", show_default=True, type=click.Path(),
              help="--scaling: directory for scaling-<device>.json/.md/.png.")
@click.option("--compile", is_flag=True, help="torch.compile every configuration's network; the compile time "
              "(first warm-up step) and the recompilations during the timed steps are reported apart.")
@click.pass_context
def profile(ctx: click.Context, space: str, strategy: str, modes: str, topo_disable: tuple[str, ...], channels: int,
            cells: int | None, batch_size: int, image_size: int, steps: int, warmup: int, device: str,
            no_single: bool, json_path: str | None, scaling: bool, spaces: str, out_dir: str, compile: bool) -> None:
    """Time and memory of one search step per simplifier mode, interleaved on the same batch.

    With --scaling: the same over several spaces (off, full and the largest single network of each),
    written as JSON, a Markdown table and a plot against the number of convolution candidates.
    """
    import torch

    from ..profiling import format_table, rows_to_json
    from ..profiling import profile as run_profile
    from ..runtime import allocator_state, check_writable, resolve_device, write_json

    def given(name: str) -> bool:
        return ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE

    if scaling:
        clash = [f"--{n.replace('_', '-')}" for n in ("space", "modes", "topo_disable", "no_single", "json_path",
                                                      "compile") if given(n)]
        if clash:
            fail(f"--scaling runs off and full with the single network over --spaces and writes into --out; "
                 f"drop {', '.join(clash).replace('--modes', '--topo').replace('--json-path', '--json')}", USAGE)
        _profile_scaling(strategy, spaces, channels, cells, batch_size, image_size, steps, warmup, device, out_dir)
        return
    if given("spaces") or given("out_dir"):
        fail("--spaces and --out go with --scaling", USAGE)

    mode_list = [m.strip() for m in modes.split(",") if m.strip()]
    bad = [m for m in mode_list if m not in MODES]
    if bad or not mode_list:
        fail(f"unknown --topo mode(s) {', '.join(bad) or '(none)'}; choose from {', '.join(MODES)}")
    dev = resolve_device(device)
    load_space(space)  # a clear error for an unknown space before any work
    if compile:
        from ..runtime.compiled import check_compile

        check_compile(dev)
        if warmup < 1:
            fail("--compile needs --warmup 1 or more (the first step compiles, and is reported apart)")
    if json_path:
        check_writable(json_path, what="--json")  # before minutes of measuring
    rows = run_profile(space, strategy, mode_list, channels=channels, cells=cells, batch_size=batch_size,
                       image_size=image_size, steps=steps, warmup=warmup, device=dev, disable=topo_disable,
                       single=not no_single, log=lambda m: click.echo(m, err=True), compile=compile)
    click.echo(f"{space}, {strategy}, C={channels}, N={cells or 'default'}, batch {batch_size}, "
               f"{image_size}x{image_size}, device {dev}, torch threads {torch.get_num_threads()}, "
               f"median of {steps} interleaved steps" + (", torch.compile" if compile else ""))
    click.echo(format_table(rows))
    if json_path:
        write_json(Path(json_path), {
            "space": space, "strategy": strategy, "channels": channels, "cells": cells,
            "batch_size": batch_size, "image_size": image_size, "device": str(dev), "steps": steps,
            "torch": torch.__version__, "compile": compile, "allocator": list(allocator_state().applied),
            "rows": rows_to_json(rows)})


def _profile_scaling(strategy: str, spaces: str, channels: int, cells: int | None, batch_size: int, image_size: int,
                     steps: int, warmup: int, device: str, out_dir: str) -> None:
    """``toponas profile --scaling``: :func:`toponas.profiling.scaling_study` and its three files."""
    from ..profiling import scaling_caption, scaling_markdown, scaling_study, write_scaling
    from ..report import HINT
    from ..runtime import check_writable, resolve_device

    names = [s.strip() for s in spaces.split(",") if s.strip()]
    if not names:
        fail("--spaces names no space")
    dev = resolve_device(device)
    check_writable(out_dir, directory=True, what="--out")
    for name in names:
        load_space(name)  # a clear error for an unknown space before any work
    try:
        import matplotlib  # noqa: F401  (plots are drawn after the first space: fail before any work)
    except ImportError:
        fail(HINT)
    previous = Path(out_dir) / f"scaling-{dev.type}.json"  # a killed run continues where it stopped
    earlier = read_earlier(previous)
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



COMMANDS = [explain, verify, profile]
