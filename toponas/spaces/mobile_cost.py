"""Analytic FLOPs and parameters of mobile networks, from the stage table and the candidate declarations.

Convention (as :mod:`toponas.flops`): multiply-accumulates of the convolutions and the classifier;
BN, ReLU, masks, additions and pooling are not counted. An MBConv ``kKeE`` from ``c_in`` to
``c_out`` channels on an ``H x H`` input at stride ``s`` (output ``H'``) costs
``c_in * e c_in * H^2 + k^2 * e c_in * H'^2 + e c_in * c_out * H'^2``; ``skip`` costs nothing.
A block's cost depends on its choice and on the widths of its input's and its own stage, so the
table is per block ``(candidates, input widths, output widths)``; FP-NAS' cost term gathers from it.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from .mobile_arch import SKIP, MobileArch, MobileSpaceError
from .primitives import BN, Conv, OpSpec, chain_channels
from .split_attention import SplitAttention


def conv_side(size: int, kernel: int, stride: int) -> int:
    """Output side of a conv with padding ``kernel // 2`` (odd kernels)."""
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def mbconv_macs(spec: OpSpec, c_in: int, size: int) -> tuple[int, int]:
    """``(multiply-accumulates, output side)`` of one candidate on ``c_in x size x size`` (``Conv.out`` channels)."""
    total = 0
    for p, c in zip(spec.chain, chain_channels(spec.chain, c_in)):
        if isinstance(p, Conv):
            size = conv_side(size, p.kernel, p.stride)
            total += p.kernel ** 2 * (1 if p.depthwise else c) * p.out_channels(c) * size * size
        elif isinstance(p, SplitAttention):
            size = conv_side(size, p.kernel, p.stride)
            total += p.macs(c, size)
    return total, size


def mbconv_params(spec: OpSpec, c_in: int, affine_bn: bool = True) -> int:
    """Weights of one candidate: conv kernels, plus 2 per channel of each BN when ``affine_bn``."""
    total = 0
    for p, c in zip(spec.chain, chain_channels(spec.chain, c_in)):
        if isinstance(p, Conv):
            total += p.kernel ** 2 * (1 if p.depthwise else c) * p.out_channels(c)
        elif isinstance(p, SplitAttention):
            total += p.params(c)
        elif isinstance(p, BN) and affine_bn:
            total += 2 * c
    return total


class MobileCost:
    """FLOPs (multiply-accumulates) of the mobile networks of a space at one size, for any choices.

    ``cost(choices)``: ``choices`` maps each group to candidate indices ``(..., rows)`` (int64, the
    layout of the space's ``arch_shapes``); returns ``(...)`` int64. ``cost.arch(arch)``: one
    architecture. Built by :meth:`MobileSpace.cost_table`.
    """

    def __init__(self, space, channels: int = 16, image_size: int = 32, num_classes: int = 10,
                 in_channels: int = 3) -> None:
        from .mbconv import spec_candidates
        from .mobile import layout

        self.space = space
        spec = space.spec
        spec.check_image(image_size, image_size)
        stem, stages, slots, head = layout(spec, channels)
        size = image_size
        self.base = 9 * in_channels * stem * size * size + head * num_classes
        self.blocks = []  # (slot, table (candidates, in widths, out widths))
        for slot in slots:
            ins = (stem,) if slot.in_stage is None else stages[slot.in_stage].widths
            outs = stages[slot.stage].widths
            table = torch.zeros(len(self.space.group_ops[slot.group]), len(ins), len(outs), dtype=torch.int64)
            out_size = conv_side(size, 3, slot.stride)
            for b, c_out in enumerate(outs):
                specs = spec_candidates(spec, slot.c_in, c_out, slot.stride, slot.residual)
                for i, cand in enumerate(specs):
                    for a, c_in in enumerate(ins):
                        table[i, a, b] = 0 if cand.is_zero else mbconv_macs(cand, c_in, size)[0]
            self.blocks.append((slot, table))
            size = out_size
        self.head = torch.tensor([w * head * size * size for w in stages[-1].widths], dtype=torch.int64)

    def __call__(self, choices: Mapping[str, torch.Tensor]) -> torch.Tensor:
        shapes = self.space.arch_shapes
        for g, (rows, _) in shapes.items():
            if g not in choices or choices[g].shape[-1] != rows:
                raise MobileSpaceError(f"mobile FLOPs: group {g!r} needs {rows} choices per architecture")
        widths = choices["width"]
        device = widths.device
        total = self.base + self.head.to(device)[widths[..., -1]]
        for slot, table in self.blocks:
            c = choices[slot.group][..., slot.index]
            w_in = torch.zeros_like(c) if slot.in_stage is None else widths[..., slot.in_stage]
            total = total + table.to(device)[c, w_in, widths[..., slot.stage]]
        return total

    def arch(self, arch: MobileArch | str) -> int:
        return int(self(self.space.choices(arch)))


def arch_flops(space, arch: MobileArch | str, channels: int = 16, image_size: int = 32, num_classes: int = 10,
               in_channels: int = 3) -> int:
    """FLOPs (multiply-accumulates) of the discrete network of ``arch`` on one image."""
    return MobileCost(space, channels, image_size, num_classes, in_channels).arch(arch)


def arch_params(space, arch: MobileArch | str, channels: int = 16, num_classes: int = 10,
                in_channels: int = 3) -> int:
    """Trainable parameters of the retraining network of ``arch`` (affine BN: 2 per channel)."""
    from .mbconv import spec_candidates
    from .mobile import arch_blocks, layout

    spec = space.spec
    arch = space.parse(arch)
    stem, stages, slots, head = layout(spec, channels)
    total = 9 * in_channels * stem + 2 * stem
    c_prev = stem
    for slot, name in zip(slots, arch_blocks(arch, slots)):
        if name == SKIP:
            continue
        c_out = stages[slot.stage].widths[arch.width_index(spec, slot.stage)]
        specs = spec_candidates(spec, slot.c_in, c_out, slot.stride, slot.residual)
        total += mbconv_params(next(c for c in specs if c.name == name), c_prev)
        c_prev = c_out
    return total + c_prev * head + 2 * head + head * num_classes + num_classes


__all__ = ["MobileCost", "arch_flops", "arch_params", "mbconv_macs", "mbconv_params"]
