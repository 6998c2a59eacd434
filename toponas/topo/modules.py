"""The simplified modules: a cell and an edge that run plans, sharing the original parameters.

:class:`SimplifiedCell` replaces a NAS-Bench-201 :class:`~toponas.spaces.nb201.SearchCell`: it keeps the
cell's ``edges`` (the same modules, so the same ``nn.Parameter`` objects and state-dict keys) and runs
one :class:`~toponas.topo.plan.GroupPlan` per node, over all edges that read that node.
:class:`SimplifiedEdge` does the same for one :class:`~toponas.spaces.mixed.MixedEdge` of a cell the
simplifier does not know. When the step's mixing lists ``active`` candidates (hard sampling), both run
the base computation: only the active candidates, exactly as without the simplifier.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..spaces.darts import DartsSearchCell
from ..spaces.mixed import MixedEdge, Mixing
from ..spaces.nb201 import SearchCell
from .plan import GroupPlan, plan_group
from .program import Program, Term, check_modules, combine
from .rules import RULES


class _PlannedByNode:
    """What the simplified cells share: one plan per node, over the edges reading it (in edge order)."""

    edges: nn.ModuleList
    edge_io: list[tuple[int, int]]
    edge_keys: list[str]
    channels: int
    rules: frozenset[str]
    program: Program

    def _plan_nodes(self, nodes: int) -> Program:
        """The program of the edges reading nodes ``0 .. nodes - 1``, checked against the modules."""
        groups = []
        for j in range(nodes):
            ks = tuple(k for k, (_, src) in enumerate(self.edge_io) if src == j)
            plan = plan_group(tuple(self.edges[k].specs for k in ks), self.channels, self.rules)
            check_modules(plan, ks, self._ops, f"cell edge(s) {[self.edge_keys[k] for k in ks]}")
            groups.append((ks, plan))
        return Program(groups)

    @property
    def groups(self) -> list[tuple[int, tuple[int, ...], GroupPlan]]:
        """``(source node, edge indices, plan)`` per group, for explain and inspection."""
        return [(j, ks, plan) for j, (ks, plan) in enumerate(self.program.groups)]

    def _ops(self, k: int, cand: int) -> nn.Sequential:
        return self.edges[k].ops[cand]


class SimplifiedCell(_PlannedByNode, SearchCell):
    """A NAS-Bench-201 search cell run as one plan per node (all edges reading that node).

    Same constructor state, ``edges`` and forward signature as :class:`SearchCell`; the parameters are
    the original edges' own. Cost: one stacked convolution call per node and kernel size, one shared
    relu and pooling per node, ``none`` dropped (see ``toponas.topo.explain``).
    """

    def __init__(self, cell: SearchCell, rules: frozenset[str]) -> None:
        nn.Module.__init__(self)
        self.num_nodes = cell.num_nodes
        self.channels = cell.channels
        self.edge_keys = list(cell.edge_keys)
        self.edge_io = list(cell.edge_io)
        self.edges = cell.edges  # the same modules: parameters shared, state-dict keys unchanged
        self.rules = frozenset(rules)
        self.program = self._plan_nodes(self.num_nodes - 1)  # group j: the edges reading node j

    def forward(self, x: torch.Tensor, mixing: Mixing, group: str = "cell") -> torch.Tensor:
        if mixing.active is not None:
            return super().forward(x, mixing, group)  # sampled step: only the active candidates run
        weights = mixing.weights[group]  # (edges, K)
        built = self.program.build(weights, self._ops)  # every kernel of the cell, this step
        nodes = [x]  # (B, C, H, W) each
        pending: list[list[Term]] = [[] for _ in range(self.num_nodes)]
        for j, (ks, _) in enumerate(self.program.groups):
            terms = self.program.run(j, nodes[j], weights, built, self._ops)
            for slot, k in enumerate(ks):
                pending[self.edge_io[k][0]].extend(terms[slot])
            nodes.append(combine(pending[j + 1], x))  # node j+1 has all its inputs now
        return nodes[-1]

    def extra_repr(self) -> str:
        return f"rules={sorted(self.rules, key=RULES.index)}"


class SimplifiedDartsCell(_PlannedByNode, DartsSearchCell):
    """A DARTS search cell run as one plan per node (all edges reading that node), like :class:`SimplifiedCell`.

    Same attributes, ``edges`` (the original modules), preprocessing and ``forward(s0, s1, mixing)`` as
    :class:`~toponas.spaces.darts.DartsSearchCell`. Per node: relu, pooling (with its search bn) and
    skip computed once for every edge reading the node; per edge one shared separable stage (rule 4).
    """

    def __init__(self, cell: DartsSearchCell, rules: frozenset[str]) -> None:
        nn.Module.__init__(self)
        for name in ("reduction", "reduction_prev", "group", "channels", "steps", "concat", "edge_io",
                     "edge_keys", "edge_strides"):
            setattr(self, name, getattr(cell, name))
        self.preprocess0, self.preprocess1 = cell.preprocess0, cell.preprocess1
        self.edges = cell.edges  # the same modules: parameters shared, state-dict keys unchanged
        self.rules = frozenset(rules)
        self.program = self._plan_nodes(self.steps + 1)  # the last node has no outgoing edge

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        if mixing.active is not None:
            return super().forward(s0, s1, mixing)  # sampled step: only the active candidates run
        weights = mixing.weights[self.group]  # (14, K)
        built = self.program.build(weights, self._ops)
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # 2 x (B, C, H, W)
        pending: dict[int, list[Term]] = {i: [] for i in range(2, self.steps + 2)}
        for j, (ks, _) in enumerate(self.program.groups):
            if j >= 2:  # every edge into node j comes from an earlier node: it is complete
                states.append(combine(pending[j], states[-1]))
            terms = self.program.run(j, states[j], weights, built, self._ops)
            for slot, k in enumerate(ks):
                pending[self.edge_io[k][0]].extend(terms[slot])
        states.append(combine(pending[self.steps + 1], states[-1]))
        return torch.cat([states[i] for i in self.concat], dim=1)  # (B, 4C, H', W')

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rules={sorted(self.rules, key=RULES.index)}"


class SimplifiedEdge(MixedEdge):
    """One mixed edge run as a plan (for cells the simplifier does not know as a whole).

    Same ``specs``, ``ops`` (the original modules) and forward signature as :class:`MixedEdge`.
    """

    def __init__(self, edge: MixedEdge, rules: frozenset[str], where: str = "edge") -> None:
        nn.Module.__init__(self)
        self.specs = edge.specs
        self.channels = edge.channels
        self.ops = edge.ops  # the same modules
        self.rules = frozenset(rules)
        self.plan = plan_group((self.specs,), self.channels, self.rules)
        check_modules(self.plan, (0,), self._ops, where)
        self.program = Program([((0,), self.plan)])

    def _ops(self, k: int, cand: int) -> nn.Sequential:
        return self.ops[cand]

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None
                ) -> torch.Tensor:
        if active is not None:
            return super().forward(x, weights, active)  # only the active candidates run
        rows = weights.unsqueeze(0)  # (1, K)
        terms = self.program.run(0, x, rows, self.program.build(rows, self._ops), self._ops)
        return combine(terms[0], x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rules={sorted(self.rules, key=RULES.index)}"
