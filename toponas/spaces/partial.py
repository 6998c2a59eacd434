"""Partial-channel edges (PC-DARTS, as used by DrNAS's progressive search).

Only ``C / k`` of an edge's ``C`` input channels go through the candidates; the other channels
bypass them, and a channel shuffle then interleaves the two parts, so that the channels taking part
change from cell to cell. A :class:`PartialEdge` holds an ordinary :class:`MixedEdge` built at
``C / k`` channels, so ``toponas.topo`` rewrites that inner edge like any other: a NAS-Bench-201 cell
holding partial edges becomes a :class:`PartialCell`, a type of its own, and the simplifier, which
rewrites a whole cell only when it is a plain ``SearchCell``, goes down to the inner edges instead.
Nothing here knows the simplifier: :meth:`PartialEdge.widen` takes it as a function.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .mixed import MixedEdge
from .nb201 import SearchCell
from .primitives import OpSpec


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave ``groups`` equal blocks of channels: block ``g`` channel ``i`` goes to ``i * groups + g``."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def fit_shape(t: torch.Tensor, shape: Sequence[int]) -> torch.Tensor:
    """``t`` brought to ``shape``: each differing dimension truncated, or extended with copies of its
    own entries (entry ``i`` of the new ones copies entry ``i mod old size``). Deterministic, so a
    widened network and its momentum buffers are the same in a resumed run."""
    for dim, n in enumerate(shape):
        if t.shape[dim] != n:
            t = t.index_select(dim, torch.arange(n, device=t.device) % t.shape[dim])
    return t


class PartialEdge(nn.Module):
    """A mixed edge over ``C / k`` of the channels: ``shuffle(cat(edge(x[:C/k]), x[C/k:]), k)``.

    ``edge`` is a :class:`MixedEdge` at ``C / k`` channels (or the simplifier's replacement of one);
    the forward signature is :class:`MixedEdge`'s. At stride 2 (DARTS reduction cells) the bypass is
    max-pooled 2x2, as in PC-DARTS.
    """

    def __init__(self, specs: Sequence[OpSpec], channels: int, k: int) -> None:
        super().__init__()
        _check(channels, k)
        self.channels, self.k = channels, k
        self.edge = MixedEdge(specs, channels // k)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None
                ) -> torch.Tensor:
        c = self.channels // self.k
        y = self.edge(x[:, :c], weights, active)  # (B, C/k, H', W')
        rest = x[:, c:]  # (B, C - C/k, H, W): bypasses the candidates
        if rest.shape[-2:] != y.shape[-2:]:
            rest = F.max_pool2d(rest, 2, 2)
        return channel_shuffle(torch.cat([y, rest], dim=1), self.k)

    @torch.no_grad()
    def widen(self, k: int, simplify: Callable[[nn.Module], nn.Module] = lambda m: m) -> None:
        """Let ``C / k`` channels through from now on (``k`` below the current one).

        The new inner edge keeps the current weights and fills its extra channels with copies of
        them (:func:`fit_shape`); ``simplify`` is applied to it (e.g. the run's ``--topo`` rewrite).
        """
        _check(self.channels, k)
        old = self.edge.state_dict()
        new = MixedEdge(self.edge.specs, self.channels // k)
        ref = next(iter(old.values()), None)
        if ref is not None:
            new = new.to(device=ref.device, dtype=ref.dtype)
        for name, t in new.state_dict().items():
            t.copy_(fit_shape(old[name], t.shape))
        self.k = k
        self.edge = simplify(new.train(self.training))

    def extra_repr(self) -> str:
        return f"channels={self.channels}, k={self.k}"


class PartialCell(nn.Module):
    """A NAS-Bench-201 search cell whose edges are :class:`PartialEdge`; the computation of
    :class:`SearchCell` (same attributes), but not its type, so it is simplified edge by edge."""

    takes_mixing = True
    forward = SearchCell.forward

    def __init__(self, cell: SearchCell, k: int) -> None:
        super().__init__()
        self.num_nodes, self.channels = cell.num_nodes, cell.channels
        self.edge_keys, self.edge_io = list(cell.edge_keys), list(cell.edge_io)
        self.edges = nn.ModuleList(PartialEdge(e.specs, e.channels, k) for e in cell.edges)


def make_partial(model: nn.Module, k: int) -> nn.Module:
    """Every mixed edge of a plain supernet made a fresh :class:`PartialEdge` at ``C / k``, in place
    (NAS-Bench-201 cells become :class:`PartialCell`). Returns ``model`` (or its replacement, when
    ``model`` is itself a cell or an edge); a model without mixed edges is an error."""
    new = _partial(model, k)
    if not any(isinstance(m, PartialEdge) for m in new.modules()):
        raise ValueError(f"{type(model).__name__} has no mixed edges to make partial")
    return new


def _partial(module: nn.Module, k: int) -> nn.Module:
    if type(module) is SearchCell:
        return PartialCell(module, k)
    if type(module) is MixedEdge:
        return PartialEdge(module.specs, module.channels, k)
    for name, child in list(module.named_children()):
        setattr(module, name, _partial(child, k))
    return module


def widen_partial(model: nn.Module, k: int, simplify: Callable[[nn.Module], nn.Module] = lambda m: m) -> int:
    """:meth:`PartialEdge.widen` on every partial edge of ``model``; the number widened."""
    edges = [m for m in model.modules() if isinstance(m, PartialEdge)]
    for edge in edges:
        edge.widen(k, simplify)
    return len(edges)


def _check(channels: int, k: int) -> None:
    if k < 1 or channels % k:
        raise ValueError(f"partial channels: {channels} channels do not split into 1/{k}")


__all__ = ["PartialEdge", "PartialCell", "channel_shuffle", "fit_shape", "make_partial", "widen_partial"]
