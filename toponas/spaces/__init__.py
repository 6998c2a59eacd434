"""Search spaces: candidate operations declared as primitive chains, supernets and discrete networks."""

from __future__ import annotations

from pathlib import Path

from ..registry import Registry
from .cell import Cell, CellError
from .custom import SpaceFileError, space_from_dict, space_from_file
from .darts import DartsSpace
from .mixed import MixedEdge, Mixing
from .mobile import MobileSpace
from .mobile_arch import MobileSpec
from .modnas import ModNasSpace
from .nb201 import CANDIDATES, NB201_OPS, WIDE_OPS, NB201Space
from .primitives import OpSpec
from .trilevel import TrilevelSpace

SPACES: Registry[NB201Space] = Registry("search space")
SPACES.register("nb201")(lambda: NB201Space("nb201", NB201_OPS))
for _name, _ops in WIDE_OPS.items():
    SPACES.register(_name)(lambda name=_name, ops=_ops: NB201Space(name, ops))
SPACES.register("darts")(lambda: DartsSpace())
SPACES.register("mobile")(lambda: MobileSpace("mobile"))
SPACES.register("mobile-sa")(lambda: MobileSpace("mobile-sa", MobileSpec(radixes=(1, 2))))
SPACES.register("mod-nas")(lambda: ModNasSpace("mod-nas"))  # restoration: denoising (docs/restoration.md)
SPACES.register("trilevel")(lambda: TrilevelSpace("trilevel"))  # restoration: super-resolution


def candidate_names(space, group: str) -> tuple[str, ...]:
    """The candidates of ``group`` in ``space`` (spaces whose groups differ declare ``group_ops``)."""
    return tuple(getattr(space, "group_ops", {}).get(group, space.op_names))


def create_space(name: str) -> NB201Space:
    """Build a registered search space by name, or a user's space from a ``.json`` declaration."""
    if name.endswith(".json") or Path(name).is_file():
        return space_from_file(name)
    return SPACES.create(name)


__all__ = ["SPACES", "create_space", "space_from_dict", "space_from_file", "SpaceFileError", "Cell", "CellError",
           "MixedEdge", "Mixing", "NB201Space", "MobileSpace", "candidate_names", "CANDIDATES", "NB201_OPS", "OpSpec"]
