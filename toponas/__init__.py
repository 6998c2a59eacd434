"""TopoNAS: fast gradient-based NAS by topological simplification of supernets.

>>> import toponas
>>> result = toponas.search(strategy="darts-v1", dataset="digits", epochs=1, out="runs/demo")
>>> print(result.genotype)

The public API is imported lazily, so ``import toponas.spaces`` does not load the data pipeline.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "SearchConfig": "toponas.config",
    "SearchResult": "toponas.loop",
    "search": "toponas.loop",
    "create_space": "toponas.spaces",
    "create_strategy": "toponas.strategies",
    "simplify": "toponas.topo",
}
__all__ = [*_API, "__version__"]


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'toponas' has no attribute {name!r}")
