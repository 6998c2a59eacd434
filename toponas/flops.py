"""FLOPs of discrete networks, computed analytically from the candidate declarations.

:func:`cost_table` and :func:`arch_flops` ask the space (the protocol's ``cost_table``/``arch_flops``,
``toponas.spaces.protocol``); this module holds the shared counting helpers and the NAS-Bench-201 table.

Convention (the one of NAS-Bench-201's and DARTS' "FLOPs" tables and of
``torch.utils.flop_counter.FlopCounterMode`` divided by two): multiply-accumulates of convolutions
and of the linear classifier only. A convolution ``C_in -> C_out`` with a ``k x k`` kernel and
``groups`` costs ``k * k * C_in / groups * C_out * H_out * W_out``; dilation changes the receptive
field, not the cost. BatchNorm, ReLU, pooling, additions and the zero operation are not counted
(they are not multiply-accumulates and ``FlopCounterMode`` ignores them too).

The cost of a network is a constant (stem, reduction blocks, classifier) plus, for every edge, the
cost of its operation summed over all cells (every cell shares the architecture). :func:`cost_table`
returns that per-edge-per-candidate table so the FLOPs of many sampled architectures are a gather
and a sum (FP-NAS' cost-aware term); :func:`arch_flops` is the FLOPs of one architecture.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .spaces.primitives import AvgPool, Conv, MaxPool, OpSpec, Zero, chain_channels


def conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output side of a convolution or pooling (PyTorch's formula, floor mode)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_macs(c_in: int, c_out: int, kernel: int, out_size: int, groups: int = 1) -> int:
    """Multiply-accumulates of a square convolution producing ``out_size x out_size`` outputs."""
    return kernel * kernel * (c_in // groups) * c_out * out_size * out_size


def chain_macs(spec: OpSpec, channels: int, size: int) -> int:
    """Multiply-accumulates of one candidate on a ``channels x size x size`` input (channels per ``Conv.out``)."""
    total = 0
    for prim, c_in in zip(spec.chain, chain_channels(spec.chain, channels)):
        if isinstance(prim, Conv):
            size = conv_out(size, prim.kernel, prim.stride, prim.padding, prim.dilation)
            total += conv_macs(c_in, prim.out_channels(c_in), prim.kernel, size, c_in if prim.depthwise else 1)
        elif isinstance(prim, (AvgPool, MaxPool)):
            size = conv_out(size, prim.kernel, prim.stride, prim.kernel // 2)
        elif isinstance(prim, Zero) and prim.stride > 1:
            size = (size - 1) // prim.stride + 1
    return total


@dataclass(frozen=True)
class CostTable:
    """FLOPs (multiply-accumulates) of a network = ``base + sum_e edges[e, choice_e]``."""

    base: int
    edges: torch.Tensor  # (edges, candidates), int64: the candidate's cost summed over all cells

    def __call__(self, choices: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor:
        """FLOPs of architectures given as choices ``(..., edges)`` (int64, same leading shape), or as the
        protocol's ``{group: choices}`` of this single-group table."""
        if isinstance(choices, Mapping):
            (choices,) = choices.values()
        table = self.edges.to(choices.device)
        rows = torch.arange(table.shape[0], device=choices.device)
        return self.base + table[rows, choices].sum(-1)


def _stage_sizes(image_size: int) -> list[int]:
    """Side of the feature maps of the three stages (each reduction block: 3x3 conv at stride 2)."""
    sizes = [image_size]
    for _ in range(2):
        sizes.append(conv_out(sizes[-1], 3, stride=2, padding=1))
    return sizes


def cost_table(space, channels: int = 16, cells: int = 5, image_size: int = 32, num_classes: int = 10,
               in_channels: int = 3):
    """The space's FLOPs per candidate (its ``cost_table``: a callable on choices, see the protocol)."""
    if not hasattr(space, "cost_table"):
        raise NotImplementedError(f"FLOPs are computed for NAS-Bench-201 style spaces only (and spaces with "
                                  f"their own cost table), not {type(space).__name__}")
    return space.cost_table(channels, cells, image_size, num_classes, in_channels)


def arch_flops(space, arch, channels: int = 16, cells: int = 5, image_size: int = 32, num_classes: int = 10,
               in_channels: int = 3) -> int:
    """FLOPs (multiply-accumulates) of the discrete network of ``arch`` (the space's ``arch_flops``)."""
    if not hasattr(space, "arch_flops"):
        cost_table(space)  # the same clear error
    return space.arch_flops(arch, channels, cells, image_size, num_classes, in_channels)


def nb201_cost_table(space, channels: int = 16, cells: int = 5, image_size: int = 32,
                     num_classes: int = 10, in_channels: int = 3) -> CostTable:
    """Per-edge-per-candidate FLOPs of the NAS-Bench-201 macro network (see the module docstring).

    Macro network (``toponas.spaces.nb201.MacroNet``): 3x3 stem ``in_channels -> C``; ``cells``
    cells at C; a reduction block C -> 2C (3x3 stride 2, 3x3, and avgpool + 1x1 shortcut);
    ``cells`` cells at 2C; a reduction block 2C -> 4C; ``cells`` cells at 4C; pooling and a
    ``4C -> num_classes`` linear layer. Defaults: the NAS-Bench-201 CIFAR-10 network (C=16, N=5, 32x32).
    """
    sizes = _stage_sizes(image_size)
    widths = [channels, 2 * channels, 4 * channels]
    base = conv_macs(in_channels, channels, 3, image_size)  # stem
    for stage in (1, 2):
        c_in, c_out, size_in, size = widths[stage - 1], widths[stage], sizes[stage - 1], sizes[stage]
        base += conv_macs(c_in, c_out, 3, size)  # conv_a, stride 2
        base += conv_macs(c_out, c_out, 3, size)  # conv_b
        base += conv_macs(c_in, c_out, 1, conv_out(size_in, 2, stride=2))  # avgpool 2x2 + 1x1 conv
    base += 4 * channels * num_classes  # classifier
    per_cell = torch.tensor(
        [[sum(chain_macs(spec, w, s) for w, s in zip(widths, sizes)) for spec in space.specs]],
        dtype=torch.int64,
    )
    return CostTable(int(base), (cells * per_cell).repeat(space.num_edges, 1))
