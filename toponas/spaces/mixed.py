"""The plain mixed edge and the ``Mixing`` a strategy hands the supernet for one forward pass.

A mixed edge computes ``y = sum_i w_i * path_i(x)`` over its candidates. This is the reference
computation (every candidate runs and is kept for backward); ``toponas.topo`` replaces these modules
with simplified ones that compute the same thing for less.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from .primitives import OpSpec, build_chain


@dataclass
class Mixing:
    """Mixing weights for one forward pass, per architecture group (e.g. ``"cell"``).

    ``weights[group]`` has shape ``(edges, candidates)``. ``active[group]``, when given, lists for
    each edge the candidates that run; the others must have zero-valued weights and contribute
    ``w_i`` (a zero that still carries gradient, as in the GDAS reference). ``None`` means all run.

    ``pruned``: the active lists are the candidates still *alive* after pruning (the same set for many
    steps, not a sample): the others weigh exactly zero and their weights need no gradient. The plain
    supernet computes the same either way; the simplifier then plans the alive set (one plan per set,
    cached) instead of running the plain computation of a sampled step.
    """

    weights: dict[str, torch.Tensor]
    active: dict[str, list[list[int]]] | None = None
    pruned: bool = False

    def edge(self, group: str, index: int) -> tuple[torch.Tensor, list[int] | None]:
        """Weights and active candidates of one edge of ``group``."""
        active = None if self.active is None else self.active[group][index]
        return self.weights[group][index], active


class MixedEdge(nn.Module):
    """A searchable edge holding every candidate as a plain module chain.

    ``specs`` keeps the candidate declarations so the simplifier can read them; ``ops[i]`` is the
    module chain of ``specs[i]`` (an ``nn.Sequential`` with one module per primitive).
    """

    def __init__(self, specs: Sequence[OpSpec], channels: int) -> None:
        super().__init__()
        self.specs = tuple(specs)
        self.channels = channels
        self.ops = nn.ModuleList(build_chain(s, channels) for s in self.specs)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None
    ) -> torch.Tensor:
        """``sum_i w_i * op_i(x)``; with ``active`` only those ops run (others add ``w_i``)."""
        if active is None:
            return sum(w * op(x) for w, op in zip(weights, self.ops))
        out = sum(weights[i] * self.ops[i](x) for i in active)
        inactive = [i for i in range(len(self.ops)) if i not in active]
        if inactive:
            out = out + weights[inactive].sum()
        return out

    def extra_repr(self) -> str:
        return f"candidates={[s.name for s in self.specs]}, channels={self.channels}"
