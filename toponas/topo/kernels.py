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
    sums = F.conv2d(x, _ones(x.shape[1], kernel, x.dtype, x.device), None, 1, kernel // 2, 1, x.shape[1])
    return sums * _inv_count(x.shape[-2], x.shape[-1], kernel, x.dtype, x.device)  # (B, C, H, W)


def normalize_kernel(weight: torch.Tensor) -> torch.Tensor:
    """``K / ||K||`` per output channel (rule 3's ``Khat``); differentiable, so ``K`` trains through it.

    ``weight`` is ``(..., C_out, C_in, k, k)``: the norm is taken over the last three dimensions.
    """
    norm = weight.flatten(-3).norm(dim=-1).clamp_min(1e-12)  # (..., C_out)
    return weight / norm[..., None, None, None]


def embed_kernel(weight: torch.Tensor, dilation: int, kernel: int, target_kernel: int,
                 target_dilation: int) -> torch.Tensor:
    """``weight`` (``(..., k, k)``, a conv with ``dilation``) as a kernel of the target geometry.

    The same geometry returns ``weight`` itself; otherwise the target is dense (``target_dilation``
    1) and ``weight`` is spread out by its dilation and centred in it (exact: zeros elsewhere).
    """
    if (kernel, dilation) == (target_kernel, target_dilation):
        return weight
    if target_dilation != 1:
        raise ValueError(f"cannot embed a {kernel}x{kernel} d{dilation} kernel in a d{target_dilation} one")
    extent = (kernel - 1) * dilation + 1
    off = (target_kernel - extent) // 2
    if off < 0:
        raise ValueError(f"a {extent}-wide kernel does not fit in {target_kernel}x{target_kernel}")
    if dilation == 1:
        return F.pad(weight, (off, off, off, off))
    out = weight.new_zeros(*weight.shape[:-2], target_kernel, target_kernel)
    span = slice(off, off + extent, dilation)
    out[..., span, span] = weight
    return out
