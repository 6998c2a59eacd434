"""FOX-NAS: linear accuracy and latency predictors over a trained supernet, then simulated annealing under a budget.

Liu et al., "FOX-NAS: Fast, On-device and Explainable Neural Architecture Search" (ICCV workshops
2021). Our reading on the mobile space (the sizes and defaults are ours):

1. a supernet trained by single-path uniform sampling (as SPOS, the epochs of the run);
2. ``fox_samples`` random subnets (default 300) are scored: shared-weight accuracy (ties broken by the
   loss, as SPOS' evolution) on the kept validation batches, and latency from the LUT (sum of entries
   plus overhead; FLOPs when the budget is a FLOPs target);
3. two ridge regressions (``fox_ridge``) on the same features: the one-hot choice of every row, and
   pairwise features, the products of the one-hots of consecutive blocks (network order) and of every
   block with its stage's width; the latency predictor is fitted on the LUT's figures of the same
   subnets (a LUT is additive in parts that depend on widths, so the pairwise features can fit it);
4. simulated annealing with threshold acceptance (Dueck & Scheuer 1990) on the predicted accuracy:
   ``sa_steps`` moves (one row changes), a move is taken when its predicted accuracy is at least the
   current one minus a threshold that falls linearly from ``sa_threshold`` to 0, and only while the
   predicted latency meets the budget. The result is the visited architecture of highest predicted
   accuracy whose LUT prediction (not the regression's) meets the budget.

Everything after the supernet runs at the end of the last epoch, from the strategy's state (kept
batches), so a resumed run finds the same network.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch

from .budgeted import BudgetedOneShot
from .evolution import Arch
from .oneshot import OneShotHyper, unflat
from .registry import register_strategy


@dataclass
class FoxHyper(OneShotHyper):
    """``fox_samples`` subnets for the predictors, ``fox_ridge`` their L2 penalty; ``sa_steps`` annealing moves,
    ``sa_threshold`` the starting acceptance threshold (accuracy, 0..1); ``sa_lut``: the annealing checks the
    budget with the LUT (exact, our default) rather than the fitted latency predictor (the paper's; ``false``)."""

    fox_samples: int = 300
    fox_ridge: float = 1.0
    sa_steps: int = 4000
    sa_threshold: float = 0.02
    sa_lut: bool = True


class FeatureMap:
    """One-hot and pairwise features of flat architectures (see the module docstring)."""

    def __init__(self, space, shapes) -> None:
        self.sizes = [c for e, c in shapes.values() for _ in range(e)]
        offsets, k = {}, 0
        for g, (rows, _) in shapes.items():
            for r in range(rows):
                offsets[(g, r)] = k
                k += 1
        slots = [offsets[(s.group, s.index)] for s in space.slots]
        pairs = list(zip(slots, slots[1:]))
        pairs += [(offsets[(s.group, s.index)], offsets[("width", s.stage)]) for s in space.slots]
        self.pairs = pairs
        self.size = sum(self.sizes) + sum(self.sizes[i] * self.sizes[j] for i, j in pairs) + 1

    def __call__(self, archs: torch.Tensor) -> torch.Tensor:
        """``(n, positions)`` int64 -> ``(n, features)`` float64 (the last column is the intercept)."""
        parts = [torch.nn.functional.one_hot(archs[:, p], n).double() for p, n in enumerate(self.sizes)]
        for i, j in self.pairs:
            parts.append(torch.nn.functional.one_hot(archs[:, i] * self.sizes[j] + archs[:, j],
                                                     self.sizes[i] * self.sizes[j]).double())
        parts.append(torch.ones(archs.shape[0], 1, dtype=torch.float64))
        return torch.cat(parts, dim=1)


def ridge(x: torch.Tensor, y: torch.Tensor, lam: float) -> torch.Tensor:
    """Weights of ``min |x w - y|^2 + lam |w|^2`` (the intercept, last column, not penalized)."""
    pen = lam * torch.eye(x.shape[1], dtype=x.dtype)
    pen[-1, -1] = 0.0
    return torch.linalg.solve(x.T @ x + pen, x.T @ y)


def r2(pred: torch.Tensor, y: torch.Tensor) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((pred - y) ** 2).sum()) / ss if ss > 0 else 1.0


@register_strategy
class FOXNAS(BudgetedOneShot):
    """See the module docstring."""

    name = "fox-nas"
    Hyper = FoxHyper

    def __init__(self, space, hyper: FoxHyper | None = None) -> None:
        super().__init__(space, hyper)
        self.features = FeatureMap(space, self.shapes)
        self._report: dict[str, Any] = {}

    def get_extra_state(self) -> dict[str, Any]:
        return {**super().get_extra_state(), "report": self._report}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        super().set_extra_state(state)
        self._report = dict(state.get("report") or {})

    def cost_of(self, archs: torch.Tensor) -> torch.Tensor | None:
        """The budgeted figure per architecture: LUT latency (ms) or MFLOPs; ``None`` without a budget."""
        b = self.budget
        if b is None or not b.kinds:
            return None
        choices = unflat_batch(archs, self.shapes)
        if b.latency_target:
            return b.latency(choices).double()
        return b.flops.cost(choices).double() / 1e6

    def search(self) -> None:
        h = self.hyper
        rng = random.Random(torch.initial_seed())
        gen = torch.Generator().manual_seed(torch.initial_seed() % (2**63))
        sizes = self.features.sizes
        archs = torch.stack([torch.randint(0, n, (h.fox_samples,), generator=gen) for n in sizes], dim=1)
        was_training = self._model.training if self._model is not None else True
        acc = torch.tensor([self.fitness(tuple(a.tolist())) for a in archs], dtype=torch.float64)
        if self._model is not None:
            self._model.train(was_training)
        x = self.features(archs)
        cost = self.cost_of(archs)
        held = max(1, len(archs) // 5)  # the last fifth: held-out R^2 of predictors fitted on the rest
        fit_acc = ridge(x[:-held], acc[:-held], h.fox_ridge)
        acc_r2 = r2(x[-held:] @ fit_acc, acc[-held:]) if held > 1 else None
        cost_r2 = None
        if cost is not None and held > 1:
            cost_r2 = r2(x[-held:] @ ridge(x[:-held], cost[:-held], h.fox_ridge), cost[-held:])
        w_acc = ridge(x, acc, h.fox_ridge)
        w_cost = None if cost is None else ridge(x, cost, h.fox_ridge)
        target = None
        if cost is not None:
            target = self.budget.latency_target if self.budget.latency_target else self.budget.flops_target

        def predict(a: Arch) -> tuple[float, float | None]:
            f = self.features(torch.tensor([a]))
            if w_cost is None:
                return float(f @ w_acc), None
            if h.sa_lut:
                return float(f @ w_acc), float(self.cost_of(torch.tensor([a]))[0])
            return float(f @ w_acc), float(f @ w_cost)

        def feasible(c: float | None) -> bool:
            return target is None or c is None or c <= target

        order = [tuple(a.tolist()) for a in archs[acc.argsort(descending=True)]]
        start = next((a for a in order if self.within_budget(a)), None)
        if start is None:  # no sampled subnet meets the budget: start from the cheapest network
            start = self.cheapest()
        current, (cur_acc, _) = start, predict(start)
        visited: dict[Arch, float] = {current: cur_acc}
        accepted = 0
        for step in range(h.sa_steps):
            threshold = h.sa_threshold * (1 - step / max(1, h.sa_steps))
            cand = list(current)
            i = rng.randrange(len(cand))
            cand[i] = rng.choice([c for c in range(sizes[i]) if c != cand[i]] or [cand[i]])
            cand = tuple(cand)
            a, c = predict(cand)
            if feasible(c) and a >= cur_acc - threshold:
                current, cur_acc = cand, a
                visited[cand] = a
                accepted += 1
        best = next((a for a in sorted(visited, key=visited.get, reverse=True) if self.within_budget(a)), start)
        self._found, self._found_fitness = best, visited.get(best, cur_acc)
        self._evaluations = h.fox_samples
        self._report = {"samples": h.fox_samples, "heldout_accuracy_r2": acc_r2,
                        "heldout_cost_r2": cost_r2, "features": self.features.size,
                        "sa_steps": h.sa_steps, "accepted": accepted, "visited": len(visited),
                        "predicted_accuracy": visited.get(best), "budget": target}

    def result_extras(self) -> dict[str, Any]:
        return {"fox_nas": self._report}


def unflat_batch(archs: torch.Tensor, shapes) -> dict[str, torch.Tensor]:
    """``(n, positions)`` -> ``{group: (n, rows)}`` (the layout of ``unflat``, batched)."""
    out, k = {}, 0
    for g, (rows, _) in shapes.items():
        out[g] = archs[:, k:k + rows]
        k += rows
    return out


__all__ = ["FOXNAS", "FoxHyper", "FeatureMap", "ridge", "unflat"]
