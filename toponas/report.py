"""Reports of runs: PNG figures and a Markdown page, for a search, a training run or a sweep.

``report(RUN_DIR)`` detects the kind of run from its files (``result.json``: a search;
``train.json``: a training run; sub-directories with ``result.json``: a sweep) and writes
``RUN_DIR/report/*.png`` and ``RUN_DIR/report/report.md`` linking them. Figures are drawn on
matplotlib's Agg canvas directly (no pyplot, no display, no global backend switch); matplotlib is
the optional extra ``report`` (``pip install 'toponas[report]'``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPORT_DIR = "report"
HINT = "reports need matplotlib: pip install matplotlib (or pip install 'toponas[report]')"


class ReportError(Exception):
    """A run directory that cannot be reported on (the message says why), or matplotlib missing."""


def _integer_ticks(ax) -> None:
    """Whole-number ticks on the x axis (epochs)."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _figure(width: float, height: float):
    """A figure on an Agg canvas (works without a display and leaves pyplot's state alone)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ReportError(HINT) from None
    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path) -> str:
    fig.savefig(path, bbox_inches="tight")
    return path.name


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ReportError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ReportError(f"{path} holds no run (expected a JSON object)")
    return data


# -- the cell as a graph ---------------------------------------------------------------------------
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _rim(centre: tuple[float, float], towards: tuple[float, float], radius: float) -> tuple[float, float]:
    """The point on a node's circle in the direction of ``towards`` (where an edge leaves or enters)."""
    dx, dy = towards[0] - centre[0], towards[1] - centre[1]
    norm = math.hypot(dx, dy) or 1.0
    return centre[0] + radius * dx / norm, centre[1] + radius * dy / norm


def _code(text: str) -> str:
    """Inline code for a Markdown table cell (pipes escaped, as GitHub's tables need)."""
    return "`" + str(text).replace("|", "\\|") + "`"


def draw_cell(ax, edges: Sequence[tuple[Any, Any, str]], nodes: Sequence[Any] | None = None,
              title: str | None = None) -> None:
    """Draw a cell DAG on ``ax``: nodes in a row, one arrow per ``(to, from, op)`` edge labelled with its op.

    Edges between neighbours are straight; longer ones arc, alternately above and below, higher the
    longer they are. ``none`` edges (no connection) are drawn dashed and grey.
    """
    from matplotlib.patches import Circle, FancyArrowPatch
    from matplotlib.path import Path as MplPath

    if nodes is None:
        nodes = []
        for to, src, _ in edges:
            for n in (src, to):
                if n not in nodes:
                    nodes.append(n)
    step = 2.6
    x_of = {n: step * i for i, n in enumerate(nodes)}
    ops = sorted({op for _, _, op in edges if op != "none"})
    colour = {op: PALETTE[i % len(PALETTE)] for i, op in enumerate(ops)}
    radius, seen, top, bottom = 0.32, {}, 0.6, -0.6
    for to, src, op in edges:
        x0, x1 = x_of[src], x_of[to]
        span = round(abs(x1 - x0) / step)
        twin = seen.get((src, to), 0)
        seen[(src, to)] = twin + 1
        sign = 1.0 if span % 2 == 0 else -1.0
        height = (0.55 * (span - 1) + 0.35 * twin) * (sign if span > 1 else (1.0 if twin % 2 else -1.0))
        mid = ((x0 + x1) / 2, 0.0)
        ctrl = (mid[0], 2 * height)
        start, end = _rim((x0, 0.0), ctrl, radius), _rim((x1, 0.0), ctrl, radius)
        path = MplPath([start, ctrl, end], [MplPath.MOVETO, MplPath.CURVE3, MplPath.CURVE3])
        dead = op == "none"
        ax.add_patch(FancyArrowPatch(path=path, arrowstyle="-|>", mutation_scale=14, lw=1.6,
                                     color="#b0b0b0" if dead else colour[op], linestyle="--" if dead else "-"))
        label_y = height  # the quadratic curve's midpoint
        ax.text(mid[0], label_y, op, ha="center", va="center", fontsize=8, color="#808080" if dead else "black",
                bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.9})
        top, bottom = max(top, label_y + 0.3), min(bottom, label_y - 0.3)
    for i, n in enumerate(nodes):
        ax.add_patch(Circle((x_of[n], 0.0), radius, fc="#f2f2f2", ec="black", lw=1.2, zorder=3))
        ax.text(x_of[n], 0.0, str(n), ha="center", va="center", fontsize=10, zorder=4)
        role = "input" if i == 0 else ("output" if i == len(nodes) - 1 else "")
        if role:
            ax.text(x_of[n], -radius - 0.12, role, ha="center", va="top", fontsize=8, zorder=4)
    ax.set_xlim(-0.8, step * (len(nodes) - 1) + 0.8)
    ax.set_ylim(bottom - 0.2, top + 0.2)
    ax.set_aspect("equal")
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=9)


def draw_stages(ax, stages: Sequence[Any], title: str = "") -> None:
    """A macro architecture as a row of blocks: one box per block (kernel x expansion, or a dashed
    ``skip``), grouped and labelled by stage with its width; box height grows with the expansion."""
    from matplotlib.patches import FancyBboxPatch

    x = 0.0
    for stage in stages:
        start = x
        for name in stage.blocks:
            dead = name == "skip"
            height = 0.5 if dead else 0.6 + 0.05 * int(name.split("e")[-1])
            ax.add_patch(FancyBboxPatch((x, -height / 2), 0.9, height, boxstyle="round,pad=0.02",
                                        fc="white" if dead else "#cfe3f7", ec="#808080" if dead else "black",
                                        ls="--" if dead else "-", lw=1.2))
            ax.text(x + 0.45, 0.0, name, ha="center", va="center", fontsize=8,
                    color="#808080" if dead else "black")
            x += 1.0
        ax.text((start + x - 0.1) / 2, -0.75, f"{stage.name} (w{stage.width:g})", ha="center", va="top",
                fontsize=8)
        ax.plot([start, x - 0.1], [-0.68, -0.68], color="black", lw=0.8)
        x += 0.3
    ax.set_xlim(-0.2, x)
    ax.set_ylim(-1.1, 0.7)
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=8)


def cell_figure(space: str, genotype: str, path: Path) -> str | None:
    """Draw the genotype of ``space`` to ``path``; None (and no file) when the space cannot parse it here."""
    from .spaces import SPACES, create_space

    if space not in SPACES:
        return None
    try:
        cell = create_space(space).parse(genotype)
    except ValueError:
        return None
    if hasattr(cell, "stages"):  # a macro architecture (the mobile space): its blocks stage by stage
        fig = _figure(max(6.0, 1.1 * sum(len(s.blocks) for s in cell.stages) + 1.0), 2.4)
        draw_stages(fig.add_subplot(), cell.stages, title=genotype)
        return _save(fig, path)
    edges = getattr(cell, "edges", None)
    if edges is None:  # a space whose genotype has no single edge list (drawn per cell type later)
        return None
    fig = _figure(7.5, 3.2)
    draw_cell(fig.add_subplot(), edges(), title=genotype)
    return _save(fig, path)


# -- search runs -----------------------------------------------------------------------------------
def alpha_figures(result: dict[str, Any], out: Path) -> list[str]:
    """One figure per architecture group: a heat map per edge of candidate probabilities over epochs."""
    history = [h for h in result.get("history", []) if h.get("probabilities")]
    files = []
    for group, edges in (result.get("alphas") or {}).items():
        if not history or group not in history[0]["probabilities"]:
            continue
        edge_names = list(edges)
        candidates = list(next(iter(edges.values())))
        per_epoch = [h["probabilities"][group] for h in history]  # epochs x edges x candidates
        cols = min(3, len(edge_names))
        rows = math.ceil(len(edge_names) / cols)
        fig = _figure(3.6 * cols + 1.0, 0.35 * len(candidates) * rows + 1.3 * rows + 0.4)
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
        values = [v for epoch in per_epoch for edge in epoch for v in edge]
        low, high = min(values), max(values)  # one colour scale per figure, so small changes show
        annotate = len(per_epoch) <= 12 and high - low >= 0.05  # values, where they are few and differ
        image = None
        for e, name in enumerate(edge_names):
            ax = axes[e // cols][e % cols]
            matrix = [[epoch[e][c] for epoch in per_epoch] for c in range(len(candidates))]
            image = ax.imshow(matrix, aspect="auto", cmap="viridis", vmin=low, vmax=max(high, low + 1e-9),
                              interpolation="nearest", extent=(0.5, len(per_epoch) + 0.5, len(candidates) - 0.5, -0.5))
            if annotate:
                for c, row in enumerate(matrix):
                    for t, v in enumerate(row):
                        bright = (v - low) / max(high - low, 1e-9) > 0.6
                        ax.text(t + 1, c, f"{v:.2f}", ha="center", va="center", fontsize=6,
                                color="black" if bright else "white")
            ax.set_title(f"edge {name}", fontsize=9)
            ax.set_yticks(range(len(candidates)))
            ax.set_yticklabels(candidates, fontsize=8)
            ax.set_xlabel("epoch", fontsize=8)
            _integer_ticks(ax)
            ax.tick_params(axis="x", labelsize=8)
        for e in range(len(edge_names), rows * cols):
            axes[e // cols][e % cols].axis("off")
        if image is not None:
            fig.colorbar(image, ax=axes, shrink=0.8, label="probability (colour scale: this figure's range)")
        fig.suptitle(f"architecture weights ({group}) over epochs", fontsize=10)
        files.append(_save(fig, out / f"alphas_{group}.png"))
    return files


def search_curves(result: dict[str, Any], path: Path) -> str | None:
    """Losses and accuracies of the weight and architecture batches over epochs (and benchmark accuracy)."""
    history = result.get("history") or []
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    bench = sorted({k for h in history for k in (h.get("benchmark") or {})})
    fig = _figure(4.2 * (3 if bench else 2), 3.2)
    axes = fig.subplots(1, 3 if bench else 2, squeeze=False)[0]
    for key, label in (("w_loss", "weights (train half)"), ("a_loss", "architecture (val half)")):
        axes[0].plot(epochs, [h.get(key) for h in history], marker="o", ms=3, label=label)
    for key, label in (("w_acc", "weights (train half)"), ("a_acc", "architecture (val half)")):
        axes[1].plot(epochs, [h.get(key) for h in history], marker="o", ms=3, label=label)
    axes[0].set_title("loss", fontsize=10)
    axes[1].set_title("accuracy", fontsize=10)
    if bench:
        for name in bench:
            axes[2].plot(epochs, [(h.get("benchmark") or {}).get(name) for h in history], marker="o", ms=3,
                         label=name)
        axes[2].set_title("benchmark accuracy of the derived cell (%)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("epoch")
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def separation_curves(result: dict[str, Any], path: Path, threshold: float | None = None) -> str | None:
    """Edge margins (median and smallest) and mean entropy over epochs, with the epochs where the derived
    architecture changed marked: did the architecture parameters decide (``toponas.separation``)?"""
    history = [h for h in result.get("history") or [] if "median_margin" in h]
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    fig = _figure(8.4, 3.2)
    axes = fig.subplots(1, 2, squeeze=False)[0]
    axes[0].plot(epochs, [h["median_margin"] for h in history], marker="o", ms=3, label="median edge")
    axes[0].plot(epochs, [h["min_margin"] for h in history], marker="o", ms=3, label="smallest edge")
    if threshold is not None:
        axes[0].axhline(threshold, color="grey", ls="--", lw=1, label=f"decided threshold {threshold:g}")
    changed = [h["epoch"] for h in history if h.get("cell_changed")]
    for e in changed:
        axes[0].axvline(e, color="tab:red", alpha=0.25, lw=3)
    axes[0].set_title("margin: top-2 probability gap" + (" (red: cell changed)" if changed else ""), fontsize=10)
    axes[1].plot(epochs, [h["mean_entropy"] for h in history], marker="o", ms=3, color="tab:green")
    axes[1].set_ylim(0, 1.05)
    axes[1].set_title("mean entropy (1 = uniform)", fontsize=10)
    for ax in axes:
        ax.set_xlabel("epoch")
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def _table(rows: Sequence[tuple[str, Any]]) -> list[str]:
    lines = ["| | |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows if v is not None]
    return lines


def _images(files: Sequence[str | None]) -> list[str]:
    return [f"![{Path(f).stem}]({f})\n" for f in files if f]


def search_report(run: Path, out: Path) -> list[str]:
    result = _read(run / "result.json")
    config = _read(run / "config.json") if (run / "config.json").is_file() else {}
    figures = [cell_figure(result.get("space", "nb201"), result["genotype"], out / "cell.png"),
               search_curves(result, out / "curves.png"),
               separation_curves(result, out / "separation.png", config.get("decided_margin")),
               *alpha_figures(result, out)]
    bench = result.get("benchmark") or {}
    lines = [f"# Search report: {run.name}", "", *_table([
        ("cell", _code(result["genotype"])),
        ("space / dataset", f"{result.get('space')} / {result.get('dataset')}"),
        ("strategy / topo / seed", f"{result.get('strategy')} / {result.get('topo')} / {result.get('seed')}"),
        ("epochs / steps", f"{result.get('epochs')} / {result.get('steps')}"),
        ("search time", f"{result.get('search_seconds', float('nan')):.1f} s, "
                        f"{result.get('ms_per_step') or float('nan'):.1f} ms/step (median)"),
        ("peak memory", f"{result.get('peak_memory_bytes', 0) / 2**20:.0f} MiB ({result.get('peak_memory_kind')})"),
        ("benchmark", ", ".join(f"{k} {v:.2f}" for k, v in bench.items()) or None),
        ("decided", None if result.get("decided") is None else
         ("yes" if result["decided"] else f"**no**: {result.get('decided_reason')}")),
        ("cell connected", None if result.get("cell_connected") in (None, True) else
         "**no**: no path from input to output (scores chance)"),
    ]), "", "## Derived cell", "", *_images(figures[:1]), "## Curves", "", *_images(figures[1:2]),
        "## Separation of the architecture parameters", "", *_images(figures[2:3]),
        "## Architecture weights", "", *_images(figures[3:])]
    lines += restoration_lines(run, result, out)
    history = result.get("history") or []
    if history:
        lines += ["## Derived cell per epoch", "", "| epoch | cell | benchmark |", "| --- | --- | --- |"]
        for h in history:
            b = ", ".join(f"{k} {v:.2f}" for k, v in (h.get("benchmark") or {}).items()) or "n/a"
            lines.append(f"| {h['epoch']} | {_code(h.get('genotype', ''))} | {b} |")
    return lines


def restoration_lines(run: Path, result: dict[str, Any], out: Path) -> list[str]:
    """PSNR/SSIM and the test pictures of a restoration run (nothing for classification runs)."""
    from .restoration.figures import report_lines

    return report_lines(run, result, out)


# -- training runs ---------------------------------------------------------------------------------
def train_curves(result: dict[str, Any], path: Path) -> str | None:
    """Training and test loss, accuracy, and the learning rate over epochs."""
    history = result.get("history") or []
    if not history:
        return None
    epochs = [h["epoch"] for h in history]
    tested = [h for h in history if "test_acc" in h]
    fig = _figure(12.6, 3.2)
    axes = fig.subplots(1, 3)
    axes[0].plot(epochs, [h["loss"] for h in history], marker="o", ms=3, label="train")
    axes[0].plot([h["epoch"] for h in tested], [h["test_loss"] for h in tested], marker="o", ms=3, label="test")
    with_acc = [h for h in history if "train_acc" in h]  # a restoration run counts no accuracy
    axes[1].plot([h["epoch"] for h in with_acc], [h["train_acc"] for h in with_acc], marker="o", ms=3,
                 label="train (augmented)")
    axes[1].plot([h["epoch"] for h in tested], [h["test_acc"] for h in tested], marker="o", ms=3, label="test")
    axes[2].plot(epochs, [h["lr"] for h in history], marker="o", ms=3, label="at epoch start")
    for ax, title in zip(axes, ("loss", "accuracy", "learning rate")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        _integer_ticks(ax)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return _save(fig, path)


def train_report(run: Path, out: Path) -> list[str]:
    result = _read(run / "train.json")
    figures = [cell_figure(result.get("space", "nb201"), result["arch"], out / "cell.png"),
               train_curves(result, out / "curves.png")]
    acc = result.get("test_accuracy")
    cfg = result.get("config") or {}
    lines = [f"# Training report: {run.name}", "", *_table([
        ("cell", _code(result["arch"])),
        ("space / dataset", f"{result.get('space')} / {result.get('dataset')} "
                            f"({result.get('train_images')} training, {result.get('test_images')} test images)"),
        ("test accuracy", None if acc is None else f"{100 * acc:.2f}%"),
        ("network", f"{result.get('parameters'):,} parameters, {result.get('mult_adds'):,} multiply-adds per image, "
                    f"C={cfg.get('channels')}, N={cfg.get('cells')}"),
        ("training", f"{result.get('epochs')} epochs, batch {cfg.get('batch_size')}, lr {cfg.get('lr')}, "
                     f"weight decay {cfg.get('weight_decay')}"
                     + (f", preset {cfg['preset']}" if cfg.get("preset") else "")),
        ("time", f"{result.get('seconds', float('nan')):.1f} s on {result.get('device')} "
                 f"({(result.get('ms_per_step') or float('nan')):.1f} ms/step)"),
    ]), "", "## Cell", "", *_images(figures[:1]), "## Curves", "", *_images(figures[1:])]
    return lines + restoration_lines(run, result, out)


# -- sweeps ----------------------------------------------------------------------------------------
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def sweep_runs(run: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(p.parent.name, _read(p)) for p in sorted(run.glob("*/result.json"))]


def _accuracy(result: dict[str, Any], dataset: str | None) -> tuple[float | None, str]:
    bench = result.get("benchmark") or {}
    if bench:
        key = dataset if dataset in bench else next(iter(bench))
        return float(bench[key]), f"benchmark {key} accuracy of the found cell (%)"
    history = result.get("history") or []
    if history and history[-1].get("a_acc") is not None:
        return 100.0 * float(history[-1]["a_acc"]), "final architecture-batch accuracy (%, no benchmark)"
    return None, ""


def sweep_scatter(runs: list[tuple[str, dict[str, Any]]], path: Path) -> tuple[str | None, str]:
    """Accuracy against search time and against time per step: colour = strategy, marker = topo mode."""
    dataset = next((r.get("dataset") for _, r in runs), None)
    points = [(r, *_accuracy(r, dataset)) for _, r in runs]
    use_bench = any(label.startswith("benchmark") for _, _, label in points)
    points = [(r, acc, label) for r, acc, label in points
              if acc is not None and label.startswith("benchmark") == use_bench]
    if not points:
        return None, ""
    ylabel = points[0][2]
    strategies = sorted({r["strategy"] for r, _, _ in points})
    modes = sorted({r.get("topo", "off") for r, _, _ in points})
    fig = _figure(11.0, 4.0)
    axes = fig.subplots(1, 2)
    for ax, key, xlabel in ((axes[0], "search_seconds", "search time (s)"), (axes[1], "ms_per_step", "ms per step")):
        for r, acc, _ in points:
            ax.scatter(r.get(key), acc, color=PALETTE[strategies.index(r["strategy"]) % len(PALETTE)],
                       marker=MARKERS[modes.index(r.get("topo", "off")) % len(MARKERS)], s=45,
                       edgecolors="black", linewidths=0.5)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list = [Patch(color=PALETTE[i % len(PALETTE)], label=s) for i, s in enumerate(strategies)]
    handles += [Line2D([], [], ls="", marker=MARKERS[i % len(MARKERS)], color="grey", label=f"topo={m}")
                for i, m in enumerate(modes)]
    axes[1].legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.suptitle("accuracy against search cost, one marker per run", fontsize=10)
    return _save(fig, path), ylabel


def sweep_report(run: Path, out: Path) -> list[str]:
    runs = sweep_runs(run)
    figure, ylabel = sweep_scatter(runs, out / "accuracy_vs_cost.png")
    lines = [f"# Sweep report: {run.name}", "", f"{len(runs)} finished runs.", ""]
    if figure:
        lines += ["## Accuracy against cost", "", f"y axis: {ylabel}.", "", *_images([figure])]
    summary = run / "summary.md"
    if summary.exists():
        lines += ["## Summary", "", summary.read_text().strip(), ""]
    lines += ["## Runs", "", "| run | strategy | topo | seed | cell | accuracy | search s | ms/step |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, r in runs:
        acc, _ = _accuracy(r, r.get("dataset"))
        lines.append(f"| {name} | {r.get('strategy')} | {r.get('topo')} | {r.get('seed')} | "
                     f"{_code(r.get('genotype'))} | "
                     f"{'n/a' if acc is None else f'{acc:.2f}'} | {r.get('search_seconds', float('nan')):.0f} | "
                     f"{r.get('ms_per_step') or float('nan'):.1f} |")
    return lines


# -- entry point -----------------------------------------------------------------------------------
def detect_kind(run: Path) -> str:
    """``"train"``, ``"search"`` or ``"sweep"`` from the files in ``run``."""
    if not run.is_dir():
        raise ReportError(f"{run} is not a directory; pass a search, training or sweep run directory")
    if (run / "train.json").exists():
        return "train"
    if (run / "result.json").exists():
        return "search"
    if any(run.glob("*/result.json")):
        return "sweep"
    raise ReportError(f"{run} holds no finished run (no train.json, result.json or */result.json); "
                      "a report needs a finished search, training run or sweep")


def report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the figures and ``report.md`` of a run into ``out`` (default ``RUN_DIR/report``); returns report.md."""
    run = Path(run_dir)
    kind = detect_kind(run)
    _figure(1, 1)  # fail early, before any file is written, when matplotlib is missing
    target = Path(out) if out is not None else run / REPORT_DIR
    target.mkdir(parents=True, exist_ok=True)
    try:
        lines = {"train": train_report, "search": search_report, "sweep": sweep_report}[kind](run, target)
    except KeyError as e:
        raise ReportError(f"{run}: the {kind} run lacks the field {e}; was it written by this version?") from None
    page = target / "report.md"
    page.write_text("\n".join(lines).rstrip() + "\n")
    return page
