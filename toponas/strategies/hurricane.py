"""HURRICANE: a single-path one-shot supernet and a two-stage search over groups of layers, under a latency budget.

Zhang et al., "Fast Hardware-Aware Neural Architecture Search" (HURRICANE, CVPR workshops 2020,
arXiv:1910.11609): the supernet is trained by single-path uniform sampling (as SPOS), and the search
runs in two stages over two groups of layers, the later layers first, then the earlier ones, each
under the hardware's latency constraint, which shortens the supernet training (the paper: 30.4%
less than SPOS). Our reading on the mobile space (the split and the defaults are ours):

* the groups are stages: ``later`` = the rows (blocks and widths) of stages ``split_stage..`` (default:
  the last ``ceil(n/2)`` stages, ``s3..s5``), ``earlier`` = the rest;
* stage 1 (the first ``stage1_epochs``, default half of the run): each step samples a path with the
  later rows uniform and the earlier rows fixed to their lowest-latency choices (first-block kernel 3,
  expansion 3, the other blocks skipped, narrowest width: the smallest network's); after its last
  epoch, regularized evolution over the later rows (shared-weight accuracy on the kept validation
  batches) under the budget, the earlier rows still fixed;
* stage 2 (the remaining epochs): the later rows are fixed to stage 1's result and the earlier rows
  sampled; after the last epoch an evolution over the earlier rows under the budget gives the network.
  A drawn candidate over the budget has rows set back to the smallest network's choices, one at a
  time at random, until it fits (ours: under a tight budget random draws rarely fit).

The budget (``--lut`` with ``--latency-target``, or ``--flops-target``) is checked with the LUT's
prediction (sum of entries plus overhead). Both stages' results are part of the strategy's state, so a
resumed run finds the same network.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Any

import torch

from ..config import ConfigError
from .base import StepContext
from .budgeted import BudgetedOneShot
from .evolution import Arch, evolve
from .oneshot import OneShotHyper, flat
from .registry import register_strategy


@dataclass
class HurricaneHyper(OneShotHyper):
    """``split_stage``: first stage of the ``later`` group (-1: the last ``ceil(n/2)`` stages);
    ``stage1_epochs``: epochs of stage 1 (-1: half of the run's, at least 1)."""

    split_stage: int = -1
    stage1_epochs: int = -1


@register_strategy
class HURRICANE(BudgetedOneShot):
    """See the module docstring."""

    name = "hurricane"
    Hyper = HurricaneHyper

    def __init__(self, space, hyper: HurricaneHyper | None = None) -> None:
        super().__init__(space, hyper)
        n = len(space.spec.stages)
        split = self.hyper.split_stage if self.hyper.split_stage >= 0 else n - math.ceil(n / 2)
        if not 0 < split < n:
            raise ValueError(f"hyperparameter split_stage must lie in 1..{n - 1}, got {split}")
        self.split = split
        epochs = self.hyper.epochs
        if epochs > 1 and not 0 < self.stage1_epochs(epochs) < epochs:
            raise ValueError(f"hyperparameter stage1_epochs must lie in 1..{epochs - 1} (stage 2 needs an epoch), "
                             f"got {self.hyper.stage1_epochs}")
        # positions in the flat architecture (groups in order, rows in order) of the later group
        later, k = [], 0
        slot_stage = {(s.group, s.index): s.stage for s in space.slots}
        for g, (rows, _) in self.shapes.items():
            for r in range(rows):
                stage = r if g == "width" else slot_stage[(g, r)]
                if stage >= split:
                    later.append(k)
                k += 1
        self.later = tuple(later)
        self.earlier = tuple(i for i in range(k) if i not in set(later))
        self.default = flat(self.smallest_choices())
        self._stage1: Arch | None = None  # the later rows' choices found by stage 1
        self._stage1_fitness: float | None = None

    # -- state -------------------------------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {**super().get_extra_state(), "stage1": self._stage1, "stage1_fitness": self._stage1_fitness}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self._stage1 = None if state.get("stage1") is None else tuple(state["stage1"])
        self._stage1_fitness = state.get("stage1_fitness")

    def stage1_epochs(self, epochs: int) -> int:
        e = self.hyper.stage1_epochs
        return max(1, epochs // 2) if e < 0 else e

    def in_stage1(self, epoch: int) -> bool:
        return epoch < self.stage1_epochs(self._epochs) and self._epochs > 1

    # -- sampling ----------------------------------------------------------------------------------
    def compose(self, searched: Arch, positions: tuple[int, ...], base: Arch) -> Arch:
        out = list(base)
        for p, c in zip(positions, searched):
            out[p] = c
        return tuple(out)

    def sample_choices(self) -> dict[str, torch.Tensor]:
        """Stage 1: later rows uniform, earlier rows at their defaults; stage 2: earlier rows uniform, later fixed."""
        sizes = [c for e, c in self.shapes.values() for _ in range(e)]
        if self.in_stage1(self._epoch) or self._stage1 is None:
            positions, base = self.later, self.default
        else:
            positions, base = self.earlier, self.compose(self._stage1, self.later, self.default)
        drawn = tuple(int(torch.randint(0, sizes[p], ())) for p in positions)  # the loop reseeds torch every step
        return self.choices_of(self.compose(drawn, positions, base))

    def keep(self, ctx: StepContext, x_a, y_a) -> None:
        """Keep the first validation batches of each stage's last epoch."""
        last1 = self.stage1_epochs(self._epochs) - 1
        if ctx.epoch in (last1, self._epochs - 1) and len(self._kept) < self.hyper.eval_batches:
            self._kept.append((x_a.detach().clone(), y_a.detach().clone()))

    # -- the two searches ----------------------------------------------------------------------------
    def _evolve(self, positions: tuple[int, ...], base: Arch):
        h = self.hyper
        sizes = [c for e, c in self.shapes.values() for _ in range(e)]
        allowed = self.allowed()
        full = lambda a: self.compose(a, positions, base)  # noqa: E731
        was_training = self._model.training if self._model is not None else True
        ok = None if allowed is None else (lambda a: allowed(full(a)))
        default = tuple(self.default[p] for p in positions)

        def repair(a: Arch) -> Arch:
            """Rows set back to the smallest network's choice, one at a time at random, until within the budget."""
            a, rng = list(a), random.Random(hash(tuple(a)))
            while ok is not None and not ok(tuple(a)):
                off = [i for i, (c, d) in enumerate(zip(a, default)) if c != d]
                if not off:
                    break
                i = rng.choice(off)
                a[i] = default[i]
            return tuple(a)

        try:
            result = evolve(lambda a: self.fitness(full(a)), [sizes[p] for p in positions],
                            population=h.evo_population, sample=h.evo_sample, cycles=h.evo_cycles,
                            rng=random.Random(torch.initial_seed()), allowed=ok, repair=repair)
        except ValueError as e:  # the budget together with --hp flops_cap leaves no architecture
            raise ConfigError(f"hurricane: {e}") from None
        if self._model is not None:
            self._model.train(was_training)
        return result

    def after_epoch(self, ctx: StepContext, epoch: int, simplify) -> StepContext:
        """After stage 1's last epoch: the evolution over the later rows (earlier rows at their defaults)."""
        if self._epochs > 1 and epoch == self.stage1_epochs(self._epochs) - 1 and self._stage1 is None:
            result = self._evolve(self.later, self.default)
            self._stage1, self._stage1_fitness = result.best, result.fitness
            self._evaluations += len(result.history)
            self._kept = []
        return ctx

    def search(self) -> None:
        """Stage 2: the evolution over the earlier rows with the later rows at stage 1's result."""
        if self._stage1 is None:  # a one-epoch run: stage 1 only, then the earlier rows
            result = self._evolve(self.later, self.default)
            self._stage1, self._stage1_fitness = result.best, result.fitness
            self._evaluations += len(result.history)
        base = self.compose(self._stage1, self.later, self.default)
        result = self._evolve(self.earlier, base)
        self._found = self.compose(result.best, self.earlier, base)
        self._found_fitness = result.fitness
        self._evaluations += len(result.history)

    def result_extras(self) -> dict[str, Any]:
        names = [s.name for s in self.space.spec.stages]
        return {"hurricane": {"earlier_stages": names[:self.split], "later_stages": names[self.split:],
                              "stage1_epochs": self.stage1_epochs(self._epochs), "stage1_fitness": self._stage1_fitness,
                              "fitness": self._found_fitness, "evaluations": self._evaluations}}


__all__ = ["HURRICANE", "HurricaneHyper"]
