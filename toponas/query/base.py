"""The contract of a query-based strategy: propose cells, be told their accuracy; no supernet.

It is a sibling of the supernet :class:`toponas.strategies.Strategy`: both carry the class attribute
``contract`` (``"supernet"`` there, ``"query"`` here) and the search entry dispatches on it once
(:mod:`toponas.cli_query`). The driver (:class:`toponas.query.run.QuerySearch`) owns the budget, the
oracle and the query log; a strategy only ever sees cells and answers, in this order::

    strategy = Cls(encoding, hyper, seed)
    loop: cells = strategy.ask()           # one or more proposals, queried in order
          strategy.tell(cell, accuracy)    # once per queried proposal, before the next ask()

A strategy is deterministic given its seed and the answers it is told: that is what lets the driver
resume a killed run by replaying the query log (answers read back, nothing re-queried).
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..strategies.base import _coerce
from .encoding import Arch, CellEncoding


@dataclass
class QueryHyper:
    """Hyperparameters of a query-based strategy (subclasses add theirs)."""

    @classmethod
    def resolve(cls, overrides: Mapping[str, Any] | None = None) -> QueryHyper:
        """Defaults with ``overrides`` on top; unknown keys are an error listing the known ones."""
        overrides = dict(overrides or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {', '.join(unknown)}; known: "
                             f"{', '.join(sorted(names)) or '(none)'}")
        return cls(**{k: _coerce(v, names[k].type, k) for k, v in overrides.items()})


class QueryStrategy:
    """Base of the query-based strategies: a seeded RNG and the ``ask``/``tell`` protocol."""

    name: ClassVar[str]
    contract: ClassVar[str] = "query"
    Hyper: ClassVar[type[QueryHyper]] = QueryHyper

    def __init__(self, encoding: CellEncoding, hyper: QueryHyper | None = None, seed: int = 0) -> None:
        self.encoding = encoding
        self.hyper = hyper if hyper is not None else self.Hyper()
        self.seed = seed
        self.rng = random.Random(seed)
        self.history: list[tuple[Arch, float]] = []  # every answer told, in order

    def ask(self) -> list[Arch]:
        """The next cell(s) to query (at least one)."""
        raise NotImplementedError

    def tell(self, arch: Arch, accuracy: float) -> None:
        """The answer for a proposal; the default records it in :attr:`history`."""
        self.history.append((arch, accuracy))
