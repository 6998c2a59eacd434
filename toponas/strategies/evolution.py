"""Evolutionary search over discrete architectures for the one-shot strategies (SPOS, BN-NAS, Pi-NAS).

Regularized evolution (Real et al. 2019), the form the SPOS family uses on NAS-Bench-201: a
population of ``population`` random architectures; each cycle samples ``sample`` of them, mutates
the best (one edge changes operation) and replaces the oldest. Candidates that break the constraint
(a FLOPs cap) are redrawn. The fitness is a black box (shared-weight accuracy, a BN score); every
architecture is scored at most once.
"""

from __future__ import annotations

import collections
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

Arch = tuple[int, ...]


@dataclass
class EvolutionResult:
    """The best architecture found, its fitness, and every (architecture, fitness) scored, in order."""

    best: Arch
    fitness: float
    history: list[tuple[Arch, float]] = field(default_factory=list)


def evolve(fitness: Callable[[Arch], float], choices: Sequence[int], *, population: int = 16, sample: int = 4,
           cycles: int = 48, rng: random.Random | None = None,
           allowed: Callable[[Arch], bool] | None = None, max_tries: int = 1000,
           repair: Callable[[Arch], Arch] | None = None) -> EvolutionResult:
    """Maximize ``fitness`` over architectures ``a`` with ``0 <= a[i] < choices[i]`` (see the module docstring).

    ``repair`` (optional) maps every drawn candidate before the constraint is checked (e.g. towards a
    cheaper architecture until a tight budget is met)."""
    if population < 1 or sample < 1 or cycles < 0:
        raise ValueError("evolution needs population >= 1, sample >= 1 and cycles >= 0")
    rng = rng or random.Random(0)
    allowed = allowed or (lambda a: True)
    cache: dict[Arch, float] = {}
    history: list[tuple[Arch, float]] = []

    def score(a: Arch) -> float:
        if a not in cache:
            cache[a] = float(fitness(a))
            history.append((a, cache[a]))
        return cache[a]

    def draw(make: Callable[[], Arch]) -> Arch:
        for _ in range(max_tries):
            a = make()
            if repair is not None:
                a = repair(a)
            if allowed(a):
                return a
        raise ValueError(f"no architecture meets the constraint after {max_tries} draws (is the FLOPs cap too low?)")

    def random_arch() -> Arch:
        return tuple(rng.randrange(n) for n in choices)

    def mutate(parent: Arch) -> Callable[[], Arch]:
        def make() -> Arch:
            child = list(parent)
            i = rng.randrange(len(child))
            options = [c for c in range(choices[i]) if c != child[i]] or [child[i]]
            child[i] = rng.choice(options)
            return tuple(child)
        return make

    pop: collections.deque[Arch] = collections.deque()
    for _ in range(population):
        a = draw(random_arch)
        score(a)
        pop.append(a)
    for _ in range(cycles):
        contenders = [pop[rng.randrange(len(pop))] for _ in range(min(sample, len(pop)))]
        parent = max(contenders, key=lambda a: cache[a])
        child = draw(mutate(parent))
        score(child)
        pop.append(child)
        pop.popleft()
    best = max(cache, key=lambda a: cache[a])
    return EvolutionResult(best, cache[best], history)
