"""GDAS: one hard Gumbel-softmax sample per forward pass; only the sampled candidate runs."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..spaces import Mixing
from .base import Hyper, linear_schedule
from .darts import DartsV1
from .registry import register_strategy


@dataclass
class GDASHyper(Hyper):
    """GDAS on NAS-Bench-201 (xautodl ``GDAS.config``): 250 epochs, tau linear from 10 to 0.1."""

    epochs: int = 250
    tau_max: float = 10.0
    tau_min: float = 0.1


@register_strategy
class GDAS(DartsV1):
    """Hard Gumbel-softmax with straight-through gradients, shared by all cells.

    ``p = softmax((log_softmax(alpha) + g) / tau)``, ``h = onehot(argmax p) - p.detach() + p``;
    the supernet runs only the sampled candidate of each edge (``Mixing.active``). The architecture
    is derived from ``argmax alpha``, not from the last sample.
    """

    name = "gdas"
    Hyper = GDASHyper

    def __init__(self, space, hyper: GDASHyper | None = None) -> None:
        super().__init__(space, hyper)
        self.register_buffer("tau", torch.tensor(float(self.hyper.tau_max)))

    def new_epoch(self, epoch: int, epochs: int) -> None:
        self.tau.fill_(linear_schedule(self.hyper.tau_max, self.hyper.tau_min, epoch, epochs))

    def mixing(self) -> Mixing:
        weights, active = {}, {}
        for g, alpha in self.alphas.items():
            log_p = F.log_softmax(alpha, dim=-1)
            while True:  # resample on inf/NaN, as the reference does
                gumbel = -torch.empty_like(log_p).exponential_().log()
                probs = F.softmax((log_p + gumbel) / self.tau, dim=-1)
                index = probs.argmax(dim=-1)
                hard = F.one_hot(index, probs.shape[-1]).to(probs) - probs.detach() + probs
                if torch.isfinite(gumbel).all() and torch.isfinite(probs).all():
                    break
            weights[g] = hard
            active[g] = [[i] for i in index.tolist()]
        return Mixing(weights, active)
