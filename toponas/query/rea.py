"""Regularized evolution (REA; Real et al., AAAI 2019) as run on NAS-Bench-201.

Defaults are those of the NAS-Bench-201 reference script (xautodl ``exps/NATS-algos/regularized_ea.py``
run with ``--ea_population 10 --ea_sample_size 3``): a population of 10 random cells, then per cycle a
tournament of 3 drawn from the population, the winner's child (one edge set to another candidate) is
queried and joins the population, whose oldest member leaves.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from .base import QueryHyper, QueryStrategy
from .encoding import Arch


@dataclass
class REAHyper(QueryHyper):
    population: int = 10  # xautodl R_EA --ea_population 10
    sample_size: int = 3  # tournament size, xautodl --ea_sample_size 3

    def __post_init__(self) -> None:
        if self.population < 1 or not 1 <= self.sample_size <= self.population:
            raise ValueError(f"REA needs population >= 1 and 1 <= sample_size <= population, got "
                             f"population={self.population}, sample_size={self.sample_size}")


class REA(QueryStrategy):
    """Ageing evolution: tournament selection, one-edge mutation, oldest member removed."""

    name = "rea"
    Hyper = REAHyper

    def __init__(self, encoding, hyper=None, seed: int = 0) -> None:
        super().__init__(encoding, hyper, seed)
        self.population: collections.deque[tuple[Arch, float]] = collections.deque()

    def ask(self) -> list[Arch]:
        h = self.hyper
        if len(self.history) < h.population:
            return [self.encoding.random(self.rng)]
        sample = self.rng.sample(list(self.population), h.sample_size)
        parent = max(sample, key=lambda m: m[1])[0]
        return [self.encoding.mutate(parent, self.rng)]

    def tell(self, arch: Arch, accuracy: float) -> None:
        super().tell(arch, accuracy)
        self.population.append((arch, accuracy))
        if len(self.population) > self.hyper.population:
            self.population.popleft()
