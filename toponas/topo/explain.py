"""``explain``: one edge and one search unit before and after simplification, with their measured cost.

The unit is the space's ``example_unit`` (``toponas.spaces.protocol``): a cell, or a macro network's block.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from ..spaces.mixed import Mixing
from ..spaces.primitives import AvgPool
from .measure import conv_cost, saved_activations
from .modules import SimplifiedUnit
from .plan import CALL_OVERHEAD_MACS, Block, Dropped, SepStage, Tap, chain_name
from .program import calls_of
from .rules import RULE_TABLE, RULES, resolve_rules
from .simplify import simplify


def explain(space, mode: str = "full", rules: Iterable[str] | str | None = None, channels: int = 16,
            height: int = 32, width: int = 32, batch: int = 64, disable: Iterable[str] | str = ()) -> str:
    """Human-readable plan of one edge and one unit (the space's example unit) and their cost at the given shape.

    Cost is measured on one forward pass in float32 at ``(batch, channels, height, width)``:
    convolution calls and multiply-adds, and the tensors autograd keeps for backward (distinct
    storages, parameters excluded).
    """
    chosen = resolve_rules(mode, rules, disable)
    torch.manual_seed(0)
    x = torch.randn(batch, channels, height, width)  # (B, C, H, W)
    example = space.example_unit(channels)
    cell: nn.Module = example.unit
    specs = cell.edges[0].specs
    num_nodes = max(max(io) for io in cell.edge_io) + 1
    inputs = (x, *(torch.randn_like(x) for _ in range(example.inputs - 1)))
    lines = [
        f"TopoNAS simplification of {getattr(space, 'name', type(space).__name__)}, mode {mode} "
        f"(rules: {', '.join(r for r in RULES if r in chosen) or 'none'})",
        f"shape: batch {batch}, {channels} channels, {height}x{width}, float32",
        "",
        f"One edge before (plain: every candidate runs and is kept for backward), {len(specs)} candidates:",
    ]
    width_name = max(len(s.name) for s in specs)
    lines += [f"  {s.name:<{width_name}}  {chain_name(s.chain)}" for s in specs]
    for info in RULE_TABLE:
        if info.name in chosen:
            lines.append(f"rule {info.name}: {info.summary}")

    alphas = {g: (0.5 * torch.randn(*shape)).requires_grad_() for g, shape in example.arch_shapes.items()}

    def mixing() -> Mixing:
        return Mixing({g: F.softmax(a, -1) for g, a in alphas.items()})

    edge_alpha = (0.5 * torch.randn(len(specs))).requires_grad_()  # the edge on its own
    edge_cost = cell_cost = None
    if mode != "off":
        simple_cell = simplify(copy.deepcopy(cell), mode, rules=rules, disable=disable)
        assert isinstance(simple_cell, SimplifiedUnit)
        simple_edge = simplify(copy.deepcopy(cell.edges[0]), mode, rules=rules, disable=disable)
        lines += ["", "One edge after (a mixed edge on its own):"]
        lines += ["  " + s for s in simple_edge.plan.describe([cell.edge_keys[0]], "x")]
        lines += ["", f"One {type(cell).__name__} after ({num_nodes} nodes, {len(cell.edges)} edges; one plan per "
                      "source node, over every edge reading it):"]
        for j, ks, plan in simple_cell.groups:
            names = [simple_cell.edge_keys[k] for k in ks]
            lines.append(f"  node {j} -> edges {', '.join(names)}")
            lines += ["    " + s for s in plan.describe(names, f"x{j}")]
        edge_cost = (
            _cost(lambda: cell.edges[0](x, F.softmax(edge_alpha, -1))),
            _cost(lambda: simple_edge(x, F.softmax(edge_alpha, -1))),
        )
        cell_cost = (
            _cost(lambda: cell(*inputs, mixing())),
            _cost(lambda: simple_cell(*inputs, mixing())),
        )
        lines += ["", "Decisions:"]
        lines += ["  " + d for d in _decisions(simple_cell)]
        lines += ["", "Cost of one forward pass (measured):"]
        lines += _cost_table(edge_cost, cell_cost)
        lines += [
            "",
            "Sampled steps (mixing with 'active' candidates, e.g. GDAS) run the plain computation: only",
            "the active candidates, exactly as without the simplifier.",
        ]
    return "\n".join(lines)


def _decisions(cell: SimplifiedUnit) -> list[str]:
    """The cost-based choices behind the plan, in words."""
    out = []
    plans = [plan for _, _, plan in cell.groups]
    stages = [it for plan in plans for it in plan.items if isinstance(it, SepStage) and it.floated]
    if stages:
        calls = sorted({tuple((k, d) for k, d, _ in st.calls) for st in stages})
        text = "; ".join(" + ".join(f"{k}x{k}" + (f" d{d}" if d > 1 else "") for k, d in c) for c in calls)
        out.append(f"rule 4 depthwise calls per shared stage: {text} (chosen by cost: taps per call x channels "
                   f"+ {CALL_OVERHEAD_MACS} per call; a smaller kernel is embedded in a larger one where that "
                   "is cheaper than a call, e.g. all four DARTS kernels in one 9x9 at small channel counts)")
    calls = [call for plan in plans for _, call in calls_of(plan)]
    if any(len({(it.kernel, it.dilation) for it in c.items}) == 1 for c in calls) and len(calls) > len(plans):
        out.append("kernel sizes: one convolution call per kernel size; padding the smaller kernels into one "
                   "call would cost more multiply-adds than the extra call (cost model: MACs per pixel + "
                   f"{CALL_OVERHEAD_MACS} per call; on CPU two calls measured faster, too)")
    blocks = [it for plan in plans for it in plan.items if isinstance(it, Block) and len(it.paths) > 1]
    for b in blocks:
        if b.merged:
            out.append(f"blocks: {len(b.paths)} candidates merged into one block of the largest shape (expansion "
                       f"width {b.width}, depthwise {b.kernel}x{b.kernel}): smaller expansions are zero channels "
                       "(a mask), smaller kernels zero-padded, so at a vertex it is the chosen block")
        else:
            out.append(f"blocks: {len(b.paths)} candidates stacked: {b.width} expanded channels in one expand conv "
                       f"and one depthwise call ({b.kernel}x{b.kernel}, smaller kernels zero-padded: exact), project "
                       f"as {len(set(b.widths))} grouped call(s)")
    taps = [it for plan in plans for it in plan.items if isinstance(it, Tap)]
    if taps:
        out.append("skip and pooling stay elementwise taps (one fused multiply-add each into the node); one "
                   "depthwise conv per edge with a fused Dirac + uniform kernel and the border correction "
                   "measured ~6x slower on CPU")
    if any(any(isinstance(p, AvgPool) for p in it.source.prims) for it in taps):
        out.append("average pooling: computed once per node, as a depthwise all-ones conv times 1/count on CPU "
                   "(several times faster than nn.AvgPool2d there), the native kernel elsewhere")
    if any(isinstance(it, Dropped) for plan in plans for it in plan.items):
        out.append("none: dropped (its value and its weight's gradient are exactly zero in the plain edge)")
    return out


def _cost(fn: Callable[[], torch.Tensor]) -> dict[str, float]:
    """Convolution calls and multiply-adds, and activations saved for backward, of one forward."""
    saved = saved_activations(fn)
    conv = conv_cost(fn)
    return {
        "convolution calls": conv.calls,
        "conv multiply-adds (M)": conv.macs / 1e6,
        "depthwise calls (pooling)": conv.depthwise_calls,
        "tensors saved for backward": saved.count,
        "saved for backward (MB)": saved.bytes / 2**20,
    }


def _cost_table(edge: tuple[dict, dict], cell: tuple[dict, dict]) -> list[str]:
    """The cost rows, plain and simplified side by side, for the edge and the cell."""
    heads = ["edge plain", "edge simplified", "cell plain", "cell simplified"]
    cols = [edge[0], edge[1], cell[0], cell[1]]
    lines = ["  " + f"{'':28}" + "".join(f"{h:>17}" for h in heads)]
    for key in cols[0]:
        vals = []
        for c in cols:
            v = c[key]
            vals.append(f"{v:17.1f}" if isinstance(v, float) else f"{v:17d}")
        lines.append(f"  {key:28}" + "".join(vals))
    ratio = cell[0]["saved for backward (MB)"] / max(cell[1]["saved for backward (MB)"], 1e-9)
    lines.append(f"  cell: {ratio:.2f}x fewer activation bytes kept for backward")
    return lines
