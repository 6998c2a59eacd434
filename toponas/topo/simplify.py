"""``simplify``: rewrite a supernet in place, search unit by search unit (edge by edge outside any unit).

A search unit is any module of the :class:`~toponas.spaces.protocol.SearchUnit` protocol (a cell, a
macro network's mixed block); the simplifier names no concrete space.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable

from torch import nn

from ..spaces.mixed import MixedEdge
from ..spaces.protocol import SearchUnit
from .modules import SimplifiedEdge, SimplifiedUnit
from .plan import Chain, GroupPlan
from .rules import resolve_rules


def simplify(
    model: nn.Module,
    mode: str = "full",
    rules: Iterable[str] | str | None = None,
    disable: Iterable[str] | str = (),
) -> nn.Module:
    """Replace every search unit (else every mixed edge) of ``model`` by a simplified module, in place.

    The new modules hold the original edges' modules, so parameters (the same ``nn.Parameter``
    objects), buffers and state-dict keys are unchanged, and so is the forward signature. ``mode``
    ``off`` returns ``model`` untouched; ``exact`` keeps outputs and gradients equal to the plain
    supernet; ``full`` adds the approximate rules (see ``toponas.topo.rules``). Returns ``model`` (or
    the replacement, when ``model`` itself is a cell or an edge). A candidate the planner cannot
    rewrite runs its original modules, with a warning naming it; a model without mixed edges is an
    error.
    """
    chosen = resolve_rules(mode, rules, disable)
    if mode == "off":
        return model
    if any(isinstance(m, (SimplifiedUnit, SimplifiedEdge)) for m in model.modules()):
        raise ValueError("model is already simplified; simplify a fresh copy of the plain supernet")
    unplanned: dict[tuple[str, str], str] = {}
    if isinstance(model, SearchUnit):
        new: nn.Module = SimplifiedUnit.of(model, chosen)
        _note_unplanned(new, "cell", unplanned)
    elif type(model) is MixedEdge:
        new = SimplifiedEdge(model, chosen)
        _note_unplanned(new, "edge", unplanned)
    else:
        new = model
        if _replace(model, chosen, "", unplanned) == 0:
            raise ValueError(
                f"{type(model).__name__} has no search unit or MixedEdge to simplify (mode {mode!r})"
            )
    for (name, reason), where in unplanned.items():
        warnings.warn(
            f"toponas.topo: candidate {name!r} ({where}) is not simplified: {reason}; "
            "it runs its original modules",
            stacklevel=2,
        )
    return new


def _replace(parent: nn.Module, rules: frozenset[str], prefix: str, unplanned: dict) -> int:
    """Swap the known modules below ``parent``; the number swapped."""
    count = 0
    for name, child in list(parent.named_children()):
        where = f"{prefix}{name}"
        if isinstance(child, SearchUnit):
            new: nn.Module = SimplifiedUnit.of(child, rules)
        elif type(child) is MixedEdge:
            new = SimplifiedEdge(child, rules, where=where)
        else:
            count += _replace(child, rules, where + ".", unplanned)
            continue
        setattr(parent, name, new)
        _note_unplanned(new, where, unplanned)
        count += 1
    return count


def _note_unplanned(module: nn.Module, where: str, unplanned: dict) -> None:
    """Record candidates left to their original modules (other than 'none' with fusion off)."""
    plans: list[GroupPlan] = [p for _, p in module.program.groups]
    for plan in plans:
        for item in plan.items:
            if isinstance(item, Chain) and not item.reason.startswith("zero"):
                unplanned.setdefault((item.path.name, item.reason), where)
