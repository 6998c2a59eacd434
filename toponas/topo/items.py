"""The plan's data types: the items a group of candidate paths is rewritten into, and the plan itself.

A plan is plain data, built from the candidate declarations alone (``OpSpec`` chains): lowering
(:mod:`toponas.topo.lower`) makes one item per candidate path, the rules (:mod:`toponas.topo.rules`)
rewrite items, the executor (:mod:`toponas.topo.program`) runs them, :mod:`toponas.topo.describe`
prints them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..spaces.primitives import Primitive


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


@dataclass(frozen=True)
class Block:
    """An inverted-residual (MBConv) body of ``paths`` on ``source``:
    ``expand 1x1 -> bn -> relu -> depthwise kxk (stride) -> bn -> relu -> project 1x1 -> bn``.

    ``positions[i]``: index of ``paths[i]``'s expand conv (the seven primitives after it follow).
    ``widths[i]``: its expanded channels; ``kernels[i]``: its depthwise kernel; ``out``: the project's
    output channels (equal for all members). ``kernel``: the depthwise call's kernel (the largest).

    * unmerged (one member, lowered; or several, rule ``block_stack``, exact): the expand kernels stacked
      along the output channels (one conv, one bn over the stack), one depthwise call over the stacked
      channels with every kernel zero-padded to ``kernel`` (per channel, so exact), one bn, the project
      convs as one grouped call per expansion width and one bn over all outputs with ``w_i`` as its scale;
    * merged (rule ``block_merge``, exact at a vertex): one block of the largest shape, each linear
      primitive's kernel ``sum_i w_i Khat_i`` (``Khat`` normalized per output channel, zero-padded to the
      largest expansion and kernel: a channel mask), one bn per stage, the group weight ``W_G`` outside.
    """

    paths: tuple[Path, ...]
    source: Source
    positions: tuple[int, ...]
    widths: tuple[int, ...]
    kernels: tuple[int, ...]
    out: int
    stride: int
    merged: bool = False

    @property
    def slot(self) -> int:
        return self.paths[0].slot

    @property
    def kernel(self) -> int:
        return max(self.kernels)

    @property
    def width(self) -> int:
        """Channels of the expanded tensor: the stack's total (unmerged) or the largest width (merged)."""
        return max(self.widths) if self.merged else sum(self.widths)


Item = Tap | Chain | Dropped | ConvBN | Stack | SepStage | Block


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
        return tuple(c for it in self.items for c in convs_of(it))

    def describe(self, edge_names: Sequence[str] | None = None, input_name: str = "x") -> list[str]:
        """Human-readable lines: sources, convolution calls, taps per edge, unplanned and dropped paths."""
        from .describe import describe_plan  # printing is its own concern; it imports this module

        return describe_plan(self, edge_names, input_name)


def item_paths(item: Item) -> tuple[Path, ...]:
    """The candidate paths an item computes."""
    if isinstance(item, (ConvBN, Stack)):
        return tuple(p for c in convs_of(item) for p in c.paths)
    if isinstance(item, (SepStage, Block)):
        return item.paths
    return (item.path,)


def convs_of(item: Item) -> tuple[ConvBN, ...]:
    """The conv->bn items of an item (itself, a stack's members, or none)."""
    if isinstance(item, ConvBN):
        return (item,)
    if isinstance(item, Stack):
        return item.items
    return ()


def source_of(item: Item) -> Source | None:
    return item.source if isinstance(item, (Tap, ConvBN, Stack, SepStage, Block)) else None


def distinct_sources(items: Sequence[Item]) -> list[Source]:
    """The sources of ``items``, each once, in order of first use."""
    seen: list[Source] = []
    for it in items:
        src = source_of(it)
        if src is not None and src not in seen:
            seen.append(src)
    return seen
