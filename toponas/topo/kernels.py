"""Functional primitives the simplified modules run: same-size average pooling and kernel algebra.

``avg_pool_same`` equals ``nn.AvgPool2d(k, 1, k // 2, count_include_pad=False)`` up to float rounding,
computed the way that is fastest on the device (see its docstring).
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F


@functools.lru_cache(maxsize=64)
def _inv_count(height: int, width: int, kernel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``1 / (number of in-image pixels of each window)``, shape ``(H, W)`` (padding excluded)."""
    r = kernel // 2

    def counts(n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float64)
        return (torch.clamp(i + r, max=n - 1) - torch.clamp(i - r, min=0) + 1)

    return (1.0 / torch.outer(counts(height), counts(width))).to(dtype=dtype, device=device)


@functools.lru_cache(maxsize=64)
def _ones(channels: int, kernel: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A depthwise all-ones kernel ``(C, 1, k, k)``: its convolution is the window sum."""
    return torch.ones(channels, 1, kernel, kernel, dtype=dtype, device=device)


def avg_pool_same(x: torch.Tensor, kernel: int) -> torch.Tensor:
    """``AvgPool2d(kernel, stride=1, padding=kernel // 2, count_include_pad=False)(x)``.

    On CPU: a depthwise all-ones convolution (the window sums) times ``1 / count`` per pixel, several
    times faster forward and backward than the native pooling kernel there (about 6x at NB201 shapes,
    and faster than shift-and-add); it saves only ``x``, which the skip candidate keeps anyway.
    Elsewhere the native kernel, one launch.
    """
    if x.device.type != "cpu":
        return F.avg_pool2d(x, kernel, 1, kernel // 2, count_include_pad=False)
    sums, inv = window_sums(x, kernel)
    return sums * inv  # (B, C, H, W)


def window_sums(x: torch.Tensor, kernel: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(S, 1 / count)`` with ``avg_pool_same(x, kernel) == S * (1 / count)``: the window sums of ``x`` (a
    depthwise all-ones convolution) and the ``(H, W)`` reciprocal of each window's in-image pixel count, for
    callers that fuse the multiplication into an accumulation (``out.addcmul_(S, 1 / count)``)."""
    sums = F.conv2d(x, _ones(x.shape[1], kernel, x.dtype, x.device), None, 1, kernel // 2, 1, x.shape[1])
    return sums, _inv_count(x.shape[-2], x.shape[-1], kernel, x.dtype, x.device)


def avg_pool_same_transposed(g: torch.Tensor, kernel: int, like: torch.Tensor) -> torch.Tensor:
    """The transpose of ``avg_pool_same`` applied to ``g``: ``dL/dx`` given ``dL/d avg_pool_same(x)`` (a linear
    map, so ``x`` itself is not needed; ``like`` is any tensor of its shape). On CPU the all-ones window is
    symmetric, so the transpose is the same depthwise convolution of ``g / count``; elsewhere the native
    pooling backward."""
    if g.device.type != "cpu":
        return _native_pool_transposed(g, kernel, like)
    inv = _inv_count(g.shape[-2], g.shape[-1], kernel, g.dtype, g.device)
    return window_sums(g * inv, kernel)[0]


def _native_pool_transposed(g: torch.Tensor, kernel: int, like: torch.Tensor) -> torch.Tensor:
    """``avg_pool_same_transposed`` by the native pooling backward (any device)."""
    k, p = [kernel, kernel], [kernel // 2, kernel // 2]
    return torch.ops.aten.avg_pool2d_backward(g, like, k, [1, 1], p, False, False, None)


def kernel_norm(weight: torch.Tensor) -> torch.Tensor:
    """``||K||`` per output channel of ``weight`` ``(..., C_out, C_in, k, k)``, as ``(..., C_out, 1, 1, 1)``
    (clamped away from zero: an all-zero channel, e.g. zero padding, stays zero when divided by it)."""
    return torch.linalg.vector_norm(weight, dim=(-3, -2, -1), keepdim=True).clamp_min(1e-12)


def normalize_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``K / ||K||`` per output channel (rule 3's ``Khat``); differentiable, so ``K`` trains through it.

    ``weight`` is ``(..., C_out, C_in, k, k)``: the norm is taken over the last three dimensions.
    """
    return weight / kernel_norm(weight)


def unit_rms_kernel(weight: torch.Tensor) -> torch.Tensor:
    """Each of ``n`` kernels scaled by one scalar to unit root-mean-square output-channel norm (rule 4's ``Khat``).

    One scalar per kernel (not per channel): a depthwise kernel feeds a 1x1 conv that mixes channels,
    so only a common scale leaves the stage's bn output unchanged. ``weight`` is ``(n, C_out, ...)``.
    """
    dims = tuple(range(1, weight.dim()))
    norms = torch.linalg.vector_norm(weight, dim=dims, keepdim=True).clamp_min(1e-12)  # (n, 1, ...)
    return weight * (weight.shape[1] ** 0.5 / norms)


def embed_kernel(weight: torch.Tensor, dilation: int, kernel: int, target_kernel: int,
                 target_dilation: int) -> torch.Tensor:
    """``weight`` (``(..., k, k)``, a conv with ``dilation``) as a kernel of the target geometry.

    The same geometry returns ``weight`` itself; otherwise the target's dilation must divide
    ``dilation`` and ``weight`` is spread out on the target grid and centred in it (exact: zeros
    elsewhere), e.g. a 3x3 dilation-2 kernel in a dense 5x5 or a 5x5 dilation-2 one.
    """
    if (kernel, dilation) == (target_kernel, target_dilation):
        return weight
    if dilation % target_dilation:
        raise ValueError(f"cannot embed a {kernel}x{kernel} d{dilation} kernel in a d{target_dilation} one")
    step = dilation // target_dilation
    extent = (kernel - 1) * step + 1  # in target taps
    off = (target_kernel - extent) // 2
    if off < 0 or (target_kernel - extent) % 2:
        raise ValueError(f"a {kernel}x{kernel} d{dilation} kernel does not fit centred in "
                         f"{target_kernel}x{target_kernel} d{target_dilation}")
    if step == 1:
        return F.pad(weight, (off, off, off, off))
    out = weight.new_zeros(*weight.shape[:-2], target_kernel, target_kernel)
    span = slice(off, off + extent, step)
    out[..., span, span] = weight
    return out
