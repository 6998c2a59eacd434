"""The registry of supernet strategies: each strategy registers itself where it is defined (timm style).

``@register_strategy`` on a :class:`~toponas.strategies.base.Strategy` subclass registers it under its
``name``; :mod:`toponas.strategies` imports every strategy module, so the registry is complete once the
package is imported. Classes that only share code (``SinglePathStrategy``, ``BudgetedOneShot``) are not
registered.
"""

from __future__ import annotations

from typing import TypeVar

from ..registry import Registry

T = TypeVar("T", bound=type)

STRATEGIES: Registry[type] = Registry("strategy")


def register_strategy(cls: T) -> T:
    """Class decorator: register ``cls`` under ``cls.name`` (a name registered twice is an error)."""
    STRATEGIES.register(cls.name)(cls)
    return cls


__all__ = ["STRATEGIES", "register_strategy"]
