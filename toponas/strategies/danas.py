"""DA-NAS: data-adapted progressive pruning (Dai et al., "DA-NAS: Data Adapted Pruning for Efficient Neural
Architecture Search", ECCV 2020, arXiv:2003.12563).

The paper starts with every candidate block on a subset of easy classes, trims the weak blocks stage by stage
and lets the data grow to the whole target set as the candidate set shrinks, so that a large candidate set is
searched at a fraction of the cost. Our reading on NAS-Bench-201 cells and the mobile space's blocks (the
schedule below is ours; the paper gives it for ImageNet only):

* the search is DARTS-V1's (softmax mixing, weight step then architecture step, the same optimizers),
  restricted to the candidates still alive on each edge/block: the others weigh exactly zero, do not run and
  are never derived (``Mixing.pruned``: the simplifier plans the alive set);
* the epochs are split into ``stages`` equal stages (at most one per epoch); after the last epoch of every stage
  but the last, each edge/block keeps its ``ceil(keep_frac * alive)`` candidates of largest alpha (NB201:
  5 -> 3 -> 2; at least ``min_keep``); the width choices of the mobile space are pruned the same way;
* "easy" classes: at the first step of each stage the classes are ranked by the mean loss of the current
  supernet (alive candidates) on that step's architecture batch, one forward without gradient; stage ``s``
  trains and scores on ``data_start + (1 - data_start) * s / (stages - 1)`` of every batch (default 0.4, 0.7,
  1.0 over three stages), the images of the easiest classes first: with balanced batches, about the easiest
  40% / 70% / all of the classes. A fixed number of images per step (not "every image of those classes")
  keeps the shapes of a stage's steps equal (a new batch size costs the convolutions' set-up again). At the
  first stage the supernet is untrained and its ranking is little more than a seeded order; a class missing
  from the ranking batch counts as hardest. This ranking is our choice
  (the paper ranks classes by difficulty without saying how, in the summaries we could read).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..spaces import Mixing
from .base import Hyper, StepContext, StepStats
from .darts import DartsV1
from .registry import register_strategy


@dataclass
class DANASHyper(Hyper):
    """DARTS-V1's optimizers and epochs; ``stages``, ``keep_frac``, ``min_keep``, ``data_start``: ours."""

    stages: int = 3
    keep_frac: float = 0.5  # after each stage but the last: keep ceil(keep_frac * alive) per edge/block
    min_keep: int = 2  # never prune below this many candidates (the last stage still compares)
    data_start: float = 0.4  # share of every batch in stage 1, easiest classes first (linear to all in the last)

    def __post_init__(self) -> None:
        if self.stages < 1 or not 0 < self.keep_frac <= 1 or self.min_keep < 1 or not 0 < self.data_start <= 1:
            raise ValueError("da-nas needs stages >= 1, 0 < keep_frac <= 1, min_keep >= 1, 0 < data_start <= 1")


@register_strategy
class DANAS(DartsV1):
    """See the module docstring."""

    name = "da-nas"
    families = ("nb201", "mobile")
    any_task = False  # the classes of the data subset are classification labels
    budgets = ()
    data_parallel = False  # the class ranking follows this process's architecture batch
    Hyper = DANASHyper

    def __init__(self, space, hyper: DANASHyper | None = None) -> None:
        super().__init__(space, hyper)
        for g, (edges, cands) in space.arch_shapes.items():
            self.register_buffer(f"alive_{g}", torch.ones(edges, cands, dtype=torch.bool))
        self.register_buffer("class_order", torch.zeros(0, dtype=torch.int64))  # easiest first, per stage
        self.register_buffer("ranked_stage", torch.tensor(-1))
        self._epochs = self.hyper.epochs

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """The class ranking's length is the dataset's number of classes: take the saved one's."""
        saved = state_dict.get(prefix + "class_order")
        if saved is not None:
            self.class_order = torch.zeros_like(saved, device=self.class_order.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # -- stages ----------------------------------------------------------------------------------
    @property
    def stages(self) -> int:
        """``stages``, at most one per epoch of the run."""
        return max(1, min(self.hyper.stages, self._epochs))

    def stage_of(self, epoch: int) -> int:
        """The stage ``epoch`` is in: ``stages`` equal parts of the run's epochs."""
        return min(self.stages - 1, epoch * self.stages // max(self._epochs, 1))

    def data_share(self, stage: int) -> float:
        n = self.stages
        return 1.0 if n == 1 else self.hyper.data_start + (1 - self.hyper.data_start) * stage / (n - 1)

    def new_epoch(self, epoch: int, epochs: int) -> None:
        self._epochs = epochs

    def alive(self, group: str) -> torch.Tensor:
        return getattr(self, f"alive_{group}")

    def pruned(self) -> bool:
        return any(not bool(self.alive(g).all()) for g in self.alphas)

    # -- mixing and derivation -------------------------------------------------------------------
    def _masked(self, g: str, a: torch.Tensor) -> torch.Tensor:
        return a.masked_fill(~self.alive(g), float("-inf"))

    def mixing(self) -> Mixing:
        """Softmax over the alive candidates (the pruned weigh exactly zero, take no gradient, do not run)."""
        if not self.pruned():
            return super().mixing()
        weights = {g: F.softmax(self._masked(g, a), dim=-1) for g, a in self.alphas.items()}
        active = {g: [row.nonzero().flatten().tolist() for row in self.alive(g)] for g in self.alphas}
        return Mixing(weights, active, pruned=True)

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {g: F.softmax(self._masked(g, a.detach()), dim=-1) for g, a in self.alphas.items()}

    def derive(self):
        """Argmax over the alive candidates (a pruned one is never derived)."""
        return self.fit_budget(self.space.derive({g: self._masked(g, a.detach()) for g, a in self.alphas.items()}))

    # -- data ------------------------------------------------------------------------------------
    @torch.no_grad()
    def rank_classes(self, ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> None:
        """Classes by the current supernet's mean loss on ``(x, y)``, easiest first (absent classes last)."""
        logits = ctx.model(x, self.mixing())
        loss = F.cross_entropy(logits, y, reduction="none").double()
        classes = logits.shape[-1]
        total = torch.zeros(classes, dtype=torch.float64, device=loss.device).index_add_(0, y, loss)
        count = torch.zeros(classes, dtype=torch.float64, device=loss.device).index_add_(0, y, torch.ones_like(loss))
        mean = torch.where(count > 0, total / count.clamp_min(1), torch.full_like(total, float("inf")))
        self.class_order = torch.argsort(mean, stable=True).to(self.class_order.device)

    def select(self, x: torch.Tensor, y: torch.Tensor, stage: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The stage's share of the batch (at least two images, for the search BN), easiest classes first,
        in batch order."""
        n = len(y)
        k = min(n, max(2, round(self.data_share(stage) * n)))
        if k >= n:
            return x, y
        rank = torch.empty_like(self.class_order)
        rank[self.class_order] = torch.arange(len(self.class_order), device=rank.device)
        idx = torch.argsort(rank.to(y.device)[y], stable=True)[:k].sort().values
        return x[idx], y[idx]

    # -- one step --------------------------------------------------------------------------------
    def step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> StepStats:
        """DARTS-V1's step on the stage's share of the images, easy classes first (ranked at the stage's first step)."""
        stage = self.stage_of(ctx.epoch)
        if int(self.ranked_stage) != stage:
            self.rank_classes(ctx, x_a, y_a)
            self.ranked_stage.fill_(stage)
        x_w, y_w = self.select(x_w, y_w, stage)
        x_a, y_a = self.select(x_a, y_a, stage)
        return super().step(ctx, x_w, y_w, x_a, y_a)

    def after_epoch(self, ctx: StepContext, epoch: int, simplify: Callable[[nn.Module], nn.Module]) -> StepContext:
        """After the last epoch of a stage (not the last stage): prune every edge/block to its strongest."""
        if self.stage_of(epoch) != self.stage_of(epoch + 1) and epoch + 1 < self._epochs:
            self.prune()
        return ctx

    def prune(self) -> None:
        h = self.hyper
        for g, a in self.alphas.items():
            alive = self.alive(g)
            for row in range(alive.shape[0]):
                n = int(alive[row].sum())
                keep = min(n, max(h.min_keep, math.ceil(h.keep_frac * n)))
                top = self._masked(g, a.detach())[row].topk(keep).indices
                alive[row].zero_()
                alive[row, top] = True

    def epoch_summary(self) -> dict[str, Any]:
        stage = self.stage_of(max(0, int(self.ranked_stage)))
        return {"stage": stage + 1, "alive": {g: int(self.alive(g).sum()) for g in self.alphas},
                "data_share": self.data_share(stage)}

    def result_extras(self) -> dict[str, Any]:
        return {"da_nas": {"stages": self.stages,
                           "alive": {g: self.alive(g).sum(-1).tolist() for g in self.alphas},
                           "class_order": self.class_order.tolist()}}
