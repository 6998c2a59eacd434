"""Module checks: a planned path's modules must compute what its declaration says (else the plan is refused)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from ..spaces.primitives import BN, AvgPool, Conv, MaxPool, Primitive
from .describe import chain_name
from .items import Block, ConvBN, GroupPlan, PlanError, SepStage, Stack, Tap
from .lower import SOURCE_BN_EPS

#: ``ops(edge, cand)``: the original module chain of candidate ``cand`` on edge ``edge``.
EdgeOps = Callable[[int, int], nn.Sequential]


def _stages(plan: GroupPlan) -> list[SepStage]:
    """Every separable stage of a plan, nested ones included."""
    out: list[SepStage] = []
    todo = [it for it in plan.items if isinstance(it, SepStage)]
    while todo:
        stage = todo.pop()
        out.append(stage)
        todo.extend(stage.next)
    return out


def _stage_ok(mods: nn.Sequential, spec: Conv, pos: int) -> bool:
    """The modules at ``pos`` are the declared depthwise conv, a bias-free 1x1 conv and a search bn."""
    dw, pw, bn = mods[pos], mods[pos + 1], mods[pos + 2]
    return (isinstance(dw, nn.Conv2d) and dw.groups == dw.in_channels == dw.out_channels
            and dw.kernel_size == (spec.kernel, spec.kernel) and dw.dilation == (spec.dilation, spec.dilation)
            and dw.stride == (spec.stride, spec.stride) and dw.padding == (spec.padding, spec.padding)
            and dw.bias is None
            and isinstance(pw, nn.Conv2d) and pw.kernel_size == (1, 1) and pw.groups == 1 and pw.bias is None
            and pw.stride == (1, 1) and pw.padding == (0, 0)
            and isinstance(bn, nn.BatchNorm2d) and not bn.track_running_stats and not bn.affine)


def _block_ok(mods: nn.Sequential, chain: tuple, pos: int) -> bool:
    """The modules at ``pos`` are the declared expand conv, bn, relu, depthwise conv, bn, relu, project conv, bn."""
    if len(mods) < pos + 8:
        return False
    e, b1, r1, d, b2, r2, p, b3 = (mods[pos + i] for i in range(8))
    se, sd, sp = chain[pos], chain[pos + 3], chain[pos + 6]
    search_bn = all(isinstance(b, nn.BatchNorm2d) and not b.affine and not b.track_running_stats for b in (b1, b2, b3))
    pad = sd.kernel // 2
    return (search_bn and isinstance(r1, nn.ReLU) and isinstance(r2, nn.ReLU)
            and isinstance(e, nn.Conv2d) and e.kernel_size == (1, 1) and e.groups == 1 and e.bias is None
            and e.stride == (1, 1) and e.out_channels == se.out
            and isinstance(d, nn.Conv2d) and d.groups == d.in_channels == d.out_channels == se.out
            and d.kernel_size == (sd.kernel, sd.kernel) and d.stride == (sd.stride, sd.stride)
            and d.padding == (pad, pad) and d.dilation == (1, 1) and d.bias is None
            and isinstance(p, nn.Conv2d) and p.kernel_size == (1, 1) and p.groups == 1 and p.bias is None
            and p.stride == (1, 1) and p.out_channels == sp.out)


def _source_ok(mod: nn.Module, prim: Primitive) -> bool:
    """A source primitive's module computes what the shared source computes."""
    if isinstance(prim, BN):
        return (isinstance(mod, nn.BatchNorm2d) and not mod.affine and not mod.track_running_stats
                and mod.eps == SOURCE_BN_EPS)
    if isinstance(prim, (AvgPool, MaxPool)):
        pool = nn.AvgPool2d if isinstance(prim, AvgPool) else nn.MaxPool2d
        pad = prim.kernel // 2
        ok = (isinstance(mod, pool) and mod.kernel_size in (prim.kernel, (prim.kernel,) * 2)
              and mod.stride in (prim.stride, (prim.stride,) * 2) and mod.padding in (pad, (pad, pad)))
        if isinstance(prim, AvgPool):
            ok = ok and not mod.count_include_pad and not mod.ceil_mode
        elif ok:
            ok = mod.dilation in (1, (1, 1)) and not mod.ceil_mode
        return ok
    return True


def check_modules(plan: GroupPlan, edges: Sequence[int], ops: EdgeOps, where: str) -> None:
    """Raise :class:`PlanError` if a planned path's modules do not match its declared primitives."""
    for item in plan.items:  # the parameter-free part of every planned path (run as a shared source)
        if isinstance(item, Tap):
            prefixes = [(item.path, len(item.path.chain))]
        elif isinstance(item, (ConvBN, SepStage, Block)):
            prefixes = list(zip(item.paths, item.positions))
        elif isinstance(item, Stack):
            prefixes = [(p, pos) for c in item.items for p, pos in zip(c.paths, c.positions)]
        else:
            prefixes = []
        for path, end in prefixes:
            mods = ops(edges[path.slot], path.cand)
            for i, prim in enumerate(path.chain[:end]):
                if not _source_ok(mods[i], prim):
                    raise PlanError(f"{where}, candidate {path.name!r}: module {mods[i]!r} does not match the "
                                    f"declared {chain_name(path.chain)}; cannot simplify")
    for block in (it for it in plan.items if isinstance(it, Block)):
        for path, pos in zip(block.paths, block.positions):
            mods = ops(edges[path.slot], path.cand)
            if not _block_ok(mods, path.chain, pos):
                raise PlanError(f"{where}, candidate {path.name!r}: modules {list(mods)[pos:pos + 8]!r} do not match "
                                f"the declared {chain_name(path.chain)}; cannot simplify")
        eps = {(d, ops(edges[p.slot], p.cand)[pos + d].eps) for p, pos in zip(block.paths, block.positions)
               for d in (1, 4, 7)}
        if len(eps) != 3:
            raise PlanError(f"{where}: the blocks' bn layers differ in eps; cannot simplify")
    for stage in _stages(plan):
        for path, pos in zip(stage.paths, stage.positions):
            mods = ops(edges[path.slot], path.cand)
            if not _stage_ok(mods, path.chain[pos], pos):
                raise PlanError(f"{where}, candidate {path.name!r}: modules {list(mods)[pos:pos + 3]!r} do not match "
                                f"the declared {chain_name(path.chain)}; cannot simplify")
    for item in plan.conv_items:
        for path, pos in zip(item.paths, item.positions):
            mods = ops(edges[path.slot], path.cand)
            spec: Conv = path.chain[pos]
            conv, bn = mods[pos], mods[pos + 1]
            ok = (
                isinstance(conv, nn.Conv2d)
                and conv.kernel_size == (spec.kernel, spec.kernel)
                and conv.dilation == (spec.dilation, spec.dilation)
                and conv.stride == (1, 1)
                and conv.groups == 1
                and conv.bias is None
                and conv.padding == (spec.padding, spec.padding)
                and isinstance(bn, nn.BatchNorm2d)
                and not bn.track_running_stats
                and bn.affine == path.chain[pos + 1].affine
            )
            if not ok:
                raise PlanError(
                    f"{where}, candidate {path.name!r}: modules {conv!r}, {bn!r} do not match the declared "
                    f"{chain_name(path.chain)}; cannot simplify"
                )
