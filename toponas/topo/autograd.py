"""The autograd pieces of the executor: a node's terms summed in place, with a lean backward."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.autograd.graph import get_gradient_edge

#: ``(tensor, weight)``: a contribution ``weight * tensor`` to an edge's output (``None``: already weighted).
Term = tuple[torch.Tensor, torch.Tensor | None]


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


class _WeightedSum(torch.autograd.Function):
    """``sum(plain) + sum_k w_k * src_k`` accumulated in place; backward keeps only ``src_k`` and ``w_k``.

    Cheaper than chained ``addcmul``: one new tensor in forward, and in backward one multiply per
    source and one dot product per weight (instead of a multiply, a temporary and a reduction).
    """

    @staticmethod
    def forward(ctx, n_plain: int, *args: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        plain = args[:n_plain]
        n_w = (len(args) - n_plain) // 2
        srcs, ws = args[n_plain:n_plain + n_w], args[n_plain + n_w:]
        out = weighted_sum(plain, srcs, ws)
        ctx.n_plain = n_plain
        ctx.save_for_backward(*srcs, *ws)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        saved = ctx.saved_tensors
        n_w = len(saved) // 2
        srcs, ws = saved[:n_w], saved[n_w:]
        need = ctx.needs_input_grad[1:]
        n_plain = ctx.n_plain
        g_plain = [grad if need[i] else None for i in range(n_plain)]
        g_src = [grad * w if wanted(s, need[n_plain + k]) else None for k, (s, w) in enumerate(zip(srcs, ws))]
        g_w = [_dot(grad, s) if wanted(w, need[n_plain + n_w + k]) else None for k, (s, w) in enumerate(zip(srcs, ws))]
        return (None, *g_plain, *g_src, *g_w)


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
    """``sum weight * tensor`` over terms (weight ``None``: already weighted), as one node tensor."""
    if not terms:
        return torch.zeros_like(like)  # every candidate is 'none'
    plain = [t for t, w in terms if w is None]
    weighted = [(t, w) for t, w in terms if w is not None]
    if len(plain) == 1 and not weighted:
        return plain[0]
    srcs = [t for t, _ in weighted]
    ws = [w for _, w in weighted]
    if under_transform():  # the same operations, recorded by autograd (torch.compile traces the Function)
        return weighted_sum(plain, srcs, ws, inplace=False)
    return _WeightedSum.apply(len(plain), *plain, *srcs, *ws)
