"""TopoNAS simplifier: rewrite a supernet's mixed edges into cheaper execution plans.

It knows nothing of search strategies: it changes how a cell computes ``sum_i w_i * op_i(x)`` for the
weights it is given, not how they are produced. ``simplify(model, mode)`` rewrites
every search unit (``toponas.spaces.protocol``) in place;
``explain(space, mode)`` prints a plan with its cost; ``verify(space, mode)`` checks it numerically.
"""

from __future__ import annotations

from .explain import explain
from .measure import conv_cost, saved_activation_bytes, saved_activations
from .modules import SimplifiedEdge, SimplifiedUnit
from .plan import GroupPlan, PlanError, plan_group
from .rules import EXACT_RULES, MODES, RULE_INFO, RULE_TABLE, RULES, Rule, resolve_rules
from .simplify import simplify
from .verify import VerifyReport, verify

__all__ = [
    "MODES",
    "RULES",
    "RULE_INFO",
    "RULE_TABLE",
    "Rule",
    "EXACT_RULES",
    "resolve_rules",
    "simplify",
    "explain",
    "verify",
    "VerifyReport",
    "saved_activation_bytes",
    "saved_activations",
    "conv_cost",
    "SimplifiedUnit",
    "SimplifiedEdge",
    "GroupPlan",
    "PlanError",
    "plan_group",
]
