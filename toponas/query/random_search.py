"""Random search: uniform cells the run has not queried yet (the NAS-Bench-201 anchor)."""

from __future__ import annotations

from .base import QueryStrategy
from .encoding import Arch


class RandomSearch(QueryStrategy):
    """Uniform sampling without repetition (a repeat would cost nothing but tell nothing either)."""

    name = "random"

    def ask(self) -> list[Arch]:
        seen = {a for a, _ in self.history}
        if len(seen) >= self.encoding.size:
            return [self.history[0][0]]  # the space is exhausted: the driver stops on repeats
        while True:
            arch = self.encoding.random(self.rng)
            if arch not in seen:
                return [arch]
