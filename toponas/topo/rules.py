"""Modes and rewrite rules of the simplifier, and how a mode plus overrides becomes a rule set.

The rules themselves (what each one rewrites in a plan) live in :mod:`toponas.topo.plan`; this module
only names them, so the command line and the search loop can validate a choice without building
anything.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

#: ``off``: the plain supernet; ``exact``: the exact rules only; ``full``: every rule.
MODES = ("off", "exact", "full")


@dataclass(frozen=True)
class RuleInfo:
    """A rewrite rule's name, whether it is exact, and what it does (for ``--help`` and explain)."""

    name: str
    exact: bool
    summary: str


RULE_INFO: tuple[RuleInfo, ...] = (
    RuleInfo(
        "prefix",
        True,
        "shared prefix: a parameter-free primitive (relu, pooling) of the same input runs once "
        "for every candidate and edge that starts with it",
    ),
    RuleInfo(
        "fusion",
        True,
        "linear fusion: conv->bn candidates reading one input run as one convolution per kernel "
        "size with their kernels stacked along the output channels and one bn call; 'none' drops out",
    ),
    RuleInfo(
        "float_norm",
        False,
        "floating normalization: the conv->bn candidates of an edge become one conv with the "
        "weighted sum of their per-channel normalized kernels, one bn, and the group weight outside "
        "(exact at one-hot weights)",
    ),
    RuleInfo(
        "shared_pointwise",
        False,
        "shared pointwise stage: the depthwise -> 1x1 conv -> bn candidates of an edge (DARTS separable "
        "and dilated convolutions) run as one stage: depthwise kernels fused (calls chosen by cost), one "
        "1x1 conv and one bn, group weight outside; again for the stages that follow (exact at one-hot weights)",
    ),
)

#: The rule names, in the order they are applied within one pass.
RULES: tuple[str, ...] = tuple(r.name for r in RULE_INFO)
EXACT_RULES: frozenset[str] = frozenset(r.name for r in RULE_INFO if r.exact)


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
