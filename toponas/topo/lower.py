"""Lowering: one plan item per candidate path, computing exactly what the path's modules compute.

A path is a parameter-free prefix (relu, odd pooling, search bn: its :class:`Source`) and the rest:
nothing (a :class:`Tap`), ``conv -> bn`` (a :class:`ConvBN`), separable stages (a :class:`SepStage`),
an inverted-residual body (a :class:`Block`), or anything else (a :class:`Chain`: its modules run).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..spaces.primitives import BN, AvgPool, Conv, Identity, MaxPool, Primitive, ReLU, Zero
from .describe import chain_name
from .items import Block, Chain, ConvBN, Item, Path, SepStage, Source, Tap

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


def lower(path: Path) -> Item:
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
    if is_block(rest):
        why = _block_unsupported(rest)
        if why is None:
            return _single_block(path, k, src)
        return Chain(path, why)
    if len(chain) == 1 and isinstance(chain[0], Zero):
        return Chain(path, "zero: dropped unless it is the edge's only candidate")
    return Chain(path, f"no planner for {chain_name(chain)}")


def _is_stage(chain: Sequence[Primitive], i: int) -> bool:
    """``chain[i:i + 3]`` is ``depthwise conv (odd kernel) -> 1x1 conv -> bn`` (search bn)."""
    if i + 3 > len(chain):
        return False
    dw, pw, bn = chain[i:i + 3]
    return (isinstance(dw, Conv) and dw.depthwise and dw.kernel % 2 == 1
            and isinstance(pw, Conv) and not pw.depthwise and pw.kernel == 1 and pw.stride == 1 and pw.out is None
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
    if conv.out is not None:
        return "channel-changing conv: not planned"
    if conv.stride != 1:
        return f"conv stride {conv.stride}: not planned"
    if conv.kernel % 2 == 0:
        return f"even kernel {conv.kernel}: not planned"
    if bn.track_running_stats:
        return "bn with running statistics: stacking would not update them"
    return None



def is_block(rest: Sequence[Primitive]) -> bool:
    """``rest`` is ``1x1 conv -> bn -> relu -> depthwise conv -> bn -> relu -> 1x1 conv -> bn`` (an MBConv body)."""
    if len(rest) != 8:
        return False
    e, b1, r1, d, b2, r2, p, b3 = rest
    return (isinstance(e, Conv) and e.kernel == 1 and not e.depthwise and isinstance(b1, BN) and isinstance(r1, ReLU)
            and isinstance(d, Conv) and d.depthwise and isinstance(b2, BN) and isinstance(r2, ReLU)
            and isinstance(p, Conv) and p.kernel == 1 and not p.depthwise and isinstance(b3, BN))


def _block_unsupported(rest: Sequence[Primitive]) -> str | None:
    """Why an MBConv body cannot be planned, or None."""
    e, b1, _, d, b2, _, p, b3 = rest
    if any(bn.affine or bn.track_running_stats for bn in (b1, b2, b3)):
        return "block bn with affine parameters or running statistics: not planned"
    if e.stride != 1 or p.stride != 1 or d.dilation != 1 or d.kernel % 2 == 0:
        return "block with a strided 1x1 conv, a dilated or an even depthwise kernel: not planned"
    if e.out is None or p.out is None:
        return "block convs must declare their output channels (Conv.out)"
    return None


def _single_block(path: Path, k: int, src: Source) -> Block:
    """The exact item of one MBConv path (its expand conv at ``k``)."""
    e, d, p = path.chain[k], path.chain[k + 3], path.chain[k + 6]
    return Block((path,), src, (k,), (e.out,), (d.kernel,), p.out, d.stride)
