"""NASI: architecture search at initialization with the NTK-trace proxy (Shu et al. 2022).

No weight is trained. Each step draws a Gumbel-softmax sample of the architecture parameters
(relaxed, temperature ``tau``), computes ``G = ||dL/dw||^2``, the squared norm of the mini-batch
loss gradient over the supernet's weights at initialization (a bound on the NTK trace), and ascends
``R = G - mu * max(0, G - nu)`` with respect to the architecture parameters (Adam; the gradient of
``G`` needs a second backward pass). After ``samples`` (T) steps the remaining steps only report.
The derived cell is the argmax per edge. ``nu = 0`` means no cap (our default: the paper tunes
``nu`` per space; see ``docs/ranking.md``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..spaces import Mixing
from .base import Hyper, StepContext, StepStats
from .darts import DartsV1
from .registry import register_strategy


@dataclass
class NASIHyper(Hyper):
    """``samples``: T Gumbel samples (steps that update); ``tau``: Gumbel-softmax temperature; ``mu``,
    ``nu``: the penalty of ``R`` (``nu = 0``: no cap). One epoch by default; the weights stay at init."""

    epochs: int = 1
    samples: int = 100
    tau: float = 1.0
    mu: float = 1.0
    nu: float = 0.0
    a_lr: float = 0.05

    def __post_init__(self) -> None:
        if self.samples < 1 or self.tau <= 0 or self.mu < 0 or self.nu < 0:
            raise ValueError("hyperparameters: need samples >= 1, tau > 0, mu >= 0, nu >= 0")


@register_strategy
class NASI(DartsV1):
    """See the module docstring."""

    name = "nasi"
    any_task = False  # its loss is cross-entropy
    budgets = ()
    Hyper = NASIHyper

    def __init__(self, space, hyper: NASIHyper | None = None) -> None:
        super().__init__(space, hyper)
        self.register_buffer("samples_done", torch.zeros((), dtype=torch.int64))
        self.last_g: float | None = None

    def mixing(self) -> Mixing:
        """A relaxed Gumbel-softmax sample of every group (all candidates run)."""
        return Mixing({g: F.gumbel_softmax(a, tau=self.hyper.tau, hard=False, dim=-1) for g, a in self.alphas.items()})

    def proxy(self, ctx: StepContext, x, y) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(R, G, logits)`` for one Gumbel sample on the batch; ``R`` differentiable in ``alphas``."""
        logits = ctx.model(x, self.mixing())
        loss = F.cross_entropy(logits, y)
        grads = torch.autograd.grad(loss, ctx.weights, create_graph=True, allow_unused=True)
        g = sum((gr * gr).sum() for gr in grads if gr is not None)
        h = self.hyper
        r = g - h.mu * torch.clamp(g - h.nu, min=0) if h.nu > 0 else g
        return r, g, logits

    def step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> StepStats:
        """One Gumbel sample: Adam ascent on ``R`` (no weight step); only a forward after T samples."""
        if int(self.samples_done) >= self.hyper.samples:
            with torch.no_grad():
                logits = ctx.model(x_w, self.mixing())
                loss = F.cross_entropy(logits, y_w)
            correct = (logits.argmax(-1) == y_w).sum()
            return StepStats(loss, correct, loss, correct, int(y_w.shape[0]))
        r, g, logits = self.proxy(ctx, x_w, y_w)
        grads = torch.autograd.grad(-r, list(self.alphas.values()), allow_unused=True)
        self.set_arch_grads([torch.zeros_like(a) if gr is None else gr for a, gr in zip(self.alphas.values(), grads)])
        ctx.a_optimizer.step()
        self.samples_done += 1
        self.last_g = float(g.detach())
        loss = F.cross_entropy(logits.detach(), y_w)
        correct = (logits.detach().argmax(-1) == y_w).sum()
        return StepStats(loss, correct, -r.detach(), correct, int(y_w.shape[0]))

    def epoch_summary(self) -> dict:
        return {"samples": int(self.samples_done), "last_G": self.last_g}

    def result_extras(self) -> dict:
        return {"samples_total": int(self.samples_done)}
