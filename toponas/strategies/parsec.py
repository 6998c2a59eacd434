"""PARSEC: probabilistic architecture search with importance-weighted single-path children.

Casale, Gordon and Fusi, "Probabilistic Neural Architecture Search" (2019); see the "Sampling
family" of ``docs/METHODS.md``. The architecture is a factorized categorical ``softmax(theta)`` per
edge. Each step samples K architectures, runs them one after another as single-path children on the
same batch and weights them by ``omega = softmax_k(l_k)``, ``l_k`` the child's log-likelihood of the
batch (``-CE`` summed over it):

* weights: SGD on ``sum_k omega_k grad_w CE_k`` (training batch);
* distribution: Adam on ``-sum_k omega_k (onehot(a_k) - softmax(theta))`` (validation batch), i.e.
  ascent on the marginal likelihood ``log E_{a ~ p}[p(y | a)]``.

The derived architecture is the most probable one, the argmax per edge.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .base import StepContext
from .registry import register_strategy
from .sampling import Draws, SamplingHyper, SinglePathStrategy, importance_weights, score_gradient


@dataclass
class ImportanceHyper(SamplingHyper):
    """Shared by PARSEC and FP-NAS; optimizers and epochs are the NAS-Bench-201 DARTS defaults.

    ``temperature``: ``omega = softmax(l / T)``. ``T = 1`` is the paper's estimator; with
    log-likelihoods summed over a batch the weights are nearly one-hot, and ``T > 1`` (e.g. the
    batch size, which makes ``l`` a per-image mean) flattens them. Not from the paper.
    """

    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.temperature <= 0:
            raise ValueError(f"hyperparameter temperature must be positive, got {self.temperature}")


@dataclass
class ParsecHyper(ImportanceHyper):
    """``samples``: K architectures per step. The paper uses 16 in the DARTS space (unverified);
    a public re-implementation uses 8, the default here (cheaper on NAS-Bench-201)."""

    samples: int = 8

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.samples < 1:
            raise ValueError(f"hyperparameter samples must be at least 1, got {self.samples}")


@register_strategy
class PARSEC(SinglePathStrategy):
    """PARSEC with a fixed number of samples per step (see the module docstring)."""

    name = "parsec"
    data_parallel = False  # its importance weights follow this process's losses (fp-nas too)
    Hyper = ParsecHyper

    def __init__(self, space, hyper: ImportanceHyper | None = None) -> None:
        super().__init__(space, hyper)
        self.last_omega: torch.Tensor | None = None  # importance weights of the last distribution phase

    def num_samples(self) -> int:
        return self.hyper.samples

    def temperature(self) -> float:
        return self.hyper.temperature

    def cost(self, draws: Draws) -> torch.Tensor | float:
        """A per-child term added to the loss ``-l_k`` of the distribution phase (FP-NAS: FLOPs)."""
        return 0.0

    def arch_phase(self, ctx: StepContext, x, y, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """Importance weights of the children on the validation batch, then one Adam step.

        ``omega = softmax_k(-(CE_k + cost_k) / T)`` with ``CE_k`` summed over the batch; the
        children only run forward (no graph is kept).
        """
        logliks, losses, corrects = [], [], []
        with torch.no_grad():
            for k in range(draws.n):
                logits = ctx.model(x, self.child_mixing(draws, k))
                ce = F.cross_entropy(logits, y, reduction="sum")
                logliks.append(-ce)
                losses.append(ce / y.shape[0])
                corrects.append((logits.argmax(-1) == y).sum())
        loglik = torch.stack(logliks) - self.cost(draws)
        omega = importance_weights(loglik, self.temperature())
        self.last_omega = omega
        self.update_distribution(ctx, draws, omega)
        return torch.stack(losses).mean(), torch.stack(corrects).float().mean().round()

    def update_distribution(self, ctx: StepContext, draws: Draws, omega: torch.Tensor) -> None:
        """Set the score gradient on ``alphas`` and take an Adam step (``ctx.a_optimizer``)."""
        logits = self.logits()
        for g, a in self.alphas.items():
            a.grad = score_gradient(logits[g], draws.choices[g], omega).to(a)
        ctx.a_optimizer.step()
