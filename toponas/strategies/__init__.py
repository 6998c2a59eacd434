"""Search strategies: how architecture parameters become mixing weights, and one search step.

The contract is :class:`~toponas.strategies.base.Strategy` (the hooks the search loop calls, in order);
DARTS-V1 (:mod:`toponas.strategies.darts`) is its reference implementation. Each strategy registers
itself where it is defined (``@register_strategy``); importing this package imports every strategy
module, so :data:`STRATEGIES` is complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Every strategy module, imported so that its strategies register (the order does not matter).
from . import (
    advantage,
    beta_darts,
    danas,
    darts,
    drnas,
    foxnas,
    fpnas,
    gdas,
    hurricane,
    ista,
    nasi,
    oneshot,
    parsec,
    snas,
)
from .base import Hyper, StepContext, StepStats, Strategy
from .beta_darts import BetaDARTS
from .danas import DANAS
from .darts import DartsV1, DartsV2
from .drnas import DrNAS
from .foxnas import FOXNAS
from .gdas import GDAS
from .hurricane import HURRICANE
from .ista import ISTANAS, ISTANASOneStage
from .nasi import NASI
from .oneshot import BNNAS, SPOS, PiNAS
from .registry import STRATEGIES, register_strategy
from .snas import SNAS

MODULES = (advantage, beta_darts, danas, darts, drnas, foxnas, fpnas, gdas, hurricane, ista, nasi, oneshot, parsec,
           snas)


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


__all__ = ["STRATEGIES", "create_strategy", "register_strategy", "restoration_strategies", "Strategy", "Hyper",
           "StepContext", "StepStats", "DartsV1", "DartsV2", "GDAS", "SNAS", "DrNAS", "BetaDARTS", "NASI", "ISTANAS",
           "ISTANASOneStage", "DANAS", "SPOS", "BNNAS", "PiNAS", "HURRICANE", "FOXNAS"]
