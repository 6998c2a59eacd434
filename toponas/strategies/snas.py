"""SNAS as the DrNAS code runs it on NAS-Bench-201: a soft Gumbel-softmax relaxation per edge.

Xie et al., "SNAS: Stochastic Neural Architecture Search" (ICLR 2019); the NAS-Bench-201 settings (the DrNAS
recipe, tau linear per epoch from 10 towards 1) are those of the public DrNAS code's SNAS baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..spaces import Mixing
from .base import linear_schedule
from .darts import DartsV1
from .drnas import DrNASRecipe
from .registry import register_strategy


@dataclass
class SNASHyper(DrNASRecipe):
    """SNAS as run on NAS-Bench-201 in the DrNAS code: tau linear per epoch from 10 towards 1."""

    tau_max: float = 10.0
    tau_min: float = 1.0


@register_strategy
class SNAS(DartsV1):
    """Soft Gumbel-softmax per edge, ``softmax((alpha + g) / tau)``; every candidate runs."""

    name = "snas"
    seed_batched = True
    Hyper = SNASHyper

    def __init__(self, space, hyper: SNASHyper | None = None) -> None:
        super().__init__(space, hyper)
        self.register_buffer("tau", torch.tensor(float(self.hyper.tau_max)))

    def new_epoch(self, epoch: int, epochs: int) -> None:
        self.tau.fill_(linear_schedule(self.hyper.tau_max, self.hyper.tau_min, epoch, epochs))

    def mixing(self) -> Mixing:
        weights = {}
        for g, a in self.alphas.items():
            gumbel = -self.noise(a, torch.Tensor.exponential_).log()
            weights[g] = F.softmax((a + gumbel) / self.tau, dim=-1)
        return Mixing(weights)
