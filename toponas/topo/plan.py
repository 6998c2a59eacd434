"""Planning: the candidates of the edges that read one input, lowered and rewritten rule by rule.

Planning starts from one item per candidate path (``edge slot x candidate``), *lowered*
(:mod:`toponas.topo.lower`) to what the executor can run without changing a value; the rules of
:data:`toponas.topo.rules.RULE_TABLE` then rewrite the items, in table order, pass after pass until none
applies (a fixed point). A plan is built from the candidate declarations alone (``OpSpec`` chains), so
it is cached and shared by every unit with the same candidates.

The concerns live in their own modules: the data types (:mod:`~toponas.topo.items`), lowering, the
rewrites (:mod:`~toponas.topo.rewrites`), the cost model (:mod:`~toponas.topo.cost`) and printing
(:mod:`~toponas.topo.describe`); their public names are re-exported here.
"""

from __future__ import annotations

import functools

from ..spaces.primitives import OpSpec
from .cost import CALL_OVERHEAD_MACS, call_cost, depthwise_cost, partition_calls, partition_depthwise
from .describe import chain_name, prim_name, source_name, stack_decision
from .items import (
    Block,
    Chain,
    ConvBN,
    ConvCall,
    Dropped,
    GroupPlan,
    Item,
    Path,
    PlanError,
    SepStage,
    Source,
    Stack,
    Tap,
)
from .lower import SOURCE_BN_EPS, lower
from .rules import RULE_TABLE


@functools.lru_cache(maxsize=1024)
def plan_group(edge_specs: tuple[tuple[OpSpec, ...], ...], channels: int, rules: frozenset[str],
               alive: tuple[tuple[int, ...], ...] | None = None) -> GroupPlan:
    """Plan the edges reading one input: lower every path, then apply ``rules`` to a fixed point.

    ``alive[slot]`` (optional) lists the candidates of edge slot ``slot`` to plan (the others are pruned:
    not planned, never run); the paths keep their candidates' indices, so weights and modules are read as
    for the whole set."""
    unknown = set(rules) - {r.name for r in RULE_TABLE}
    if unknown:
        raise ValueError(f"no planner for rule(s) {sorted(unknown)}")
    items = tuple(
        lower(Path(slot, cand, spec.name, spec.chain))
        for slot, specs in enumerate(edge_specs)
        for cand, spec in enumerate(specs)
        if alive is None or cand in alive[slot]
    )
    order = [r.apply for r in RULE_TABLE if r.name in rules]
    for _ in range(64):
        new = items
        for apply in order:
            new = apply(new, channels)
        if new == items:
            break
        items = new
    else:  # pragma: no cover - every rule only ever merges, so this cannot loop
        raise RuntimeError("simplifier rules did not reach a fixed point")
    return GroupPlan(len(edge_specs), channels, frozenset(rules), items)


__all__ = ["plan_group", "GroupPlan", "PlanError", "Item", "Path", "Source", "Tap", "Chain", "Dropped", "ConvBN",
           "ConvCall", "Stack", "SepStage", "Block", "SOURCE_BN_EPS", "CALL_OVERHEAD_MACS", "call_cost",
           "depthwise_cost", "partition_calls", "partition_depthwise", "chain_name", "prim_name", "source_name",
           "stack_decision"]
