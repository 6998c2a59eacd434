"""Search spaces: candidate operations declared as primitive chains, supernets and discrete networks."""

from __future__ import annotations

from ..registry import Registry
from .cell import Cell, CellError
from .mixed import MixedEdge, Mixing
from .nb201 import CANDIDATES, NB201_OPS, NB201Space
from .primitives import OpSpec

SPACES: Registry[NB201Space] = Registry("search space")
SPACES.register("nb201")(lambda: NB201Space("nb201", NB201_OPS))


def create_space(name: str) -> NB201Space:
    """Build a registered search space by name (``toponas.spaces.SPACES.names()`` lists them)."""
    return SPACES.create(name)


__all__ = ["SPACES", "create_space", "Cell", "CellError", "MixedEdge", "Mixing", "NB201Space",
           "CANDIDATES", "NB201_OPS", "OpSpec"]
