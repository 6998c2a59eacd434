"""PSNR and SSIM, and the Y channel super-resolution is reported on.

* PSNR: ``10 log10(1 / MSE)`` for images in ``[0, 1]`` (both clipped to it first, as a saved image would be).
* SSIM: Wang et al., "Image quality assessment: from error visibility to structural similarity" (IEEE TIP
  2004): an 11x11 Gaussian window (sigma 1.5), ``K1 = 0.01``, ``K2 = 0.03``, valid positions only, the mean
  over positions and channels.
* Super-resolution: both metrics on the Y channel of ITU-R BT.601 YCbCr (``16 + 65.481 R + 128.553 G +
  24.966 B`` on 0..255) with ``scale`` pixels shaved off every border, as the SR literature (EDSR, RCAN, ...)
  reports them. Denoising: on all channels, no border.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F


def rgb_to_y(image: torch.Tensor) -> torch.Tensor:
    """The BT.601 luma of an RGB image in ``[0, 1]`` (``(..., 3, H, W)`` to ``(..., 1, H, W)``), in [16, 235] / 255."""
    r, g, b = image[..., 0:1, :, :], image[..., 1:2, :, :], image[..., 2:3, :, :]
    return (16.0 + 65.481 * r + 128.553 * g + 24.966 * b) / 255.0


def prepare(image: torch.Tensor, y_channel: bool, border: int) -> torch.Tensor:
    """Clip to ``[0, 1]``, take Y (colour images, when asked) and shave ``border`` pixels."""
    x = image.detach().double().clamp(0, 1)
    if x.dim() == 3:
        x = x[None]
    if y_channel and x.shape[1] == 3:
        x = rgb_to_y(x)
    if border:
        x = x[..., border:-border, border:-border]
    return x


def psnr(restored: torch.Tensor, clean: torch.Tensor, y_channel: bool = False, border: int = 0) -> float:
    """PSNR in dB of one image (``(C, H, W)`` or ``(1, C, H, W)``); ``inf`` for identical images."""
    a, b = prepare(restored, y_channel, border), prepare(clean, y_channel, border)
    if a.shape != b.shape:
        raise ValueError(f"psnr: shapes differ, {tuple(a.shape)} and {tuple(b.shape)}")
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10.0 * math.log10(1.0 / mse)


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(restored: torch.Tensor, clean: torch.Tensor, y_channel: bool = False, border: int = 0) -> float:
    """SSIM of one image (see the module docstring); 1.0 for identical images."""
    a, b = prepare(restored, y_channel, border), prepare(clean, y_channel, border)
    if a.shape != b.shape:
        raise ValueError(f"ssim: shapes differ, {tuple(a.shape)} and {tuple(b.shape)}")
    if min(a.shape[-2:]) < 11:
        raise ValueError(f"ssim needs images of at least 11x11 pixels, got {tuple(a.shape[-2:])}")
    c = a.shape[1]
    win = _gaussian_window().to(a)[None, None].repeat(c, 1, 1, 1)  # (C, 1, 11, 11)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, win, groups=c)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = filt(a), filt(b)
    var_a = filt(a * a) - mu_a**2
    var_b = filt(b * b) - mu_b**2
    cov = filt(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


__all__ = ["rgb_to_y", "psnr", "ssim"]
