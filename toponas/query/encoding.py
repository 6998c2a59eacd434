"""Cells as choice vectors: one candidate index per edge, and the one-hot encoding the models read.

Query-based search needs a space whose cell is exactly one operation on every edge of a fixed DAG
(the NAS-Bench-201 family and user spaces declared like it). There a cell is a tuple of candidate
indices in edge order, the one-hot matrix of that tuple is a complete, injective encoding, and the
canonical cell string is the key of the benchmark table and of the query log.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch

from ..config import ConfigError
from ..spaces import NB201Space
from ..spaces.cell import Cell

#: A cell as one candidate index per edge, in the space's edge order.
Arch = tuple[int, ...]


class CellEncoding:
    """Choice vectors of a per-edge space: strings, one-hot tensors, random cells and mutations."""

    def __init__(self, space: NB201Space) -> None:
        """Fail with a ConfigError for a space whose cell is not one operation per edge (e.g. darts)."""
        if not isinstance(space, NB201Space) or len(space.arch_shapes) != 1:
            name = getattr(space, "name", type(space).__name__)
            raise ConfigError(
                f"query-based search needs a space whose cell is one operation per edge (the nb201 family or a "
                f"space declared like it); {name!r} is not one"
            )
        self.space = space
        self.num_edges, self.num_ops = next(iter(space.arch_shapes.values()))
        self.op_names = space.op_names

    @property
    def size(self) -> int:
        """Number of cells in the space."""
        return self.num_ops ** self.num_edges

    def to_cell(self, arch: Arch) -> Cell:
        return Cell.from_ops([self.op_names[i] for i in arch])

    def to_str(self, arch: Arch) -> str:
        """Canonical cell string (the benchmark's key)."""
        return str(self.to_cell(arch))

    def parse(self, text: str) -> Arch:
        """The choice vector of a cell string of this space (CellError when malformed)."""
        cell = self.space.parse(text)
        return tuple(self.op_names.index(op) for node in cell.nodes for op, _ in node)

    def one_hot(self, archs: Sequence[Arch]) -> torch.Tensor:
        """``(len(archs), edges * ops)`` float32 one-hot rows: the input of the GA-NAS models."""
        index = torch.tensor(archs, dtype=torch.long).reshape(len(archs), self.num_edges)
        out = torch.zeros(len(archs), self.num_edges, self.num_ops)
        out.scatter_(2, index.unsqueeze(-1), 1.0)
        return out.reshape(len(archs), -1)

    def random(self, rng: random.Random) -> Arch:
        return tuple(rng.randrange(self.num_ops) for _ in range(self.num_edges))

    def mutate(self, arch: Arch, rng: random.Random) -> Arch:
        """One edge set to another candidate (the REA mutation of the NAS-Bench-201 reference)."""
        edge = rng.randrange(self.num_edges)
        op = rng.choice([o for o in range(self.num_ops) if o != arch[edge]])
        return arch[:edge] + (op,) + arch[edge + 1:]
