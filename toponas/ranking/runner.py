"""``toponas rank``: score sampled cells with one indicator (or a sum of ranks of several), against the table.

Cells are a seeded uniform sample without repeats of the space (``cells=None``: all of them, in the
space's enumeration order). Every cell's network is built from a seed derived from (seed, cell), so
a score does not depend on the order, the process or a resumption. Scores are written to
``OUT.partial`` as they come (atomically, every few seconds); a re-run with the same settings keeps
them and scores only the rest, then writes ``OUT`` and removes the partial file.

An indicator name ``a+b`` (e.g. ``synflow+naswot``) scores each component and ranks cells by the sum
of the components' normalized average ranks over the scored cells: a relative score, documented as a
combination in ``docs/ranking.md``.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..benchmark import BenchmarkError, BenchmarkTable
from ..config import ConfigError
from ..data import load_dataset, normalize
from ..data.batches import derive_seed
from ..flops import arch_flops
from ..loop.checkpoint import write_json
from ..spaces import NB201Space, create_space
from .correlation import average_ranks, kendall, spearman
from .indicators import GRADIENT_BASED, ZERO_COST, loss_gradients, nasi, parameter_count

#: Every indicator ``toponas rank`` knows (higher is better for each; see ``docs/ranking.md``).
INDICATORS = ("grad_norm", "snip", "synflow", "naswot", "nasi", "bn-gamma", "supernet", "flops", "params")
NEEDS_DATA = {"grad_norm", "snip", "synflow", "naswot", "nasi"}
NEEDS_RUN = {"bn-gamma", "supernet"}


@dataclass
class RankSettings:
    """What determines the scores (a resumed ranking must match these)."""

    indicator: str
    space: str = "nb201"
    cells: int | None = 1000  # None: every cell of the space
    seed: int = 0
    dataset: str = "cifar10"
    channels: int = 16  # the proxy network scored by the zero-cost indicators (C, N)
    layers: int = 5
    batch_size: int = 64
    image_size: int | None = None
    supernet: str | None = None
    threads: int = 1  # torch threads (1 is fastest on a shared CPU; not a scoring setting)
    nasi_mu: float = 1.0
    nasi_nu: float = 0.0  # 0: no cap

    @property
    def components(self) -> list[str]:
        return self.indicator.split("+")


def check_indicator(name: str) -> list[str]:
    """The components of an indicator name, or a ``ConfigError`` listing the known ones."""
    parts = [p.strip() for p in name.split("+")]
    bad = [p for p in parts if p not in INDICATORS]
    if bad or not parts:
        raise ConfigError(f"unknown indicator {', '.join(bad) or name!r}; known: {', '.join(INDICATORS)} "
                          "(or a sum of ranks like synflow+naswot)")
    if len(set(parts)) != len(parts):
        raise ConfigError(f"indicator {name!r} names a component twice")
    return parts


def space_size(space: NB201Space) -> int:
    return len(space.op_names) ** space.num_edges


def all_cells(space: NB201Space) -> list[str]:
    """Every cell of an NB201-style space, edges in order, operations in the space's order."""
    from ..spaces.cell import Cell

    return [str(Cell.from_ops(ops)) for ops in itertools.product(space.op_names, repeat=space.num_edges)]


def sample_cells(space: NB201Space, n: int | None, seed: int) -> list[str]:
    """``n`` distinct cells drawn uniformly with ``random.Random(seed)`` (``None``: all, in order)."""
    cells = all_cells(space)
    if n is None:
        return cells
    return [cells[i] for i in random.Random(seed).sample(range(len(cells)), n)]


def fixed_batch(ds, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``size`` training images drawn with a seeded permutation, normalized, not augmented."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(ds.train_y), generator=g)[:size]
    return normalize(ds.train_x[idx], ds.mean, ds.std), ds.train_y[idx]


class Scorer:
    """Scores of the components of one indicator for a cell (one network built per cell)."""

    def __init__(self, settings: RankSettings, space: NB201Space, num_classes: int,
                 batch: tuple[torch.Tensor, torch.Tensor] | None, image_size: int,
                 run_scorers: dict[str, Callable[[str], float]] | None = None) -> None:
        self.s, self.space, self.num_classes = settings, space, num_classes
        self.batch, self.image_size = batch, image_size
        self.run_scorers = run_scorers or {}
        self.seconds: dict[str, float] = {name: 0.0 for name in settings.components}  # per component

    def __call__(self, cell: str) -> dict[str, float]:
        """Every component's score of ``cell``; the network is built once, from a (seed, cell) seed."""
        s = self.s
        out: dict[str, float] = {}
        net, grads = None, None
        for name in s.components:
            t0 = time.perf_counter()
            if name in self.run_scorers:
                out[name] = self.run_scorers[name](cell)
            elif name == "flops":
                out[name] = float(arch_flops(self.space, cell, s.channels, s.layers, self.image_size,
                                             self.num_classes))
            else:
                if net is None:
                    torch.manual_seed(derive_seed("rank", s.seed, cell))
                    net = self.space.build_network(cell, s.channels, s.layers, self.num_classes)
                if name in GRADIENT_BASED and grads is None:
                    grads = loss_gradients(net, *self.batch)  # one backward pass for all of them
                if name == "params":
                    out[name] = float(parameter_count(net))
                elif name == "nasi":
                    out[name] = nasi(net, *self.batch, mu=s.nasi_mu, nu=s.nasi_nu or math.inf, grads=grads)
                elif name in GRADIENT_BASED:
                    out[name] = ZERO_COST[name](net, *self.batch, grads=grads)
                else:
                    out[name] = ZERO_COST[name](net, *self.batch)
            self.seconds[name] += time.perf_counter() - t0
        return out


def combined_scores(components: Sequence[str], scored: Sequence[dict[str, float]]) -> list[float]:
    """One score per cell: the component itself, or the sum of normalized average ranks (``-inf`` lowest)."""
    columns = [[_finite_or_low(c[name], [d[name] for d in scored]) for c in scored] for name in components]
    if len(components) == 1:
        return [c[components[0]] for c in scored]
    n = len(scored)
    ranks = [average_ranks(col) / n for col in columns]
    return [float(sum(r[i] for r in ranks)) for i in range(n)]


def _finite_or_low(value: float, column: Sequence[float]) -> float:
    if math.isfinite(value):
        return value
    finite = [v for v in column if math.isfinite(v)]
    return (min(finite) if finite else 0.0) - 1.0


@dataclass
class Ranking:
    """The result written to ``OUT`` (``cells``: arch and score, in sample order)."""

    indicator: str
    space: str
    seed: int
    cells: list[dict[str, Any]]
    kendall: dict[str, float]
    spearman: dict[str, float]
    seconds: float
    top: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    about: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_WORKER: Scorer | None = None  # the scorer a forked worker inherits
CHUNK = 16  # cells per task of a worker process


def _score_chunk(cells: list[str]) -> list[tuple[str, dict[str, float], float]]:
    assert _WORKER is not None
    out = []
    for cell in cells:
        t0 = time.perf_counter()
        out.append((cell, _WORKER(cell), time.perf_counter() - t0))
    return out


def _worker_init(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def _scored(scorer: Scorer, todo: list[str], jobs: int, threads: int):
    """``(cell, scores, seconds)`` for every cell of ``todo``: here, or in ``jobs`` forked processes."""
    global _WORKER
    if jobs <= 1 or len(todo) < 2:
        for cell in todo:
            t0 = time.perf_counter()
            yield cell, scorer(cell), time.perf_counter() - t0
        return
    import multiprocessing

    _WORKER = scorer
    chunks = [todo[i:i + CHUNK] for i in range(0, len(todo), CHUNK)]
    try:
        with multiprocessing.get_context("fork").Pool(jobs, initializer=_worker_init, initargs=(threads,)) as pool:
            for batch in pool.imap(_score_chunk, chunks):
                yield from batch
    finally:
        _WORKER = None


def _json_score(value: float) -> float | None:
    return value if math.isfinite(value) else None  # null: -inf (the lowest), e.g. a singular naswot kernel


def rank(settings: RankSettings, out: str | os.PathLike, *, data: str | None = None, benchmark: str | None = None,
         cache_dir: str | None = None, progress: bool = True, log: Callable[[str], None] = print,
         save_seconds: float = 5.0, stop_after: int | None = None, jobs: int = 1) -> Ranking:
    """Score the cells and write ``out`` (see the module docstring); ``stop_after`` (tests) stops early.

    ``jobs > 1`` scores chunks of cells in that many forked processes (one torch thread each unless
    ``threads`` says otherwise); ``seconds`` then sums the processes' scoring time.
    """
    components = check_indicator(settings.indicator)
    out = Path(out)
    partial_path = out.with_name(out.name + ".partial")
    space = create_space(settings.space)
    if not isinstance(space, NB201Space) or space.group != "cell":
        raise ConfigError(f"toponas rank scores NAS-Bench-201 style spaces; {settings.space!r} is not one")
    total = space_size(space)
    if settings.cells is not None and not 2 <= settings.cells <= total:
        raise ConfigError(f"--cells {settings.cells} is out of range: {settings.space} has {total} cells, "
                          "pass 2..{0} or all".format(total))
    table = BenchmarkTable.load(benchmark)
    if settings.dataset not in table.datasets:
        raise ConfigError(f"the benchmark {table.path} has no column {settings.dataset!r} "
                          f"(it has {', '.join(table.datasets)})")
    cells = sample_cells(space, settings.cells, settings.seed)
    missing = [c for c in cells[:50] if c not in table] or [c for c in cells if c not in table][:1]
    if missing:
        raise ConfigError(f"the benchmark {table.path} has no row for cells of space {settings.space} "
                          f"(e.g. {missing[0]}); is it this space's table?")

    wanted = asdict(settings)
    wanted.pop("threads")
    if settings.threads:
        torch.set_num_threads(settings.threads)
    done: dict[str, dict[str, float]] = {}
    seconds = 0.0
    for path in (out, partial_path):
        if not path.is_file():
            continue
        try:
            saved = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError) as e:
            raise ConfigError(f"{path} exists but is not a ranking ({e}); choose another --json") from None
        if not isinstance(saved, dict) or saved.get("settings") != wanted:
            raise ConfigError(f"{path} holds a ranking with other settings; choose another --json or delete it")
        done = {k: {n: (-math.inf if v is None else v) for n, v in c.items()} for k, c in saved["scores"].items()}
        seconds = float(saved.get("seconds", 0.0))
        break

    run_scorers: dict[str, Callable[[str], float]] = {}
    about: dict[str, Any] = {}
    for name in components:
        if name in NEEDS_RUN:
            if not settings.supernet:
                raise ConfigError(f"the {name} indicator reads a trained supernet: pass --supernet RUN")
            from .supernet import supernet_scorer

            run_scorers[name], about[name] = supernet_scorer(settings.supernet, name, settings.space, data)
    # flops and params need no images: their network has 10 classes and 32x32 inputs unless data is loaded
    num_classes, image_size, batch = 10, settings.image_size or 32, None
    if NEEDS_DATA & set(components):
        ds = load_dataset(settings.dataset, data, cache_dir=cache_dir, progress=progress)
        if settings.image_size and settings.image_size != ds.image_size:
            from ..loop.search import resized

            ds = resized(ds, settings.image_size)
        num_classes, image_size = ds.num_classes, ds.image_size
        batch = fixed_batch(ds, settings.batch_size, derive_seed("rank-batch", settings.seed))
    scorer = Scorer(settings, space, num_classes, batch, image_size, run_scorers)

    todo = [c for c in cells if c not in done]
    if done:
        where = out if out.is_file() else partial_path
        log(f"resuming: {len(cells) - len(todo)} of {len(cells)} cells already scored in {where}")

    def save_partial() -> None:
        write_json(partial_path, {"settings": wanted, "seconds": seconds,
                                  "scores": {k: {n: _json_score(v) for n, v in c.items()} for k, c in done.items()}})

    bar = tqdm(total=len(cells), initial=len(cells) - len(todo), desc=f"rank {settings.indicator}",
               disable=not progress, dynamic_ncols=True)
    last_save = time.perf_counter()
    try:
        for i, (cell, scores_of_cell, dt) in enumerate(_scored(scorer, todo, jobs, settings.threads)):
            done[cell] = scores_of_cell
            seconds += dt
            bar.update(1)
            if time.perf_counter() - last_save > save_seconds:
                save_partial()
                last_save = time.perf_counter()
            if stop_after is not None and i + 1 >= stop_after:
                save_partial()
                raise KeyboardInterrupt
    except KeyboardInterrupt:
        save_partial()
        bar.close()
        raise
    bar.close()

    scored = [done[c] for c in cells]
    scores = combined_scores(components, scored)
    truth = {d: [table.lookup(c)[d] for c in cells] for d in table.datasets}
    finite = [s if math.isfinite(s) else _finite_or_low(s, scores) for s in scores]
    order = sorted(range(len(cells)), key=lambda i: -finite[i])
    result = Ranking(
        indicator=settings.indicator, space=settings.space, seed=settings.seed,
        cells=[{"arch": c, "score": _json_score(s)} for c, s in zip(cells, scores)],
        kendall={d: kendall(finite, t) for d, t in truth.items()},
        spearman={d: spearman(finite, t) for d, t in truth.items()},
        seconds=seconds,
        top=[{"arch": cells[i], "score": _json_score(scores[i]), **table.lookup(cells[i])} for i in order[:5]],
        settings=wanted, about=about,
    )
    data_out = result.to_dict()
    data_out["component_seconds"] = dict(scorer.seconds)
    data_out["scores"] = {k: {n: _json_score(v) for n, v in c.items()} for k, c in done.items()}
    write_json(out, data_out)
    if partial_path.exists():
        partial_path.unlink()
    return result


def summary(result: Ranking) -> str:
    """Lines for the terminal: correlations per benchmark column and the top-5 cells."""
    lines = [f"{result.indicator} on {len(result.cells)} cells of {result.space} (seed {result.seed}), "
             f"{result.seconds:.1f} s of scoring"]
    for d in result.kendall:
        lines.append(f"{d:<14} Kendall tau {result.kendall[d]:.3f}  Spearman rho {result.spearman[d]:.3f}")
    lines.append("top-5 cells:")
    for row in result.top:
        accs = "  ".join(f"{k} {v:.2f}" for k, v in row.items() if k not in ("arch", "score"))
        score = "-inf" if row["score"] is None else f"{row['score']:.6g}"
        lines.append(f"  {row['arch']}  score {score}  {accs}")
    return "\n".join(lines)


__all__ = ["INDICATORS", "RankSettings", "Ranking", "rank", "summary", "sample_cells", "check_indicator",
           "BenchmarkError"]
