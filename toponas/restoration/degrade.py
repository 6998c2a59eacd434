"""Degradations of the restoration task: additive Gaussian noise (denoising) and bicubic downscaling (SR).

Images are float tensors in ``[0, 1]``, ``(C, H, W)`` or ``(B, C, H, W)``. ``sigma`` is given on the
0..255 scale, as the denoising literature reports it (DnCNN: sigma 15, 25, 50), and the noisy image is
not clipped (the usual synthetic protocol). Downscaling is ``torch.nn.functional.interpolate`` in
bicubic mode with antialiasing (plain torch, no MATLAB): close to, not bit-equal with, MATLAB's
``imresize`` that SR benchmarks are made with, so our PSNR figures compare among themselves.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

SIGMAS = (15, 25, 50)
SCALES = (2, 3, 4)


def add_noise(clean: torch.Tensor, sigma: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """``clean + n``, ``n ~ N(0, (sigma / 255)^2)`` per pixel and channel (not clipped)."""
    noise = torch.randn(clean.shape, generator=generator, dtype=clean.dtype, device="cpu").to(clean.device)
    return clean + noise * (float(sigma) / 255.0)


def modcrop(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop the bottom and right so that both sides are multiples of ``scale`` (the SR convention)."""
    h, w = image.shape[-2] - image.shape[-2] % scale, image.shape[-1] - image.shape[-1] % scale
    return image[..., :h, :w]


def bicubic_down(image: torch.Tensor, scale: int) -> torch.Tensor:
    """The bicubic (antialiased) downscaling of an image whose sides are multiples of ``scale``."""
    x = image if image.dim() == 4 else image[None]
    if x.shape[-2] % scale or x.shape[-1] % scale:
        raise ValueError(f"an image of {tuple(x.shape[-2:])} is not a multiple of the scale {scale}; modcrop it")
    out = F.interpolate(x, size=(x.shape[-2] // scale, x.shape[-1] // scale), mode="bicubic", antialias=True,
                        align_corners=False)
    return out if image.dim() == 4 else out[0]


def bicubic_up(image: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic upscaling by ``scale`` (the bicubic baseline and the SR networks' global skip)."""
    x = image if image.dim() == 4 else image[None]
    out = F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)
    return out if image.dim() == 4 else out[0]


__all__ = ["SIGMAS", "SCALES", "add_noise", "modcrop", "bicubic_down", "bicubic_up"]
