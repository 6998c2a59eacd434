"""The mobile (MBConv) macro space: the plain supernet, the discrete network and the space object.

An FBNet / ProxylessNAS-style macro space (Wu et al., "FBNet", CVPR 2019; Wan et al., "FBNetV2",
CVPR 2020; Cai et al., "ProxylessNAS", ICLR 2019) declared as data (:class:`MobileSpec`): a 3x3
stem, stages of inverted-residual blocks (:mod:`toponas.spaces.mbconv`), a head (1x1 conv, global
pooling, linear classifier). Three architecture groups, each row a categorical:

* ``"first"``: the first block of each stage (stride, channel change): the MBConv choices ``kKeE``;
* ``"block"``: every other block, stage by stage: the MBConv choices and ``skip`` (depth search);
* ``"width"``: each stage's width, channel masks over its widest setting (FBNetV2).

The depth is the stage table's (``cells`` does not change the supernet; declare another
:class:`MobileSpec` for a smaller space). ``channels`` scales every width by ``channels / 16``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .mbconv import MBConvBlock, MixedBlock, spec_candidates
from .mixed import Mixing
from .mobile_arch import (
    SKIP,
    MobileArch,
    MobileArchError,
    MobileSpaceError,
    MobileSpec,
    SizedStage,
    StageArch,
    block_name,
)
from .primitives import BN, SEARCH_BN, TRAIN_BN, OpSpec, with_bn
from .protocol import ExampleUnit, random_vertices

GROUPS = ("first", "block", "width")


@dataclass(frozen=True)
class Slot:
    """One block position of the macro network: where it reads, what it writes, its mixing row."""

    stage: int  # index of its stage
    position: int  # 0 for the first block of the stage
    c_in: int  # channels of the input at full width
    c_out: int
    stride: int
    in_stage: int | None  # stage whose width the input has (None: the stem, fixed)
    group: str  # "first" or "block"
    index: int  # row in its group

    @property
    def residual(self) -> bool:
        return self.position > 0


def layout(spec: MobileSpec, channels: int | None = None) -> tuple[int, list[SizedStage], list[Slot], int]:
    """``(stem channels, sized stages, block slots, head channels)`` at ``channels`` (see :class:`Slot`)."""
    stages = spec.sized(channels)
    channels = spec.base if channels is None else channels
    stem = spec.scale(spec.stem, channels)
    slots, c_prev, rows = [], stem, {"first": 0, "block": 0}
    for s, st in enumerate(stages):
        for b in range(st.blocks):
            group = "first" if b == 0 else "block"
            slots.append(Slot(s, b, c_prev if b == 0 else st.channels, st.channels, st.stride if b == 0 else 1,
                              (s - 1 if s > 0 else None) if b == 0 else s, group, rows[group]))
            rows[group] += 1
        c_prev = st.channels
    return stem, stages, slots, spec.scale(spec.head, channels)


def stem_module(in_channels: int, channels: int) -> nn.Sequential:
    """``conv 3x3 -> bn -> relu`` (an ordinary BN, in the supernet too)."""
    return nn.Sequential(nn.Conv2d(in_channels, channels, 3, padding=1, bias=False), nn.BatchNorm2d(channels),
                         nn.ReLU(inplace=False))


def head_module(c_in: int, channels: int) -> nn.Sequential:
    """``conv 1x1 -> bn -> relu`` before the pooling and the classifier."""
    return nn.Sequential(nn.Conv2d(c_in, channels, 1, bias=False), nn.BatchNorm2d(channels), nn.ReLU(inplace=False))


class MobileSupernet(nn.Module):
    """The plain mobile supernet (what ``--topo off`` runs); ``forward(x, mixing)`` returns logits.

    ``stem``, ``blocks`` (a :class:`~toponas.spaces.mbconv.MixedBlock` per slot, in order),
    ``head`` and ``classifier``. ``blocks[b]`` reads row ``blocks[b].index`` of group
    ``blocks[b].group`` and the ``"width"`` rows of its input's and output's stages; a replacement
    block must keep that forward signature.
    """

    def __init__(self, spec: MobileSpec, channels: int | None = None, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        super().__init__()
        self.spec = spec
        self.channels = spec.base if channels is None else channels
        stem, stages, slots, head = layout(spec, channels)
        self.stem = stem_module(in_channels, stem)
        blocks = []
        for slot in slots:
            specs = spec_candidates(spec, slot.c_in, slot.c_out, slot.stride, slot.residual)
            blocks.append(MixedBlock(specs, slot.c_in, slot.c_out, slot.stride, slot.residual, slot.group,
                                     slot.index, slot.stage, stages[slot.stage].widths))
        self.blocks = nn.ModuleList(blocks)
        self.head = head_module(stages[-1].channels, head)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self.spec.check_image(x.shape[-2], x.shape[-1])
        h = self.stem(x)  # (B, C_stem, H, W)
        for block in self.blocks:
            h = block(h, mixing)  # (B, C_stage, H', W'), channels beyond the stage's width masked
        h = self.head(h)  # (B, C_head, H_last, W_last)
        return self.classifier(h.mean(dim=(2, 3)))  # (B, num_classes)


class MobileNetwork(nn.Module):
    """The discrete network of a :class:`MobileArch`, built from the original operations.

    ``blocks[b]`` is the :class:`~toponas.spaces.mbconv.MBConvBlock` of slot ``b`` (as the supernet's
    ``blocks[b]``; a ``skip``, or a block the architecture does not list, is an ``nn.Identity``), at
    the stage's chosen width. Expansions are relative to the input's full width (its stage's at
    width 1): the width choice narrows the stage's outputs and the convs that read them.
    """

    def __init__(self, arch: MobileArch, spec: MobileSpec, channels: int | None = None, num_classes: int = 10,
                 in_channels: int = 3, bn: BN = TRAIN_BN) -> None:
        super().__init__()
        self.spec = spec
        self.arch = str(arch)
        stem, stages, slots, head = layout(spec, channels)
        self.stem = stem_module(in_channels, stem)
        blocks, c_prev = [], stem
        for slot, name in zip(slots, arch_blocks(arch, slots)):
            if name == SKIP:
                blocks.append(nn.Identity())
                continue
            c_out = stages[slot.stage].widths[arch.width_index(spec, slot.stage)]
            specs = spec_candidates(spec, slot.c_in, c_out, slot.stride, slot.residual)
            cand = next(c for c in specs if c.name == name)
            blocks.append(MBConvBlock(with_bn(cand, bn), c_prev, slot.residual))
            c_prev = c_out
        self.blocks = nn.ModuleList(blocks)
        self.head = head_module(c_prev, head)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self.spec.check_image(x.shape[-2], x.shape[-1])
        h = self.stem(x)  # (B, C_stem, H, W)
        for block in self.blocks:
            h = block(h)
        return self.classifier(self.head(h).mean(dim=(2, 3)))  # (B, num_classes)


def arch_blocks(arch: MobileArch, slots: list[Slot]) -> list[str]:
    """The choice of every slot (``skip`` where a stage of ``arch`` lists fewer blocks)."""
    out = []
    for slot in slots:
        blocks = arch.stages[slot.stage].blocks
        out.append(blocks[slot.position] if slot.position < len(blocks) else SKIP)
    return out


@torch.no_grad()
def copy_weights_from_supernet(net: MobileNetwork, supernet: nn.Module, arch: MobileArch | str) -> None:
    """Copy the supernet's weights of ``arch`` into ``net`` (same spec, channels, classes), by state-dict key.

    ``blocks.{b}.op.{j}.*`` of the network takes ``blocks.{b}.edges.0.ops.{c}.{j}.*`` of the supernet
    (``c`` the chosen candidate of slot ``b``), every tensor cut to the network's shape (first entries:
    the chosen widths keep the first channels); the stem, head and classifier copy by their own keys.
    Works on a simplified supernet too (the simplifier keeps the modules and keys). With
    ``bn=SEARCH_BN`` the network then equals the supernet at :meth:`MobileSpace.one_hot` weights.
    """
    spec = supernet.spec
    arch = MobileArch.parse(str(arch), spec)
    _, _, slots, _ = layout(spec, supernet.channels)
    names = {}
    for b, (slot, name) in enumerate(zip(slots, arch_blocks(arch, slots))):
        if name != SKIP:
            cands = spec_candidates(spec, 1, 1, slot.stride, slot.residual)
            names[f"blocks.{b}.op."] = f"blocks.{b}.edges.0.ops.{[c.name for c in cands].index(name)}."
    source = supernet.state_dict()
    for key, t in net.state_dict().items():
        src = key
        for prefix, sup_prefix in names.items():
            if key.startswith(prefix):
                src = sup_prefix + key[len(prefix):]
                break
        if src not in source:
            continue  # e.g. affine BN parameters of a retraining network copied from a search BN
        value = source[src]
        if t.dim() != value.dim() or any(a > b for a, b in zip(t.shape, value.shape)):
            raise ValueError(f"{key}: the network's {tuple(t.shape)} does not fit in the supernet's "
                             f"{tuple(value.shape)}")
        t.copy_(value[tuple(slice(0, n) for n in t.shape)] if t.dim() else value)


class MobileSpace:
    """The mobile space (``--space mobile``): see the module docstring.

    ``group_ops[g]`` names the candidates of group ``g``; ``op_names`` those of ``"block"`` (the
    MBConv choices and ``skip``). ``arch_shapes``: ``first (stages, 6)``, ``block (droppable blocks,
    7)``, ``width (stages, 3)`` for the default table.
    """

    groups = GROUPS
    family = "mobile"

    def __init__(self, name: str = "mobile", spec: MobileSpec | None = None) -> None:
        self.name = name
        self.spec = spec or MobileSpec()
        _, stages, slots, _ = layout(self.spec)
        self.slots = slots
        mb = self.spec.mbconv_names
        self.group_ops: dict[str, tuple[str, ...]] = {"first": mb, "block": (*mb, SKIP),
                                                      "width": self.spec.width_names}
        self.op_names: tuple[str, ...] = self.group_ops["block"]
        wide = self.spec.sized()[0]  # a typical droppable block: the first stage's, at the base width
        self.specs: tuple[OpSpec, ...] = spec_candidates(self.spec, wide.channels,
                                                          wide.channels, 1, True)
        self._keys = {"first": [], "block": [], "width": [s.name for s in self.spec.stages]}
        for slot in slots:
            self._keys[slot.group].append(f"{stages[slot.stage].name}.b{slot.position + 1}")

    #: Partial-channel edges (PC-DARTS, progressive DrNAS) need C_in == C_out: not for MBConv blocks.
    partial_channels = False

    @property
    def default_cells(self) -> int:
        """Blocks of the deepest stage (the depth is the table's; ``cells`` does not change it)."""
        return self.spec.max_blocks

    @property
    def edge_keys(self) -> dict[str, list[str]]:
        """Row names per group: ``s2.b1`` (block 1 of stage s2), ``s2`` (its width)."""
        return {g: list(k) for g, k in self._keys.items() if k}

    @property
    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        return {g: (len(k), len(self.group_ops[g])) for g, k in self._keys.items() if k}

    @property
    def num_architectures(self) -> int:
        """Distinct architecture strings (width x first blocks x other blocks)."""
        n = 1
        for rows, cands in self.arch_shapes.values():
            n *= cands ** rows
        return n

    def build_supernet(self, channels: int = 16, cells: int | None = None, num_classes: int = 10,
                       in_channels: int = 3) -> MobileSupernet:
        """The plain supernet. ``cells``: ignored unless it differs from the table's depth (an error)."""
        if cells is not None and cells != self.default_cells:
            raise MobileSpaceError(f"the {self.name} space's depth is its stage table (up to {self.default_cells} "
                                   f"blocks per stage); cells={cells} is not supported, leave --cells out")
        return MobileSupernet(self.spec, channels, num_classes, in_channels)

    def parse(self, text: str | MobileArch) -> MobileArch:
        """Parse and validate an architecture string of this space."""
        return MobileArch.parse(text, self.spec)

    def validate(self, arch: MobileArch) -> MobileArch:
        return arch.validate(self.spec)

    def derive(self, arch: Mapping[str, torch.Tensor]) -> MobileArch:
        """Argmax per row of every group (``-inf`` entries never win)."""
        for g, shape in self.arch_shapes.items():
            if g not in arch or tuple(arch[g].shape) != shape:
                got = None if g not in arch else tuple(arch[g].shape)
                raise ValueError(f"derive: group {g!r} needs parameters of shape {shape}, got {got}")
        best = {g: arch[g].detach().float().argmax(dim=-1).tolist() for g in self.arch_shapes}
        names = self.group_ops
        stages = []
        for s, st in enumerate(self.spec.stages):
            blocks = [names[slot.group][best[slot.group][slot.index]] for slot in self.slots if slot.stage == s]
            stages.append(StageArch(st.name, self.spec.widths[best["width"][s]], tuple(blocks)))
        return MobileArch(tuple(stages))

    def choices(self, arch: MobileArch | str) -> dict[str, torch.Tensor]:
        """Candidate index per row of every group (int64); missing trailing blocks are ``skip``."""
        arch = self.parse(arch)
        out = {g: torch.zeros(rows, dtype=torch.int64) for g, (rows, _) in self.arch_shapes.items()}
        for slot, name in zip(self.slots, arch_blocks(arch, self.slots)):
            out[slot.group][slot.index] = self.group_ops[slot.group].index(name)
        out["width"] = torch.tensor([arch.width_index(self.spec, s) for s in range(len(arch.stages))])
        return out

    def one_hot(self, arch: MobileArch | str, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Mixing weights of ``arch``: one-hot rows (the supernet then computes its discrete network)."""
        return {g: F.one_hot(c, self.arch_shapes[g][1]).to(dtype) for g, c in self.choices(arch).items()}

    def largest_genotype(self) -> MobileArch:
        """Every block the largest MBConv (largest kernel and expansion), every stage at its widest."""
        best = block_name(max(self.spec.kernels), max(self.spec.expansions), max(self.spec.radixes))
        return MobileArch(tuple(StageArch(s.name, max(self.spec.widths), (best,) * s.blocks)
                                for s in self.spec.stages))

    def build_network(self, arch: MobileArch | str, channels: int = 16, cells: int | None = None,
                      num_classes: int = 10, in_channels: int = 3, bn: BN | None = None) -> MobileNetwork:
        """The discrete network of ``arch`` (its depth is the architecture's; ``cells`` is not used).

        ``bn`` defaults to affine BN with running statistics (retraining); ``SEARCH_BN`` gives the
        search form that :func:`copy_weights_from_supernet` makes equal to the supernet at a vertex.
        """
        arch = self.parse(arch)
        return MobileNetwork(arch, self.spec, channels, num_classes, in_channels, TRAIN_BN if bn is None else bn)

    # -- the space protocol (toponas.spaces.protocol): what verify, explain, profile and FLOPs need -------
    @property
    def verify_cells(self) -> int:
        return self.default_cells

    def verify_vertices(self, trials: int, gen: torch.Generator) -> list[tuple[str, MobileArch]]:
        """Every MBConv choice everywhere (widest), every narrower width, every droppable block skipped, then
        ``trials`` random picks per row."""
        out, widest = [], len(self.spec.widths) - 1
        uniform = [(name, widest) for name in self.spec.mbconv_names]
        uniform += [(self.spec.mbconv_names[0], w) for w in range(widest)]
        for name, w in uniform:
            pick = {"first": self.group_ops["first"].index(name), "block": self.group_ops["block"].index(name),
                    "width": w}
            out.append((f"all {name} at {self.spec.width_names[w]}",
                        self._from_rows({g: [pick[g]] * rows for g, (rows, _) in self.arch_shapes.items()})))
        rows = {g: [self.group_ops[g].index(SKIP)] * r if g == "block" else [0] * r
                for g, (r, _) in self.arch_shapes.items()}
        out.append(("every droppable block skipped", self._from_rows(rows)))
        return out + random_vertices(self.arch_shapes, trials, gen, self._from_rows)

    def _from_rows(self, rows: Mapping[str, list[int]]) -> MobileArch:
        return self.derive({g: F.one_hot(torch.tensor(rows[g]), k).float() for g, (_, k) in self.arch_shapes.items()})

    def load_vertex_weights(self, net: nn.Module, supernet: nn.Module, arch: MobileArch | str) -> None:
        """:func:`copy_weights_from_supernet` (by state-dict key, so a simplified supernet works too)."""
        copy_weights_from_supernet(net, supernet, arch)

    def example_unit(self, channels: int):
        """A droppable block (stride 1, ``channels`` in and out) for ``explain``, reading row 0 of ``block``."""
        widths = tuple(max(1, math.floor(r * channels + 1e-9)) for r in self.spec.widths)
        specs = spec_candidates(self.spec, channels, channels, 1, True)
        block = MixedBlock(specs, channels, channels, 1, True, "block", 0, 0, widths)
        return ExampleUnit(block, 1, {"block": (1, len(specs)), "width": (1, len(widths))})

    def cost_table(self, channels: int = 16, cells: int | None = None, image_size: int = 32, num_classes: int = 10,
                   in_channels: int = 3):
        """The analytic FLOPs of any choices (:class:`~toponas.spaces.mobile_cost.MobileCost`; ``cells`` unused)."""
        from .mobile_cost import MobileCost

        return MobileCost(self, channels, image_size, num_classes, in_channels)

    def arch_flops(self, arch: MobileArch | str, channels: int = 16, cells: int | None = None, image_size: int = 32,
                   num_classes: int = 10, in_channels: int = 3) -> int:
        """FLOPs (multiply-accumulates) of the discrete network of ``arch`` on one image."""
        return self.cost_table(channels, cells, image_size, num_classes, in_channels).arch(arch)


__all__ = ["MobileSpace", "MobileSupernet", "MobileNetwork", "MobileArch", "MobileArchError", "MobileSpaceError",
           "MobileSpec", "copy_weights_from_supernet", "layout", "SEARCH_BN"]
