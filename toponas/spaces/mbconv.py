"""Inverted-residual (MBConv) candidates as primitive chains, the plain mixed block and the discrete block.

An MBConv branch (Sandler et al., "MobileNetV2", CVPR 2018; the FBNet / ProxylessNAS search blocks)::

    conv 1x1 (C_in -> e * C) -> bn -> relu -> kxk depthwise (stride s) -> bn -> relu -> conv 1x1 (-> C_out) -> bn

``C`` is the full width of the block's input (its stage's channels at width 1, or the stem's), so a
narrower input (width search) changes only the expand conv's input channels. A block whose shapes
match (stride 1, inside a stage) adds its input: ``y = x + mask * branch``; there ``skip`` is the
branch ``Zero`` (``y = x``: the block is dropped). The first block of a stage has no residual and no
``skip``. The width search (FBNetV2) is a channel mask on the block's output, outside the candidates:
``mask = sum_j w_j mask_j`` over the stage's width choices (``mask_j`` keeps the first ``c_j`` channels),
one mask per stage and forward. At a one-hot width the masked block equals the narrower discrete block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .mixed import MixedEdge, Mixing
from .primitives import BN, SEARCH_BN, Conv, OpSpec, ReLU, Zero, build_chain
from .protocol import UnitCall
from .split_attention import SplitAttention


def mbconv_chain(kernel: int, hidden: int, c_out: int, stride: int = 1, bn: BN = SEARCH_BN) -> tuple:
    """The primitives of an MBConv branch with ``hidden`` expanded channels (see the module docstring)."""
    return (Conv(1, out=hidden), bn, ReLU(), Conv(kernel, 1, True, stride), bn, ReLU(), Conv(1, out=c_out), bn)


def sa_chain(kernel: int, radix: int, hidden: int, c_out: int, stride: int = 1, bn: BN = SEARCH_BN) -> tuple:
    """An MBConv branch whose depthwise conv (and its bn, relu) is a radix-``radix`` split attention."""
    return (Conv(1, out=hidden), bn, ReLU(), SplitAttention(kernel, radix, stride), Conv(1, out=c_out), bn)


def block_candidates(kernels: Sequence[int], expansions: Sequence[int], c_full: int, c_out: int, stride: int,
                     residual: bool, radixes: Sequence[int] = (1,)) -> tuple[OpSpec, ...]:
    """A block's candidates: every ``kKeE`` branch (``E * c_full`` hidden channels; kernel-major, then
    expansion, then radix: ``kKeEsR`` for a split attention of radix ``R > 1``), then ``skip`` (the
    zero branch) if ``residual``."""
    specs = [OpSpec(f"k{k}e{e}", mbconv_chain(k, e * c_full, c_out, stride)) if r == 1 else
             OpSpec(f"k{k}e{e}s{r}", sa_chain(k, r, e * c_full, c_out, stride))
             for k in kernels for e in expansions for r in radixes]
    if residual:
        specs.append(OpSpec("skip", (Zero(),)))
    return tuple(specs)


def width_masks(widths: Sequence[int], channels: int) -> torch.Tensor:
    """``(choices, channels)``: row ``j`` keeps the first ``widths[j]`` channels (ones, then zeros)."""
    idx = torch.arange(channels)
    return torch.stack([(idx < w).float() for w in widths])


class MixedBlock(nn.Module):
    """A searchable block of the mobile supernet; a :class:`~toponas.spaces.protocol.SearchUnit`.

    One input node, one output node and a single mixed edge ``"1<-0"`` (``edges[0]``, a
    :class:`~toponas.spaces.mixed.MixedEdge` over :func:`block_candidates`): node 1 is
    ``sum_i w_i * branch_i(x)``, and the block returns ``mask * node1`` (plus ``x`` when ``residual``),
    ``mask`` the width mask of its stage (``out_masks``: a buffer ``(width choices, c_out)``). Its
    weights are row ``index`` of group ``group`` (``"first"`` or ``"block"``), its width row
    ``stage`` of group ``"width"``. Called as ``block(x, mixing)``. Cost: every candidate runs and is
    kept for backward, six MBConvs per block.
    """

    takes_mixing = True

    def __init__(self, specs: Sequence[OpSpec], c_in: int, c_out: int, stride: int, residual: bool,
                 group: str, index: int, stage: int, out_widths: Sequence[int]) -> None:
        super().__init__()
        if residual and (stride != 1 or c_in != c_out):
            raise ValueError("a residual block keeps its shape (stride 1, c_in == c_out)")
        self.c_in, self.c_out, self.stride, self.residual = c_in, c_out, stride, residual
        self.group, self.index, self.stage = group, index, stage
        self.edges = nn.ModuleList([MixedEdge(specs, c_in)])
        self.edge_io = [(1, 0)]
        self.edge_keys = ["1<-0"]
        self.register_buffer("out_masks", width_masks(out_widths, c_out), persistent=False)

    @property
    def specs(self) -> tuple[OpSpec, ...]:
        return self.edges[0].specs

    def unit_call(self, x: torch.Tensor, mixing: Mixing) -> UnitCall:
        """Input ``[x]``, this block's weight row, its active candidates (sampled steps) and the mixing."""
        active = None if mixing.active is None else [mixing.active[self.group][self.index]]
        return UnitCall([x], mixing.weights[self.group][self.index:self.index + 1], active, mixing)

    def unit_output(self, nodes: list[torch.Tensor], call: UnitCall) -> torch.Tensor:
        """``mask * nodes[1]`` (+ ``nodes[0]`` when residual), ``mask`` the stage's mixed width mask."""
        width = call.mixing.weights["width"][self.stage]  # (width choices,)
        mask = width @ self.out_masks.to(width)  # (C_out,)
        y = nodes[1] * mask.view(1, -1, 1, 1).to(nodes[1].dtype)  # (B, C_out, H / s, W / s)
        return nodes[0] + y if self.residual else y

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        call = self.unit_call(x, mixing)
        y = self.edges[0](x, call.weights[0], None if call.active is None else call.active[0])
        return self.unit_output([x, y], call)

    def extra_repr(self) -> str:
        return (f"{self.group}[{self.index}], width row {self.stage}, c_in={self.c_in}, c_out={self.c_out}, "
                f"stride={self.stride}, residual={self.residual}")


class MBConvBlock(nn.Module):
    """A discrete block: one candidate's modules (``op``, an ``nn.Sequential``), plus the input if ``residual``."""

    def __init__(self, spec: OpSpec, c_in: int, residual: bool) -> None:
        super().__init__()
        self.name = spec.name
        self.residual = residual
        self.op = build_chain(spec, c_in)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        if self.residual:
            return x + y
        return y


def spec_candidates(spec, c_full: int, c_out: int, stride: int, residual: bool) -> tuple[OpSpec, ...]:
    """:func:`block_candidates` with the choices of a :class:`~toponas.spaces.mobile_arch.MobileSpec`."""
    return block_candidates(spec.kernels, spec.expansions, c_full, c_out, stride, residual, spec.radixes)


__all__ = ["MixedBlock", "MBConvBlock", "mbconv_chain", "sa_chain", "block_candidates", "spec_candidates",
           "width_masks"]
