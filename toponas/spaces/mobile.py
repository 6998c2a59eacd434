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

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .mbconv import MBConvBlock, MixedBlock, block_candidates
from .mixed import Mixing
from .mobile_arch import (
    SKIP,
    MobileArch,
    MobileArchError,
    MobileSpaceError,
    MobileSpec,
    SizedStage,
    StageArch,
)
from .primitives import BN, SEARCH_BN, TRAIN_BN, OpSpec, with_bn

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
        stem, stages, slots, head = layout(spec, channels)
        self.stem = stem_module(in_channels, stem)
        blocks = []
        for slot in slots:
            specs = block_candidates(spec.kernels, spec.expansions, slot.stride, slot.residual)
            in_widths = None if slot.in_stage is None else stages[slot.in_stage].widths
            blocks.append(MixedBlock(specs, slot.c_in, slot.c_out, slot.stride, slot.residual, slot.group,
                                     slot.index, slot.stage, slot.in_stage, in_widths, stages[slot.stage].widths))
        self.blocks = nn.ModuleList(blocks)
        self.head = head_module(stages[-1].channels, head)
        self.classifier = nn.Linear(head, num_classes)

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        if not torch.jit.is_scripting() and not torch.jit.is_tracing():
            self.spec.check_image(x.shape[-2], x.shape[-1])
        widths = mixing.weights["width"]  # (stages, width choices)
        h = self.stem(x)  # (B, C_stem, H, W)
        for block in self.blocks:
            w, active = mixing.edge(block.group, block.index)
            in_width = None if block.in_stage is None else widths[block.in_stage]
            h = block(h, w, active, in_width, widths[block.stage])  # (B, C_stage, H', W')
        h = self.head(h)  # (B, C_head, H_last, W_last)
        return self.classifier(h.mean(dim=(2, 3)))  # (B, num_classes)


class MobileNetwork(nn.Module):
    """The discrete network of a :class:`MobileArch`, built from the original operations.

    ``blocks[b]`` is the :class:`~toponas.spaces.mbconv.MBConvBlock` of the ``b``-th block of the
    architecture (stage by stage; a ``skip`` is an ``nn.Identity``), at the stage's chosen width.
    """

    def __init__(self, arch: MobileArch, spec: MobileSpec, channels: int | None = None, num_classes: int = 10,
                 in_channels: int = 3, bn: BN = TRAIN_BN) -> None:
        super().__init__()
        self.spec = spec
        self.arch = str(arch)
        stem, stages, _, head = layout(spec, channels)
        self.stem = stem_module(in_channels, stem)
        blocks, c_prev = [], stem
        for s, (st, choice) in enumerate(zip(stages, arch.stages)):
            c_out = st.widths[arch.width_index(spec, s)]
            for b, name in enumerate(choice.blocks):
                if name == SKIP:
                    blocks.append(nn.Identity())
                    continue
                stride = st.stride if b == 0 else 1
                cand = {c.name: c for c in block_candidates(spec.kernels, spec.expansions, stride, b > 0)}[name]
                blocks.append(MBConvBlock(with_bn(cand, bn), c_prev, c_out, residual=b > 0))
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


@torch.no_grad()
def copy_weights_from_supernet(net: MobileNetwork, supernet: MobileSupernet, arch: MobileArch | str) -> None:
    """Copy the supernet's weights of ``arch`` into ``net`` (same spec, channels, classes).

    The stem and the classifier copy whole; block ``b``'s chain takes its candidate's tensors, sliced
    to the chosen widths (output channels first ``c'_out``, input channels first ``c'_in``, expanded
    channels first ``e * c'_in``), the head conv its first ``c'_last`` input channels. With
    ``bn=SEARCH_BN`` the network then equals the supernet at :meth:`MobileSpace.one_hot` weights.
    """
    arch = MobileArch.parse(str(arch), supernet.spec)
    net.stem.load_state_dict(supernet.stem.state_dict())
    net.classifier.load_state_dict(supernet.classifier.state_dict())
    k = 0
    mixed = list(supernet.blocks)
    for s, stage in enumerate(arch.stages):
        rows = [m for m in mixed if m.stage == s]
        for b, name in enumerate(stage.blocks):
            target = net.blocks[k]
            k += 1
            if name == SKIP:
                continue
            source = rows[b]
            cand = [c.name for c in source.specs].index(name)
            _copy_sliced(target.op, source.ops[cand])
    _copy_sliced(net.head, supernet.head)


def _copy_sliced(dst: nn.Module, src: nn.Module) -> None:
    """Copy every tensor of ``src`` into ``dst`` by key, each dimension cut to ``dst``'s size (first entries)."""
    target = dst.state_dict()
    for key, value in src.state_dict().items():
        if key in target:
            t = target[key]
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
    #: --topo modes this space runs; the simplifier has no rules for MBConv blocks yet, so only
    #: ``off`` (the plain supernet): other modes fall back to it with a warning (see the search loop).
    topo_modes = ("off",)

    def __init__(self, name: str = "mobile", spec: MobileSpec | None = None) -> None:
        self.name = name
        self.spec = spec or MobileSpec()
        _, stages, slots, _ = layout(self.spec)
        self.slots = slots
        mb = self.spec.mbconv_names
        self.group_ops: dict[str, tuple[str, ...]] = {"first": mb, "block": (*mb, SKIP),
                                                      "width": self.spec.width_names}
        self.op_names: tuple[str, ...] = self.group_ops["block"]
        self.specs: tuple[OpSpec, ...] = block_candidates(self.spec.kernels, self.spec.expansions, 1, True)
        self._keys = {"first": [], "block": [], "width": [s.name for s in self.spec.stages]}
        for slot in slots:
            self._keys[slot.group].append(f"{stages[slot.stage].name}.b{slot.position + 1}")

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
        for slot in self.slots:
            blocks = arch.stages[slot.stage].blocks
            name = blocks[slot.position] if slot.position < len(blocks) else SKIP
            out[slot.group][slot.index] = self.group_ops[slot.group].index(name)
        out["width"] = torch.tensor([arch.width_index(self.spec, s) for s in range(len(arch.stages))])
        return out

    def one_hot(self, arch: MobileArch | str, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Mixing weights of ``arch``: one-hot rows (the supernet then computes its discrete network)."""
        return {g: F.one_hot(c, self.arch_shapes[g][1]).to(dtype) for g, c in self.choices(arch).items()}

    def largest_genotype(self) -> MobileArch:
        """Every block the largest MBConv (largest kernel and expansion), every stage at its widest."""
        best = f"k{max(self.spec.kernels)}e{max(self.spec.expansions)}"
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

    def cost_table(self, channels: int = 16, cells: int | None = None, image_size: int = 32, num_classes: int = 10,
                   in_channels: int = 3):
        """The analytic FLOPs of any choices (:class:`~toponas.spaces.mobile_cost.MobileCost`)."""
        from .mobile_cost import MobileCost

        return MobileCost(self, channels, image_size, num_classes, in_channels)


__all__ = ["MobileSpace", "MobileSupernet", "MobileNetwork", "MobileArch", "MobileArchError", "MobileSpaceError",
           "MobileSpec", "copy_weights_from_supernet", "layout", "SEARCH_BN"]
