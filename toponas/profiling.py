"""Cost of one search step per simplifier mode, against the largest single network of the space.

Every configuration gets the same batch; steps are interleaved after warm-up and the median is
reported, so machine noise hits all configurations alike. A search step is a weight step and an
architecture step (two forward/backward passes); the single network's figure is two training
steps on the same two batches, the same amount of work, so the two compare like for like.

The *scaling study* (:func:`scaling_study`, ``toponas profile --scaling``) runs :func:`profile` with
``off`` and ``full`` over several spaces and relates the cost to the number of convolution
candidates of each space (:func:`conv_candidates`): a JSON file, a Markdown table and a PNG plot.
"""

from __future__ import annotations

import copy
import gc
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from . import topo
from .runtime.allocator import allocator_state, configure_allocator, minor_faults
from .spaces import create_space
from .spaces.primitives import SEARCH_BN, Conv
from .strategies import create_strategy
from .topo.measure import saved_activation_bytes

configure_allocator()  # no per-step page faults from glibc returning freed activations (runtime/allocator.py)


@dataclass
class ProfileRow:
    """Figures of one configuration (``name``: ``topo=MODE`` or ``largest single network``)."""

    name: str
    ms_per_step: float
    ms_spread: tuple[float, float]  # min and max of the timed steps
    minor_faults_per_step: int  # median minor page faults of the timed steps (ru_minflt, whole process)
    saved_activation_bytes: int  # tensors kept for backward by one forward pass (weight batch)
    peak_memory_bytes: int | None  # CUDA peak over one step above what was resident; None on the CPU
    parameters: int
    mult_adds: int  # of one forward pass on one batch
    compile_seconds: float | None = None  # --compile: the first (warm-up) step, which compiles
    recompiles: int | None = None  # --compile: frames compiled again during the timed steps (0: none)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mult_adds(fn: Callable[[], torch.Tensor]) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops() // 2


def _peak(step: Callable[[], object], device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device)  # every configuration's model and optimizer state
    step()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - resident


def step_task(space, batch_size: int, image_size: int):
    """The task of a profiled step and how its targets are drawn: 10-class labels, or a restoration space's
    clean images (an L1 loss; the space's ``output_shape``)."""
    if getattr(space, "family", None) == "restoration":
        from .restoration.task import RestorationTask

        task = RestorationTask(space.tasks[0], scale=max(space.out_scale, 2))
        out = space.output_shape(batch_size, image_size)
        return task, lambda gen: torch.randn(out, generator=gen)
    from .strategies.base import CLASSIFICATION

    return CLASSIFICATION, lambda gen: torch.randint(0, 10, (batch_size,), generator=gen)


def largest_cell(space) -> str:
    """The architecture with the most expensive candidate everywhere (the space's own definition)."""
    return str(space.largest_genotype())


#: A configuration: its step, one forward pass returning the loss (memory and MAC figures), and its module.
Config = tuple[Callable[[], object], Callable[[], torch.Tensor], torch.nn.Module]


def step_configs(
    space_name: str | object,
    strategy_name: str,
    modes: Sequence[str],
    channels: int,
    cells: int | None,
    batch_size: int,
    image_size: int,
    device: torch.device,
    disable: Sequence[str] = (),
    single: bool = True,
    seed: int = 0,
    runs: Callable[[torch.nn.Module], torch.nn.Module] = lambda m: m,
) -> tuple[dict[str, Config], Callable[[Callable[[], object], int], object]]:
    """The configurations :func:`profile` times (a search step per mode, two training steps of the largest
    single network, on the same two batches) and ``seeded(fn, i)``, which runs ``fn`` as step ``i``."""
    space = create_space(space_name) if isinstance(space_name, str) else space_name  # a name or a space object
    cells = cells or space.default_cells
    gen = torch.Generator().manual_seed(seed)
    shape = (batch_size, 3, image_size, image_size)
    task, target = step_task(space, batch_size, image_size)
    batch = [torch.randn(shape, generator=gen), target(gen), torch.randn(shape, generator=gen), target(gen)]
    batch = [t.to(device) for t in batch]
    torch.manual_seed(seed)
    plain = space.build_supernet(channels, cells, 10)
    configs: dict[str, Config] = {}
    for mode in modes:
        model = topo.simplify(copy.deepcopy(plain), mode, disable=disable).to(device).train()
        torch.manual_seed(seed)
        strategy = create_strategy(strategy_name, space).to(device)
        ctx = strategy.make_context(runs(model))
        ctx.task = task
        h = ctx.hyper
        strategy.begin_epoch(ctx, 0, h.epochs)

        def step(strategy=strategy, ctx=ctx):
            return strategy.step(ctx, *batch)

        def forward(strategy=strategy, model=model):
            return task.loss(model(batch[0], strategy.mixing()), batch[1])

        configs[f"topo={mode}"] = (step, forward, model)
    if single:
        net = space.build_network(space.largest_genotype(), channels, cells, 10, bn=SEARCH_BN).to(device).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
        stepped = runs(net)

        def train_two(net=stepped, opt=opt):
            for x, y in ((batch[0], batch[1]), (batch[2], batch[3])):
                opt.zero_grad(set_to_none=True)
                task.loss(net(x), y).backward()
                opt.step()

        configs["largest single network"] = (train_two, lambda net=net: task.loss(net(batch[0]), batch[1]),
                                             net)

    def seeded(fn, i: int):
        """Every configuration draws the same samples at step i (GDAS, DrNAS ...): a fair comparison."""
        torch.manual_seed(seed * 1_000_003 + i)
        return fn()

    return configs, seeded


def profile(
    space_name: str | object = "nb201",
    strategy_name: str = "darts-v1",
    modes: Sequence[str] = ("off", "exact", "full"),
    channels: int = 16,
    cells: int | None = None,
    batch_size: int = 64,
    image_size: int = 32,
    steps: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    disable: Sequence[str] = (),
    single: bool = True,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
    compile: bool = False,
) -> list[ProfileRow]:
    """Median time per search step and memory figures of each mode (and the largest single net).

    With ``compile`` every configuration's network runs ``torch.compile``d (``toponas.runtime.compiled``):
    the first warm-up step compiles and is reported apart (``compile_seconds``), and the frames compiled
    again during the timed steps are counted (``recompiles``). Activation and MAC figures are of the
    eager module.
    """
    device = torch.device(device)
    if compile:
        from .runtime.compiled import check_compile, compile_options, compiled_frames

        check_compile(device)
        if warmup < 1:
            raise ValueError("--compile needs --warmup >= 1 (the first step compiles)")

    def runs(module: torch.nn.Module) -> torch.nn.Module:
        return torch.compile(module, **compile_options(device)) if compile else module

    configs, seeded = step_configs(space_name, strategy_name, modes, channels, cells, batch_size, image_size,
                                   device, disable, single, seed, runs)

    faults: dict[str, list[int]] = {name: [] for name in configs}

    def timed(fn, name: str | None = None) -> float:
        _sync(device)
        f = minor_faults()
        t = time.perf_counter()
        fn()
        _sync(device)
        ms = (time.perf_counter() - t) * 1000
        if name is not None:
            faults[name].append(minor_faults() - f)
        return ms

    first: dict[str, float] = {}
    for _ in range(warmup):
        for name, (step, _, _) in configs.items():
            log(f"warm-up {name}" + (" (compiling)" if compile and name not in first else ""))
            first.setdefault(name, timed(lambda step=step: seeded(step, -1)))
    times: dict[str, list[float]] = {name: [] for name in configs}
    recompiles = dict.fromkeys(configs, 0)
    for i in range(steps):
        order = list(configs.items())
        if i % 2:  # alternate the order, so no configuration always runs right after the same other one
            order.reverse()
        for name, (step, _, _) in order:
            before = compiled_frames() if compile else 0
            times[name].append(timed(lambda step=step, i=i: seeded(step, i), name))
            recompiles[name] += (compiled_frames() - before) if compile else 0
        log(f"step {i + 1}/{steps}: " + ", ".join(f"{n} {t[-1]:.0f} ms" for n, t in times.items()))
    rows = []
    for name, (step, forward, model) in configs.items():
        ts = times[name]
        rows.append(ProfileRow(
            name=name,
            ms_per_step=statistics.median(ts),
            ms_spread=(min(ts), max(ts)),
            minor_faults_per_step=int(statistics.median(faults[name])),
            saved_activation_bytes=saved_activation_bytes(lambda forward=forward: seeded(forward, 0)),
            peak_memory_bytes=_peak(lambda step=step: seeded(step, 0), device),
            parameters=sum(p.numel() for p in model.parameters()),
            mult_adds=_mult_adds(lambda forward=forward: seeded(forward, 0)),
            compile_seconds=first[name] / 1000 if compile else None,
            recompiles=recompiles[name] if compile else None,
        ))
    return rows


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def format_table(rows: Sequence[ProfileRow], baseline: str = "topo=off") -> str:
    """A plain-text table with ratios against the plain supernet and the largest single network."""
    by = {r.name: r for r in rows}
    base, single = by.get(baseline), by.get("largest single network")
    head = (f"{'configuration':24s} {'ms/step':>9s} {'minflt/step':>11s} {'saved MB':>9s} {'peak MB':>8s} "
            f"{'params':>9s} "
            f"{'MMACs':>8s} {'off/this time':>13s} {'off/this mem':>12s} {'this/single time':>16s} "
            f"{'this/single mem':>15s}")
    compiled = any(r.compile_seconds is not None for r in rows)
    if compiled:
        head += f" {'compile s':>9s} {'recompiles':>10s}"
    lines = [head, "-" * len(head)]
    for r in rows:
        mb = r.saved_activation_bytes / 2**20
        peak = f"{r.peak_memory_bytes / 2**20:8.0f}" if r.peak_memory_bytes is not None else f"{'n/a':>8s}"
        lines.append(
            f"{r.name:24s} {r.ms_per_step:9.1f} {r.minor_faults_per_step:11d} {mb:9.1f} {peak} {r.parameters:9d} "
            f"{r.mult_adds / 1e6:8.1f} "
            f"{_ratio(base.ms_per_step, r.ms_per_step) if base else '-':>13s} "
            f"{_ratio(base.saved_activation_bytes, r.saved_activation_bytes) if base else '-':>12s} "
            f"{_ratio(r.ms_per_step, single.ms_per_step) if single else '-':>16s} "
            f"{_ratio(r.saved_activation_bytes, single.saved_activation_bytes) if single else '-':>15s}"
            + (f" {r.compile_seconds or 0:9.1f} {r.recompiles or 0:10d}" if compiled else "")
        )
    return "\n".join(lines)


def rows_to_json(rows: Sequence[ProfileRow]) -> list[dict]:
    return [asdict(r) for r in rows]


# -- the scaling study -------------------------------------------------------------------------------
SCALING_SPACES = ("nb201", "nb201-wide3", "nb201-wide4", "nb201-wide6", "darts", "mobile")
SCALING_MODES = ("off", "full")
SINGLE = "largest single network"


def conv_candidates(space) -> int:
    """Number of candidates of ``space`` whose primitive chain holds a convolution (dense or depthwise).

    Read from the candidate declarations (``space.specs``; for the DARTS space its stride-1 forms),
    so a user's space counts the same way: nb201 2, nb201-wide3/4/6 3/4/6, darts 4.
    """
    return sum(any(isinstance(p, Conv) for p in spec.chain) for spec in space.specs)


def space_family(space) -> str:
    """Spaces that share a cell and macro network compare along one line: the space's ``family`` (the
    space protocol; ``"nb201"`` for every NAS-Bench-201 cell space, registered or a user's), else its name."""
    return getattr(space, "family", None) or space.name


def scaling_study(
    spaces: Sequence[str] = SCALING_SPACES,
    strategy_name: str = "darts-v1",
    channels: int = 16,
    cells: int | None = None,
    batch_size: int = 64,
    image_size: int = 32,
    steps: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
    on_space: Callable[[dict[str, Any]], object] | None = None,
    earlier: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Profile ``off``, ``full`` and the largest single network of every space (one :func:`profile`
    call each, so the configurations of a space are interleaved on the same batch).

    Returns a JSON-ready dict: the settings, one entry per space (its convolution candidates, family,
    cells, largest single network and the rows of :func:`profile`), ``summary``
    (:func:`scaling_summary`) and ``fits`` (:func:`scaling_fits`). ``on_space`` gets the study so far
    after every space (e.g. to write it, so a run killed later keeps what it measured). ``earlier``: a
    study written before (e.g. by a run that was killed); its spaces are kept and not measured again
    when its settings are the same as these.
    """
    device = torch.device(device)
    settings = {
        "study": "scaling", "strategy": strategy_name, "modes": list(SCALING_MODES), "channels": channels,
        "batch_size": batch_size, "image_size": image_size, "steps": steps, "warmup": warmup,
        "device": str(device), "torch": torch.__version__, "threads": torch.get_num_threads(), "seed": seed,
        "allocator": list(getattr(allocator_state(), "applied", ())),  # a run under other settings is not mixed in
    }
    entries: list[dict[str, Any]] = []
    if earlier is not None and all(earlier.get(k) == v for k, v in settings.items()):
        entries = [e for e in earlier.get("spaces", []) if e["space"] in spaces
                   and (cells is None or e["cells"] == cells)]
        if entries:
            log(f"kept from the earlier run: {', '.join(e['space'] for e in entries)}")

    def study_so_far() -> dict[str, Any]:
        study = {**settings, "spaces": list(entries)}
        study["summary"] = scaling_summary(study)
        study["fits"] = scaling_fits(study)
        return study

    for name in spaces:
        if any(e["space"] == name for e in entries):
            continue
        space = create_space(name)
        n_cells = cells or space.default_cells
        log(f"== {name}: {conv_candidates(space)} convolution candidates, cells {n_cells}")
        rows = profile(name, strategy_name, SCALING_MODES, channels=channels, cells=n_cells, batch_size=batch_size,
                       image_size=image_size, steps=steps, warmup=warmup, device=device, single=True, seed=seed,
                       log=lambda m, name=name: log(f"{name}: {m}"))
        entries.append({
            "space": name,
            "family": space_family(space),
            "conv_candidates": conv_candidates(space),
            "candidates": list(space.op_names),
            "cells": n_cells,
            "largest": str(space.largest_genotype()),
            "rows": rows_to_json(rows),
        })
        _release_memory()  # the supernets of this space go before the next is built
        if on_space is not None:
            on_space(study_so_far())
    order = {name: i for i, name in enumerate(spaces)}
    entries.sort(key=lambda e: order[e["space"]])
    return study_so_far()


def _release_memory() -> None:
    """Collect garbage and hand freed heap memory back to the system (glibc), so the next, larger
    space does not start on top of the last one's freed but retained activations."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing to trim
        pass


def _div(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def scaling_summary(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Per space: ms/step and saved bytes of off, full and single, the ratios off/full and
    full/single, and the growth of off and full against the space of the same family with the
    fewest convolution candidates (None for a family of one space, e.g. darts)."""
    out = []
    for e in study["spaces"]:
        by = {r["name"]: r for r in e["rows"]}
        s = {"space": e["space"], "family": e["family"], "conv_candidates": e["conv_candidates"]}
        for key, name in (("off", "topo=off"), ("full", "topo=full"), ("single", SINGLE)):
            r = by.get(name)
            s[f"{key}_ms"] = r["ms_per_step"] if r else None
            s[f"{key}_ms_spread"] = list(r["ms_spread"]) if r else None
            s[f"{key}_bytes"] = r["saved_activation_bytes"] if r else None
            s[f"{key}_minor_faults"] = r.get("minor_faults_per_step") if r else None
        s["off_over_full_time"] = _div(s["off_ms"], s["full_ms"])
        s["off_over_full_bytes"] = _div(s["off_bytes"], s["full_bytes"])
        s["full_over_single_time"] = _div(s["full_ms"], s["single_ms"])
        s["full_over_single_bytes"] = _div(s["full_bytes"], s["single_bytes"])
        out.append(s)
    for s in out:
        family = [t for t in out if t["family"] == s["family"]]
        ref = min(family, key=lambda t: t["conv_candidates"])
        alone = len(family) < 2
        s["reference"] = None if alone else ref["space"]
        for key in ("off", "full", "single"):
            for unit in ("ms", "bytes"):
                s[f"{key}_growth_{unit}"] = None if alone else _div(s[f"{key}_{unit}"], ref[f"{key}_{unit}"])
    return out


def scaling_fits(study: dict[str, Any]) -> list[dict[str, Any]]:
    """Least-squares lines ``cost = intercept + slope * conv_candidates`` for every family of three or
    more spaces, per configuration (off, full, single) and unit (ms, bytes), with R^2 and the cost at
    the most candidates over the cost at the fewest: "grows about linearly" made a number."""
    out = []
    families: dict[str, list[dict[str, Any]]] = {}
    for s in study["summary"]:
        families.setdefault(s["family"], []).append(s)
    for family, series in families.items():
        if len({s["conv_candidates"] for s in series}) < 3:
            continue
        series = sorted(series, key=lambda s: s["conv_candidates"])
        xs = [float(s["conv_candidates"]) for s in series]
        for key in ("off", "full", "single"):
            for unit in ("ms", "bytes"):
                ys = [s[f"{key}_{unit}"] for s in series]
                if any(y is None for y in ys):
                    continue
                mx, my = statistics.fmean(xs), statistics.fmean(ys)
                sxx = sum((x - mx) ** 2 for x in xs)
                slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
                intercept = my - slope * mx
                ss_tot = sum((y - my) ** 2 for y in ys)
                ss_res = sum((y - intercept - slope * x) ** 2 for x, y in zip(xs, ys))
                out.append({"family": family, "config": key, "unit": unit, "slope": slope, "intercept": intercept,
                            "r2": 1 - ss_res / ss_tot if ss_tot else 1.0,
                            "growth": ys[-1] / ys[0] if ys[0] else None,
                            "from": series[0]["space"], "to": series[-1]["space"]})
    return out


def scaling_fits_markdown(fits: Sequence[dict[str, Any]]) -> str:
    """The fits as a small Markdown table (ms and MB per added convolution candidate)."""
    lines = ["| family | configuration | unit | per added conv candidate | intercept | R^2 | growth |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for f in fits:
        scale, unit = (1.0, "ms") if f["unit"] == "ms" else (2**20, "MB")
        lines.append(f"| {f['family']} | {f['config']} | {unit} | {f['slope'] / scale:+.1f} | "
                     f"{f['intercept'] / scale:.1f} | {f['r2']:.3f} | {_x(f['growth'])} ({f['from']} to {f['to']}) |")
    return "\n".join(lines)


def _x(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}x"


def _num(v: float | None, scale: float = 1.0) -> str:
    return "-" if v is None else f"{v / scale:.1f}"


def scaling_markdown(study: dict[str, Any]) -> str:
    """The study as Markdown: one row per space (ms/step, saved MB, ratios, growth)."""
    head = ("| space | conv candidates | ms/step off | ms/step full | ms/step single | saved MB off | saved MB full "
            "| saved MB single | off/full time | off/full saved | full/single time | full/single saved "
            "| full growth time | full growth saved | off growth time | off growth saved |")
    lines = [head, "|" + " --- |" * (head.count("|") - 1)]
    mb = 2**20
    for s in study["summary"]:
        lines.append(
            f"| {s['space']} | {s['conv_candidates']} | {_num(s['off_ms'])} | {_num(s['full_ms'])} "
            f"| {_num(s['single_ms'])} | {_num(s['off_bytes'], mb)} | {_num(s['full_bytes'], mb)} "
            f"| {_num(s['single_bytes'], mb)} | {_x(s['off_over_full_time'])} | {_x(s['off_over_full_bytes'])} "
            f"| {_x(s['full_over_single_time'])} | {_x(s['full_over_single_bytes'])} "
            f"| {_x(s['full_growth_ms'])} | {_x(s['full_growth_bytes'])} "
            f"| {_x(s['off_growth_ms'])} | {_x(s['off_growth_bytes'])} |")
    return "\n".join(lines)


def scaling_caption(study: dict[str, Any]) -> str:
    """One line with the settings of the study."""
    return (f"{study['strategy']}, C={study['channels']}, batch {study['batch_size']}, "
            f"{study['image_size']}x{study['image_size']}, device {study['device']}, torch {study['torch']}, "
            f"{study['threads']} threads, median of {study['steps']} interleaved steps after "
            f"{study['warmup']} warm-up; growth against the family's space with the fewest convolutions")


STYLE = {"off": ("#d62728", "o", "-"), "full": ("#1f77b4", "s", "-"), "single": ("#2ca02c", "^", "--")}
LABEL = {"off": "off (plain supernet)", "full": "full (simplified)", "single": "largest single network"}


def scaling_figure(study: dict[str, Any], path: str | Path) -> Path:
    """ms/step (with the min-max of the timed steps) and saved MB against the number of convolution
    candidates: one line per configuration for each family of two or more spaces (left), the spaces
    of families of one (the DARTS space) as separate, labelled points in their own panel (right)."""
    from .report import _figure

    path = Path(path)
    summary = study["summary"]
    families: dict[str, list[dict[str, Any]]] = {}
    for s in summary:
        families.setdefault(s["family"], []).append(s)
    lines = {f: sorted(v, key=lambda s: s["conv_candidates"]) for f, v in families.items() if len(v) > 1}
    points = [s for v in families.values() if len(v) == 1 for s in v]
    cols = int(bool(lines)) + int(bool(points))
    fig = _figure(4.6 * int(bool(lines)) + 3.0 * int(bool(points)) + 0.6, 6.4)
    ratios = ([3] if lines else []) + ([max(1, len(points))] if points else [])
    axes = fig.subplots(2, cols, squeeze=False, gridspec_kw={"width_ratios": ratios})
    units = (("ms", "ms per search step", 1.0), ("bytes", "saved activations (MB)", 2**20))
    for row, (unit, ylabel, scale) in enumerate(units):
        if lines:
            ax = axes[row][0]
            for family, series in lines.items():
                xs = [s["conv_candidates"] for s in series]
                for key, (colour, marker, style) in STYLE.items():
                    ys = [s[f"{key}_{unit}"] for s in series]
                    if any(y is None for y in ys):
                        continue
                    ys = [y / scale for y in ys]
                    label = LABEL[key] if len(lines) == 1 else f"{family}: {LABEL[key]}"
                    ax.plot(xs, ys, color=colour, marker=marker, linestyle=style, label=label)
                    if unit == "ms":
                        lo = [y - s[f"{key}_ms_spread"][0] for y, s in zip(ys, series)]
                        hi = [s[f"{key}_ms_spread"][1] - y for y, s in zip(ys, series)]
                        ax.errorbar(xs, ys, yerr=[lo, hi], fmt="none", ecolor=colour, capsize=3, lw=1)
            named = {s["conv_candidates"]: s["space"] for v in lines.values() for s in v}
            ax.set_xticks(sorted(named), [f"{n}\n{named[n]}" for n in sorted(named)], fontsize=8)
            ax.set_xlabel("convolution candidates per edge (space)")
            ax.set_ylabel(ylabel)
            ax.set_ylim(bottom=0, top=ax.get_ylim()[1] * 1.08)
            ax.grid(alpha=0.3)
            if row == 0:
                ax.set_title(" / ".join(f"{f} cell spaces" for f in lines), fontsize=9)
                ax.legend(fontsize=7, loc="upper left")
        if points:
            ax = axes[row][cols - 1]
            width = 0.8 / len(STYLE)
            for i, s in enumerate(points):
                for j, (key, (colour, _, _)) in enumerate(STYLE.items()):
                    y = s[f"{key}_{unit}"]
                    if y is None:
                        continue
                    x = i + (j - 1) * width
                    ax.bar(x, y / scale, width, color=colour, alpha=0.85,
                           label=None if lines or i or row else LABEL[key])
                    if unit == "ms":
                        lo, hi = s[f"{key}_ms_spread"]
                        ax.errorbar([x], [y], yerr=[[y - lo], [hi - y]], fmt="none", ecolor="black", capsize=2, lw=1)
            ax.set_xticks(range(len(points)),
                          [f"{s['space']}\n({s['conv_candidates']} conv candidates)" for s in points], fontsize=8)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3, axis="y")
            if row == 0:
                ax.set_title("other space" + ("s" if len(points) > 1 else "") + "\n(bars: off, full, single)",
                             fontsize=9)
                if not lines:
                    ax.legend(fontsize=7, loc="upper right")
    fig.suptitle(f"Cost against convolution candidates ({study['strategy']}, C={study['channels']}, "
                 f"batch {study['batch_size']}, {study['device']})", fontsize=10)
    fig.savefig(path)
    return path


def write_scaling(study: dict[str, Any], out_dir: str | Path, stem: str | None = None) -> dict[str, Path]:
    """Write ``STEM.json``, ``STEM.md`` and ``STEM.png`` (default stem ``scaling-<device type>``) into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or f"scaling-{torch.device(study['device']).type}"
    paths = {"json": out / f"{stem}.json", "md": out / f"{stem}.md", "png": out / f"{stem}.png"}
    study.setdefault("fits", scaling_fits(study))
    paths["json"].write_text(json.dumps(study, indent=2) + "\n")
    text = scaling_caption(study) + "\n\n" + scaling_markdown(study) + "\n"
    if study["fits"]:
        text += "\nLinear fits against the number of convolution candidates:\n\n" + \
            scaling_fits_markdown(study["fits"]) + "\n"
    paths["md"].write_text(text)
    scaling_figure(study, paths["png"])
    return paths
