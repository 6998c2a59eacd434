"""DrNAS, SNAS and beta-DARTS: the strategies that share the DrNAS training recipe."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Dirichlet, kl_divergence
from torch.nn import functional as F

from ..spaces import Mixing
from .base import Hyper, Strategy, linear_schedule


@dataclass
class DrNASRecipe(Hyper):
    """The DrNAS NAS-Bench-201 recipe (public DrNAS code, ``201-space`` search script).

    100 epochs, SGD without Nesterov and weight decay 3e-4, architecture step first, first order;
    the rest as DARTS (lr 0.025 cosine to 0.001, clip 5, Adam 3e-4 with betas (0.5, 0.999)).
    """

    epochs: int = 100
    w_nesterov: bool = False
    w_wd: float = 3e-4
    arch_first: bool = True


@dataclass
class DrNASHyper(DrNASRecipe):
    """``reg``: ``l2`` (Adam weight decay ``a_wd``, the default) or ``kl`` (``reg_scale * KL``, a_wd 0)."""

    reg: str = "l2"
    reg_scale: float = 1e-3

    def __post_init__(self) -> None:
        if self.reg not in ("l2", "kl"):
            raise ValueError(f"hyperparameter reg: {self.reg!r}; choose l2 or kl")
        if self.reg == "kl":
            self.a_wd = 0.0  # the KL term replaces the L2 penalty, as in the DrNAS code


class DrNAS(Strategy):
    """Dirichlet mixing: ``theta ~ Dir(ELU(alpha) + 1)``, sampled with ``rsample`` per forward pass.

    The sample is shared by all cells (one architecture matrix). Derivation: argmax of the
    concentration, i.e. of alpha (ELU + 1 is monotone).
    """

    name = "drnas"
    Hyper = DrNASHyper

    def concentration(self, alpha: torch.Tensor) -> torch.Tensor:
        return F.elu(alpha) + 1

    def mixing(self) -> Mixing:
        return Mixing({g: Dirichlet(self.concentration(a)).rsample() for g, a in self.alphas.items()})

    def regularizer(self, epoch: int) -> torch.Tensor | float:
        if self.hyper.reg != "kl":
            return 0.0
        total = 0.0
        for a in self.alphas.values():
            beta = self.concentration(a)
            total = total + kl_divergence(Dirichlet(beta), Dirichlet(torch.ones_like(beta))).sum()
        return self.hyper.reg_scale * total

    def probabilities(self) -> dict[str, torch.Tensor]:
        """The Dirichlet mean ``beta / sum(beta)`` per edge."""
        out = {}
        for g, a in self.alphas.items():
            beta = self.concentration(a.detach())
            out[g] = beta / beta.sum(-1, keepdim=True)
        return out


@dataclass
class SNASHyper(DrNASRecipe):
    """SNAS as run on NAS-Bench-201 in the DrNAS code: tau linear per epoch from 10 towards 1."""

    tau_max: float = 10.0
    tau_min: float = 1.0


class SNAS(Strategy):
    """Soft Gumbel-softmax per edge, ``softmax((alpha + g) / tau)``; every candidate runs."""

    name = "snas"
    Hyper = SNASHyper

    def __init__(self, space, hyper: SNASHyper | None = None) -> None:
        super().__init__(space, hyper)
        self.register_buffer("tau", torch.tensor(float(self.hyper.tau_max)))

    def new_epoch(self, epoch: int, epochs: int) -> None:
        self.tau.fill_(linear_schedule(self.hyper.tau_max, self.hyper.tau_min, epoch, epochs))

    def mixing(self) -> Mixing:
        weights = {}
        for g, a in self.alphas.items():
            gumbel = -torch.empty_like(a).exponential_().log()
            weights[g] = F.softmax((a + gumbel) / self.tau, dim=-1)
        return Mixing(weights)


@dataclass
class BetaDartsHyper(DrNASRecipe):
    """beta-DARTS: ``lambda_e = beta_max * epoch / epochs`` (0 to 49.5 over 100 epochs, the paper's 0.5 * e)."""

    beta_max: float = 50.0


class BetaDARTS(Strategy):
    """DARTS with Beta-Decay: ``CE_val + lambda_e * mean_edges(logsumexp(alpha_e))``.

    The regularizer keeps the architecture parameters' softmax from saturating early, which is
    what lets DARTS escape its collapse to skip connections. Adam weight decay 1e-3 is kept.
    """

    name = "beta-darts"
    Hyper = BetaDartsHyper

    def regularizer(self, epoch: int) -> torch.Tensor | float:
        scale = self.hyper.beta_max * epoch / self.hyper.epochs
        if scale == 0:
            return 0.0
        terms = [torch.logsumexp(a, dim=-1).mean() for a in self.alphas.values()]
        return scale * sum(terms) / len(terms)
