"""The simplified modules: one generic unit and an edge that run plans, sharing the original parameters.

:class:`SimplifiedUnit` replaces any :class:`~toponas.spaces.protocol.SearchUnit` (a NAS-Bench-201 or
DARTS cell, a macro network's mixed block): it keeps the unit's attributes and modules (the same
``nn.Parameter`` objects and state-dict keys) and runs one :class:`~toponas.topo.plan.GroupPlan` per
source node, over all edges that read that node, in the unit's own DAG. :class:`SimplifiedEdge` does
the same for one :class:`~toponas.spaces.mixed.MixedEdge` outside any unit. When the step's mixing lists
``active`` candidates (hard sampling), both run the base computation: only the active candidates,
exactly as without the simplifier. When the mixing says the active lists are the candidates still alive
after pruning (``Mixing.pruned``), a unit runs a plan of the alive set instead (one per set, cached; a
lone edge runs the base computation).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import torch
from torch import nn

from ..spaces.mixed import MixedEdge
from ..spaces.protocol import UnitCall
from .autograd import Term, combine
from .checks import check_modules
from .plan import GroupPlan, plan_group
from .program import Program
from .rules import RULES


class SimplifiedUnit:
    """A search unit run as one plan per source node (all edges reading it), in the unit's own DAG.

    Made by :meth:`of`: an instance of a subclass of both this class and the unit's own class, holding
    the unit's attributes and modules, so it is still that unit (``isinstance``, ``unit_call``,
    ``unit_output``, ``extra_repr``), with the same parameters and forward signature. Cost per source
    node: one shared prefix, one stacked convolution call per kernel size, one merged stage or block per
    edge (full mode), ``none`` dropped (see ``toponas.topo.explain``).
    """

    edges: nn.ModuleList
    edge_io: Sequence[tuple[int, int]]
    edge_keys: Sequence[str]
    rules: frozenset[str]
    program: Program
    sources: tuple[int, ...]

    @classmethod
    def of(cls, unit: nn.Module, rules: frozenset[str]) -> nn.Module:
        """The simplified form of ``unit`` (which it leaves untouched): same modules, plans per source node."""
        new = _simplified_class(type(unit)).__new__(_simplified_class(type(unit)))
        state = dict(unit.__dict__)
        for name in ("_modules", "_parameters", "_buffers"):
            state[name] = type(state[name])(state[name])  # own dicts, the same modules and tensors
        new.__dict__.update(state)
        new.rules = frozenset(rules)
        new.sources = tuple(sorted({src for _, src in new.edge_io}))
        groups = []
        for j in new.sources:
            ks = tuple(k for k, (_, src) in enumerate(new.edge_io) if src == j)
            channels = new.edges[ks[0]].channels
            plan = plan_group(tuple(new.edges[k].specs for k in ks), channels, new.rules)
            check_modules(plan, ks, new._ops, f"cell edge(s) {[new.edge_keys[k] for k in ks]}")
            groups.append((ks, plan))
        new.program = Program(groups)
        new._alive_programs = {}
        return new

    def _alive_program(self, active: Sequence[Sequence[int]]) -> Program:
        """The program of the candidates alive on each edge (``active[k]`` for edge ``k``), made once per set."""
        key = tuple(tuple(sorted(a)) for a in active)
        program = self._alive_programs.get(key)
        if program is None:
            groups = []
            for ks, _ in self.program.groups:
                plan = plan_group(tuple(self.edges[k].specs for k in ks), self.edges[ks[0]].channels, self.rules,
                                  tuple(key[k] for k in ks))
                check_modules(plan, ks, self._ops, f"cell edge(s) {[self.edge_keys[k] for k in ks]}")
                groups.append((ks, plan))
            program = self._alive_programs[key] = Program(groups)
        return program

    @property
    def groups(self) -> list[tuple[int, tuple[int, ...], GroupPlan]]:
        """``(source node, edge indices, plan)`` per group, for explain and inspection."""
        return [(j, ks, plan) for j, (ks, plan) in zip(self.sources, self.program.groups)]

    def _ops(self, k: int, cand: int) -> nn.Sequential:
        return self.edges[k].ops[cand]

    def forward(self, *args, **kwargs) -> torch.Tensor:
        call: UnitCall = self.unit_call(*args, **kwargs)
        program = self.program
        if call.active is not None:
            if not call.mixing.pruned:
                return self._plain(call)  # sampled step: only the active candidates run
            program = self._alive_program(call.active)  # pruned candidates: the plan of the alive ones
        weights = call.weights  # (edges, K)
        built = program.build(weights, self._ops, call.inputs[-1].numel())  # every kernel of the unit, this step
        nodes = list(call.inputs)
        pending: dict[int, list[Term]] = {}
        for g, (ks, _) in enumerate(program.groups):
            self._complete(nodes, pending, self.sources[g] + 1)  # every edge into it comes from an earlier node
            terms = program.run(g, nodes[self.sources[g]], weights, built, self._ops)
            for slot, k in enumerate(ks):
                pending.setdefault(self.edge_io[k][0], []).extend(terms[slot])
        self._complete(nodes, pending, max(dst for dst, _ in self.edge_io) + 1)
        return self.unit_output(nodes, call)

    @staticmethod
    def _complete(nodes: list[torch.Tensor], pending: dict[int, list[Term]], count: int) -> None:
        """Sum the terms of the nodes up to ``count`` (each has all its inputs by then)."""
        while len(nodes) < count:
            nodes.append(combine(pending.pop(len(nodes), []), nodes[-1]))

    def _plain(self, call: UnitCall) -> torch.Tensor:
        """The unit's plain computation (the protocol's reference): edges in order, summed per node."""
        nodes = list(call.inputs)
        for dst in range(len(nodes), max(d for d, _ in self.edge_io) + 1):
            total = None
            for k, (d, src) in enumerate(self.edge_io):
                if d == dst:
                    active = None if call.active is None else call.active[k]
                    y = self.edges[k](nodes[src], call.weights[k], active)
                    total = y if total is None else total + y
            nodes.append(total)
        return self.unit_output(nodes, call)

    def extra_repr(self) -> str:
        base = super().extra_repr()  # type: ignore[misc]
        rules = f"rules={sorted(self.rules, key=RULES.index)}"
        return f"{base}, {rules}" if base else rules


@functools.cache
def _simplified_class(base: type) -> type:
    """``Simplified<Base>``: :class:`SimplifiedUnit` before the unit's own class (one class per unit type)."""
    cls = type(f"Simplified{base.__name__}", (SimplifiedUnit, base), {"__module__": __name__})
    globals().setdefault(cls.__name__, cls)  # findable by name (pickling a whole model in this process)
    return cls


class SimplifiedEdge(MixedEdge):
    """One mixed edge run as a plan (for mixed edges outside any search unit).

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
        terms = self.program.run(0, x, rows, self.program.build(rows, self._ops, x.numel()), self._ops)
        return combine(terms[0], x)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", rules={sorted(self.rules, key=RULES.index)}"
