"""Rank correlations without scipy: Kendall's tau-b and Spearman's rho (ties get average ranks).

Both are written out from their definitions so they can be checked against values computed by hand
(``tests/test_ranking.py``). Kendall's tau-b counts concordant and discordant pairs in O(n^2) with
numpy broadcasting in blocks; for the 15,625 cells of NAS-Bench-201 that is about 1.2e8 pairs,
a few seconds.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``values``; tied values share the mean of the ranks they span."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    i = 0
    while i < len(x):
        j = i
        while j + 1 < len(x) and sorted_x[j + 1] == sorted_x[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1  # ranks i+1 .. j+1, averaged
        i = j + 1
    return ranks


def _check(a: Sequence[float], b: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x, y = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"expected two sequences of the same length, got shapes {x.shape} and {y.shape}")
    if len(x) < 2:
        raise ValueError("a rank correlation needs at least 2 values")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("rank correlation of non-finite values")
    return x, y


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    """Spearman's rho: the Pearson correlation of the average ranks (NaN if one side is constant)."""
    x, y = _check(a, b)
    rx, ry = average_ranks(x), average_ranks(y)
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum()) / denom if denom > 0 else math.nan


def kendall(a: Sequence[float], b: Sequence[float], block: int = 2048) -> float:
    """Kendall's tau-b: ``(C - D) / sqrt((n0 - T_x) (n0 - T_y))`` over all pairs (NaN if one side is constant).

    ``C``/``D`` count concordant/discordant pairs, ``n0 = n (n - 1) / 2``, ``T_x``/``T_y`` the pairs
    tied in ``a``/``b``. Pairs are compared in blocks of rows to bound memory.
    """
    x, y = _check(a, b)
    n = len(x)
    s = 0  # C - D
    for start in range(0, n, block):
        stop = min(start + block, n)
        dx = np.sign(x[start:stop, None] - x[None, :])
        dy = np.sign(y[start:stop, None] - y[None, :])
        s += int((dx * dy).sum())
    s //= 2  # every pair was seen twice (i, j) and (j, i)
    n0 = n * (n - 1) // 2

    def tied_pairs(v: np.ndarray) -> int:
        _, counts = np.unique(v, return_counts=True)
        return int((counts * (counts - 1) // 2).sum())

    denom = math.sqrt((n0 - tied_pairs(x)) * (n0 - tied_pairs(y)))
    return s / denom if denom > 0 else math.nan
