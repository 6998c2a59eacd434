"""FP-NAS against PARSEC with a fixed K equal to FP-NAS's starting K, at the sweep's CPU budget.

Every run is the ``toponas search`` command ``toponas sweep`` would start (``toponas.sweep.run_command``,
the ``cpu`` budget of ``toponas.sweep.BUDGETS``, ``--resume``, one directory per run named as the
sweep names it, so ``toponas sweep --summary-only`` and ``toponas report`` read the directory). What
the sweep command line cannot express, and this script does:

* PARSEC gets ``--samples K`` with K = FP-NAS's starting K, ``ceil(sample_scale * 6 ln 5)`` (15 at
  the default ``sample_scale`` 1.5), while FP-NAS gets no ``--samples`` (it has no such option);
* the runs alternate between the two strategies seed by seed (FP-NAS first for even seeds, PARSEC
  first for odd ones), so a change in the load of a shared machine hits both alike;
* the number of threads per run is set (``--threads``, default 1; the sweep uses all cores for one
  job, and two OpenMP threads on two cores that other work also uses ran a step ten times slower
  than one thread on this project's machine).

It writes ``summary.csv``/``summary.md`` (the sweep's) and ``comparison.json``/``comparison.md``:
samples drawn, search seconds, ms per step and the found cells' accuracy per strategy, their ratios,
and FP-NAS's K and entropy per epoch.

    python benchmarks/fpnas_vs_parsec.py --out runs/prob-cmp --seeds 0,1,2,3,4 --hp a_lr=0.05 \\
        --data ../shared/data/cifar10-jpeg.tar.gz --benchmark ../shared/benchmarks/nb201-cifar10.csv
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import time
from pathlib import Path

from toponas.spaces import create_space
from toponas.strategies import create_strategy
from toponas.strategies.sampling import adaptive_samples
from toponas.sweep import BUDGETS, Run, run_command, summarize


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def compare(out: Path, runs: list[Run], k: int, dataset: str = "cifar10") -> dict:
    """Per-strategy figures over seeds and FP-NAS's ratios against PARSEC."""
    per: dict[str, dict] = {}
    for strategy in ("parsec", "fp-nas"):
        results = [json.loads((out / r.name / "result.json").read_text())
                   for r in runs if r.strategy == strategy and (out / r.name / "result.json").exists()]
        if not results:
            continue
        acc = [(r.get("benchmark") or {}).get(dataset) for r in results]
        per[strategy] = {
            "runs": len(results),
            "seeds": [r["seed"] for r in results],
            "samples_total": [r["samples_total"] for r in results],
            "search_seconds": [r["search_seconds"] for r in results],
            "ms_per_step": [r["ms_per_step"] for r in results],
            "accuracy": acc,
            "cells": [r["genotype"] for r in results],
            "k_per_epoch": [[h["samples"] / (r["steps"] / r["epochs"]) for h in r["history"]] for r in results],
            "entropy_per_epoch": [[h["entropy"] for h in r["history"]] for r in results],
        }
        for key in ("samples_total", "search_seconds", "ms_per_step", "accuracy"):
            per[strategy][f"{key}_mean"], per[strategy][f"{key}_std"] = mean_std(per[strategy][key])
    report: dict = {"parsec_samples": k, "strategies": per}
    if len(per) == 2:
        p, f = per["parsec"], per["fp-nas"]
        report["fewer_samples"] = 1 - f["samples_total_mean"] / p["samples_total_mean"]
        report["speedup"] = p["search_seconds_mean"] / f["search_seconds_mean"]
        report["accuracy_difference"] = f["accuracy_mean"] - p["accuracy_mean"]
    return report


def markdown(report: dict) -> str:
    lines = ["| strategy | runs | samples drawn | search s | ms/step | cifar10 mean ± std | per seed |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, s in report["strategies"].items():
        label = f"parsec (K={report['parsec_samples']})" if name == "parsec" else "fp-nas"
        lines.append(
            f"| {label} | {s['runs']} | {s['samples_total_mean']:.0f} | {s['search_seconds_mean']:.0f} | "
            f"{s['ms_per_step_mean']:.1f} | {s['accuracy_mean']:.2f} ± {s['accuracy_std']:.2f} | "
            + " ".join(f"{a:.2f}" for a in s["accuracy"]) + " |")
    if "speedup" in report:
        lines += ["", f"FP-NAS: {100 * report['fewer_samples']:.1f}% fewer samples, {report['speedup']:.2f}x faster "
                  f"search, accuracy {report['accuracy_difference']:+.2f} points against PARSEC."]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--topo", default="full")
    ap.add_argument("--budget", default="cpu", choices=sorted(BUDGETS))
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="OPTION=VALUE",
                    help="override a budget option, as toponas sweep --set")
    ap.add_argument("--hp", action="append", default=[], metavar="KEY=VALUE",
                    help="a hyperparameter of both strategies (e.g. a_lr=0.05)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data")
    ap.add_argument("--benchmark")
    ap.add_argument("--summary-only", action="store_true")
    args = ap.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    hyper = dict(item.split("=", 1) for item in args.hp)
    fpnas = create_strategy("fp-nas", create_space("nb201"), hyper)
    k = adaptive_samples(6 * math.log(5), fpnas.hyper.sample_scale)  # entropy of the uniform start
    options = dict(BUDGETS[args.budget])
    for item in args.sets:
        key, _, value = item.partition("=")
        options[key.strip().replace("_", "-")] = value.strip()
    options["dataset"] = "cifar10"
    if args.data:
        options["data"] = str(Path(args.data).resolve())
    if args.benchmark:
        options["benchmark"] = str(Path(args.benchmark).resolve())
    hp_args = [a for item in args.hp for a in ("--hp", item)]
    extra = {"parsec": ["--samples", str(k), *hp_args], "fp-nas": hp_args}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    runs = []
    for seed in seeds:
        order = ("fp-nas", "parsec") if seed % 2 == 0 else ("parsec", "fp-nas")
        runs += [Run(s, args.topo, seed) for s in order]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    for run in runs:
        if args.summary_only or (out / run.name / "result.json").exists():
            continue
        (out / run.name).mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        with open(out / run.name / "log.txt", "a") as f:
            code = subprocess.call(run_command(run, out, options, extra[run.strategy]), stdout=f,
                                   stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL)
        print(f"{run.name}: {'done' if code == 0 else f'FAILED (exit {code})'} in {time.perf_counter() - t:.0f} s",
              flush=True)
    summarize(out, runs)
    report = compare(out, runs, k)
    (out / "comparison.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "comparison.md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
