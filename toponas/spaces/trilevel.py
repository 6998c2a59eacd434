"""The Trilevel space (``--space trilevel``): super-resolution searched over path, cell operation and kernel width.

Trilevel NAS (Wu et al., "Trilevel Neural Architecture Search for Efficient Single Image Super-Resolution",
2021) relaxes three levels at once in a hierarchical supernet: the network-level path, the cell-level
operations and the kernel widths, each with its own architecture parameters. Its full text is not available
to us: the three separately parameterized levels follow the paper's summary; everything below them is our
reading.

* Network: ``head`` conv 3x3 (image channels to ``C``), ``cells`` cells, ``tail`` conv 3x3 to
  ``image channels * scale^2`` and a pixel shuffle (ESPCN, Shi et al., CVPR 2016), plus the bicubic
  upscaling of the input (the network learns the residual over bicubic), and ``head + h_last`` before the tail
  (EDSR's long skip).
* Path level (group ``"path"``, a row per cell): cell ``n`` reads ``p_prev * h_{n-1} + p_prev2 * h_{n-2}``
  (``h_{-1} = h_{-2}`` = the head's output): a discrete path is a chain through some of the cells (those off
  the path are dropped from the discrete network).
* Cell level (group ``"cell"``, a row per edge, shared by every cell as in DARTS): a DAG of 3 nodes with edges
  ``i<-j``, each an operation kind of :data:`KINDS`; the cell returns ``x + node_3``. There is no ``none``
  (zero) candidate: with it every DARTS-family search we ran (darts-v1, drnas, beta-darts) chose ``none`` on
  most edges, a linear network (docs/restoration.md); the path level already drops whole cells.
* Kernel level (group ``"kernel"``, a row per edge, shared by every cell): the kernel width of the edge's
  convolution, :data:`KERNELS`.

An edge's candidate weights are the product of its two levels: ``w(kind_k) = p_cell(kind) * p_kernel(k)``
for the convolutions, ``w(skip_connect) = p_cell(skip_connect)``. All candidates
of a kind are ``relu -> conv(k) -> bn`` of one operation in several kernel widths: the simplifier's fusion
(exact) stacks them per kernel size and floating normalization (full) merges them into one padded kernel.
The ``scale`` is part of the architecture string (``x2;...``): a network is built for its scale.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .mixed import Mixing
from .primitives import BN, TRAIN_BN, OpSpec, build_chain
from .protocol import ExampleUnit, random_vertices
from .restore_unit import DagNet, DagUnit, copy_sliced, dag_edges, op_spec, output_conv

KINDS = ("conv", "dil_conv", "skip_connect")
KERNELS = (3, 5)
PATHS = ("prev", "prev2")
NODES = 3
EDGES = dag_edges(NODES)
EDGE_KEYS = [f"{i}<-{j}" for i, j in EDGES]
SCALES = (2, 3, 4)


def candidate_names() -> tuple[str, ...]:
    """The edge candidates: every convolution kind at every kernel width, then the kernel-less kinds."""
    names = []
    for kind in KINDS:
        if kind == "skip_connect":
            names.append(kind)
        else:
            names += [f"{kind}_{k}x{k}" for k in KERNELS]
    return tuple(names)


CANDIDATES = candidate_names()
#: (kind index, kernel index or None) of every candidate.
FACTORS = tuple((KINDS.index(c), None) if c == "skip_connect" else
                (KINDS.index(c.rsplit("_", 1)[0]), KERNELS.index(int(c.rsplit("_", 1)[1].split("x")[0])))
                for c in CANDIDATES)


class TrilevelArchError(ValueError):
    """A string that is not a Trilevel architecture."""


@dataclass(frozen=True)
class TrilevelArch:
    """``scale``, the path choice of every cell and the candidate of every cell edge.

    String form: ``x2;path=prev,prev2,prev;cell=conv_3x3,dil_conv_5x5,skip_connect,skip_connect,conv_5x5,conv_3x3``.
    """

    scale: int
    path: tuple[str, ...]
    cell: tuple[str, ...]

    def __str__(self) -> str:
        return f"x{self.scale};path={','.join(self.path)};cell={','.join(self.cell)}"

    @classmethod
    def parse(cls, text) -> TrilevelArch:
        if isinstance(text, TrilevelArch):
            return text
        text = str(text).strip()
        parts = text.split(";")
        hint = "expected x2;path=prev,...;cell=conv_3x3,... (6 edges)"
        if len(parts) != 3 or not parts[0].startswith("x") or not parts[1].startswith("path=") \
                or not parts[2].startswith("cell="):
            raise TrilevelArchError(f"{text!r} is not a trilevel architecture ({hint})")
        try:
            scale = int(parts[0][1:])
        except ValueError:
            raise TrilevelArchError(f"{text!r}: the scale {parts[0]!r} is not x2, x3 or x4") from None
        if scale not in SCALES:
            raise TrilevelArchError(f"{text!r}: the scale must be x2, x3 or x4")
        path = tuple(p.strip() for p in parts[1][5:].split(","))
        cell = tuple(c.strip() for c in parts[2][5:].split(","))
        if not path or any(p not in PATHS for p in path):
            raise TrilevelArchError(f"{text!r}: every path entry is one of {', '.join(PATHS)}")
        if len(cell) != len(EDGES) or any(c not in CANDIDATES for c in cell):
            raise TrilevelArchError(f"{text!r}: the cell has {len(EDGES)} edges, each one of {', '.join(CANDIDATES)}")
        return cls(scale, path, cell)

    def on_path(self) -> list[int]:
        """The cells the output depends on, in order (walking back from the last cell)."""
        used, n = [], len(self.path) - 1
        while n >= 0:
            used.append(n)
            n -= 1 if self.path[n] == "prev" else 2
        return used[::-1]


class TrilevelCell(DagUnit):
    """A searchable cell: edge ``k``'s weights ``p_cell[k, kind] * p_kernel[k, width]`` (see the module docstring)."""

    def __init__(self, channels: int, index: int) -> None:
        super().__init__([op_spec(c) for c in CANDIDATES], channels, NODES, residual=True)
        self.index = index

    def compose(self, mixing: Mixing):
        cell, kernel = mixing.weights["cell"], mixing.weights["kernel"]  # (edges, kinds), (edges, widths)
        cols = [cell[:, kind] * (kernel[:, k] if k is not None else 1.0) for kind, k in FACTORS]
        weights = torch.stack(cols, dim=1)  # (edges, candidates)
        if mixing.active is None:
            return weights, None
        kinds, widths = mixing.active["cell"], mixing.active["kernel"]
        active = [[c for c, (kind, k) in enumerate(FACTORS) if kind in kinds[e] and (k is None or k in widths[e])]
                  for e in range(len(EDGES))]
        return weights, active


def head_module(in_channels: int, channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, channels, 3, padding=1)


class Tail(nn.Module):
    """``conv 3x3 (C -> c * s^2) -> pixel shuffle(s)``."""

    def __init__(self, channels: int, in_channels: int, scale: int) -> None:
        super().__init__()
        self.conv = output_conv(nn.Conv2d(channels, in_channels * scale * scale, 3, padding=1))
        self.shuffle = nn.PixelShuffle(scale)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(h))


def upscale(x: torch.Tensor, scale: int) -> torch.Tensor:
    return F.interpolate(x, scale_factor=scale, mode="bicubic", align_corners=False)


class TrilevelSupernet(nn.Module):
    """``forward(x, mixing) -> bicubic(x) + tail(head + h_last)`` with mixed paths between the cells."""

    def __init__(self, channels: int, cells: int, in_channels: int = 3, scale: int = 2) -> None:
        super().__init__()
        self.channels, self.scale = channels, scale
        self.head = head_module(in_channels, channels)
        self.cells = nn.ModuleList(TrilevelCell(channels, n) for n in range(cells))
        self.tail = Tail(channels, in_channels, scale)

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        s = self.head(x)  # (B, C, H, W)
        hs = [s, s]  # h_{n-2}, h_{n-1}
        path = mixing.weights["path"]  # (cells, 2)
        for n, cell in enumerate(self.cells):
            inp = path[n, 0] * hs[-1] + path[n, 1] * hs[-2]
            hs.append(cell(inp, mixing))
        return upscale(x, self.scale) + self.tail(s + hs[-1])  # (B, c, sH, sW)


class TrilevelNetwork(nn.Module):
    """The discrete SR network of a :class:`TrilevelArch`: the cells on its path, in order (``cells[n]`` keeps
    the supernet's cell index ``n``; a cell off the path is an ``nn.Identity`` that never runs)."""

    def __init__(self, arch: TrilevelArch, channels: int, in_channels: int = 3, bn: BN = TRAIN_BN) -> None:
        super().__init__()
        self.arch = str(arch)
        self.scale = arch.scale
        self.head = head_module(in_channels, channels)
        self.used = arch.on_path()
        self.reads = [(n, 1 if arch.path[n] == "prev" else 2) for n in range(len(arch.path))]
        cells = []
        for n in range(len(arch.path)):
            if n in self.used:
                mods = [build_chain(op_spec(c, bn=bn), channels) for c in arch.cell]
                cells.append(DagNet(mods, NODES, residual=True))
            else:
                cells.append(nn.Identity())
        self.cells = nn.ModuleList(cells)
        self.tail = Tail(channels, in_channels, arch.scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.head(x)
        h = {-2: s, -1: s}
        for n in self.used:
            back = self.reads[n][1]
            h[n] = self.cells[n](h[n - back] if n - back >= 0 else s)
        return upscale(x, self.scale) + self.tail(s + h[self.used[-1]])


class TrilevelSpace:
    """The Trilevel space (see the module docstring): groups ``path (cells, 2)``, ``cell (6, 3)``, ``kernel (6, 2)``."""

    family = "restoration"
    tasks = ("sr",)
    partial_channels = False
    op_names = CANDIDATES

    def __init__(self, name: str = "trilevel", cells: int = 3, scale: int = 2) -> None:
        if scale not in SCALES:
            raise ValueError(f"trilevel: scale must be one of {SCALES}, got {scale}")
        self.name, self.cells, self.scale = name, cells, scale
        self.out_scale = scale
        self.specs: tuple[OpSpec, ...] = tuple(op_spec(c) for c in CANDIDATES)
        self.group_ops = {"path": PATHS, "cell": KINDS, "kernel": tuple(f"{k}x{k}" for k in KERNELS)}

    @property
    def default_cells(self) -> int:
        return self.cells

    @property
    def verify_cells(self) -> int:
        return self.cells

    def with_cells(self, cells: int) -> TrilevelSpace:
        return TrilevelSpace(self.name, cells, self.scale)

    def with_scale(self, scale: int) -> TrilevelSpace:
        return TrilevelSpace(self.name, self.cells, scale)

    @property
    def edge_keys(self) -> dict[str, list[str]]:
        return {"path": [f"c{n + 1}" for n in range(self.cells)], "cell": list(EDGE_KEYS), "kernel": list(EDGE_KEYS)}

    @property
    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        return {"path": (self.cells, len(PATHS)), "cell": (len(EDGES), len(KINDS)),
                "kernel": (len(EDGES), len(KERNELS))}

    def build_supernet(self, channels: int = 16, cells: int | None = None, num_classes: int = 10,
                       in_channels: int = 3) -> TrilevelSupernet:
        """The plain supernet at this space's scale (``num_classes`` is not used: the output is an image)."""
        if cells is not None and cells != self.cells:
            raise ValueError(f"this {self.name} space has {self.cells} cells, not {cells}; use with_cells({cells})")
        return TrilevelSupernet(channels, self.cells, in_channels, self.scale)

    def build_network(self, arch, channels: int = 16, cells: int | None = None, num_classes: int = 10,
                      in_channels: int = 3, bn: BN | None = None) -> TrilevelNetwork:
        """The discrete network of ``arch`` at the architecture's own scale (``cells`` is not used)."""
        return TrilevelNetwork(self.parse(arch), channels, in_channels, TRAIN_BN if bn is None else bn)

    def parse(self, text) -> TrilevelArch:
        return TrilevelArch.parse(text)

    def derive(self, arch: Mapping[str, torch.Tensor]) -> TrilevelArch:
        """Argmax per level: the path of every cell, the kind and the kernel width of every edge."""
        rows = {g: arch[g].detach().float().argmax(-1).tolist() for g in self.arch_shapes}
        return self._from_rows(rows)

    def _from_rows(self, rows: Mapping[str, list[int]]) -> TrilevelArch:
        cell = []
        for e in range(len(EDGES)):
            kind = KINDS[rows["cell"][e]]
            cell.append(kind if kind == "skip_connect" else f"{kind}_{KERNELS[rows['kernel'][e]]}x"
                        f"{KERNELS[rows['kernel'][e]]}")
        return TrilevelArch(self.scale, tuple(PATHS[p] for p in rows["path"]), tuple(cell))

    def choices(self, arch) -> dict[str, torch.Tensor]:
        arch = self.parse(arch)
        kinds, kernels = [], []
        for c in arch.cell:
            kind, k = FACTORS[CANDIDATES.index(c)]
            kinds.append(kind)
            kernels.append(0 if k is None else k)  # a kernel-less edge: any width (its weight ignores it)
        return {"path": torch.tensor([PATHS.index(p) for p in arch.path]), "cell": torch.tensor(kinds),
                "kernel": torch.tensor(kernels)}

    def one_hot(self, arch, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        sizes = {"path": len(PATHS), "cell": len(KINDS), "kernel": len(KERNELS)}
        return {g: F.one_hot(c, sizes[g]).to(dtype) for g, c in self.choices(arch).items()}

    def largest_genotype(self) -> TrilevelArch:
        return TrilevelArch(self.scale, ("prev",) * self.cells, (f"conv_{max(KERNELS)}x{max(KERNELS)}",) * len(EDGES))

    def verify_vertices(self, trials: int, gen: torch.Generator) -> list[tuple[str, TrilevelArch]]:
        """Every candidate on every edge (path through every cell), the path skipping, then random picks."""
        out = []
        for c in range(len(CANDIDATES)):
            kind, k = FACTORS[c]
            rows = {"path": [0] * self.cells, "cell": [kind] * len(EDGES), "kernel": [k or 0] * len(EDGES)}
            out.append((f"all {CANDIDATES[c]}", self._from_rows(rows)))
        out.append(("path prev2 everywhere", self._from_rows({"path": [1] * self.cells, "cell": [0] * len(EDGES),
                                                              "kernel": [1] * len(EDGES)})))
        return out + random_vertices(self.arch_shapes, trials, gen, self._from_rows)

    def load_vertex_weights(self, net: nn.Module, supernet: nn.Module, arch) -> None:
        """``cells.n.edges.k.*`` takes ``cells.n.edges.k.ops.c.*`` (``c`` the edge's candidate)."""
        arch = self.parse(arch)

        def rename(key: str) -> str:
            parts = key.split(".")
            if parts[0] == "cells" and parts[2] == "edges":
                c = CANDIDATES.index(arch.cell[int(parts[3])])
                return ".".join(parts[:4] + ["ops", str(c)] + parts[4:])
            return key

        copy_sliced(net, supernet, rename)

    def example_unit(self, channels: int):
        return ExampleUnit(TrilevelCell(channels, 0), 1, {"cell": (len(EDGES), len(KINDS)),
                                                          "kernel": (len(EDGES), len(KERNELS))})

    def output_shape(self, batch: int, size: int, in_channels: int = 3) -> tuple[int, ...]:
        """The supernet's output on ``(batch, in_channels, size, size)``: the image ``scale`` times larger."""
        return (batch, in_channels, size * self.scale, size * self.scale)

    def arch_flops(self, arch, channels: int = 16, cells: int | None = None, image_size: int = 32,
                   num_classes: int = 10, in_channels: int = 3) -> int:
        """Multiply-accumulates of the discrete network on one ``image_size`` square (low-resolution) input."""
        from ..training.cost import count_mult_adds

        return count_mult_adds(self.build_network(arch, channels, in_channels=in_channels),
                               (in_channels, image_size, image_size))

    def cost_table(self, *args, **kwargs):
        raise NotImplementedError("the trilevel space has no analytic FLOPs table (fp-nas' cost term)")


__all__ = ["TrilevelSpace", "TrilevelArch", "TrilevelArchError", "TrilevelSupernet", "TrilevelNetwork", "CANDIDATES",
           "KINDS", "KERNELS", "PATHS"]
