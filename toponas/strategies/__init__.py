"""Search strategies: how architecture parameters become mixing weights, and one search step."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..registry import Registry
from . import advantage, fpnas, parsec
from .base import Hyper, StepContext, StepStats, Strategy
from .darts import DartsV1, DartsV2
from .drnas import SNAS, BetaDARTS, DrNAS
from .foxnas import FOXNAS
from .gdas import GDAS
from .hurricane import HURRICANE
from .ista import ISTANAS, ISTANASOneStage
from .nasi import NASI
from .oneshot import BNNAS, SPOS, PiNAS

STRATEGIES: Registry[type[Strategy]] = Registry("strategy")
for _cls in (DartsV1, DartsV2, GDAS, SNAS, DrNAS, BetaDARTS, parsec.PARSEC, fpnas.FPNAS,
             advantage.AdvantageNAS, SPOS, BNNAS, NASI, PiNAS, ISTANAS, ISTANASOneStage, HURRICANE, FOXNAS):
    STRATEGIES.register(_cls.name)(_cls)


def restoration_strategies() -> list[str]:
    """The strategies whose every loss goes through the step's task (they search restoration spaces)."""
    return [n for n in STRATEGIES.names() if STRATEGIES.get(n).any_task]


def create_strategy(name: str, space, hyper: Mapping[str, Any] | Hyper | None = None) -> Strategy:
    """Build a registered strategy for ``space``; ``hyper`` overrides its default hyperparameters."""
    cls = STRATEGIES.get(name)
    family = getattr(space, "family", None)
    if cls.families is not None and family not in cls.families:
        raise NotImplementedError(f"{name} searches {'/'.join(cls.families)} spaces, not the {space.name} space")
    if family == "restoration" and not cls.any_task:
        raise NotImplementedError(f"{name} computes a classification loss of its own; it cannot search the "
                                  f"{space.name} space (restoration: {', '.join(restoration_strategies())})")
    if not isinstance(hyper, Hyper):
        hyper = cls.Hyper.resolve(hyper)
    return cls(space, hyper)


__all__ = ["STRATEGIES", "create_strategy", "Strategy", "Hyper", "StepContext", "StepStats"]
