"""Cheap pieces recomputed in backward instead of saved: weighted parameter-free taps and weighted bn.

A node sums ``w * t`` over its candidates. Autograd keeps every ``t`` for the architecture gradient
(``dL/dw = <g, t>``), and for a pooling tap also the pooling's and bn's own inputs: several tensors of
the node's size per source that a single network never holds. Both functions here keep only what is
needed to recompute them (the source's input, or the bn's input and its two statistics vectors) and
rebuild the rest in backward: the same operations on the same inputs, so the values and gradients are
those of the saved computation (up to float rounding from the order of the sums).

* :class:`RecomputedTaps`: the pooling (and pooling -> bn) taps of every edge reading one source,
  ``out_e = sum_s w[e, s] * f_s(x)``; saves ``x`` (which the node keeps anyway) and the weights.
* :func:`scaled_bn`: ``h = bn(z)`` (batch statistics, no affine) and ``w * h``; saves ``z`` and the
  statistics, as bn itself does, but not ``h`` for ``dL/dw``.
* :func:`separable`: a separable stage's convolutions, ``conv1x1(sum_k depthwise_k(z), p)``; saves ``z`` (which
  its source keeps anyway) and the kernels, not the depthwise sum the 1x1 convolution reads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from .autograd import _dot, plain_autograd, wanted

#: ``f(x)``: a parameter-free function of a source (pooling, pooling -> bn) that is cheap to run again.
SourceFn = Callable[[torch.Tensor], torch.Tensor]


class RecomputedTaps(torch.autograd.Function):
    """``out_e = sum_(s, k) in layout[e] w_k * fns[s](x)`` for every output ``e``; backward recomputes ``fns``.

    ``layout[e]``: ``(source index, weight index)`` pairs of output ``e``; ``ws``: 0-d weights.
    """

    @staticmethod
    def forward(ctx, fns: Sequence[SourceFn], layout: Sequence[Sequence[tuple[int, int]]],  # type: ignore[override]
                x: torch.Tensor, *ws: torch.Tensor) -> tuple[torch.Tensor, ...]:
        ps = [fn(x) for fn in fns]  # autograd is off in forward: nothing of these is kept
        outs = []
        for pairs in layout:
            (s0, k0), rest = pairs[0], pairs[1:]
            out = ps[s0] * ws[k0]
            for s, k in rest:
                out.add_(ps[s] * ws[k])
            outs.append(out)
        ctx.fns, ctx.layout = fns, layout
        ctx.save_for_backward(x, *ws)
        return tuple(outs)

    @staticmethod
    def backward(ctx, *grads: torch.Tensor | None):  # type: ignore[override]
        x, *ws = ctx.saved_tensors
        need_x = wanted(x, ctx.needs_input_grad[2])
        need_w = [wanted(w, n) for w, n in zip(ws, ctx.needs_input_grad[3:])]
        if not need_x and not any(need_w):
            return (None, None, None, *[None] * len(ws))
        if torch.is_grad_enabled():  # create_graph: the saved computation, differentiable again
            return (None, None, *_taps_grads_recorded(ctx.fns, ctx.layout, x, ws, grads, need_x, need_w))
        with torch.enable_grad():
            xd = x.detach().requires_grad_(need_x)
            ps = [fn(xd) for fn in ctx.fns]
        g_ps: list[torch.Tensor | None] = [None] * len(ps)
        g_ws: list[torch.Tensor | None] = [None] * len(ws)
        for pairs, g in zip(ctx.layout, grads):
            if g is None:
                continue
            for s, k in pairs:
                if need_w[k]:
                    g_ws[k] = _dot(g, ps[s].detach())
                if need_x:
                    g_ps[s] = g * ws[k] if g_ps[s] is None else g_ps[s].add_(g * ws[k])
        g_x = None
        if need_x:
            used = [(p, g) for p, g in zip(ps, g_ps) if g is not None]
            if used:
                g_x, = torch.autograd.grad([p for p, _ in used], xd, [g for _, g in used])
        return (None, None, g_x, *g_ws)


def _taps_grads_recorded(fns: Sequence[SourceFn], layout: Sequence[Sequence[tuple[int, int]]], x: torch.Tensor,
                         ws: Sequence[torch.Tensor], grads: Sequence[torch.Tensor | None], need_x: bool,
                         need_w: Sequence[bool]) -> list[torch.Tensor | None]:
    """The gradients of :class:`RecomputedTaps`' ``x`` and ``ws`` by the plain computation on the saved inputs,
    recorded (a backward with ``create_graph``, e.g. NASI's gradient norm: they are differentiated again)."""
    used = [(o, g) for o, g in zip(_plain_taps(fns, layout, x, ws), grads) if g is not None]
    inputs = [*([x] if need_x else []), *[w for w, n in zip(ws, need_w) if n]]
    if not used or not inputs:
        return [None] * (1 + len(ws))
    got = iter(torch.autograd.grad([o for o, _ in used], inputs, [g for _, g in used], create_graph=True,
                                   allow_unused=True))
    g_x = next(got) if need_x else None
    return [g_x, *[next(got) if n else None for n in need_w]]


def recomputed_taps(fns: Sequence[SourceFn], layout: Sequence[Sequence[tuple[int, int]]], x: torch.Tensor,
                    ws: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """:class:`RecomputedTaps` (one output per entry of ``layout``); its plain computation where
    :func:`~toponas.topo.autograd.plain_autograd` says so."""
    if plain_autograd():
        return _plain_taps(fns, layout, x, ws)
    return RecomputedTaps.apply(fns, layout, x, *ws)


def _plain_taps(fns: Sequence[SourceFn], layout: Sequence[Sequence[tuple[int, int]]], x: torch.Tensor,
                ws: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """:class:`RecomputedTaps`' outputs by the plain computation, recorded by autograd."""
    ps = [fn(x) for fn in fns]
    return tuple(sum((ps[s] * ws[k] for s, k in pairs[1:]), ps[pairs[0][0]] * ws[pairs[0][1]]) for pairs in layout)


class _ScaledBN(torch.autograd.Function):
    """``h = bn(z)`` (batch statistics, no affine parameters) and ``y = w * h``; ``h`` is not kept."""

    @staticmethod
    def forward(ctx, z: torch.Tensor, w: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:  # type: ignore[override]
        h, mean, invstd = torch.native_batch_norm(z, None, None, None, None, True, 0.0, eps)
        ctx.eps = eps
        ctx.save_for_backward(z, mean, invstd, w)
        return h, h * w

    @staticmethod
    def backward(ctx, g_h: torch.Tensor | None, g_y: torch.Tensor | None):  # type: ignore[override]
        z, mean, invstd, w = ctx.saved_tensors
        g_w = None
        if g_y is not None:
            if wanted(w, ctx.needs_input_grad[1]):
                shape = (1, -1) + (1,) * (z.dim() - 2)
                h = (z - mean.view(shape)) * invstd.view(shape)  # the forward's h, rebuilt
                g_w = _dot(g_y, h).reshape(w.shape)
            g = g_y * w if g_h is None else torch.addcmul(g_h, g_y, w)
        else:
            g = g_h
        g_z = None
        if g is not None and wanted(z, ctx.needs_input_grad[0]):
            g_z = torch.ops.aten.native_batch_norm_backward(g, z, None, None, None, mean, invstd, True, ctx.eps,
                                                            [True, False, False])[0]
        return g_z, g_w, None


def scaled_bn(z: torch.Tensor, w: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``(bn(z), w * bn(z))`` with batch statistics and no affine parameters; backward rebuilds ``bn(z)``
    from ``z`` and the statistics instead of keeping it for ``dL/dw``. Under ``torch.compile`` the plain
    computation is traced instead (the compiler's partitioner chooses what to recompute itself), and it runs
    under ``vmap`` (many seeds in one pass)."""
    if plain_autograd():
        h = torch.native_batch_norm(z, None, None, None, None, True, 0.0, eps)[0]
        return h, h * w
    return _ScaledBN.apply(z, w, eps)


#: ``(kernel, dilation)`` of one depthwise call of a separable stage (padding ``dilation * (kernel - 1) // 2``).
DepthwiseCall = tuple[int, int]


def _depthwise_sum(
    zs: Sequence[torch.Tensor], ks: Sequence[torch.Tensor], calls: Sequence[DepthwiseCall], stride: int, inplace: bool
) -> torch.Tensor:
    """``sum_k conv2d(zs[k], ks[k], dilation_k, groups=C)`` in call order (``zs``: the stage's input once per
    call, or an alias of it per call; in place into the first call's output where nothing records it: the
    same values)."""
    d: torch.Tensor | None = None
    for z, k, (kernel, dilation) in zip(zs, ks, calls):
        out = F.conv2d(z, k, None, stride, dilation * (kernel - 1) // 2, dilation, z.shape[1])
        d = out if d is None else (d.add_(out) if inplace else d + out)
    assert d is not None
    return d


class _Separable(torch.autograd.Function):
    """``conv2d(sum_k depthwise_k(z), p)`` (``p``: a 1x1 kernel); backward recomputes the depthwise sum.

    ``z`` comes once per call (``zs``, the same tensor): the engine then adds the calls' gradients of ``z``
    one by one, in the order the saved computation's depthwise convolutions delivered them (the last call's
    first), so that the summed gradient has the same bits.
    """

    @staticmethod
    def forward(ctx, calls: Sequence[DepthwiseCall], stride: int, n: int, *args: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        zs, ks, p = args[:n], args[n : 2 * n], args[2 * n]
        z = zs[0]
        out = F.conv2d(_depthwise_sum(zs, ks, calls, stride, inplace=True), p)
        ctx.calls, ctx.stride, ctx.n = calls, stride, n
        ctx.save_for_backward(z, p, *ks)
        return out

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # type: ignore[override]
        z, p, *ks = ctx.saved_tensors
        n, calls, stride = ctx.n, ctx.calls, ctx.stride
        need = ctx.needs_input_grad[3:]
        need_z = wanted(z, any(need[:n]))
        need_k = [wanted(k, nk) for k, nk in zip(ks, need[n : 2 * n])]
        need_p = wanted(p, need[2 * n])
        none = (None, None, None)
        if torch.is_grad_enabled():  # create_graph: the saved computation, differentiable again
            return (*none, *_separable_grads_recorded(z, ks, p, calls, stride, g, need_z, need_k, need_p))
        need_d = need_z or any(need_k)
        if not need_d and not need_p:
            return (*none, *[None] * (2 * n + 1))
        d = _depthwise_sum([z] * n, ks, calls, stride, inplace=True)  # the forward's d, rebuilt
        g_d, g_p, _ = torch.ops.aten.convolution_backward(
            g, d, p, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [need_d, need_p, False]
        )
        del d
        g_zs: list[torch.Tensor | None] = [None] * n
        g_ks: list[torch.Tensor | None] = [None] * n
        if need_d:
            for i, (k, (kernel, dilation)) in enumerate(zip(ks, calls)):
                if not need_z and not need_k[i]:
                    continue
                pad = dilation * (kernel - 1) // 2
                g_zs[n - 1 - i], g_ks[i], _ = torch.ops.aten.convolution_backward(
                    g_d,
                    z,
                    k,
                    None,
                    [stride, stride],
                    [pad, pad],
                    [dilation, dilation],
                    False,
                    [0, 0],
                    z.shape[1],
                    [need_z, need_k[i], False],
                )
        return (*none, *g_zs, *g_ks, g_p if need_p else None)


def _separable_grads_recorded(
    z: torch.Tensor,
    ks: Sequence[torch.Tensor],
    p: torch.Tensor,
    calls: Sequence[DepthwiseCall],
    stride: int,
    g: torch.Tensor,
    need_z: bool,
    need_k: Sequence[bool],
    need_p: bool,
) -> list[torch.Tensor | None]:
    """The gradients of :class:`_Separable`'s inputs (``zs`` per call, last call's first; ``ks``; ``p``) by the
    saved computation, recorded (a backward with ``create_graph``: they are differentiated again)."""
    n = len(ks)
    zs = [z.view_as(z) for _ in ks]  # one alias per call: its gradient alone
    out = F.conv2d(_depthwise_sum(zs, ks, calls, stride, inplace=False), p)
    inputs = [*(zs if need_z else []), *[k for k, nk in zip(ks, need_k) if nk], *([p] if need_p else [])]
    if not inputs:
        return [None] * (2 * n + 1)
    got = iter(torch.autograd.grad(out, inputs, g, create_graph=True, allow_unused=True))
    g_zs = [next(got) for _ in zs] if need_z else [None] * n
    g_ks = [next(got) if nk else None for nk in need_k]
    g_p = next(got) if need_p else None
    return [*g_zs[::-1], *g_ks, g_p]


def separable(
    z: torch.Tensor, ks: Sequence[torch.Tensor], p: torch.Tensor, calls: Sequence[DepthwiseCall], stride: int
) -> torch.Tensor:
    """``conv2d(sum_k conv2d(z, ks[k], stride, dilation_k, groups=C), p)``: a separable stage's depthwise calls
    (``calls[k] = (kernel, dilation)``, 'same' padding) summed, then its 1x1 convolution ``p``. Keeps ``z``
    and the kernels for backward, which rebuilds the depthwise sum instead of keeping it; the values and
    gradients are the saved computation's, to the bit (the same operations in the same order). Under
    :func:`~toponas.topo.autograd.plain_autograd` (compiled, vmapped) the plain computation."""
    calls = tuple(calls)
    if plain_autograd() or not torch.is_grad_enabled():
        return F.conv2d(_depthwise_sum([z] * len(ks), ks, calls, stride, inplace=False), p)
    n = len(ks)
    return _Separable.apply(calls, stride, n, *[z] * n, *ks, p)
