"""Per-step seeds: a resumed run draws the same random numbers as an uninterrupted one."""

from __future__ import annotations

#: Seeds must fit torch.manual_seed (64 bits) and the data order's generators.
MAX_SEED = 2**63 - 1


def step_seed(seed: int, epoch: int, step: int) -> int:
    """The RNG seed of one step, so a resumed run draws the same samples as an uninterrupted one."""
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**63)
