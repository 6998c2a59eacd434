"""Primitives: the building blocks candidate operations are declared with, as plain data.

A candidate operation is a chain of primitives (``relu -> conv(3x3) -> bn``). Declaring candidates as
data, not as opaque modules, is what lets the simplifier (``toponas.topo``) read an edge and rewrite
it; :func:`build_chain` turns a chain into the ordinary PyTorch modules the plain supernet runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ReLU:
    """Rectified linear unit (not linear, no parameters)."""


@dataclass(frozen=True)
class Conv:
    """A 2-d convolution ``C_in -> C_out`` without bias.

    ``depthwise=True`` means one kernel per channel (``groups=C_in``, ``C_out == C_in``).
    Padding is always ``dilation * (kernel - 1) // 2`` so the spatial size is kept at stride 1.
    ``out``: the number of output channels (``None``: as many as its input, the cell spaces' case);
    a macro space's inverted-residual block declares its expand and project convs with it.
    """

    kernel: int
    dilation: int = 1
    depthwise: bool = False
    stride: int = 1
    out: int | None = None

    def out_channels(self, channels: int) -> int:
        """Output channels of this conv on a ``channels``-channel input."""
        return channels if self.out is None else self.out

    @property
    def extent(self) -> int:
        """Side of the dense kernel this conv is equivalent to, ``(k - 1) * d + 1``."""
        return (self.kernel - 1) * self.dilation + 1

    @property
    def padding(self) -> int:
        return self.dilation * (self.kernel - 1) // 2


@dataclass(frozen=True)
class BN:
    """Batch normalization. During search: no affine parameters, batch statistics only."""

    affine: bool = False
    track_running_stats: bool = False


#: Search-time BN (no affine parameters, batch statistics only) and retraining BN, shared by all spaces.
SEARCH_BN = BN(affine=False, track_running_stats=False)
TRAIN_BN = BN(affine=True, track_running_stats=True)


@dataclass(frozen=True)
class AvgPool:
    """Average pooling, stride 1 unless given, padding ``k // 2``, ``count_include_pad=False``."""

    kernel: int = 3
    stride: int = 1


@dataclass(frozen=True)
class MaxPool:
    """Max pooling (not linear), padding ``k // 2``."""

    kernel: int = 3
    stride: int = 1


@dataclass(frozen=True)
class Identity:
    """The identity (a Dirac kernel)."""


@dataclass(frozen=True)
class Zero:
    """Contributes nothing; the simplifier drops it from the computation and keeps its weight."""

    stride: int = 1


@dataclass(frozen=True)
class Reduce:
    """Factorized reduction (DARTS ``FactorizedReduce`` without its ReLU and BN): linear, two kernels.

    Two 1x1 convolutions at ``stride``, each giving half of the output channels: the first reads
    ``x``, the second ``x`` shifted by one pixel (``x[:, :, 1:, 1:]``); their outputs are
    concatenated. It equals one 3x3 convolution at ``stride`` with padding 1 whose kernel is zero
    except the centre tap (first half of the output channels) and the bottom-right tap (second
    half). DARTS' stride-2 ``skip_connect`` is ``relu -> reduce(2) -> bn``.
    """

    stride: int = 2


Primitive = ReLU | Conv | BN | AvgPool | MaxPool | Identity | Zero | Reduce


@dataclass(frozen=True)
class OpSpec:
    """A named candidate operation: a chain of primitives applied in order."""

    name: str
    chain: tuple[Primitive, ...]

    @property
    def is_zero(self) -> bool:
        return len(self.chain) == 1 and isinstance(self.chain[0], Zero)


class ZeroOp(nn.Module):
    """``none``: an all-zero output with the right shape (the reference computes ``x * 0``)."""

    def __init__(self, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride > 1:
            x = x[:, :, :: self.stride, :: self.stride]
        return x.mul(0.0)


class AvgPoolOp(nn.AvgPool2d):
    """Average pooling that ignores padded pixels, as in NAS-Bench-201 and DARTS."""

    def __init__(self, kernel: int, stride: int = 1) -> None:
        super().__init__(kernel, stride=stride, padding=kernel // 2, count_include_pad=False)


class ReduceOp(nn.Module):
    """The module of :class:`Reduce`: ``cat([conv_1(x), conv_2(x[:, :, 1:, 1:])], dim=1)``.

    ``conv_1`` gives output channels ``[0, c_out // 2)``, ``conv_2`` the rest; both are 1x1 at
    ``stride`` without bias (weights ``(c_out // 2, c_in, 1, 1)`` and ``(c_out - c_out // 2, c_in, 1,
    1)``). On even sizes this is DARTS' computation exactly; on odd sizes the shifted input is padded
    with one zero row and column, so it stays equal to the padded 3x3 form (where DARTS would fail).
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 2) -> None:
        super().__init__()
        self.stride = stride
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=stride, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out - c_out // 2, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shifted = x[:, :, 1:, 1:]  # (B, C, H - 1, W - 1)
        if x.shape[-2] % self.stride or x.shape[-1] % self.stride:
            shifted = nn.functional.pad(shifted, (0, 1, 0, 1))
        return torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1)  # (B, C_out, H / s, W / s)


def build_primitive(prim: Primitive, channels: int) -> nn.Module:
    """The PyTorch module of one primitive acting on ``channels`` input channels (output: see ``Conv.out``)."""
    if isinstance(prim, ReLU):
        return nn.ReLU(inplace=False)
    if isinstance(prim, Conv):
        groups = channels if prim.depthwise else 1
        if prim.depthwise and prim.out_channels(channels) != channels:
            raise ValueError(f"a depthwise conv keeps its {channels} channels, not {prim.out}")
        return nn.Conv2d(
            channels,
            prim.out_channels(channels),
            prim.kernel,
            stride=prim.stride,
            padding=prim.padding,
            dilation=prim.dilation,
            groups=groups,
            bias=False,
        )
    if isinstance(prim, BN):
        return nn.BatchNorm2d(
            channels, affine=prim.affine, track_running_stats=prim.track_running_stats
        )
    if isinstance(prim, AvgPool):
        return AvgPoolOp(prim.kernel, prim.stride)
    if isinstance(prim, MaxPool):
        return nn.MaxPool2d(prim.kernel, stride=prim.stride, padding=prim.kernel // 2)
    if isinstance(prim, Identity):
        return nn.Identity()
    if isinstance(prim, Zero):
        return ZeroOp(prim.stride)
    if isinstance(prim, Reduce):
        return ReduceOp(channels, channels, prim.stride)
    if callable(getattr(prim, "module", None)):  # a composite primitive declared elsewhere builds its own module
        return prim.module(channels)
    raise TypeError(f"unknown primitive {prim!r}")


def chain_channels(chain: tuple[Primitive, ...], channels: int) -> list[int]:
    """Input channels of every primitive of ``chain`` on a ``channels``-channel input, and the output's."""
    out = [channels]
    for p in chain:
        out.append(p.out_channels(out[-1]) if isinstance(p, Conv) else out[-1])
    return out


def build_chain(spec: OpSpec, channels: int) -> nn.Sequential:
    """The plain module of a candidate: its primitives in sequence, one module each."""
    sizes = chain_channels(spec.chain, channels)
    return nn.Sequential(*(build_primitive(p, c) for p, c in zip(spec.chain, sizes)))


def with_bn(spec: OpSpec, bn: BN) -> OpSpec:
    """The same candidate with every ``BN`` primitive replaced by ``bn`` (search vs. retraining)."""
    chain = tuple(bn if isinstance(p, BN) else p for p in spec.chain)
    return OpSpec(spec.name, chain)

