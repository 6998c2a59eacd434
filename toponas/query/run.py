"""The driver of a query-based search: budget, oracle, query log, resume and ``result.json``.

It knows no strategy by name: it builds the registered one, asks it for cells and tells it the
answers. Each distinct cell counts once against ``--queries``; a cell asked again is answered from
this run's memory for free. A resumed run replays the query log: the strategy (deterministic given
its seed and its answers) asks the same cells again and is told the logged answers, so nothing is
queried twice; a log whose cells the replay does not ask is from another run, and an error.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..benchmark import BenchmarkError, resolve_benchmark
from ..config import ConfigError, check_known_keys
from ..loop.checkpoint import write_json
from ..spaces import create_space
from ..spaces.cell import CellError
from .base import QueryStrategy
from .encoding import Arch, CellEncoding
from .log import QueryLog
from .oracle import ORACLES, BenchmarkOracle, Oracle, SupernetOracle, TrainOracle

#: Consecutive proposals of already-queried cells after which a run stops (the strategy is stuck).
MAX_REPEATS = 10_000


class QueryInterrupted(RuntimeError):
    """The run was stopped; its query log is on disk and ``--resume`` continues it."""


@dataclass
class QueryConfig:
    """Everything a query-based search needs; ``hyper`` overrides the strategy's defaults."""

    strategy: str = "ga-nas"
    space: str = "nb201"
    oracle: str = "benchmark"
    queries: int = 500
    seed: int = 0
    out: str = "runs/query"
    benchmark: str | None = None
    dataset: str = "cifar10"
    data: str | None = None
    cache_dir: str | None = None
    device: str = "auto"
    supernet: str | None = None
    train_options: dict[str, Any] = field(default_factory=dict)  # --oracle train: over the cpu preset
    hyper: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.queries, bool) or not isinstance(self.queries, int) or self.queries < 1:
            raise ConfigError(f"--queries must be a positive number of queries, got {self.queries!r}")
        if self.oracle not in ORACLES:
            raise ConfigError(f"unknown --oracle {self.oracle!r}; choose from {', '.join(ORACLES)}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> QueryConfig:
        check_known_keys(cls, values, "query config key(s)")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def best_so_far(accuracies: list[float]) -> list[float]:
    """The running maximum: entry i is the best accuracy among the first i + 1 queries."""
    out, best = [], -math.inf
    for a in accuracies:
        best = max(best, a)
        out.append(best)
    return out


class QuerySearch:
    """One query-based run in ``config.out``."""

    def __init__(self, config: QueryConfig, resume: bool = False, log: Callable[[str], None] = print,
                 stop_after: int | None = None) -> None:
        self.config, self.resume, self.log = config, resume, log
        self.stop_after = stop_after  # simulate a kill after this many new oracle calls (tests)
        self.out = Path(config.out)
        self.oracle_calls = 0

    def setup(self) -> None:
        from . import QUERY_STRATEGIES

        cfg = self.config
        cls: type[QueryStrategy] = QUERY_STRATEGIES.get(cfg.strategy)
        try:
            self.space = create_space(cfg.space)
        except (ValueError, CellError) as e:
            raise ConfigError(str(e)) from None
        self.encoding = CellEncoding(self.space)
        try:
            hyper = cls.Hyper.resolve(cfg.hyper)
        except (ValueError, TypeError) as e:
            raise ConfigError(str(e)) from None
        self.table = resolve_benchmark(cfg.benchmark)
        self.oracle = self._oracle()
        self.strategy = cls(self.encoding, hyper, cfg.seed)
        run = {"strategy": cfg.strategy, "space": cfg.space, "seed": cfg.seed,
               "hyper": dataclasses.asdict(hyper), **self.oracle.identity()}
        self.query_log = QueryLog.open(self.out, run, self.resume)
        self.logged = list(self.query_log.entries)
        if len(self.logged) > cfg.queries:
            raise ConfigError(f"the query log in {self.out} holds {len(self.logged)} queries, more than "
                              f"--queries {cfg.queries}")
        if self.logged:
            self.log(f"resuming {self.out}: replaying {len(self.logged)} logged queries (none is asked again)")
        write_json(self.out / "config.json", {**cfg.to_dict(), "resolved_hyper": dataclasses.asdict(hyper)})

    def _oracle(self) -> Oracle:
        cfg = self.config
        if cfg.oracle == "benchmark":
            return BenchmarkOracle(self.encoding, self.table, cfg.dataset)
        if cfg.oracle == "train":
            return TrainOracle(self.encoding, self.out, cfg.dataset, cfg.data, cfg.cache_dir, cfg.device, cfg.seed,
                               cfg.train_options, log=self.log)
        return SupernetOracle(self.encoding, cfg.supernet, cfg.data, cfg.cache_dir, cfg.device)

    # -- queries ---------------------------------------------------------------------------------
    def _answer(self, arch: Arch) -> float:
        """A new query of this run: from the log while replaying, else from the oracle (then logged)."""
        index = len(self.answers) + 1
        text = self.encoding.to_str(arch)
        if index <= len(self.logged):
            entry = self.logged[index - 1]
            if entry["arch"] != text:
                raise ConfigError(
                    f"the query log {self.query_log.path} does not match this run at query {index} (logged "
                    f"{entry['arch']}, the strategy asks {text}): it is from another run or another version")
            self.oracle_seconds += float(entry.get("seconds", 0.0))
            return float(entry["accuracy"])
        if self.stop_after is not None and self.oracle_calls >= self.stop_after:
            raise QueryInterrupted(f"stopped after {index - 1} queries; the query log in {self.out} keeps them. "
                                   "Continue with the same command and --resume.")
        t0 = time.perf_counter()
        acc = float(self.oracle.accuracy(arch, index))
        dt = time.perf_counter() - t0
        if not math.isfinite(acc):
            raise ConfigError(f"the oracle answered {acc} for {text}")
        self.oracle_calls += 1
        self.oracle_seconds += dt
        self.query_log.append({"query": index, "arch": text, "accuracy": acc, "seconds": dt})
        return acc

    def run(self) -> dict[str, Any]:
        """Run (or continue) the search and write ``result.json``; returns its contents."""
        self.setup()
        cfg = self.config
        self.answers: dict[Arch, float] = {}
        self.order: list[Arch] = []
        self.oracle_seconds = 0.0
        repeats, t_start = 0, time.perf_counter()
        try:
            while len(self.order) < cfg.queries and repeats < MAX_REPEATS:
                for arch in self.strategy.ask():
                    if len(self.order) >= cfg.queries:
                        break
                    arch = tuple(int(i) for i in arch)
                    if arch in self.answers:
                        repeats += 1
                        self.strategy.tell(arch, self.answers[arch])
                        continue
                    repeats = 0
                    acc = self._answer(arch)
                    self.answers[arch] = acc
                    self.order.append(arch)
                    self.strategy.tell(arch, acc)
                    if len(self.order) % 100 == 0 or len(self.order) == cfg.queries:
                        best = max(self.answers.values())
                        self.log(f"{len(self.order)}/{cfg.queries} queries  best {best:.2f}")
        except KeyboardInterrupt:
            raise QueryInterrupted(f"stopped after {len(self.order)} queries; the query log in {self.out} keeps "
                                   "them. Continue with the same command and --resume.") from None
        if repeats >= MAX_REPEATS:
            self.log(f"stopped at {len(self.order)} queries: the strategy proposed only queried cells "
                     f"{MAX_REPEATS} times in a row")
        return self._finish(time.perf_counter() - t_start)

    def _finish(self, seconds: float) -> dict[str, Any]:
        cfg, enc = self.config, self.encoding
        accs = [self.answers[a] for a in self.order]
        curve = best_so_far(accs)
        at = max(range(len(accs)), key=lambda i: (accs[i], -i))  # the first query reaching the best
        best = enc.to_str(self.order[at])
        bench = None
        if self.table is not None:
            try:
                bench = self.table.lookup(best)
            except (BenchmarkError, CellError):
                bench = None
        result = {
            "contract": "query",
            "strategy": cfg.strategy,
            "space": cfg.space,
            "oracle": cfg.oracle,
            "dataset": cfg.dataset,
            "seed": cfg.seed,
            "queries_budget": cfg.queries,
            "genotype": best,
            "best": {"arch": best, "accuracy": accs[at], "query": at + 1},
            "benchmark": bench,
            "queries": [{"query": i + 1, "arch": enc.to_str(a), "accuracy": accs[i]}
                        for i, a in enumerate(self.order)],
            "best_so_far": curve,
            "search_seconds": seconds,
            "oracle_seconds": self.oracle_seconds,
            "oracle_calls_this_session": self.oracle_calls,
            "hyper": dataclasses.asdict(self.strategy.hyper),
            "out_dir": str(self.out),
        }
        write_json(self.out / "result.json", result)
        return result


def query_search(config: QueryConfig | None = None, *, resume: bool = False, log: Callable[[str], None] = print,
                 **overrides: Any) -> dict[str, Any]:
    """From Python: ``toponas.query.query_search(strategy="rea", benchmark="nb201.csv", queries=100)``."""
    config = config or QueryConfig()
    config = dataclasses.replace(config, **overrides)
    return QuerySearch(config, resume=resume, log=log).run()


def summary(result: dict[str, Any]) -> str:
    """A few lines for the terminal."""
    best = result["best"]
    return "\n".join([
        f"{result['strategy']} on {result['space']}, oracle {result['oracle']}: {len(result['queries'])} queries",
        f"best        {best['arch']}  {best['accuracy']:.2f} (query {best['query']})",
        f"cost        {result['search_seconds']:.1f} s ({result['oracle_seconds']:.1f} s in the oracle)",
    ]) + ("\nbenchmark   " + json.dumps(result["benchmark"]) if result.get("benchmark") else "")
