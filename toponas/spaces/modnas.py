"""The MoD-NAS space (``--space mod-nas``): densely connected search blocks for image denoising.

MoD-NAS (the mission's "model-guided denoising" search) searches a denoiser's width with a reusable
strategy and a densely connected search block that selects each layer's operation. The full text is not
available to us; this is our reading, stated so it can be checked:

* the network (as DnCNN, Zhang et al., IEEE TIP 2017, learns the residual): ``head`` conv 3x3 (image
  channels to ``C``) and ReLU, ``cells`` search blocks, ``tail`` conv 3x3 back to the image channels,
  output ``x + tail(h)``;
* a search block is a :class:`~toponas.spaces.restore_unit.DagUnit` of ``LAYERS`` layers, each layer reading
  every earlier feature of the block (dense connections, as DenseNet's concatenation: a conv of a
  concatenation is the sum of convs of its parts): node ``i = sum_{j<i} op_i(node_j)``, one operation
  ``op_i`` per layer (group ``"layer"``, a row per layer of every block) among :data:`MOD_OPS`, each edge
  with its own weights; the block returns its last layer;
* the width search (group ``"width"``, a row per block): the block's output keeps the first
  ``round(f * C)`` channels, ``f`` in :data:`WIDTHS`, a channel mask outside the units (FBNetV2-style;
  at a one-hot width the masked supernet equals the narrower network). The strategy is any of the
  gradient strategies (the "reusable strategy").

Every candidate is ``relu -> conv -> bn``: kernel widths 1/3/5 and a dilated 3x3, so the simplifier's
shared-prefix and fusion rules (exact) and floating normalization (full) apply as on NAS-Bench-201 edges.
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

MOD_OPS = ("conv_1x1", "conv_3x3", "conv_5x5", "dil_conv_3x3")
WIDTHS = (0.5, 0.75, 1.0)
LAYERS = 3


class ModArchError(ValueError):
    """An architecture string that is not a MoD-NAS architecture."""


@dataclass(frozen=True)
class ModArch:
    """Per block: the operation of each layer and the output width fraction.

    String form: ``conv_3x3,conv_5x5,dil_conv_3x3@0.75|conv_1x1,conv_3x3,conv_3x3@1`` (blocks by ``|``).
    """

    blocks: tuple[tuple[tuple[str, ...], float], ...]

    def __str__(self) -> str:
        return "|".join(",".join(ops) + f"@{w:g}" for ops, w in self.blocks)

    @classmethod
    def parse(cls, text: str | ModArch) -> ModArch:
        if isinstance(text, ModArch):
            return text
        text = str(text).strip()
        blocks = []
        for part in text.split("|"):
            if "@" not in part:
                raise ModArchError(f"{text!r} is not a mod-nas architecture (expected ops@width per block, e.g. "
                                   f"'conv_3x3,conv_5x5,conv_3x3@1')")
            ops_text, width_text = part.rsplit("@", 1)
            ops = tuple(o.strip() for o in ops_text.split(","))
            if len(ops) != LAYERS or any(o not in MOD_OPS for o in ops):
                raise ModArchError(f"mod-nas block {part!r}: {LAYERS} operations of {', '.join(MOD_OPS)} expected")
            try:
                width = float(width_text)
            except ValueError:
                raise ModArchError(f"mod-nas block {part!r}: the width {width_text!r} is not a number") from None
            if width not in WIDTHS:
                raise ModArchError(f"mod-nas block {part!r}: width {width:g} is not one of "
                                   f"{', '.join(f'{w:g}' for w in WIDTHS)}")
            blocks.append((ops, width))
        return cls(tuple(blocks))


def width_of(fraction: float, channels: int) -> int:
    return max(1, round(fraction * channels))


class ModBlock(DagUnit):
    """A search block: layer ``i``'s row of ``"layer"`` weights every edge into node ``i`` (its candidates run
    per edge); block ``b`` reads rows ``b * LAYERS ..``."""

    def __init__(self, channels: int, block: int) -> None:
        super().__init__([op_spec(o) for o in MOD_OPS], channels, LAYERS)
        self.block = block
        self.rows = [block * LAYERS + dst - 1 for dst, _ in self.edge_io]  # the layer row of every edge

    def compose(self, mixing: Mixing):
        weights = mixing.weights["layer"][self.rows]  # (edges, K)
        active = None if mixing.active is None else [mixing.active["layer"][r] for r in self.rows]
        return weights, active


def head_module(in_channels: int, channels: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1), nn.ReLU(inplace=False))


def tail_module(channels: int, in_channels: int) -> nn.Conv2d:
    return output_conv(nn.Conv2d(channels, in_channels, 3, padding=1))


class ModSupernet(nn.Module):
    """``forward(x, mixing) -> x + tail(h)`` over the search blocks, each output masked by its width row."""

    def __init__(self, channels: int, cells: int, in_channels: int = 3) -> None:
        super().__init__()
        self.channels, self.cells, self.in_channels = channels, cells, in_channels
        self.head = head_module(in_channels, channels)
        self.blocks = nn.ModuleList(ModBlock(channels, b) for b in range(cells))
        idx = torch.arange(channels)
        masks = torch.stack([(idx < width_of(w, channels)).float() for w in WIDTHS])
        self.register_buffer("masks", masks, persistent=False)  # (widths, C)
        self.tail = tail_module(channels, in_channels)

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        h = self.head(x)  # (B, C, H, W)
        for b, block in enumerate(self.blocks):
            mask = mixing.weights["width"][b] @ self.masks.to(mixing.weights["width"])  # (C,)
            h = block(h, mixing) * mask.view(1, -1, 1, 1).to(h.dtype)
        return x + self.tail(h)  # (B, image channels, H, W)


class ModNetwork(nn.Module):
    """The discrete denoiser of a :class:`ModArch`: edge ``i<-j`` of block ``b`` is layer ``i``'s operation
    from ``width(j)`` to ``width(i)`` channels (node 0: the previous block's width; the last layer: this
    block's; the others: ``C``)."""

    def __init__(self, arch: ModArch, channels: int, in_channels: int = 3, bn: BN = TRAIN_BN) -> None:
        super().__init__()
        self.arch = str(arch)
        self.head = head_module(in_channels, channels)
        blocks, c_prev = [], channels
        for ops, width in arch.blocks:
            c_out = width_of(width, channels)
            size = {0: c_prev, LAYERS: c_out}
            mods = []
            for dst, src in dag_edges(LAYERS):
                spec = op_spec(ops[dst - 1], out=size.get(dst, channels), bn=bn)
                mods.append(build_chain(spec, size.get(src, channels)))
            blocks.append(DagNet(mods, LAYERS))
            c_prev = c_out
        self.blocks = nn.ModuleList(blocks)
        self.tail = tail_module(c_prev, in_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.head(x)
        for block in self.blocks:
            h = block(h)
        return x + self.tail(h)


class ModNasSpace:
    """The MoD-NAS space (see the module docstring): groups ``layer (cells * LAYERS, 4)`` and ``width (cells, 3)``."""

    family = "restoration"
    tasks = ("denoise",)
    partial_channels = False
    op_names = MOD_OPS
    out_scale = 1

    def __init__(self, name: str = "mod-nas", cells: int | None = None) -> None:
        self.name = name
        self.cells = cells or 2
        self.specs: tuple[OpSpec, ...] = tuple(op_spec(o) for o in MOD_OPS)
        self.group_ops = {"layer": MOD_OPS, "width": tuple(f"{w:g}" for w in WIDTHS)}

    @property
    def default_cells(self) -> int:
        """Search blocks of this space (2 for the registered one; :meth:`with_cells` for another depth)."""
        return self.cells

    @property
    def verify_cells(self) -> int:
        return self.cells

    def with_cells(self, cells: int) -> ModNasSpace:
        """The same space with ``cells`` search blocks (the architecture groups' rows follow)."""
        return ModNasSpace(self.name, cells)

    @property
    def edge_keys(self) -> dict[str, list[str]]:
        return {"layer": [f"b{b + 1}.l{i + 1}" for b in range(self.cells) for i in range(LAYERS)],
                "width": [f"b{b + 1}" for b in range(self.cells)]}

    @property
    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        return {"layer": (self.cells * LAYERS, len(MOD_OPS)), "width": (self.cells, len(WIDTHS))}

    def build_supernet(self, channels: int = 16, cells: int | None = None, num_classes: int = 10,
                       in_channels: int = 3) -> ModSupernet:
        """The plain supernet (``num_classes`` is not used: the output is an image); ``cells`` must be the
        space's (:meth:`with_cells` makes a space of another depth: its architecture groups follow)."""
        if cells is not None and cells != self.cells:
            raise ValueError(f"this {self.name} space has {self.cells} blocks, not {cells}; use with_cells({cells})")
        return ModSupernet(channels, self.cells, in_channels)

    def build_network(self, arch: ModArch | str, channels: int = 16, cells: int | None = None,
                      num_classes: int = 10, in_channels: int = 3, bn: BN | None = None) -> ModNetwork:
        """The discrete network of ``arch`` (its depth is the architecture's; ``cells`` is not used)."""
        return ModNetwork(self.parse(arch), channels, in_channels, TRAIN_BN if bn is None else bn)

    def parse(self, text) -> ModArch:
        return ModArch.parse(text)

    def derive(self, arch: Mapping[str, torch.Tensor]) -> ModArch:
        """Argmax per layer and per block width."""
        rows = {g: arch[g].detach().float().argmax(-1).tolist() for g in self.arch_shapes}
        return self._from_rows(rows)

    def _from_rows(self, rows: Mapping[str, list[int]]) -> ModArch:
        cells = len(rows["width"])
        return ModArch(tuple((tuple(MOD_OPS[rows["layer"][b * LAYERS + i]] for i in range(LAYERS)),
                              WIDTHS[rows["width"][b]]) for b in range(cells)))

    def choices(self, arch) -> dict[str, torch.Tensor]:
        arch = self.parse(arch)
        return {"layer": torch.tensor([MOD_OPS.index(o) for ops, _ in arch.blocks for o in ops]),
                "width": torch.tensor([WIDTHS.index(w) for _, w in arch.blocks])}

    def one_hot(self, arch, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        return {g: F.one_hot(c, self.arch_shapes_of(arch)[g][1]).to(dtype) for g, c in self.choices(arch).items()}

    def arch_shapes_of(self, arch) -> dict[str, tuple[int, int]]:
        return self.with_cells(len(self.parse(arch).blocks)).arch_shapes

    def largest_genotype(self) -> ModArch:
        return ModArch(tuple((("conv_5x5",) * LAYERS, 1.0) for _ in range(self.cells)))

    def verify_vertices(self, trials: int, gen: torch.Generator) -> list[tuple[str, ModArch]]:
        """Every operation everywhere (full width), every narrower width, then random picks per row."""
        out = []
        for o in range(len(MOD_OPS)):
            out.append((f"all {MOD_OPS[o]}", self._from_rows({"layer": [o] * (self.cells * LAYERS),
                                                               "width": [len(WIDTHS) - 1] * self.cells})))
        for w in range(len(WIDTHS) - 1):
            out.append((f"all width {WIDTHS[w]:g}", self._from_rows({"layer": [1] * (self.cells * LAYERS),
                                                                     "width": [w] * self.cells})))
        return out + random_vertices(self.arch_shapes, trials, gen, self._from_rows)

    def load_vertex_weights(self, net: nn.Module, supernet: nn.Module, arch) -> None:
        """``blocks.b.edges.k.*`` takes ``blocks.b.edges.k.ops.c.*`` (``c`` the layer's choice), cut to width."""
        arch = self.parse(arch)

        def rename(key: str) -> str:
            parts = key.split(".")
            if parts[0] == "blocks" and parts[2] == "edges":
                b, k = int(parts[1]), int(parts[3])
                dst = dag_edges(LAYERS)[k][0]
                c = MOD_OPS.index(arch.blocks[b][0][dst - 1])
                return ".".join(parts[:4] + ["ops", str(c)] + parts[4:])
            return key

        copy_sliced(net, supernet, rename)

    def example_unit(self, channels: int):
        return ExampleUnit(ModBlock(channels, 0), 1, {"layer": (LAYERS, len(MOD_OPS)), "width": (1, len(WIDTHS))})

    def output_shape(self, batch: int, size: int, in_channels: int = 3) -> tuple[int, ...]:
        """The supernet's output on ``(batch, in_channels, size, size)``: an image of the same size."""
        return (batch, in_channels, size, size)

    def arch_flops(self, arch, channels: int = 16, cells: int | None = None, image_size: int = 32,
                   num_classes: int = 10, in_channels: int = 3) -> int:
        """Multiply-accumulates of the discrete network on one ``image_size`` square image."""
        from ..training.cost import count_mult_adds

        return count_mult_adds(self.build_network(arch, channels, in_channels=in_channels),
                               (in_channels, image_size, image_size))

    def cost_table(self, *args, **kwargs):
        raise NotImplementedError("the mod-nas space has no analytic FLOPs table (fp-nas' cost term)")


__all__ = ["ModNasSpace", "ModArch", "ModArchError", "ModSupernet", "ModNetwork", "MOD_OPS", "WIDTHS", "LAYERS"]
