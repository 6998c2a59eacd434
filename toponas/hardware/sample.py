"""Random networks of a given latency: the reference a latency-targeted search is judged against.

A found network is worth something when it beats networks that run as fast as it does, drawn without
any search. :func:`archs_near` draws them: uniform over the space (every row uniform, as
:func:`~toponas.hardware.lut.random_archs`), conditioned on the predicted latency lying within
``band`` of a target, by rejection sampling batched through :class:`~toponas.hardware.model.LatencyModel`.
Near the ends of the latency range such networks are too rare to draw that way (one in millions); the
rest are then taken from a random walk that stays in the band (change one row to a uniform choice; a
move out of the band is refused), whose stationary distribution is the same, uniform over the networks
in the band; samples are ``thin`` moves apart, after ``burn_in`` moves from the walk's start.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

from .model import LatencyModel
from .parts import LatencyError


def archs_near(model: LatencyModel, target_ms: float, n: int, band: float = 0.05, seed: int = 0,
               exclude: Iterable[str] = (), batch: int = 20_000, max_draws: int = 400_000,
               start: str | None = None, burn_in: int = 2_000, thin: int = 200) -> list[str]:
    """``n`` distinct uniform random architectures predicted within ``target_ms * (1 +- band)``.

    Deterministic in ``seed``; strings in ``exclude`` (e.g. the found network) are never returned.
    When ``max_draws`` uniform draws hold fewer than ``n``, the rest come from the in-band walk from
    ``start`` (an architecture in the band, e.g. the found network); when still fewer than ``n`` (no
    ``start``, or the walk's moves found too few new networks), raises :class:`LatencyError`.
    """
    if n < 1 or band <= 0 or target_ms <= 0:
        raise LatencyError(f"archs_near needs n >= 1, band > 0 and a positive target (got {n}, {band}, {target_ms})")
    space = model.space
    gen = torch.Generator().manual_seed(seed)
    lo, hi = target_ms * (1 - band), target_ms * (1 + band)
    seen, out, drawn = set(exclude), [], 0
    while len(out) < n and drawn < max_draws:
        choices = {g: torch.randint(0, k, (batch, r), generator=gen) for g, (r, k) in space.arch_shapes.items()}
        drawn += batch
        ms = model(choices)
        for i in ((ms >= lo) & (ms <= hi)).nonzero().flatten().tolist():
            if _keep(space, {g: c[i] for g, c in choices.items()}, seen, out) and len(out) == n:
                break
    if len(out) < n and start is not None:
        out += _walk(model, lo, hi, n - len(out), gen, seen, start, burn_in, thin)
    if len(out) < n:
        raise LatencyError(f"only {len(out)} of {drawn:,} random networks are predicted within {100 * band:g}% of "
                           f"{target_ms:.3f} ms; widen the band or pick another target")
    return out


def _walk(model: LatencyModel, lo: float, hi: float, n: int, gen: torch.Generator, seen: set[str], start: str,
          burn_in: int, thin: int) -> list[str]:
    """``n`` new networks from the random walk inside ``[lo, hi]`` (see the module docstring)."""
    space = model.space
    state = {g: c.clone() for g, c in space.choices(start).items()}
    if not lo <= float(model(state)) <= hi:
        raise LatencyError(f"the walk's start {start} is not within {lo:.3f}-{hi:.3f} ms")
    rows = [(g, i, space.arch_shapes[g][1]) for g, (r, _) in space.arch_shapes.items() for i in range(r)]
    out: list[str] = []
    for step in range(burn_in + thin * n * 20):
        g, i, k = rows[int(torch.randint(0, len(rows), (1,), generator=gen))]
        old = int(state[g][i])
        state[g][i] = int(torch.randint(0, k, (1,), generator=gen))
        if not lo <= float(model(state)) <= hi:
            state[g][i] = old  # out of the band: stay
        if step >= burn_in and (step - burn_in) % thin == thin - 1 and _keep(space, state, seen, out) \
                and len(out) == n:
            break
    return out


def _keep(space, choices: dict[str, torch.Tensor], seen: set[str], out: list[str]) -> bool:
    """Append the architecture of one network's candidate indices to ``out`` unless ``seen``; whether it was new."""
    pick = {g: torch.nn.functional.one_hot(c, space.arch_shapes[g][1]).float() for g, c in choices.items()}
    arch = str(space.derive(pick))
    if arch in seen:
        return False
    seen.add(arch)
    out.append(arch)
    return True
