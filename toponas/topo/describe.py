"""Printing plans: what ``explain`` and ``GroupPlan.describe`` show, item by item."""

from __future__ import annotations

from collections.abc import Sequence

from ..spaces.primitives import BN, AvgPool, Conv, Identity, MaxPool, Primitive, ReLU, Zero
from .cost import call_cost
from .items import (
    Block,
    Chain,
    ConvBN,
    ConvCall,
    Dropped,
    GroupPlan,
    Path,
    SepStage,
    Source,
    Stack,
    Tap,
    distinct_sources,
    item_paths,
    source_of,
)


def describe_plan(plan: GroupPlan, edge_names: Sequence[str] | None = None, input_name: str = "x") -> list[str]:
    """Human-readable lines: sources, convolution calls, taps per edge, unplanned and dropped paths."""
    names = list(edge_names) if edge_names is not None else [f"edge {s}" for s in range(plan.slots)]
    inp = input_name

    def member(p: Path) -> str:
        return f"{names[p.slot]}:{p.name}"

    lines: list[str] = []
    for src in distinct_sources(plan.items):
        if src.prims:
            users = [p for it in plan.items if source_of(it) == src for p in item_paths(it)]
            who = "shared by" if not src.owners else "private to"
            lines.append(f"source {source_name(src, inp)}, computed once, {who} "
                         + ", ".join(map(member, users)))
    for it in plan.items:
        if isinstance(it, (ConvBN, Stack)):
            calls = (ConvCall((it,), it.kernel, it.dilation),) if isinstance(it, ConvBN) else it.calls
            for call in calls:
                lines += _describe_call(call, plan.channels, it.source, names, inp)
            if isinstance(it, Stack):
                lines.append("  " + stack_decision(it, plan.channels))
        elif isinstance(it, SepStage):
            lines += _describe_stage(it, plan.channels, names[it.slot], source_name(it.source, inp))
        elif isinstance(it, Block):
            lines += _describe_block(it, plan.channels, names[it.slot], source_name(it.source, inp))
    for slot in range(plan.slots):
        taps = [it for it in plan.items if isinstance(it, Tap) and it.path.slot == slot]
        if taps:
            terms = " + ".join(f"w[{t.path.name}] * {source_name(t.source, inp)}" for t in taps)
            lines.append(f"taps {names[slot]}: {terms} (elementwise, accumulated into the node)")
    for it in plan.items:
        if isinstance(it, Chain):
            lines.append(f"unplanned {member(it.path)}: its original modules run ({it.reason})")
    dropped = [it.path for it in plan.items if isinstance(it, Dropped)]
    if dropped:
        lines.append("dropped (zero, no computation): " + ", ".join(map(member, dropped)))
    return lines


def source_name(src: Source, input_name: str = "x") -> str:
    """``avgpool3(relu(x))`` style name of a source."""
    text = input_name
    for p in src.prims:
        text = f"{prim_name(p)}({text})"
    return text


def prim_name(p: Primitive) -> str:
    """Short name of a primitive: ``relu``, ``conv3x3``, ``conv3x3d2``, ``bn``, ``avgpool3``, ..."""
    if isinstance(p, ReLU):
        return "relu"
    if isinstance(p, Conv):
        name = f"{'dw' if p.depthwise else ''}conv{p.kernel}x{p.kernel}"
        name += f"d{p.dilation}" if p.dilation > 1 else ""
        return name + (f"/s{p.stride}" if p.stride > 1 else "")
    if isinstance(p, BN):
        return "bn" + ("(affine)" if p.affine else "") + ("(running)" if p.track_running_stats else "")
    if isinstance(p, AvgPool):
        return f"avgpool{p.kernel}" + (f"/s{p.stride}" if p.stride > 1 else "")
    if isinstance(p, MaxPool):
        return f"maxpool{p.kernel}" + (f"/s{p.stride}" if p.stride > 1 else "")
    if isinstance(p, Identity):
        return "identity"
    if isinstance(p, Zero):
        return "zero"
    return type(p).__name__.lower()


def chain_name(chain: Sequence[Primitive]) -> str:
    """``relu -> conv3x3 -> bn``."""
    return " -> ".join(prim_name(p) for p in chain)


def _describe_call(call: ConvCall, channels: int, src: Source, names: Sequence[str], inp: str) -> list[str]:
    """A convolution call: geometry, channels, and the output block of each item."""
    geo = f"{call.kernel}x{call.kernel}" + (f" dilation {call.dilation}" if call.dilation > 1 else "")
    out = channels * len(call.items)
    lines = [f"conv {geo}, {channels}->{out} channels on {source_name(src, inp)}, then one bn over {out}:"]
    for it in call.items:
        who = " + ".join(p.name for p in it.paths)
        if it.floated:
            lines.append(f"  {names[it.slot]}: W_G * bn(conv(sum_i w_i Khat_i)) over {who}")
        else:
            lines.append(f"  {names[it.slot]}: w * bn(conv) of {who}")
    return lines


def _describe_stage(stage: SepStage, channels: int, edge: str, inp: str, depth: int = 0) -> list[str]:
    """A separable stage and the stages after it, indented by depth."""
    pad = "  " * depth
    who = " + ".join(p.name for p in stage.paths)
    calls = ", ".join(f"{k}x{k}" + (f" d{d}" if d > 1 else "") + f" ({'+'.join(stage.paths[i].name for i in m)})"
                      for k, d, m in stage.calls)
    stride = f", stride {stage.stride}" if stage.stride > 1 else ""
    if stage.floated:
        head = (f"{pad}{edge}: shared stage of {who} on {inp}{stride}: depthwise {calls} with kernels "
                f"sum_i w_i Dhat_i, one 1x1 conv {channels}->{channels} (sum_i w_i Phat_i), one bn")
    else:
        head = f"{pad}{edge}: stage of {who} on {inp}{stride}: depthwise {calls}, 1x1 conv, bn"
    lines = [head]
    if stage.ending:
        names = " + ".join(stage.paths[i].name for i in stage.ending)
        lines.append(f"{pad}  -> ({'W_G' if len(stage.ending) > 1 or stage.floated else 'w'} of {names}) * h")
    for nxt in stage.next:
        lines += _describe_stage(nxt, channels, edge, source_name(nxt.source, "h"), depth + 1)
    return lines



def _describe_block(block: Block, channels: int, edge: str, inp: str) -> list[str]:
    """An inverted-residual item: stacked (exact) or merged (one block of the largest shape)."""
    who = " + ".join(p.name for p in block.paths)
    stride = f", stride {block.stride}" if block.stride > 1 else ""
    if block.merged:
        return [f"{edge}: merged block of {who} on {inp}{stride}: expand 1x1 {channels}->{block.width} "
                f"(sum_i w_i Khat_i, smaller expansions zero-padded), bn, relu, "
                f"depthwise {block.kernel}x{block.kernel} "
                f"(sum_i w_i Dhat_i), bn, relu, project 1x1 {block.width}->{block.out} (sum_i w_i Phat_i), bn",
                "  -> W_G * block (one block of the largest shape)"]
    if len(block.paths) == 1:
        return [f"{edge}: block {who} on {inp}{stride}: expand 1x1 {channels}->{block.width}, bn, relu, depthwise "
                f"{block.kernel}x{block.kernel}, bn, relu, project 1x1 {block.width}->{block.out}, bn"]
    groups = len(set(block.widths))
    return [f"{edge}: stacked blocks {who} on {inp}{stride}: one expand 1x1 {channels}->{block.width} "
            f"(kernels stacked), one bn; one depthwise call {block.kernel}x{block.kernel} over {block.width} "
            f"channels (smaller kernels zero-padded); one bn; project: {groups} grouped 1x1 call(s) "
            f"-> {len(block.paths)}x{block.out}, one bn with w_i as its scale"]


def stack_decision(stack: Stack, channels: int) -> str:
    """One line saying how the stack's calls were chosen and what the alternative would cost."""
    mine = sum(call_cost(channels, channels * len(c.items), c.kernel) for c in stack.calls)
    ext = max(it.extent for it in stack.items)
    one = call_cost(channels, channels * len(stack.items), ext)
    if len(stack.calls) == 1:
        return f"(one call: {mine} MAC/px incl. call overhead)"
    return (f"(cost: {len(stack.calls)} calls, {mine} MAC/px, beat one call padded to {ext}x{ext}, "
            f"{one} MAC/px)")
