"""DA-NAS against DrNAS-progressive and DARTS-V1 at the sweep's CPU budget: search cost and the found cells.

Every run is the ``toponas search`` command ``toponas sweep`` would start (``toponas.sweep.run_command``, the
``cpu`` budget of ``toponas.sweep.BUDGETS``, ``--resume``, one directory per run); DrNAS runs its progressive
variant (``--hp progressive=true``), which the sweep command line cannot give one strategy alone. The runs
alternate their order seed by seed, so a change in the load of a shared machine hits all three alike, and
each run gets ``--threads`` threads (default 1). It prints (and writes ``comparison.json``/``comparison.md``)
per strategy: search seconds, median ms per step, the found cells' benchmark accuracy, and DA-NAS's ratios.

    python benchmarks/danas_vs.py --out runs/danas-cmp --seeds 0,1 --topo full \\
        --data ../shared/data/cifar10-jpeg.tar.gz --benchmark ../shared/benchmarks/nb201-cifar10.csv
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from toponas.sweep import BUDGETS, Run, run_command

STRATEGIES = {"da-nas": ("da-nas", []), "drnas-progressive": ("drnas", ["--hp", "progressive=true"]),
              "darts-v1": ("darts-v1", [])}


def mean_std(values: list[float]) -> tuple[float, float]:
    values = [v for v in values if v is not None]
    if not values:
        return float("nan"), float("nan")
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def compare(out: Path, runs: dict[str, list[Path]], dataset: str = "cifar10") -> dict:
    per: dict[str, dict] = {}
    for label, dirs in runs.items():
        results = [json.loads((d / "result.json").read_text()) for d in dirs if (d / "result.json").exists()]
        if not results:
            continue
        s = {"runs": len(results), "seeds": [r["seed"] for r in results],
             "search_seconds": [r["search_seconds"] for r in results],
             "ms_per_step": [r["ms_per_step"] for r in results],
             "accuracy": [(r.get("benchmark") or {}).get(dataset) for r in results],
             "cells": [r["genotype"] for r in results]}
        for key in ("search_seconds", "ms_per_step", "accuracy"):
            s[f"{key}_mean"], s[f"{key}_std"] = mean_std(s[key])
        per[label] = s
    report: dict = {"strategies": per}
    if "da-nas" in per:
        for other in ("drnas-progressive", "darts-v1"):
            if other in per:
                report[f"speedup_vs_{other}"] = per[other]["search_seconds_mean"] / per["da-nas"]["search_seconds_mean"]
    return report


def markdown(report: dict) -> str:
    lines = ["| strategy | runs | search s | ms/step (median) | cifar10 mean ± std | per seed |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, s in report["strategies"].items():
        lines.append(f"| {name} | {s['runs']} | {s['search_seconds_mean']:.0f} ± {s['search_seconds_std']:.0f} | "
                     f"{s['ms_per_step_mean']:.1f} | {s['accuracy_mean']:.2f} ± {s['accuracy_std']:.2f} | "
                     + " ".join("-" if a is None else f"{a:.2f}" for a in s["accuracy"]) + " |")
    for key, value in report.items():
        if key.startswith("speedup_vs_"):
            lines.append(f"\nDA-NAS search {value:.2f}x as fast as {key[len('speedup_vs_'):]}.")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--topo", default="full")
    ap.add_argument("--budget", default="cpu", choices=sorted(BUDGETS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data")
    ap.add_argument("--benchmark")
    ap.add_argument("--cache-dir")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    options = dict(BUDGETS[args.budget], dataset="cifar10")
    for key in ("data", "benchmark", "cache_dir"):
        if getattr(args, key):
            options[key.replace("_", "-")] = str(Path(getattr(args, key)).resolve())
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    labels = list(STRATEGIES)
    dirs: dict[str, list[Path]] = {label: [] for label in labels}
    for i, seed in enumerate(int(s) for s in args.seeds.split(",") if s.strip()):
        order = labels[i % len(labels):] + labels[:i % len(labels)]
        for label in order:
            strategy, extra = STRATEGIES[label]
            run = Run(strategy, args.topo, seed)
            where = out / label
            dirs[label].append(where / run.name)
            if args.summary_only or (where / run.name / "result.json").exists():
                continue
            (where / run.name).mkdir(parents=True, exist_ok=True)
            t = time.perf_counter()
            with open(where / run.name / "sweep-output.txt", "a") as f:
                code = subprocess.call(run_command(run, where, options, extra), stdout=f, stderr=subprocess.STDOUT,
                                       env=env, stdin=subprocess.DEVNULL)
            print(f"{label} seed {seed}: {'done' if code == 0 else f'FAILED (exit {code})'} in "
                  f"{time.perf_counter() - t:.0f} s", flush=True)
    report = compare(out, dirs)
    (out / "comparison.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "comparison.md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
