"""beta-DARTS: DARTS with the Beta-Decay regularizer, run with the DrNAS recipe.

Ye et al., "beta-DARTS: Beta-Decay Regularization for Differentiable Architecture Search" (CVPR 2022).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .darts import DartsV1
from .drnas import DrNASRecipe
from .registry import register_strategy


@dataclass
class BetaDartsHyper(DrNASRecipe):
    """beta-DARTS: ``lambda_e = beta_max * epoch / epochs`` (0 to 49.5 over 100 epochs, the paper's 0.5 * e)."""

    beta_max: float = 50.0


@register_strategy
class BetaDARTS(DartsV1):
    """DARTS with Beta-Decay: ``CE_val + lambda_e * mean_edges(logsumexp(alpha_e))``.

    The regularizer keeps the architecture parameters' softmax from saturating early, which is
    what lets DARTS escape its collapse to skip connections. Adam weight decay 1e-3 is kept.
    """

    name = "beta-darts"
    seed_batched = True
    Hyper = BetaDartsHyper

    def regularizer(self, epoch: int) -> torch.Tensor | float:
        scale = self.hyper.beta_max * epoch / self.hyper.epochs
        if scale == 0:
            return 0.0
        # the mean over edges of each seed, summed over stacked seeds (toponas.loop.seeds); one seed: the mean
        terms = [torch.logsumexp(a, dim=-1).mean(-1).sum() for a in self.alphas.values()]
        return scale * sum(terms) / len(terms)
