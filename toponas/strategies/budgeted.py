"""One-shot strategies held to a latency or FLOPs budget (HURRICANE, FOX-NAS): the shared constraint.

The run gives the strategy a :class:`~toponas.hardware.budget.Budget` (``--lut`` with
``--latency-target``, or ``--flops-target``); an architecture is allowed when its latency predicted
by the LUT (sum of entries plus overhead) and its FLOPs meet the targets. Without a budget the
search is unconstrained.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import torch

from .evolution import Arch
from .oneshot import OneShot, flat, unflat


class BudgetedOneShot(OneShot):
    """A SPOS supernet whose discrete search keeps to ``self.budget`` (and the inherited ``flops_cap``)."""

    families: ClassVar[tuple[str, ...] | None] = ("mobile",)
    budgets: ClassVar[tuple[str, ...]] = ("latency", "flops")

    def choices_of(self, arch: Arch) -> dict[str, torch.Tensor]:
        return unflat(arch, self.shapes)

    def predicted_latency(self, arch: Arch) -> float | None:
        b = self.budget
        return None if b is None or b.latency is None else float(b.latency(self.choices_of(arch)))

    def within_budget(self, arch: Arch) -> bool:
        b = self.budget
        if b is None:
            return True
        choices = self.choices_of(arch)
        if b.latency_target and float(b.latency(choices)) > b.latency_target:
            return False
        return not (b.flops_target and float(b.flops.cost(choices)) > 1e6 * b.flops_target)

    def smallest_choices(self) -> dict[str, torch.Tensor]:
        """The cheapest choice of every row: smallest kernel and expansion, ``skip``, narrowest width (the
        space's smallest network in FLOPs; :meth:`cheapest` is the smallest in the budget's own measure)."""
        from ..spaces.mobile_arch import SKIP, block_name

        spec = self.space.spec
        cheapest = block_name(min(spec.kernels), min(spec.expansions), min(spec.radixes))
        ops = self.space.group_ops
        out = {}
        for g, (rows, _) in self.shapes.items():
            pick = 0 if g == "width" else ops[g].index(SKIP if SKIP in ops[g] else cheapest)
            out[g] = torch.full((rows,), pick, dtype=torch.int64)
        return out

    def cheapest(self) -> Arch:
        """The lowest-latency architecture by the LUT (exact), else the smallest in FLOPs."""
        b = self.budget
        if b is not None and b.latency_target:
            (_, arch), _ = b.latency.extremes()
            return flat(self.space.choices(arch))
        return flat(self.smallest_choices())

    def allowed(self) -> Callable[[Arch], bool] | None:
        """The FLOPs cap of SPOS (``--hp flops_cap``) and the run's budget, both."""
        cap = super().allowed() if self.hyper.flops_cap else None
        if self.budget is None or not self.budget.kinds:
            return cap
        return lambda a: self.within_budget(a) and (cap is None or cap(a))


__all__ = ["BudgetedOneShot"]
