"""The rewrites behind the rule table: each a local match-and-rewrite on one group of plan items.

A :class:`Pattern` says which items belong together (``match`` gives an item its group key, ``None``:
not matched) and what one group becomes (``rewrite``); :func:`local_rule` turns patterns into a rule's
``apply``, the same driver for every rule: group the matched items by key (in order of first
appearance), and replace every group of at least ``min_items`` by its rewrite, placed where its first
member was. :mod:`toponas.topo.rules` holds the table (names, exactness, summaries, order).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, replace

from ..spaces.primitives import BN, Conv, Zero
from .cost import partition_calls, partition_depthwise
from .items import Block, Chain, ConvBN, Dropped, Item, SepStage, Source, Stack, Tap, convs_of, item_paths

Items = tuple[Item, ...]
#: ``apply(items, channels) -> items``: one rule applied once to a group plan's items.
Apply = Callable[[Items, int], Items]


@dataclass(frozen=True)
class Pattern:
    """``match(item, items)``: the group key of ``item`` (``items``: the whole plan, for context), or None;
    ``rewrite(members, channels)``: the items replacing a group of at least ``min_items`` members."""

    match: Callable[[Item, Items], Hashable | None]
    rewrite: Callable[[list[Item], int], Items]
    min_items: int = 1


def local_rule(*patterns: Pattern) -> Apply:
    """A rule's ``apply`` from its patterns, applied one after the other (see the module docstring)."""

    def apply(items: Items, channels: int) -> Items:
        for pat in patterns:
            groups: dict[Hashable, list[int]] = {}
            for i, it in enumerate(items):
                key = pat.match(it, items)
                if key is not None:
                    groups.setdefault(key, []).append(i)
            todo = [idx for idx in groups.values() if len(idx) >= pat.min_items]
            if not todo:
                continue
            first = {idx[0]: idx for idx in todo}
            consumed = {i for idx in todo for i in idx}
            out: list[Item] = []
            for i, it in enumerate(items):
                if i in first:
                    out.extend(pat.rewrite([items[j] for j in first[i]], channels))
                elif i not in consumed:
                    out.append(it)
            items = tuple(out)
        return items

    return apply


def merge_sources(sources: Sequence[Source]) -> Source:
    """One source for items that will share it: shared if any is, else private to all owners."""
    prims = sources[0].prims
    if any(not s.owners for s in sources):
        return Source(prims, ())
    owners = sorted({p for s in sources for p in s.owners}, key=lambda p: (p.slot, p.cand))
    return Source(prims, tuple(owners))


# -- prefix ---------------------------------------------------------------------------------------


def _shared(src: Source) -> Source:
    return Source(src.prims, ()) if src.owners else src


def _match_sourced(item: Item, items: Items) -> Hashable | None:
    """Every item with a source, each on its own."""
    return item if isinstance(item, (Tap, ConvBN, Stack, SepStage, Block)) else None


def _share_source(members: list[Item], channels: int) -> Items:
    """Shared prefix: the item's parameter-free source is shared by the group (computed once)."""
    (it,) = members
    if isinstance(it, Tap):
        return (Tap(it.path, _shared(it.source)),)
    if isinstance(it, Stack):
        calls = tuple(
            replace(c, items=tuple(replace(i, source=_shared(i.source)) for i in c.items)) for c in it.calls
        )
        return (Stack(_shared(it.source), calls),)
    return (replace(it, source=_shared(it.source)),)


PREFIX = local_rule(Pattern(_match_sourced, _share_source))


# -- float_norm -----------------------------------------------------------------------------------


def _floatable(item: Item) -> bool:
    """Unfloated conv->bn whose bn has no affine parameters (batch statistics only)."""
    if not isinstance(item, ConvBN) or item.floated:
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


def _match_floatable(item: Item, items: Items) -> Hashable | None:
    """Floatable conv->bn items, by edge and source."""
    return (item.slot, item.source.prims) if _floatable(item) else None


def _float(members: list[Item], channels: int) -> Items:
    """The members (conv->bn of one edge on one source) as one floated item."""
    paths = tuple(p for m in members for p in m.paths)
    positions = tuple(pos for m in members for pos in m.positions)
    convs = [p.chain[pos] for p, pos in zip(paths, positions)]
    kernel, dilation = _geometry(convs)
    src = merge_sources([m.source for m in members])
    return (ConvBN(paths, src, kernel, dilation, positions, floated=True),)


FLOAT_NORM = local_rule(Pattern(_match_floatable, _float, min_items=2))


# -- shared_pointwise -----------------------------------------------------------------------------


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



def _match_stage(item: Item, items: Items) -> Hashable | None:
    """Separable items, by edge, source and stride."""
    return (item.slot, item.source.prims, item.stride) if isinstance(item, SepStage) else None


def _share_pointwise(members: list[Item], channels: int) -> Items:
    return (_merge_stages(members, merge_sources([m.source for m in members]), channels),)


SHARED_POINTWISE = local_rule(Pattern(_match_stage, _share_pointwise, min_items=2))


# -- fusion ---------------------------------------------------------------------------------------


def _is_zero(it: Item) -> bool:
    return isinstance(it, Chain) and len(it.path.chain) == 1 and isinstance(it.path.chain[0], Zero)


def _match_droppable(item: Item, items: Items) -> Hashable | None:
    """A zero path whose edge has another path (which gives the output its shape)."""
    if not _is_zero(item):
        return None
    busy = any(p.slot == item.path.slot for it in items if not _is_zero(it) and not isinstance(it, Dropped)
               for p in item_paths(it))
    return item if busy else None


def _drop(members: list[Item], channels: int) -> Items:
    return tuple(Dropped(m.path) for m in members)


def _match_convs(item: Item, items: Items) -> Hashable | None:
    """Conv->bn items (loose or stacked), by source."""
    return item.source.prims if isinstance(item, (ConvBN, Stack)) else None


def _stack(members: list[Item], channels: int) -> Items:
    """Every conv->bn item on one source as one stack, its calls chosen by cost."""
    convs = [c for u in members for c in convs_of(u)]
    src = merge_sources([u.source for u in members])
    return (Stack(src, partition_calls([replace(m, source=src) for m in convs], channels)),)


FUSION = local_rule(Pattern(_match_droppable, _drop), Pattern(_match_convs, _stack, min_items=2))


# -- inverted-residual blocks ---------------------------------------------------------------------


def _match_block(item: Item, items: Items) -> Hashable | None:
    """Unmerged blocks, by edge, source, stride and output channels."""
    if isinstance(item, Block) and not item.merged:
        return item.slot, item.source.prims, item.stride, item.out
    return None


def _join_blocks(members: list[Item], merged: bool) -> Items:
    parts = [(p, pos, w, k) for m in members for p, pos, w, k in zip(m.paths, m.positions, m.widths, m.kernels)]
    if not merged:  # stack by expansion width, so equal widths are contiguous (one grouped project call each)
        parts.sort(key=lambda t: t[2])
    paths, positions, widths, kernels = zip(*parts)
    src = merge_sources([m.source for m in members])
    return (Block(paths, src, positions, widths, kernels, members[0].out, members[0].stride, merged),)


BLOCK_STACK = local_rule(Pattern(_match_block, lambda ms, c: _join_blocks(ms, False), min_items=2))
BLOCK_MERGE = local_rule(Pattern(_match_block, lambda ms, c: _join_blocks(ms, True), min_items=2))
