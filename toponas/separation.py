"""Has a search decided? Per-epoch separation of the mixing weights, and the verdict at the end.

A gradient search derives its architecture by an argmax over per-edge candidate probabilities. When
the two strongest candidates of an edge are nearly equal, that argmax is decided by noise: the cell
is then close to a random pick, however long the run took. Each epoch records, per edge, the
*margin* (largest minus second-largest probability), the mean normalized entropy, and whether the
derived architecture changed; the end of a search turns them into ``decided: true|false`` with a
reason. The threshold is calibrated on runs (``docs/quality.md``, "When has a search decided?").
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

#: A search is undecided when the median edge margin at the end is below this (probability units).
#: Calibrated on runs (``benchmarks/calibrate_separation.py``, docs/quality.md): no edge whose margin
#: reached 0.005 changed its winner later in any of them; below 0.002, 36-56 % still did.
DEFAULT_MARGIN = 0.005
#: ... or when the derived architecture changed in any of this many last epochs.
STABLE_EPOCHS = 2

ADVICE = "this architecture is close to a random pick; run longer or raise a_lr (--epochs, --hp a_lr=...)"


def edge_margins(probabilities: Mapping[str, torch.Tensor]) -> dict[str, list[float]]:
    """Per group, per edge: largest minus second-largest candidate probability (0 = a tie)."""
    out = {}
    for group, p in probabilities.items():
        p = p.detach().float().reshape(-1, p.shape[-1])
        if p.shape[-1] < 2:
            out[group] = [1.0] * p.shape[0]
            continue
        top = p.topk(2, dim=-1).values
        out[group] = (top[:, 0] - top[:, 1]).cpu().tolist()
    return out


def mean_entropy(probabilities: Mapping[str, torch.Tensor]) -> float:
    """Mean entropy of the per-edge distributions in units of ``log K`` (1 = uniform, 0 = one-hot)."""
    values = []
    for p in probabilities.values():
        p = p.detach().double().reshape(-1, p.shape[-1])
        if p.shape[-1] < 2:
            values += [0.0] * p.shape[0]
            continue
        h = -(p * p.clamp_min(1e-300).log()).sum(-1) / math.log(p.shape[-1])
        values += h.cpu().tolist()
    return float(statistics.fmean(values)) if values else 0.0


def epoch_record(probabilities: Mapping[str, torch.Tensor], genotype: str, previous: str | None) -> dict[str, Any]:
    """The separation fields of one epoch's ``history`` line."""
    margins = edge_margins(probabilities)
    flat = [m for ms in margins.values() for m in ms]
    return {
        "margins": margins,
        "min_margin": min(flat) if flat else 1.0,
        "median_margin": statistics.median(flat) if flat else 1.0,
        "mean_entropy": mean_entropy(probabilities),
        "cell_changed": previous is not None and genotype != previous,
    }


@dataclass(frozen=True)
class Verdict:
    """Whether the architecture parameters separated, and why not."""

    decided: bool
    reason: str | None = None


def verdict(history: Sequence[Mapping[str, Any]], threshold: float = DEFAULT_MARGIN,
            stable_epochs: int = STABLE_EPOCHS) -> Verdict:
    """The end-of-search verdict from the ``history`` lines (those written by :func:`epoch_record`)."""
    lines = [h for h in history if "median_margin" in h]
    if not lines:
        return Verdict(True)  # nothing recorded (e.g. a strategy without per-edge probabilities)
    last = lines[-1]
    median = float(last["median_margin"])
    if median < threshold:
        return Verdict(False, f"the architecture parameters did not separate: the median margin between the two "
                              f"strongest candidates of an edge is {median:.4f} < {threshold:g}; {ADVICE}")
    changed = [int(h["epoch"]) for h in lines[-stable_epochs:] if h.get("cell_changed")]
    if changed:
        return Verdict(False, f"the derived architecture still changed in epoch {changed[-1]} of "
                              f"{int(last['epoch'])}; {ADVICE}")
    return Verdict(True)


def disconnected(arch: Any) -> bool:
    """True for an architecture that knows it has no path from input to output (all through ``none``).

    Spaces whose architectures cannot be disconnected (no ``connected`` method) are never flagged."""
    connected = getattr(arch, "connected", None)
    return callable(connected) and not connected()
