"""Execution plans: the candidates of the edges that read one input, rewritten rule by rule.

A plan is plain data. Planning starts from one item per candidate path (``edge slot x candidate``),
*lowered* to what the executor can run without changing a value: a :class:`Tap` (the path is
parameter-free: ``w * source``), a :class:`ConvBN` (``w * bn(conv(source))``) or a :class:`Chain`
(anything else: the original modules run). The rules of :mod:`toponas.topo.rules` then rewrite the
items until none applies (a fixed point):

* ``prefix`` makes every parameter-free :class:`Source` shared by the whole group (computed once);
* ``float_norm`` merges the ``conv -> bn`` items of one edge on one source into one floated item;
* ``fusion`` drops ``none`` and stacks the ``conv -> bn`` items on one source into a :class:`Stack`
  (one convolution call per kernel geometry, chosen by cost, each followed by one bn call);
* ``shared_pointwise`` merges the separable items (``depthwise -> 1x1 -> bn`` stages, :class:`SepStage`)
  of one edge on one source into one stage with one pointwise conv, fused depthwise kernels and one
  floated bn, and does the same again for the stages that follow (the iteration).

The executor (:mod:`toponas.topo.program`) runs a plan with the step's weights; ``describe`` prints it.
A plan is built from the candidate declarations alone (``OpSpec`` chains), so it is cached and shared
by every cell with the same candidates.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ..spaces.primitives import BN, AvgPool, Conv, Identity, MaxPool, OpSpec, Primitive, ReLU, Zero

#: Cost of one extra convolution call, in multiply-adds per output pixel. On CPU (2 threads, NB201
#: shapes) a 1x1 call and a 3x3 call of 3C outputs each measured clearly faster than one padded 3x3
#: call of 6C outputs, so the overhead of a call is small against padding; it decides only for tiny
#: channel counts or kernels of nearly equal size.
CALL_OVERHEAD_MACS = 1024


class PlanError(ValueError):
    """A model whose modules do not match their candidate declarations (the plan cannot run)."""


@dataclass(frozen=True)
class Path:
    """One candidate of one edge: ``slot`` is the edge's position in the group, ``cand`` its index."""

    slot: int
    cand: int
    name: str
    chain: tuple[Primitive, ...]


@dataclass(frozen=True)
class Source:
    """A tensor made from the group input by parameter-free primitives (``()``: the input itself).

    ``owners`` lists the paths that compute it privately; empty means shared by the whole group
    (rule ``prefix``), so equal sources are computed once.
    """

    prims: tuple[Primitive, ...] = ()
    owners: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Tap:
    """``out[slot] += w[path] * source``: a parameter-free candidate (skip, pooling)."""

    path: Path
    source: Source


@dataclass(frozen=True)
class Chain:
    """``out[slot] += w[path] * modules(input)``: the candidate's original modules run, unplanned."""

    path: Path
    reason: str


@dataclass(frozen=True)
class Dropped:
    """A ``none`` candidate: no computation (its value and gradient are zero in the plain edge too)."""

    path: Path


@dataclass(frozen=True)
class ConvBN:
    """``out[slot] += weight * bn(conv(source, kernel))`` for one path, or a floated group.

    Unfloated (one path): ``weight = w[path]`` and ``kernel = K``. Floated (rule ``float_norm``,
    several paths of one edge): ``kernel = sum_i w_i * Khat_i`` (``Khat`` normalized per output
    channel, embedded in the conv geometry) and ``weight = W_G = sum_i w_i``. ``positions[i]`` is the
    index of the conv primitive in ``paths[i].chain``; its bn follows it. ``kernel, dilation`` is the
    geometry the conv runs with.
    """

    paths: tuple[Path, ...]
    source: Source
    kernel: int
    dilation: int
    positions: tuple[int, ...]
    floated: bool = False

    @property
    def slot(self) -> int:
        return self.paths[0].slot

    @property
    def extent(self) -> int:
        return (self.kernel - 1) * self.dilation + 1


@dataclass(frozen=True)
class ConvCall:
    """One convolution call: the items' kernels stacked along output channels, then one bn call."""

    items: tuple[ConvBN, ...]
    kernel: int
    dilation: int


@dataclass(frozen=True)
class Stack:
    """Rule ``fusion``: every conv->bn item on one source, run as few convolution calls as cost says."""

    source: Source
    calls: tuple[ConvCall, ...]

    @property
    def items(self) -> tuple[ConvBN, ...]:
        return tuple(it for call in self.calls for it in call.items)


@dataclass(frozen=True)
class SepStage:
    """``depthwise conv -> 1x1 conv -> bn`` of ``paths`` on ``source``: DARTS separable/dilated stages.

    One member (lowered, exact): ``h = bn(P (D * z))`` with the member's own kernels. Several members
    (rule ``shared_pointwise``): ``h = bn(P_w (D_w * z))``, ``D_w = sum_i w_i Dhat_i`` and ``P_w = sum_i
    w_i Phat_i``, each kernel scaled to unit RMS channel norm (a scalar per kernel, so at a vertex
    ``h`` is exactly the chosen member's own stage: bn is scale-invariant). ``z`` is the source applied
    to the stage input (the group input for a top-level stage, the previous stage's ``h`` for a
    ``next`` one). Members whose chain ends after this bn add ``(sum of their w) * h`` to the edge;
    the others continue in ``next``. ``positions[i]``: index of ``paths[i]``'s depthwise conv (its 1x1
    conv and bn follow); ``calls``: ``(kernel, dilation, member indices)`` of each depthwise call.
    """

    paths: tuple[Path, ...]
    source: Source
    positions: tuple[int, ...]
    stride: int
    calls: tuple[tuple[int, int, tuple[int, ...]], ...]
    next: tuple[SepStage, ...] = ()

    @property
    def slot(self) -> int:
        return self.paths[0].slot

    @property
    def floated(self) -> bool:
        return len(self.paths) > 1

    @property
    def ending(self) -> tuple[int, ...]:
        """Indices of the members whose chain ends with this stage."""
        going = {p for n in self.next for p in n.paths}
        return tuple(i for i, p in enumerate(self.paths) if p not in going)


Item = Tap | Chain | Dropped | ConvBN | Stack | SepStage


@dataclass(frozen=True)
class GroupPlan:
    """The plan of the edges that read one input: ``slots`` edges, ``channels`` channels."""

    slots: int
    channels: int
    rules: frozenset[str]
    items: tuple[Item, ...]

    @property
    def conv_items(self) -> tuple[ConvBN, ...]:
        """Every conv->bn item, loose or stacked."""
        return tuple(c for it in self.items for c in _convs(it))

    def describe(self, edge_names: Sequence[str] | None = None, input_name: str = "x") -> list[str]:
        """Human-readable lines: sources, convolution calls, taps per edge, unplanned and dropped paths."""
        names = list(edge_names) if edge_names is not None else [f"edge {s}" for s in range(self.slots)]
        inp = input_name

        def member(p: Path) -> str:
            return f"{names[p.slot]}:{p.name}"

        lines: list[str] = []
        for src in _distinct_sources(self.items):
            if src.prims:
                users = [p for it in self.items if _source_of(it) == src for p in _item_paths(it)]
                who = "shared by" if not src.owners else "private to"
                lines.append(f"source {source_name(src, inp)}, computed once, {who} "
                             + ", ".join(map(member, users)))
        for it in self.items:
            if isinstance(it, (ConvBN, Stack)):
                calls = (ConvCall((it,), it.kernel, it.dilation),) if isinstance(it, ConvBN) else it.calls
                for call in calls:
                    lines += _describe_call(call, self.channels, it.source, names, inp)
                if isinstance(it, Stack):
                    lines.append("  " + stack_decision(it, self.channels))
            elif isinstance(it, SepStage):
                lines += _describe_stage(it, self.channels, names[it.slot], source_name(it.source, inp))
        for slot in range(self.slots):
            taps = [it for it in self.items if isinstance(it, Tap) and it.path.slot == slot]
            if taps:
                terms = " + ".join(f"w[{t.path.name}] * {source_name(t.source, inp)}" for t in taps)
                lines.append(f"taps {names[slot]}: {terms} (elementwise, accumulated into the node)")
        for it in self.items:
            if isinstance(it, Chain):
                lines.append(f"unplanned {member(it.path)}: its original modules run ({it.reason})")
        dropped = [it.path for it in self.items if isinstance(it, Dropped)]
        if dropped:
            lines.append("dropped (zero, no computation): " + ", ".join(map(member, dropped)))
        return lines


def _item_paths(item: Item) -> tuple[Path, ...]:
    """The candidate paths an item computes."""
    if isinstance(item, (ConvBN, Stack)):
        return tuple(p for c in _convs(item) for p in c.paths)
    if isinstance(item, SepStage):
        return item.paths
    return (item.path,)


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


def call_cost(channels: int, outputs: int, kernel: int) -> int:
    """Multiply-adds per output pixel of one convolution call, plus the call overhead."""
    return channels * kernel * kernel * outputs + CALL_OVERHEAD_MACS


def stack_decision(stack: Stack, channels: int) -> str:
    """One line saying how the stack's calls were chosen and what the alternative would cost."""
    mine = sum(call_cost(channels, channels * len(c.items), c.kernel) for c in stack.calls)
    ext = max(it.extent for it in stack.items)
    one = call_cost(channels, channels * len(stack.items), ext)
    if len(stack.calls) == 1:
        return f"(one call: {mine} MAC/px incl. call overhead)"
    return (f"(cost: {len(stack.calls)} calls, {mine} MAC/px, beat one call padded to {ext}x{ext}, "
            f"{one} MAC/px)")


# -- lowering -------------------------------------------------------------------------------------


#: The eps every bn of a source must have (the primitive declares none; PyTorch's default).
SOURCE_BN_EPS = 1e-5


def _param_free(p: Primitive) -> bool:
    """Parameter-free primitives a source may be made of: relu, odd pooling, search bn (batch statistics,
    no affine: the same function of its input on every edge, so it is shared like the rest)."""
    if isinstance(p, (ReLU, Identity)):
        return True
    if isinstance(p, BN):
        return not p.affine and not p.track_running_stats
    return isinstance(p, (AvgPool, MaxPool)) and p.kernel % 2 == 1


def _lower(path: Path) -> Item:
    """The item computing ``path`` exactly as its modules do, with private sources."""
    chain = path.chain
    k = 0
    while k < len(chain) and _param_free(chain[k]):
        k += 1
    prims = tuple(p for p in chain[:k] if not isinstance(p, Identity))
    src = Source(prims, (path,) if prims else ())
    rest = chain[k:]
    if not rest:
        return Tap(path, src)
    if len(rest) == 2 and isinstance(rest[0], Conv) and isinstance(rest[1], BN):
        conv, bn = rest
        why = _conv_bn_unsupported(conv, bn)
        if why is None:
            return ConvBN((path,), src, conv.kernel, conv.dilation, (k,))
        return Chain(path, why)
    positions = _separable_positions(chain, k)
    if positions:
        return _single_stage(path, positions, src)
    if len(chain) == 1 and isinstance(chain[0], Zero):
        return Chain(path, "zero: rule 'fusion' drops it unless it is the edge's only candidate")
    return Chain(path, f"no planner for {chain_name(chain)}")


def _is_stage(chain: Sequence[Primitive], i: int) -> bool:
    """``chain[i:i + 3]`` is ``depthwise conv (odd kernel) -> 1x1 conv -> bn`` (search bn)."""
    if i + 3 > len(chain):
        return False
    dw, pw, bn = chain[i:i + 3]
    return (isinstance(dw, Conv) and dw.depthwise and dw.kernel % 2 == 1
            and isinstance(pw, Conv) and not pw.depthwise and pw.kernel == 1 and pw.stride == 1
            and isinstance(bn, BN) and not bn.affine and not bn.track_running_stats)


def _separable_positions(chain: Sequence[Primitive], start: int) -> tuple[int, ...]:
    """Depthwise positions if ``chain[start:]`` is stages separated by parameter-free primitives, else ()."""
    positions: list[int] = []
    i = start
    while _is_stage(chain, i):
        positions.append(i)
        i += 3
        if i == len(chain):
            return tuple(positions)
        while i < len(chain) and _param_free(chain[i]):
            i += 1
    return ()


def _single_stage(path: Path, positions: Sequence[int], src: Source) -> SepStage:
    """The exact item of one separable path: its stages nested, each reading the previous one's output."""
    nxt: tuple[SepStage, ...] = ()
    stage: SepStage | None = None
    for idx in reversed(range(len(positions))):
        pos = positions[idx]
        conv = path.chain[pos]
        if idx == 0:
            source = src
        else:
            between = path.chain[positions[idx - 1] + 3:pos]
            source = Source(tuple(p for p in between if not isinstance(p, Identity)), ())
        stage = SepStage((path,), source, (pos,), conv.stride, ((conv.kernel, conv.dilation, (0,)),), nxt)
        nxt = (stage,)
    assert stage is not None
    return stage


def _conv_bn_unsupported(conv: Conv, bn: BN) -> str | None:
    """Why a ``conv -> bn`` pair cannot be planned, or None."""
    if conv.depthwise:
        return "depthwise conv: not planned yet"
    if conv.stride != 1:
        return f"conv stride {conv.stride}: not planned"
    if conv.kernel % 2 == 0:
        return f"even kernel {conv.kernel}: not planned"
    if bn.track_running_stats:
        return "bn with running statistics: stacking would not update them"
    return None


# -- rules ----------------------------------------------------------------------------------------


def _convs(item: Item) -> tuple[ConvBN, ...]:
    if isinstance(item, ConvBN):
        return (item,)
    if isinstance(item, Stack):
        return item.items
    return ()


def _source_of(item: Item) -> Source | None:
    return item.source if isinstance(item, (Tap, ConvBN, Stack, SepStage)) else None


def _distinct_sources(items: Sequence[Item]) -> list[Source]:
    seen: list[Source] = []
    for it in items:
        src = _source_of(it)
        if src is not None and src not in seen:
            seen.append(src)
    return seen


def _merge_sources(sources: Sequence[Source]) -> Source:
    """One source for items that will share it: shared if any is, else private to all owners."""
    prims = sources[0].prims
    if any(not s.owners for s in sources):
        return Source(prims, ())
    owners = sorted({p for s in sources for p in s.owners}, key=lambda p: (p.slot, p.cand))
    return Source(prims, tuple(owners))


def rule_prefix(items: tuple[Item, ...], channels: int) -> tuple[Item, ...]:
    """Rule 1: every parameter-free source is shared by the group, so equal ones are computed once."""

    def shared(src: Source) -> Source:
        return Source(src.prims, ()) if src.owners else src

    out: list[Item] = []
    for it in items:
        if isinstance(it, Tap):
            out.append(Tap(it.path, shared(it.source)))
        elif isinstance(it, ConvBN):
            out.append(replace(it, source=shared(it.source)))
        elif isinstance(it, Stack):
            calls = tuple(
                replace(c, items=tuple(replace(i, source=shared(i.source)) for i in c.items)) for c in it.calls
            )
            out.append(Stack(shared(it.source), calls))
        elif isinstance(it, SepStage):
            out.append(replace(it, source=shared(it.source)))
        else:
            out.append(it)
    return tuple(out)


def _floatable(item: ConvBN) -> bool:
    """Unfloated conv->bn whose bn has no affine parameters (batch statistics only)."""
    if item.floated:
        return False
    for path, pos in zip(item.paths, item.positions):
        bn = path.chain[pos + 1]
        if not isinstance(bn, BN) or bn.affine or bn.track_running_stats:
            return False
    return True


def _geometry(convs: Sequence[Conv]) -> tuple[int, int]:
    """The native ``(kernel, dilation)`` if all convs share it, else the largest dense extent."""
    geos = {(c.kernel, c.dilation) for c in convs}
    if len(geos) == 1:
        return next(iter(geos))
    return max(c.extent for c in convs), 1


def rule_float_norm(items: tuple[Item, ...], channels: int) -> tuple[Item, ...]:
    """Rule 3: the floatable conv->bn items of one edge on one source become one floated item."""
    groups: dict[tuple, list[ConvBN]] = {}
    for it in items:
        for c in _convs(it):
            if _floatable(c):
                groups.setdefault((c.slot, c.source.prims), []).append(c)
    merged = {key: members for key, members in groups.items() if len(members) >= 2}
    if not merged:
        return items
    replaced: dict[ConvBN, ConvBN | None] = {}
    for members in merged.values():
        paths = tuple(p for m in members for p in m.paths)
        positions = tuple(pos for m in members for pos in m.positions)
        convs = [p.chain[pos] for p, pos in zip(paths, positions)]
        kernel, dilation = _geometry(convs)
        src = _merge_sources([m.source for m in members])
        floated = ConvBN(paths, src, kernel, dilation, positions, floated=True)
        replaced[members[0]] = floated
        for m in members[1:]:
            replaced[m] = None
    out: list[Item] = []
    for it in items:
        if isinstance(it, Stack) and any(c in replaced for c in it.items):
            loose: list[Item] = list(it.items)  # dissolve: rule fusion restacks at the next pass
        else:
            loose = [it]
        for x in loose:
            if isinstance(x, ConvBN) and x in replaced:
                if replaced[x] is not None:
                    out.append(replaced[x])
            else:
                out.append(x)
    return tuple(out)


def partition_calls(items: Sequence[ConvBN], channels: int) -> tuple[ConvCall, ...]:
    """Group stacked items into convolution calls: one per geometry, merged where cheaper.

    Merging two calls pads the smaller kernels to the larger extent (exact: zeros around them); it is
    done only when the saved call overhead outweighs the added multiply-adds (:func:`call_cost`).
    """
    groups: dict[tuple[int, int], list[ConvBN]] = {}
    for it in items:
        groups.setdefault((it.kernel, it.dilation), []).append(it)
    calls = [(geo, members) for geo, members in groups.items()]

    def cost(geo: tuple[int, int], members: list[ConvBN]) -> int:
        return call_cost(channels, channels * len(members), geo[0])

    while len(calls) > 1:
        best = None
        for a in range(len(calls)):
            for b in range(a + 1, len(calls)):
                (ga, ma), (gb, mb) = calls[a], calls[b]
                ext = max(it.extent for it in ma + mb)
                gain = cost(ga, ma) + cost(gb, mb) - cost((ext, 1), ma + mb)
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, a, b, ext)
        if best is None:
            break
        _, a, b, ext = best
        merged = ((ext, 1), calls[a][1] + calls[b][1])
        calls = [c for i, c in enumerate(calls) if i not in (a, b)]
        calls.insert(a, merged)
    return tuple(ConvCall(tuple(members), geo[0], geo[1]) for geo, members in calls)


def rule_fusion(items: tuple[Item, ...], channels: int) -> tuple[Item, ...]:
    """Rule 2: ``none`` drops out; conv->bn items on one source are stacked into one :class:`Stack`."""
    def is_zero(it: Item) -> bool:
        return isinstance(it, Chain) and len(it.path.chain) == 1 and isinstance(it.path.chain[0], Zero)

    # a zero path drops out when its edge has another path (which gives the output its shape)
    busy = {p.slot for it in items if not is_zero(it) and not isinstance(it, Dropped) for p in _item_paths(it)}
    items = tuple(Dropped(it.path) if is_zero(it) and it.path.slot in busy else it for it in items)
    units: dict[tuple, list[Item]] = {}
    for it in items:
        if isinstance(it, (ConvBN, Stack)):
            units.setdefault(it.source.prims, []).append(it)
    stacks: dict[tuple, Stack] = {}
    for prims, group in units.items():
        if len(group) >= 2:
            members = [c for u in group for c in _convs(u)]
            src = _merge_sources([u.source for u in group])
            members = [replace(m, source=src) for m in members]
            stacks[prims] = Stack(src, partition_calls(members, channels))
    if not stacks:
        return items
    out: list[Item] = []
    placed: set[tuple] = set()
    for it in items:
        if isinstance(it, (ConvBN, Stack)) and it.source.prims in stacks:
            if it.source.prims not in placed:
                out.append(stacks[it.source.prims])
                placed.add(it.source.prims)
        else:
            out.append(it)
    return tuple(out)


def depthwise_cost(channels: int, kernel: int) -> int:
    """Multiply-adds per output pixel of one depthwise call of ``kernel`` taps a side, plus the call overhead."""
    return channels * kernel * kernel + CALL_OVERHEAD_MACS


def _merged_geometry(geos: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The smallest ``(kernel, dilation)`` holding every geometry: same dilation, else dense."""
    dilations = {d for _, d in geos}
    if len(dilations) == 1:
        return max(k for k, _ in geos), dilations.pop()
    return max((k - 1) * d + 1 for k, d in geos), 1


def partition_depthwise(geos: Sequence[tuple[int, int]], channels: int) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """Depthwise calls for members of the given geometries: one per geometry, merged where cheaper.

    Rule 2 for depthwise kernels: members in one call have their (weighted) kernels summed, each
    embedded in the call's geometry. Merging two calls is done when :func:`depthwise_cost` says the
    merged call costs less than the two (the plan chooses by cost: a 9x9 kernel from a dilated 5x5
    may cost more than it saves).
    """
    groups: dict[tuple[int, int], list[int]] = {}
    for i, geo in enumerate(geos):
        groups.setdefault(geo, []).append(i)
    calls = list(groups.items())

    def cost(geo: tuple[int, int]) -> int:
        return depthwise_cost(channels, geo[0])

    while len(calls) > 1:
        best = None
        for a in range(len(calls)):
            for b in range(a + 1, len(calls)):
                geo = _merged_geometry([calls[a][0], calls[b][0]])
                gain = cost(calls[a][0]) + cost(calls[b][0]) - cost(geo)
                if gain > 0 and (best is None or gain > best[0]):
                    best = (gain, a, b, geo)
        if best is None:
            break
        _, a, b, geo = best
        merged = (geo, sorted(calls[a][1] + calls[b][1]))
        calls = [c for i, c in enumerate(calls) if i not in (a, b)]
        calls.insert(a, merged)
    return tuple((geo[0], geo[1], tuple(members)) for geo, members in calls)


def _merge_stages(stages: Sequence[SepStage], source: Source, channels: int) -> SepStage:
    """One shared stage for ``stages`` (same edge, source and stride), and again for what follows."""
    paths = tuple(p for s in stages for p in s.paths)
    positions = tuple(pos for s in stages for pos in s.positions)
    geos = [(p.chain[pos].kernel, p.chain[pos].dilation) for p, pos in zip(paths, positions)]
    following: dict[tuple, list[SepStage]] = {}
    for s in stages:
        for n in s.next:
            following.setdefault((n.source.prims, n.stride), []).append(n)
    nxt = tuple(group[0] if len(group) == 1 else _merge_stages(group, group[0].source, channels)
                for group in following.values())
    return SepStage(paths, source, positions, stages[0].stride, partition_depthwise(geos, channels), nxt)


def rule_shared_pointwise(items: tuple[Item, ...], channels: int) -> tuple[Item, ...]:
    """Rule 4: the separable items of one edge on one source (same stride) share one stage, recursively."""
    groups: dict[tuple, list[SepStage]] = {}
    for it in items:
        if isinstance(it, SepStage):
            groups.setdefault((it.slot, it.source.prims, it.stride), []).append(it)
    merged = {key: members for key, members in groups.items() if len(members) >= 2}
    if not merged:
        return items
    out: list[Item] = []
    for it in items:
        if isinstance(it, SepStage) and (key := (it.slot, it.source.prims, it.stride)) in merged:
            members = merged[key]
            if it is members[0]:
                src = _merge_sources([m.source for m in members])
                out.append(_merge_stages(members, src, channels))
        else:
            out.append(it)
    return tuple(out)


#: Rule name -> rewrite function, in application order within one pass.
RULE_FUNCTIONS: dict[str, Callable[[tuple[Item, ...], int], tuple[Item, ...]]] = {
    "prefix": rule_prefix,
    "float_norm": rule_float_norm,
    "shared_pointwise": rule_shared_pointwise,
    "fusion": rule_fusion,
}


@functools.lru_cache(maxsize=256)
def plan_group(edge_specs: tuple[tuple[OpSpec, ...], ...], channels: int, rules: frozenset[str]) -> GroupPlan:
    """Plan the edges reading one input: lower every path, then apply ``rules`` to a fixed point."""
    unknown = set(rules) - set(RULE_FUNCTIONS)
    if unknown:
        raise ValueError(f"no planner for rule(s) {sorted(unknown)}")
    items = tuple(
        _lower(Path(slot, cand, spec.name, spec.chain))
        for slot, specs in enumerate(edge_specs)
        for cand, spec in enumerate(specs)
    )
    order = [fn for name, fn in RULE_FUNCTIONS.items() if name in rules]
    for _ in range(64):
        new = items
        for fn in order:
            new = fn(new, channels)
        if new == items:
            break
        items = new
    else:  # pragma: no cover - every rule only ever merges, so this cannot loop
        raise RuntimeError("simplifier rules did not reach a fixed point")
    return GroupPlan(len(edge_specs), channels, frozenset(rules), items)
