"""Query-based search: strategies that propose cells and an oracle that answers their accuracy.

GA-NAS, regularized evolution and random search on per-edge spaces (NAS-Bench-201), answered by the
benchmark table, by training, or by a search run's one-shot weights. Registered here, dispatched to
by the search entry through the class attribute ``contract`` (``"query"``; supernet strategies say
``"supernet"``), see :mod:`toponas.query.base`.
"""

from __future__ import annotations

from ..registry import Registry
from .base import QueryHyper, QueryStrategy
from .encoding import Arch, CellEncoding
from .ganas import GANAS
from .random_search import RandomSearch
from .rea import REA
from .run import QueryConfig, QueryInterrupted, QuerySearch, best_so_far, query_search, summary

QUERY_STRATEGIES: Registry[type[QueryStrategy]] = Registry("query strategy")
for _cls in (GANAS, REA, RandomSearch):
    QUERY_STRATEGIES.register(_cls.name)(_cls)

__all__ = ["QUERY_STRATEGIES", "QueryStrategy", "QueryHyper", "QueryConfig", "QuerySearch", "QueryInterrupted",
           "CellEncoding", "Arch", "query_search", "best_so_far", "summary"]
