"""The autograd pieces of the executor: a node's terms summed in place, with a lean backward."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch.autograd.graph import get_gradient_edge

from .kernels import avg_pool_same, avg_pool_same_transposed, window_sums


def under_transform() -> bool:
    """Whether a ``torch.func`` transform (``vmap`` of many seeds, :mod:`toponas.loop.seeds`) is running: it
    cannot run autograd Functions without ``setup_context``, such as the ones of the simplifier."""
    return torch._C._functorch.peek_interpreter_stack() is not None


def plain_autograd() -> bool:
    """Whether the custom autograd Functions of the simplifier give way to the plain computation they stand for:
    under ``torch.compile`` (its partitioner decides what to keep) and under a ``torch.func`` transform."""
    return torch.compiler.is_compiling() or under_transform()


def vmapped(x: torch.Tensor) -> bool:
    """Whether ``x`` is a slice of a tensor under ``vmap`` (some layout queries are not implemented there)."""
    return bool(torch._C._functorch.is_batchedtensor(x))


class Pooled(NamedTuple):
    """``w * avg_pool_same(x, kernel)``, a term of an edge's output that its node sums by linearity.

    The pooling is linear, so a node pools the weighted sum of its pooled sources once,
    ``sum_i w_i pool(x_i) = pool(sum_i w_i x_i)``, and backward applies the pooling's transpose to the node's
    gradient: ``dL/dx_i = w_i pool^T(g)`` and ``dL/dw_i = <pool^T(g), x_i>``. Nothing pooled is kept or
    recomputed; ``x_i`` is a node tensor, kept anyway.
    """

    x: torch.Tensor
    w: torch.Tensor
    kernel: int


#: a contribution to an edge's output: ``(tensor, weight)`` is ``weight * tensor`` (``None``: already
#: weighted), :class:`Pooled` a weighted same-size average pooling.
Term = tuple[torch.Tensor, torch.Tensor | None] | Pooled


class _WeightedSum(torch.autograd.Function):
    """``sum(plain) + sum_k w_k * src_k + sum_p pool_p(sum_i v_pi * x_pi)`` accumulated in place; backward keeps
    only ``src_k``, ``x_pi`` and the weights.

    Cheaper than chained ``addcmul``: one new tensor in forward, and in backward one multiply per
    source and one dot product per weight (instead of a multiply, a temporary and a reduction); a pooled group
    (one kernel size) costs one pooling forward and one transposed pooling backward for all its sources.
    """

    @staticmethod
    def forward(ctx, n_plain: int, n_w: int, pools: tuple[tuple[int, int], ...],  # type: ignore[override]
                *args: torch.Tensor) -> torch.Tensor:
        plain = args[:n_plain]
        srcs, ws = args[n_plain:n_plain + n_w], args[n_plain + n_w:n_plain + 2 * n_w]
        out = weighted_sum(plain, srcs, ws) if plain or srcs else None
        at = n_plain + 2 * n_w
        for kernel, n in pools:
            xs, vs = args[at:at + n], args[at + n:at + 2 * n]
            at += 2 * n
            out = _add_pooled(out, weighted_sum((), xs, vs), kernel)
        ctx.n_plain, ctx.n_w, ctx.pools = n_plain, n_w, pools
        ctx.save_for_backward(*args[n_plain:])
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        saved = ctx.saved_tensors
        n_plain, n_w = ctx.n_plain, ctx.n_w
        need = ctx.needs_input_grad[3:]
        srcs, ws = saved[:n_w], saved[n_w:2 * n_w]
        g_plain = [grad if need[i] else None for i in range(n_plain)]
        g_src = [grad * w if wanted(s, need[n_plain + k]) else None for k, (s, w) in enumerate(zip(srcs, ws))]
        g_w = [_dot(grad, s) if wanted(w, need[n_plain + n_w + k]) else None for k, (s, w) in enumerate(zip(srcs, ws))]
        g_pools: list[torch.Tensor | None] = []
        at = 2 * n_w  # in saved; need is offset by n_plain
        for kernel, n in ctx.pools:
            xs, vs = saved[at:at + n], saved[at + n:at + 2 * n]
            nx = [wanted(x, need[n_plain + at + i]) for i, x in enumerate(xs)]
            nv = [wanted(v, need[n_plain + at + n + i]) for i, v in enumerate(vs)]
            at += 2 * n
            g_u = avg_pool_same_transposed(grad, kernel, xs[0]) if any(nx) or any(nv) else None
            g_pools += [g_u * v if want else None for v, want in zip(vs, nx)]
            g_pools += [_dot(g_u, x) if want else None for x, want in zip(xs, nv)]
        return (None, None, None, *g_plain, *g_src, *g_w, *g_pools)


def _add_pooled(out: torch.Tensor | None, u: torch.Tensor, kernel: int) -> torch.Tensor:
    """``out + avg_pool_same(u, kernel)`` (in place into ``out``; ``u``'s pooling itself when ``out`` is None);
    on CPU the division by the window counts is fused into the accumulation."""
    if u.device.type != "cpu":
        pooled = avg_pool_same(u, kernel)
        return pooled if out is None else out.add_(pooled)
    sums, inv = window_sums(u, kernel)
    return sums.mul_(inv) if out is None else out.addcmul_(sums, inv)


def wanted(t: torch.Tensor, needed: bool) -> bool:
    """Whether the running backward uses the gradient of ``t``, an input a custom function saved: ``needed``
    (``ctx.needs_input_grad``, fixed in forward) and the engine will run ``t``'s node. A DARTS weight step
    (``autograd.grad`` of the weights only) needs no gradient of the mixing weights, so their dot products
    are skipped; where the engine cannot say (tracing), ``needed``."""
    if not needed or torch.compiler.is_compiling():  # compiled: the traced backward is fixed in advance
        return needed
    try:
        return bool(torch._C._will_engine_execute_node(get_gradient_edge(t).node))
    except (RuntimeError, AttributeError, TypeError):
        return True


def weighted_sum(plain: Sequence[torch.Tensor], srcs: Sequence[torch.Tensor], ws: Sequence[torch.Tensor],
                 inplace: bool = True) -> torch.Tensor:
    """``sum(plain) + sum_k ws[k] * srcs[k]`` in a fixed order: accumulated in place into one new tensor (the
    forward of :class:`_WeightedSum`), or the same operations out of place (``vmap`` has no batching rule for
    in-place ``addcmul_``): the plain computation, recorded by autograd."""
    n_w = len(srcs)
    if len(plain) >= 2:
        out = plain[0] + plain[1]
        rest, k0 = plain[2:], 0
    elif len(plain) == 1:
        out = torch.addcmul(plain[0], srcs[0], ws[0]) if n_w else plain[0].clone()
        rest, k0 = (), 1 if n_w else 0
    else:
        out = srcs[0] * ws[0]
        rest, k0 = (), 1
    for t in rest:
        out = out.add_(t) if inplace else out + t
    for s, w in zip(srcs[k0:], ws[k0:]):
        out = out.addcmul_(s, w) if inplace else torch.addcmul(out, s, w)
    return out


def _flat(t: torch.Tensor) -> torch.Tensor | None:
    """``t`` as a 1-d view in memory order (contiguous or channels-last), or None."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1).reshape(-1)  # a view: NHWC order is memory order
    return None


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sum(a * b)`` in one pass when both share a dense layout."""
    fa, fb = _flat(a), _flat(b)
    if fa is not None and fb is not None and a.stride() == b.stride():
        return torch.dot(fa, fb)
    return (a * b).sum()


def combine(terms: Sequence[Term], like: torch.Tensor) -> torch.Tensor:
    """``sum weight * tensor`` over terms (weight ``None``: already weighted; :class:`Pooled` terms pooled by
    linearity, one pooling per kernel size), as one node tensor."""
    if not terms:
        return torch.zeros_like(like)  # every candidate is 'none'
    pooled = [t for t in terms if isinstance(t, Pooled)]
    rest = [t for t in terms if not isinstance(t, Pooled)]
    if pooled and under_transform():  # the plain computation, recorded by autograd
        rest += [(avg_pool_same(p.x, p.kernel), p.w) for p in pooled]
        pooled = []
    plain = [t for t, w in rest if w is None]
    weighted = [(t, w) for t, w in rest if w is not None]
    if len(plain) == 1 and not weighted and not pooled:
        return plain[0]
    srcs = [t for t, _ in weighted]
    ws = [w for _, w in weighted]
    if under_transform():  # the same operations, recorded by autograd (torch.compile traces the Function)
        return weighted_sum(plain, srcs, ws, inplace=False)
    groups: dict[int, list[Pooled]] = {}
    for p in pooled:
        groups.setdefault(p.kernel, []).append(p)
    pools = tuple((k, len(ps)) for k, ps in groups.items())
    flat = [t for ps in groups.values() for t in [p.x for p in ps] + [p.w for p in ps]]
    return _WeightedSum.apply(len(plain), len(srcs), pools, *plain, *srcs, *ws, *flat)
