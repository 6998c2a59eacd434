"""Entries corrected to their context: a ridge fit of the isolated entries on end-to-end measurements.

A part timed alone pays its own call and cache warm-up, which a whole network's consecutive parts
share or overlap, and the share depends on the part's size (its stage's resolution and width); so the
sum of isolated entries is off by an amount that grows with the network, not by a constant. The fit
(``correction="stages"``) models a network's measured latency as

    measured = overhead + sum over its parts p of (scale[g] * entry[p] + offset[g]) + sum_p delta[p]

with ``g`` the part's group (``head`` or the block's stage, ``s1`` ... ``s5``; the stem is in every
network, so it stays in the overhead). ``correction="parts"`` adds one ``delta`` per part (a one-hot
feature of the parts present); ``"stages"`` leaves them 0. Every coefficient is pulled by a ridge
penalty towards the isolated table (``scale`` 1, ``offset`` 0, ``delta`` 0; the overhead is free),
and the residuals are relative (weights ``1 / measured**2``: the goal is a percentage error). The
ridge strength is chosen by leave-one-out error over the fit networks alone (closed form: the
residual over ``1 - H_ii``). ``correction="overhead"`` is the table's first fit: the median of
``measured - sum``. A corrected entry is ``scale[g] * entry[p] + offset[g] + delta[p]``, so the
prediction stays the sum of the network's (corrected) entries plus the overhead.
"""

from __future__ import annotations

import statistics
from typing import Any

import numpy as np

#: The fits ``build`` knows (``--correction``).
CORRECTIONS = ("stages", "parts", "overhead")
#: Ridge strengths tried (relative to the standardized features; chosen by leave-one-out error).
LAMBDAS = (1e-4, 1e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)


def group_of(key: str) -> str:
    """A part's group: ``stem``, ``head``, or its block's stage (``s2.b1:k5e6:12>24`` is ``s2``)."""
    if key == "stem" or key.startswith("head"):
        return key.split(":")[0]
    return key.split(".")[0]


def corrected(entry: float, key: str, fit: dict[str, Any] | None) -> float:
    """The entry of part ``key`` as its network runs it (the isolated entry when the fit has no groups)."""
    if not fit or "groups" not in fit:
        return entry
    g = fit["groups"].get(group_of(key), {"scale": 1.0, "offset_ms": 0.0})
    return g["scale"] * entry + g["offset_ms"] + fit.get("parts", {}).get(key, 0.0)


def _design(networks: list[list[str]], entries: dict[str, float], groups: list[str], parts: list[str]) -> np.ndarray:
    """Rows: a network's features ``[1, sum of entries per group, parts per group, one-hot parts]``."""
    gi, pi = {g: i for i, g in enumerate(groups)}, {p: i for i, p in enumerate(parts)}
    n_g = len(groups)
    x = np.zeros((len(networks), 1 + 2 * n_g + len(parts)))
    x[:, 0] = 1.0
    for r, keys in enumerate(networks):
        for k in keys:
            g = group_of(k)
            if g in gi:
                x[r, 1 + gi[g]] += entries[k]
                if g != "head":  # the head is in every network: its count is the intercept's
                    x[r, 1 + n_g + gi[g]] += 1.0
            if k in pi:
                x[r, 1 + 2 * n_g + pi[k]] += 1.0
    return x


def _ridge(
    x: np.ndarray, y: np.ndarray, prior: np.ndarray, penalized: np.ndarray, lam: float, measured: np.ndarray
) -> tuple[np.ndarray, float]:
    """Ridge of ``y`` on ``x`` towards ``prior``, weights ``1/measured**2``; coefficients, leave-one-out MAPE (%)."""
    w = 1.0 / measured**2
    scale = np.sqrt((w[:, None] * (x - (w[:, None] * x).sum(0) / w.sum()) ** 2).sum(0) / w.sum())
    pen = np.where(penalized, lam * len(y) * np.maximum(scale, 1e-12) ** 2, 0.0)
    xtw = x.T * w
    a = xtw @ x + np.diag(pen)
    r0 = y - x @ prior
    try:  # one factorization for the coefficients and the hat matrix's diagonal
        sol = np.linalg.solve(a, np.column_stack([xtw @ r0, xtw]))
    except np.linalg.LinAlgError:  # singular (a feature without penalty and without variation)
        sol = np.linalg.pinv(a) @ np.column_stack([xtw @ r0, xtw])
    delta = sol[:, 0]
    coef = prior + delta
    hat = np.einsum("ij,ji->i", x, sol[:, 1:])
    loo = (r0 - x @ delta) / np.maximum(1.0 - hat, 1e-9)
    return coef, 100.0 * float(np.mean(np.abs(loo) / measured))


def fit_correction(
    entries: dict[str, float], networks: list[list[str]], measured: list[float], correction: str = "stages"
) -> dict[str, Any]:
    """Fit ``correction`` on ``networks`` (their part keys) and ``measured`` ms; the table's fit record."""
    y = np.asarray(measured, dtype=np.float64)
    sums = [sum(entries[k] for k in keys) for keys in networks]
    if correction == "overhead":
        return {
            "ms": statistics.median(m - s for m, s in zip(measured, sums)),
            "method": "median of measured - sum over the fit networks",
        }
    groups = sorted({group_of(k) for keys in networks for k in keys} - {"stem"})
    parts = sorted({k for keys in networks for k in keys if k != "stem"}) if correction == "parts" else []
    x = _design(networks, entries, groups, parts)
    fixed = np.asarray([sum(entries[k] for k in keys if group_of(k) not in groups) for keys in networks])
    y = y - fixed  # the stem (in every network) is predicted by its entry as timed; the rest is fitted
    n_g = len(groups)
    prior = np.zeros(x.shape[1])
    prior[1 : 1 + n_g] = 1.0  # scale 1: the isolated entries
    prior[0] = float(np.median(y + fixed - np.asarray(sums)))  # the median overhead (the intercept is free)
    penalized = np.ones(x.shape[1], dtype=bool)
    penalized[0] = False
    used = x.any(axis=0) | ~penalized
    best = None
    for lam in LAMBDAS:
        coef = np.zeros(x.shape[1])
        coef[used], loo = _ridge(x[:, used], y, prior[used], penalized[used], lam, y + fixed)
        if best is None or loo < best[2]:
            best = (lam, coef, loo)
    lam, coef, loo = best
    fitted, y = x @ coef + fixed, y + fixed
    return {
        "ms": float(coef[0]),
        "method": "ridge fit of a scale and an offset per group"
        + (" and a delta per part" if parts else "")
        + " towards the isolated entries, relative residuals",
        "correction": correction,
        "lambda": lam,
        "loo_mape": loo,
        "fit_mape": 100.0 * float(np.mean(np.abs(fitted - y) / y)),
        "groups": {
            g: {"scale": float(coef[1 + i]), "offset_ms": float(coef[1 + n_g + i])} for i, g in enumerate(groups)
        },
        "parts": {p: float(coef[1 + 2 * n_g + i]) for i, p in enumerate(parts)},
    }


__all__ = ["CORRECTIONS", "LAMBDAS", "corrected", "fit_correction", "group_of"]
