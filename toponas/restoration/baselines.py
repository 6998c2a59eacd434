"""Hand-designed restoration baselines, trained with the same budget as a found network.

* ``baseline:dncnn[:DEPTH]``: DnCNN-style denoiser (Zhang et al., "Beyond a Gaussian Denoiser", IEEE TIP
  2017): conv 3x3 + ReLU, ``DEPTH - 2`` times conv 3x3 + BN + ReLU, conv 3x3; residual learning
  (``x + net(x)``); width ``--channels``; default depth 8 (the paper's 17 at width 64 is far over a CPU budget).
* ``baseline:fsrcnn[:D,S,M]``: FSRCNN-style SR (Dong et al., ECCV 2016): conv 5x5 to ``D`` + PReLU, shrink
  1x1 to ``S``, ``M`` times conv 3x3 + PReLU, expand 1x1 to ``D``, deconvolution 9x9 with stride ``scale``;
  default ``56,12,4`` (the paper's).
* ``baseline:espcn[:C1,C2]``: ESPCN-style SR (Shi et al., CVPR 2016): conv 5x5 to ``C1`` + tanh, conv 3x3 to
  ``C2`` + tanh, conv 3x3 to ``c * scale^2``, pixel shuffle; default ``64,32``.

Every last layer is initialized as the spaces' (:func:`~toponas.spaces.restore_unit.output_conv`). Both SR
baselines add the bicubic upscaling of their input (they learn the residual over bicubic), as the
trilevel network does, so a comparison isolates the architecture. Bicubic itself is scored by every SR
training run (``bicubic_psnr`` in ``train.json``).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ConfigError
from ..spaces.restore_unit import output_conv

PREFIX = "baseline:"
NAMES = ("dncnn", "fsrcnn", "espcn")
TASK_OF = {"dncnn": "denoise", "fsrcnn": "sr", "espcn": "sr"}


def is_baseline(arch: str) -> bool:
    return str(arch).startswith(PREFIX)


def parse_baseline(arch: str) -> tuple[str, list[int]]:
    """``(name, integer arguments)`` of ``baseline:NAME[:A,B,...]``."""
    body = str(arch)[len(PREFIX):]
    name, _, args = body.partition(":")
    if name not in NAMES:
        raise ConfigError(f"unknown baseline {name!r}; choose from {', '.join(PREFIX + n for n in NAMES)}")
    try:
        values = [int(a) for a in args.split(",")] if args else []
    except ValueError:
        raise ConfigError(f"{arch}: the baseline's sizes must be integers (e.g. baseline:fsrcnn:56,12,4)") from None
    if any(v < 1 for v in values):
        raise ConfigError(f"{arch}: the baseline's sizes must be positive")
    return name, values


class DnCNN(nn.Module):
    def __init__(self, channels: int, width: int, depth: int = 8) -> None:
        super().__init__()
        if depth < 2:
            raise ConfigError("baseline:dncnn needs a depth of at least 2")
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        layers.append(output_conv(nn.Conv2d(width, channels, 3, padding=1)))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class FSRCNN(nn.Module):
    def __init__(self, channels: int, scale: int, d: int = 56, s: int = 12, m: int = 4) -> None:
        super().__init__()
        self.scale = scale
        layers: list[nn.Module] = [nn.Conv2d(channels, d, 5, padding=2), nn.PReLU(d), nn.Conv2d(d, s, 1), nn.PReLU(s)]
        for _ in range(m):
            layers += [nn.Conv2d(s, s, 3, padding=1), nn.PReLU(s)]
        layers += [nn.Conv2d(s, d, 1), nn.PReLU(d)]
        self.body = nn.Sequential(*layers)
        self.deconv = output_conv(nn.ConvTranspose2d(d, channels, 9, stride=scale, padding=4,
                                                     output_padding=scale - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.deconv(self.body(x))


class ESPCN(nn.Module):
    def __init__(self, channels: int, scale: int, c1: int = 64, c2: int = 32) -> None:
        super().__init__()
        self.scale = scale
        self.body = nn.Sequential(nn.Conv2d(channels, c1, 5, padding=2), nn.Tanh(), nn.Conv2d(c1, c2, 3, padding=1),
                                  nn.Tanh(), output_conv(nn.Conv2d(c2, channels * scale * scale, 3, padding=1)),
                                  nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.body(x)


def build_baseline(arch: str, channels: int, task: str, scale: int, width: int = 16) -> nn.Module:
    """The baseline network of ``arch`` for ``task`` (a denoiser for denoise, an upscaler for sr)."""
    name, args = parse_baseline(arch)
    if TASK_OF[name] != task:
        raise ConfigError(f"{PREFIX}{name} is a {TASK_OF[name]} baseline, not for --task {task}")
    if name == "dncnn":
        return DnCNN(channels, width, *args[:1])
    if name == "fsrcnn":
        return FSRCNN(channels, scale, *args[:3])
    return ESPCN(channels, scale, *args[:2])


__all__ = ["is_baseline", "parse_baseline", "build_baseline", "DnCNN", "FSRCNN", "ESPCN", "NAMES"]
