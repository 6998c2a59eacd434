"""Modes and rewrite rules of the simplifier, and how a mode plus overrides becomes a rule set.

:data:`RULE_TABLE` is the one table of rules, in the order they are applied; each entry's ``apply`` is a
local match-and-rewrite (:mod:`toponas.topo.rewrites`). The command line and the search loop validate
a choice with :func:`resolve_rules` without building anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import rewrites
from .rewrites import Apply

#: ``off``: the plain supernet; ``exact``: the exact rules only; ``full``: every rule.
MODES = ("off", "exact", "full")


@dataclass(frozen=True)
class Rule:
    """A rewrite rule: its name, whether it is exact, what it does (``--help``, explain), and its ``apply``
    (``apply(items, channels) -> items``, a local match-and-rewrite: :func:`toponas.topo.rewrites.local_rule`)."""

    name: str
    exact: bool
    summary: str
    apply: Apply


#: The one rule table, in the order the rules are applied within a pass (passes repeat to a fixed point).
#: ``RULES``, ``EXACT_RULES``, ``--topo-disable``, ``explain`` and ``verify`` all read it.
RULE_TABLE: tuple[Rule, ...] = (
    Rule(
        "prefix",
        True,
        "shared prefix: a parameter-free primitive (relu, pooling) of the same input runs once "
        "for every candidate and edge that starts with it",
        rewrites.PREFIX,
    ),
    Rule(
        "float_norm",
        False,
        "floating normalization: the conv->bn candidates of an edge become one conv with the "
        "weighted sum of their per-channel normalized kernels, one bn, and the group weight outside "
        "(exact at one-hot weights)",
        rewrites.FLOAT_NORM,
    ),
    Rule(
        "shared_pointwise",
        False,
        "shared pointwise stage: the depthwise -> 1x1 conv -> bn candidates of an edge (DARTS separable "
        "and dilated convolutions) run as one stage: depthwise kernels fused (calls chosen by cost), one "
        "1x1 conv and one bn, group weight outside; again for the stages that follow (exact at one-hot weights)",
        rewrites.SHARED_POINTWISE,
    ),
    Rule(
        "block_merge",
        False,
        "merged block: the inverted-residual (MBConv) candidates of an edge run as one block of the largest "
        "shape: smaller expansions zero-padded (a channel mask), each conv's kernel the weighted sum of the "
        "candidates' per-channel normalized kernels (depthwise ones padded to the largest), one bn per stage, "
        "group weight outside (exact at one-hot weights)",
        rewrites.BLOCK_MERGE,
    ),
    Rule(
        "fusion",
        True,
        "linear fusion: conv->bn candidates reading one input run as one convolution per kernel "
        "size with their kernels stacked along the output channels and one bn call; 'none' drops out",
        rewrites.FUSION,
    ),
    Rule(
        "block_stack",
        True,
        "stacked blocks: the inverted-residual (MBConv) candidates of an edge run as one expand conv (kernels "
        "stacked), one bn, one depthwise call over the stacked channels (kernels zero-padded to the largest), "
        "one bn, the project convs as one grouped call per expansion and one bn with the weights as its scale",
        rewrites.BLOCK_STACK,
    ),
)

#: The rule names, in the order they are applied within one pass.
RULES: tuple[str, ...] = tuple(r.name for r in RULE_TABLE)
EXACT_RULES: frozenset[str] = frozenset(r.name for r in RULE_TABLE if r.exact)
#: Kept for callers that only read names and summaries.
RULE_INFO = RULE_TABLE
#: The names as constants, for code that must refer to one rule (verify's literal formulas): the table
#: above is the only place they are spelled.
PREFIX, FLOAT_NORM, SHARED_POINTWISE, BLOCK_MERGE, FUSION, BLOCK_STACK = RULES


def _names(value: Iterable[str] | str | None, what: str) -> list[str]:
    """Rule names from an iterable or a comma-separated string, checked against :data:`RULES`."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names = [str(v).strip() for v in items if str(v).strip()]
    unknown = [n for n in names if n not in RULES]
    if unknown:
        raise ValueError(f"unknown {what} {', '.join(map(repr, unknown))}; valid rules: {', '.join(RULES)}")
    return names


def resolve_rules(
    mode: str, rules: Iterable[str] | str | None = None, disable: Iterable[str] | str = ()
) -> frozenset[str]:
    """The rule set of ``mode`` (``rules`` replaces its default set), minus ``disable``.

    ``exact`` defaults to the exact rules and refuses an inexact one; ``full`` defaults to all;
    ``off`` has none. Unknown modes or rule names raise ``ValueError`` listing the valid ones.
    """
    if mode not in MODES:
        raise ValueError(f"unknown simplifier mode {mode!r}; valid modes: {', '.join(MODES)}")
    chosen = _names(rules, "rule(s)")
    removed = _names(disable, "rule(s) to disable")
    if mode == "off":
        if chosen:
            raise ValueError("mode 'off' applies no rules; use mode 'exact' or 'full' to choose rules")
        return frozenset()
    default = EXACT_RULES if mode == "exact" else frozenset(RULES)
    selected = frozenset(chosen) if rules is not None else default
    inexact = sorted(selected - EXACT_RULES, key=RULES.index)
    if mode == "exact" and inexact:
        raise ValueError(f"rule(s) {', '.join(inexact)} are not exact; use mode 'full' for them")
    return selected - frozenset(removed)
