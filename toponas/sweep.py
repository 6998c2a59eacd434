"""A grid of searches (strategies x simplifier modes x seeds) with one budget, and its summary table.

Each run is an ordinary ``toponas search`` in its own directory, started as a subprocess so runs
go in parallel where cores allow: by a local pool of ``jobs`` threads (the default), or as Ray tasks
with their resources on a Ray cluster (``backend="ray"``, ``toponas.sweep_ray``). A run whose
``result.json`` exists is not run again, and a run
that was killed continues from its checkpoint, so a killed sweep resumes by running it again. A run
is identified by its whole resolved configuration: a run directory made with other settings (another
``--budget`` or ``--set``) is refused before any work, with the difference named, never reused.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
import statistics
import subprocess
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path

from .config import ConfigError, SearchConfig

#: Budgets: search options shared by every run of a sweep. ``cpu`` finished the default grid
#: (9 strategies x off/full x 2 seeds) in 19.7 minutes on 2 cores, but its 128 architecture steps leave the
#: architecture parameters unseparated (docs/quality.md); ``cpu-long`` is the CPU budget under which they
#: separate and settle: four times the images, 12 epochs (756 architecture steps), every strategy's ``a_lr``
#: times 50 (``a-lr-scale``, :data:`SCALED_HYPER`) and annealed per epoch to 0 (``a_lr_schedule=cosine``).
#: Adam moves a parameter by about its lr a step, so the distance the parameters can travel is the sum of
#: the lrs: 756 steps at a mean of 0.5 x 50 x 3e-4 give 5.7, the reference's 19,550 steps (50 epochs x 391)
#: at 3e-4 give 5.9; the annealing lets the last epochs settle. ``reference`` is the NAS-Bench-201 setting
#: (full training set, C=16, N=5, 32x32, each strategy's own epochs) for a GPU.
BUDGETS: dict[str, dict[str, str]] = {
    "cpu": {"subset": "2000", "channels": "8", "cells": "1", "epochs": "8", "batch-size": "64",
            "image-size": "16"},
    "cpu-long": {"subset": "8000", "channels": "8", "cells": "1", "epochs": "12", "batch-size": "64",
                 "image-size": "16", "a-lr-scale": "50", "a-lr-schedule": "cosine"},
    "reference": {"channels": "16", "cells": "5", "batch-size": "64"},
}
#: The names ``--budget`` accepts (``none``: no preset, only ``--set``).
BUDGET_NAMES = (*BUDGETS, "none")

@dataclass(frozen=True)
class Run:
    """One cell of the grid."""

    strategy: str
    topo: str
    seed: int

    @property
    def name(self) -> str:
        return f"{self.strategy}-topo_{self.topo}-seed{self.seed}"


def plan(strategies: Sequence[str], modes: Sequence[str], seeds: Sequence[int]) -> list[Run]:
    return [Run(s, m, seed) for s, m, seed in itertools.product(strategies, modes, seeds)]


class SweepFailed(RuntimeError):
    """Some runs of a sweep failed; ``failures`` maps each run to the first error it printed."""

    def __init__(self, failures: dict[str, str], total: int, rows: list[dict]) -> None:
        self.failures, self.rows = failures, rows
        super().__init__(f"{len(failures)} of {total} run(s) failed ("
                         + "; ".join(f"{name}: {err}" for name, err in failures.items())
                         + "); fix the cause and run the sweep again to retry them")


#: Options that go into the strategy's hyperparameters rather than SearchConfig fields.
HYPER_OPTIONS = ("epochs", "samples", "sample_scale", "joint_after", "flops_target", "a_lr_schedule")
#: Hyperparameter options without a ``toponas search`` flag of their own: passed as ``--hp name=value``.
HP_ONLY = ("a_lr_schedule",)
#: Options that scale a strategy hyperparameter by one factor for every strategy (option -> hyperparameter):
#: each run gets ``--hp a_lr=<its strategy's default a_lr x the factor>``; strategies without the
#: hyperparameter (none of the gradient ones) run unchanged.
SCALED_HYPER = {"a_lr_scale": "a_lr"}
#: Fields of a run that may differ from the sweep's without making it another run.
RUN_FREE = ("data", "cache_dir", "device", "benchmark", "out")


def _strategy_class(name: str) -> type:
    """The registered strategy class ``name``; an unknown name is a ConfigError listing the known ones."""
    from .strategies import STRATEGIES

    if name not in STRATEGIES:
        raise ConfigError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES.names())}")
    return STRATEGIES.get(name)


def scaled_hyper(strategy: str, options: dict[str, str]) -> dict[str, str]:
    """The hyperparameters the scaling options of ``options`` set for ``strategy``: default x factor.

    The same rule for every strategy (what makes a budget's scaling fair): the factor multiplies the
    strategy's own default, so strategies with the same default get the same value."""
    out = {}
    for key, value in options.items():
        name = key.replace("-", "_")
        if name not in SCALED_HYPER:
            continue
        try:
            factor = float(value)
        except ValueError:
            factor = float("nan")
        if not (factor > 0 and math.isfinite(factor)):
            raise ConfigError(f"--set {key}={value}: expected a positive number")
        default = getattr(_strategy_class(strategy).Hyper(), SCALED_HYPER[name], None)
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            out[SCALED_HYPER[name]] = f"{default * factor:.6g}"
    return out


def expected_config(run: Run, out: Path, options: dict[str, str]) -> SearchConfig:
    """The resolved SearchConfig a run of the sweep has (what identifies it)."""
    types = {f.name: str(f.type) for f in fields(SearchConfig)}
    values: dict = {"strategy": run.strategy, "topo": run.topo, "seed": run.seed, "out": str(out / run.name)}
    hyper: dict = scaled_hyper(run.strategy, options)
    for key, value in options.items():
        name = key.replace("-", "_")
        if name in SCALED_HYPER:
            continue
        if name in HYPER_OPTIONS:
            hyper[name] = value
        elif name not in types or name == "hyper":
            raise ConfigError(f"--set {key}: not a search option; known: "
                              f"{', '.join(sorted([*types, *HYPER_OPTIONS, *SCALED_HYPER]))}")
        elif types[name].startswith("tuple"):
            values[name] = (*values.get(name, ()), value)
        elif "int" in types[name]:
            try:
                values[name] = int(value)
            except ValueError:
                raise ConfigError(f"--set {key}={value}: expected an integer") from None
        else:
            values[name] = value
    return SearchConfig(**values, hyper=hyper)


def check_hyper(cfg: SearchConfig) -> None:
    """Refuse, before any work, hyperparameters the run's strategy would refuse (a bad ``--set a-lr-schedule``)."""
    hyper = _strategy_class(cfg.strategy).Hyper
    known = {f.name for f in fields(hyper)}  # the others (--flops-target of a strategy without it) the run places
    try:
        hyper.resolve({k: v for k, v in cfg.hyper.items() if k in known})
    except ValueError as e:
        raise ConfigError(str(e)) from None


def run_differences(run_dir: Path, expected: SearchConfig) -> list[str]:
    """How the run already in ``run_dir`` differs from ``expected`` (empty: the same run, or none yet)."""
    from .spaces import create_space
    from .strategies import create_strategy

    path = run_dir / "config.json"
    if not path.is_file():
        return [] if not (run_dir / "result.json").exists() else ["no config.json beside its result.json"]
    try:
        saved = json.loads(path.read_text())
        resolved = saved.pop("resolved_hyper", None)
        have = SearchConfig.from_dict(saved)
    except (OSError, ValueError, TypeError) as e:
        return [f"its config.json cannot be read ({e})"]
    diffs = [f"{k}={getattr(have, k)!r} (now {getattr(expected, k)!r})" for k in expected.to_dict()
             if k not in (*RUN_FREE, "hyper") and getattr(have, k) != getattr(expected, k)]
    try:
        want = vars(create_strategy(expected.strategy, create_space(expected.space), expected.hyper).hyper)
    except (ValueError, NotImplementedError) as e:
        raise ConfigError(str(e)) from None
    if isinstance(resolved, dict):
        diffs += [f"{k}={resolved.get(k)!r} (now {v!r})" for k, v in want.items() if resolved.get(k) != v]
    return diffs


def first_error(text: str) -> str:
    """The first ``error:`` line of a run's output, else the last line of a traceback or output."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("error:"):
            return line[len("error:"):].strip()
    return lines[-1] if lines else "no output"


def run_command(run: Run, out: Path, options: dict[str, str], extra: Sequence[str]) -> list[str]:
    """The ``toponas search`` command line of one run (``--resume`` continues a killed one)."""
    cmd = [sys.executable, "-m", "toponas.cli", "search", "--strategy", run.strategy, "--topo", run.topo,
           "--seed", str(run.seed), "--out", str(out / run.name), "--resume", "--no-progress"]
    for key, value in options.items():
        name = key.replace("-", "_")
        if name in HP_ONLY:
            cmd += ["--hp", f"{name}={value}"]
        elif name not in SCALED_HYPER:
            cmd += [f"--{key}", value]
    for key, value in scaled_hyper(run.strategy, options).items():
        cmd += ["--hp", f"{key}={value}"]
    return cmd + list(extra)


def execute_run(run: Run, out: Path, options: dict[str, str], extra: Sequence[str], threads: int) -> tuple[int, str]:
    """One run as a ``toponas search`` subprocess (here, or on a Ray worker): its exit status and output.

    The output is appended to ``RUN/sweep-output.txt`` (the run's own ``log.txt`` is its log).
    """
    (out / run.name).mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    proc = subprocess.run(run_command(run, out, options, extra), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL, text=True)
    with open(out / run.name / "sweep-output.txt", "a") as f:
        f.write(proc.stdout)
    return proc.returncode, proc.stdout


def sweep(
    out: str | os.PathLike,
    strategies: Sequence[str],
    modes: Sequence[str],
    seeds: Sequence[int],
    options: dict[str, str],
    extra: Sequence[str] = (),
    jobs: int = 1,
    log: Callable[[str], None] = print,
    backend: str = "local",
    address: str | None = None,
    cpus_per_run: float = 1.0,
    gpus_per_run: float = 0.0,
) -> list[dict]:
    """Run every unfinished run of the grid, then write the summary.

    ``backend="local"``: ``jobs`` runs at a time in this machine's processes. ``backend="ray"``: every
    run is a Ray task needing ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs, on the cluster at
    ``address`` (None: the Ray instance already started in this process, else a new local one).
    """
    if backend not in ("local", "ray"):
        raise ConfigError(f"unknown sweep backend {backend!r}; choose local or ray")
    out = Path(out)
    runs = plan(strategies, modes, seeds)
    clashes = []
    for run in runs:
        expected = expected_config(run, out, options)
        check_hyper(expected)
        diffs = run_differences(out / run.name, expected)
        if diffs:
            clashes.append(f"{run.name} was made with {', '.join(diffs)}")
    if clashes:
        raise ConfigError(f"{out} holds runs of other settings: {'; '.join(clashes)}. Use another --out "
                          "(or delete those run directories) instead of mixing them")
    todo = [r for r in runs if not (out / r.name / "result.json").exists()]
    cluster = None
    if backend == "ray" and todo:
        from .sweep_ray import RayCluster

        cluster = RayCluster.connect(address, cpus_per_run, gpus_per_run)  # missing or unreachable: before any work
    out.mkdir(parents=True, exist_ok=True)
    failures: dict[str, str] = {}

    def record(run: Run, code: int, output: str) -> None:
        if code == 0:
            log(f"{run.name}: done")
        else:
            failures[run.name] = f"exit {code}: {first_error(output)}"
            log(f"{run.name}: FAILED ({failures[run.name]}; see {out / run.name / 'sweep-output.txt'})")

    if cluster is not None:
        log(f"{len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to run as Ray tasks "
            f"({cpus_per_run:g} CPU, {gpus_per_run:g} GPU each) on {cluster.where}")
        threads = max(1, math.floor(cpus_per_run))
        for run, (code, output) in cluster.map(execute_run, todo, out, options, list(extra), threads):
            record(run, code, output)
    else:
        log(f"{len(runs)} runs, {len(runs) - len(todo)} already finished, {len(todo)} to run, {jobs} at a time")
        threads = max(1, (os.cpu_count() or 1) // max(jobs, 1))
        with ThreadPoolExecutor(max_workers=max(jobs, 1)) as pool:
            for run, (code, output) in zip(todo, pool.map(lambda r: execute_run(r, out, options, extra, threads),
                                                         todo)):
                record(run, code, output)
    rows = summarize(out, runs)
    if failures:
        raise SweepFailed(failures, len(todo), rows)
    return rows


def _mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return None, None
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0)


def summarize(out: str | os.PathLike, runs: Sequence[Run] | None = None, dataset: str = "cifar10") -> list[dict]:
    """Group finished runs by (strategy, topo) and write ``summary.csv`` and ``summary.md``."""
    out = Path(out)
    results = []
    for path in sorted(out.glob("*/result.json")):
        if runs is not None and path.parent.name not in {r.name for r in runs}:
            continue
        results.append((path.parent.name, json.loads(path.read_text())))
    groups: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    for name, res in results:
        groups.setdefault((res["strategy"], res["topo"]), []).append((name, res))
    rows = []
    for (strategy, mode), items in sorted(groups.items()):
        acc = [(r.get("benchmark") or {}).get(dataset) for _, r in items]
        acc_mean, acc_std = _mean_std(acc)
        sec_mean, _ = _mean_std([r["search_seconds"] for _, r in items])
        ms_mean, _ = _mean_std([r["ms_per_step"] for _, r in items])
        mem_mean, _ = _mean_std([r["peak_memory_bytes"] / 2**20 for _, r in items])
        rows.append({
            "strategy": strategy, "topo": mode, "runs": len(items),
            f"{dataset}_mean": acc_mean, f"{dataset}_std": acc_std,
            "accuracies": " ".join("n/a" if a is None else f"{a:.2f}" for a in acc),
            "search_seconds": sec_mean, "ms_per_step": ms_mean, "peak_memory_mib": mem_mean,
            "cells": " ".join(r["genotype"] for _, r in items),
            "run_dirs": " ".join(name for name, _ in items),
        })
    if rows:
        with open(out / "summary.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        (out / "summary.md").write_text(markdown(rows, dataset) + "\n")
    return rows


def _fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def markdown(rows: Sequence[dict], dataset: str = "cifar10") -> str:
    """The summary as a Markdown table."""
    lines = [
        f"| strategy | topo | runs | {dataset} mean ± std | per run | search s | ms/step | peak MiB | run dirs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(
            f"| {r['strategy']} | {r['topo']} | {r['runs']} | {_fmt(r[f'{dataset}_mean'])} ± "
            f"{_fmt(r[f'{dataset}_std'])} | {r['accuracies']} | {_fmt(r['search_seconds'], 0)} | "
            f"{_fmt(r['ms_per_step'], 1)} | {_fmt(r['peak_memory_mib'], 0)} | {r['run_dirs']} |"
        )
    return "\n".join(lines)
