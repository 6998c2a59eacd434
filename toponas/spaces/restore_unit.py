"""What the restoration spaces share: a DAG unit whose edge weights the unit composes from the mixing.

:class:`DagUnit` is a :class:`~toponas.spaces.protocol.SearchUnit` with one input node and nodes
``1 .. nodes``; edge ``i<-j`` for every ``j < i`` (a densely connected block, or a DARTS-style cell). How a
mixing becomes the ``(edges, K)`` weights and the active candidates of its edges is the space's
(a subclass's :meth:`DagUnit.compose`): MoD-NAS repeats one row per layer over the edges into that layer, Trilevel
multiplies an operation row and a kernel-width row. The simplifier sees only the composed weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .mixed import MixedEdge, Mixing
from .primitives import BN, SEARCH_BN, Conv, Identity, OpSpec, ReLU, Zero
from .protocol import UnitCall


def conv_op(kernel: int, dilation: int = 1, out: int | None = None, bn: BN = SEARCH_BN) -> tuple:
    """``relu -> conv(k, dilation) -> bn`` (the cell spaces' ReLU-Conv-BN; ``out`` narrows it)."""
    return (ReLU(), Conv(kernel, dilation, out=out), bn)


def op_spec(name: str, out: int | None = None, bn: BN = SEARCH_BN) -> OpSpec:
    """A restoration candidate by name: ``conv_KxK``, ``dil_conv_KxK`` (dilation 2), ``skip_connect``, ``none``."""
    if name == "skip_connect":
        return OpSpec(name, (Identity(),))
    if name == "none":
        return OpSpec(name, (Zero(),))
    kind, size = name.rsplit("_", 1)
    k = int(size.split("x")[0])
    if kind == "conv":
        return OpSpec(name, conv_op(k, 1, out, bn))
    if kind == "dil_conv":
        return OpSpec(name, conv_op(k, 2, out, bn))
    raise ValueError(f"unknown restoration operation {name!r}")


def dag_edges(nodes: int) -> list[tuple[int, int]]:
    """``(dst, src)`` of every edge ``i<-j``, ``0 <= j < i <= nodes``, by destination then source."""
    return [(i, j) for i in range(1, nodes + 1) for j in range(i)]


class DagUnit(nn.Module):
    """A searchable DAG (see the module docstring); ``unit(x, mixing)``; output ``nodes[-1]`` (+ ``x`` if residual)."""

    takes_mixing = True

    def __init__(self, specs: Sequence[OpSpec], channels: int, nodes: int, residual: bool = False) -> None:
        super().__init__()
        self.edge_io = dag_edges(nodes)
        self.edge_keys = [f"{i}<-{j}" for i, j in self.edge_io]
        self.edges = nn.ModuleList(MixedEdge(specs, channels) for _ in self.edge_io)
        self.residual = residual

    def compose(self, mixing: Mixing) -> tuple[torch.Tensor, list[list[int]] | None]:
        """``(weights (edges, K), active candidates per edge or None)`` of this unit's edges (the space's)."""
        raise NotImplementedError

    def unit_call(self, x: torch.Tensor, mixing: Mixing) -> UnitCall:
        weights, active = self.compose(mixing)
        return UnitCall([x], weights, active, mixing)

    def unit_output(self, nodes: list[torch.Tensor], call: UnitCall) -> torch.Tensor:
        return nodes[0] + nodes[-1] if self.residual else nodes[-1]

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        call = self.unit_call(x, mixing)
        nodes: list[torch.Tensor] = [x]
        for i in range(1, self.edge_io[-1][0] + 1):
            total = 0
            for k, (dst, src) in enumerate(self.edge_io):
                if dst == i:
                    active = None if call.active is None else call.active[k]
                    total = total + self.edges[k](nodes[src], call.weights[k], active)
            nodes.append(total)
        return self.unit_output(nodes, call)


class DagNet(nn.Module):
    """The discrete form of a :class:`DagUnit`: ``edges[k]`` the chosen candidate's modules (``nn.Sequential``)."""

    def __init__(self, modules: Sequence[nn.Module], nodes: int, residual: bool = False) -> None:
        super().__init__()
        self.edge_io = dag_edges(nodes)
        self.edges = nn.ModuleList(modules)
        self.nodes, self.residual = nodes, residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: list[torch.Tensor] = [x]
        for i in range(1, self.nodes + 1):
            total = 0
            for k, (dst, src) in enumerate(self.edge_io):
                if dst == i:
                    total = total + self.edges[k](out[src])
            out.append(total)
        return out[0] + out[-1] if self.residual else out[-1]


OUTPUT_INIT = 0.1


def output_conv(conv: nn.Module) -> nn.Module:
    """The last (image-producing) layer of a restoration network, its default initialization scaled by
    :data:`OUTPUT_INIT`: the network starts near its skip (the noisy input, bicubic) instead of adding noise.
    The spaces and the baselines (:mod:`toponas.restoration.baselines`) all do it."""
    with torch.no_grad():
        conv.weight.mul_(OUTPUT_INIT)
        if conv.bias is not None:
            conv.bias.zero_()
    return conv


@torch.no_grad()
def copy_sliced(net: nn.Module, supernet: nn.Module, rename: Callable[[str], str | None]) -> None:
    """Copy the supernet's tensors into ``net`` by state-dict key (``rename`` maps a net key to the supernet's,
    ``None``: skip), each cut to the network's shape (first entries: narrower widths keep the first channels)."""
    source = supernet.state_dict()
    for key, t in net.state_dict().items():
        src = rename(key)
        if src is None or src not in source:
            continue  # affine BN parameters of a retraining network copied from a search BN
        value = source[src]
        if t.dim() != value.dim() or any(a > b for a, b in zip(t.shape, value.shape)):
            raise ValueError(f"{key}: the network's {tuple(t.shape)} does not fit in the supernet's "
                             f"{tuple(value.shape)}")
        t.copy_(value[tuple(slice(0, n) for n in t.shape)] if t.dim() else value)


__all__ = ["DagUnit", "DagNet", "conv_op", "op_spec", "dag_edges", "copy_sliced", "output_conv"]
