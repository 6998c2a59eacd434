"""Latency and FLOPs budgets of a search: the differentiable cost term and what ``result.json`` records.

The term (ours in this form; the pieces are FBNet's and MnasNet's): the architecture loss becomes

    L = CE * max(1, E[LAT] / T) ** beta          (and the same with E[FLOPs] / T_flops)

``E[LAT]`` is the expected latency under the strategy's mixing weights (the LUT's entries weighted
by the weights, :meth:`~toponas.hardware.model.LatencyModel.expected`), as in FBNet (Wu et al., CVPR
2019: ``LAT(a) = sum_l sum_i m_{l,i} LAT(b_{l,i})`` with Gumbel-softmax masks ``m``) and
ProxylessNAS (Cai et al., ICLR 2019: ``E[latency] = sum_j p_j F(o_j)``). The loss is multiplicative as
FBNet's ``CE * alpha * log(LAT) ** beta``; the ratio to a target with no pressure under it is the
form of MnasNet's reward (Tan et al., CVPR 2019: ``ACC * (LAT / T) ** w``, ``w = 0`` below the
target). ``beta`` = 2 is our choice. The loss needs only the mixing weights, so it works with the
simplifier and knows nothing of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from ..config import ConfigError
from .lut import LatencyTable, measure_with_drift
from .model import LatencyModel
from .parts import LatencyError

#: Exponent of the cost factor (our choice).
BETA = 2.0


class ExpectedFlops:
    """FLOPs of a space's networks (its ``cost_table``) as expected under mixing weights, and per architecture."""

    def __init__(self, space, channels: int = 16, image_size: int = 32, num_classes: int = 10, cells: int = 5) -> None:
        """At FP-NAS' convention: C=16, 32x32, 10 classes (NB201: N=5 cells per stage; mobile: its table)."""
        if not hasattr(space, "cost_table"):
            from ..flops import cost_table

            self.cost = cost_table(space, channels, cells, image_size, num_classes)
        else:
            self.cost = space.cost_table(channels, cells, image_size, num_classes)
        self.space = space

    def expected(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``E[FLOPs]`` (multiply-accumulates) under per-row weights; differentiable."""
        cost = self.cost
        if hasattr(cost, "edges"):  # a single-group table: base + sum_e p_e . edges[e]
            (w,) = weights.values()
            return cost.base + (w * cost.edges.to(w)).sum()
        q = weights["width"]
        total = q.new_tensor(float(cost.base)) + (q[-1] * cost.head.to(q)).sum()
        for slot, t in cost.blocks:
            p, t = weights[slot.group][slot.index], t.to(q)
            qa = q.new_ones(1) if slot.in_stage is None else q[slot.in_stage]
            if slot.residual:
                total = total + torch.einsum("c,b,cbb->", p, q[slot.stage], t)
            else:
                total = total + torch.einsum("c,a,b,cab->", p, qa, q[slot.stage], t)
        return total

    def arch(self, arch) -> int:
        return int(self.cost.arch(arch)) if hasattr(self.cost, "arch") else int(
            self.cost(self.space.choices(arch) if hasattr(self.space, "choices") else arch))


@dataclass
class Budget:
    """What a search is held to: a latency target (ms, from a LUT) and/or a FLOPs target (MFLOPs)."""

    table: LatencyTable | None = None
    latency: LatencyModel | None = None
    latency_target: float | None = None
    lut_path: str | None = None
    flops: ExpectedFlops | None = None
    flops_target: float | None = None  # MFLOPs
    beta: float = BETA

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(k for k, t in (("latency", self.latency_target), ("flops", self.flops_target)) if t)

    def factor(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor | float:
        """``max(1, E[LAT]/T)^beta * max(1, E[FLOPs]/T_f)^beta`` under the mixing weights (1 without targets)."""
        f: torch.Tensor | float = 1.0
        if self.latency_target:
            f = f * (self.latency.expected(weights) / self.latency_target).clamp_min(1.0) ** self.beta
        if self.flops_target:
            f = f * (self.flops.expected(weights) / (1e6 * self.flops_target)).clamp_min(1.0) ** self.beta
        return f

    def within(self, arch) -> bool:
        """Whether ``arch``'s predicted latency and FLOPs meet the targets."""
        if self.latency_target and self.latency.arch(arch) > self.latency_target:
            return False
        return not (self.flops_target and self.flops.arch(arch) > 1e6 * self.flops_target)

    def cost(self, choices: Mapping[str, torch.Tensor]) -> float:
        """How far ``choices`` exceed the targets: ``max(0, LAT/T - 1) + max(0, FLOPs/T_f - 1)`` (0: within)."""
        over = 0.0
        if self.latency_target:
            over += max(0.0, float(self.latency(choices)) / self.latency_target - 1)
        if self.flops_target:
            over += max(0.0, float(self.flops.cost(choices)) / (1e6 * self.flops_target) - 1)
        return over

    def project(self, space, probabilities: Mapping[str, torch.Tensor], arch):
        """``arch`` made to meet the budget with the least loss of probability (ours: FBNet and ProxylessNAS take
        the argmax, which the expected-cost term does not hold to the target).

        Greedy: while over budget, change the one row (to another candidate) with the largest reduction
        of the excess per unit of log-probability given up, ``d excess / (log p(current) - log p(new))``.
        Spaces without ``choices`` (a single-group space's FLOPs) are returned as they are.
        """
        if not self.kinds or not hasattr(space, "choices"):
            return arch
        choices = {g: c.clone() for g, c in space.choices(arch).items()}
        logp = {g: p.double().clamp_min(1e-12).log() for g, p in probabilities.items()}
        over = self.cost(choices)
        for _ in range(sum(c.numel() for c in choices.values()) * 8):
            if over <= 0:
                break
            best = None
            for g, c in choices.items():
                for r in range(c.numel()):
                    now = int(c[r])
                    for k in range(logp[g].shape[-1]):
                        if k == now:
                            continue
                        c[r] = k
                        gain = over - self.cost(choices)
                        c[r] = now
                        if gain > 1e-12:
                            score = gain / (float(logp[g][r, now] - logp[g][r, k]) + 1e-6)
                            if best is None or score > best[0]:
                                best = (score, g, r, k)
            if best is None:
                break
            _, g, r, k = best
            choices[g][r] = k
            over = self.cost(choices)
        one_hot = {g: torch.nn.functional.one_hot(c, logp[g].shape[-1]).double() for g, c in choices.items()}
        return space.derive(one_hot)

    def record(self, space, arch, measure: bool = True) -> dict[str, Any]:
        """The figures ``result.json`` gets for the found architecture (top-level fields)."""
        out: dict[str, Any] = {"mflops": self.flops.arch(arch) / 1e6 if self.flops is not None else None}
        if self.flops_target:
            out["flops_target_mflops"] = self.flops_target
        if self.table is not None:
            (lo, lo_arch), (hi, hi_arch) = self.latency.extremes()
            out.update({"lut": self.lut_path, "latency_target_ms": self.latency_target,
                        "predicted_latency_ms": self.table.predict(space, arch),
                        "measured_latency_ms": None, "latency_range_ms": [lo, hi],
                        "latency_device": self.table.made_for()})
            if measure:
                device = torch.device(str(self.table.device.get("kind", "cpu")))
                try:
                    self.table.check_device(device, int(self.table.device.get("threads", 1)))
                except LatencyError as e:
                    out["measured_latency_note"] = f"not measured: {e}"
                else:
                    threads = torch.get_num_threads()
                    torch.set_num_threads(int(self.table.device.get("threads", threads)) or threads)
                    try:
                        # as `latency check`: fit networks in the same passes, the machine's speed against the build's
                        times, drift, _ = measure_with_drift(space, [arch], self.table, device, self.table.rounds)
                        out["measured_latency_ms"], out["measured_latency_drift"] = times[0], drift
                    finally:
                        torch.set_num_threads(threads)
        return out


def make_budget(space, image_size: int, lut: str | None, latency_target: float | None,
                flops_target: float | None) -> Budget | None:
    """The run's budget from its config (``None`` without a LUT or a target); bad input is one error."""
    if not lut and not latency_target and not flops_target:
        return None
    if latency_target and not lut:
        raise ConfigError("--latency-target needs --lut LUT.json (a table from `toponas latency build`)")
    budget = Budget(flops_target=flops_target or None, lut_path=lut)
    try:
        budget.flops = ExpectedFlops(space)
    except (NotImplementedError, ValueError) as e:
        if flops_target:
            raise ConfigError(f"--flops-target: {e}") from None
    if lut:
        table = LatencyTable.load(lut)
        table.check_space(space)
        table.check_complete(space, lut)
        if latency_target:
            table.check_image_size(image_size)
        budget.table, budget.latency = table, LatencyModel(table, space)
        if latency_target:
            if latency_target <= 0:
                raise ConfigError(f"--latency-target must be positive, got {latency_target}")
            (lo, lo_arch), _ = budget.latency.extremes()
            if latency_target < lo:
                raise ConfigError(f"--latency-target {latency_target:g} ms is below the smallest network of the "
                                  f"{space.name} space ({lo:.3f} ms predicted: {lo_arch}; {table.made_for()})")
            budget.latency_target = float(latency_target)
    if flops_target:
        smallest = min_flops(space, budget.flops)
        if flops_target * 1e6 < smallest:
            raise ConfigError(f"--flops-target {flops_target:g} MFLOPs is below the smallest network's "
                              f"{smallest / 1e6:.2f} MFLOPs")
    return budget


def min_flops(space, flops: ExpectedFlops) -> float:
    """The smallest FLOPs of the space (its smallest network: the cheapest choice on every row)."""
    if hasattr(space, "largest_genotype") and getattr(space, "family", None) == "mobile":
        from ..spaces.mobile_arch import SKIP, MobileArch, StageArch, block_name

        spec = space.spec
        first = block_name(min(spec.kernels), min(spec.expansions), min(spec.radixes))
        arch = MobileArch(tuple(StageArch(s.name, min(spec.widths), (first,) + (SKIP,) * (s.blocks - 1))
                                for s in spec.stages))
        return float(flops.arch(arch))
    cost = flops.cost
    return float(cost.base + cost.edges.min(dim=1).values.sum())


def attach_budget(strategy, budget: Budget | None) -> None:
    """Give ``strategy`` the run's budget; a target it cannot take is an error naming the strategies that can."""
    if budget is None:
        return
    missing = [k for k in budget.kinds if k not in strategy.budgets]
    if missing:
        from ..strategies import STRATEGIES

        able = [n for n in STRATEGIES.names() if missing[0] in STRATEGIES.get(n).budgets]
        raise ConfigError(f"--strategy {strategy.name} does not take a {missing[0]} target; use one of "
                          f"{', '.join(able)}")
    strategy.budget = budget


__all__ = ["BETA", "Budget", "ExpectedFlops", "attach_budget", "make_budget"]
