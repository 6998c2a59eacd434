"""FP-NAS against PARSEC with a fixed K equal to FP-NAS's starting K, on NAS-Bench-201 or the mobile space.

Every run is the ``toponas search`` command ``toponas sweep`` would start (``toponas.sweep.run_command``,
a budget of ``toponas.sweep.BUDGETS`` (``cpu`` by default) with ``--set`` overrides, ``--resume``, one
directory per run named as the sweep names it, so ``toponas sweep --summary-only`` and ``toponas
report`` read the directory). What the sweep command line cannot express, and this script does:

* PARSEC gets ``--samples K`` with K = FP-NAS's starting K, ``ceil(sample_scale * H)`` with H the
  entropy of FP-NAS's distribution at its start (uniform up to its 1e-3 randn init): 15 on
  NAS-Bench-201 (H = 6 ln 5) and 43 on ``--space mobile`` (H = 5 ln 6 + 7 ln 7 + 5 ln 3 = 28.07 nats:
  5 first blocks of 6 choices, 7 other blocks of 7, 5 widths of 3) at the default ``sample_scale``
  1.5, while FP-NAS gets no ``--samples`` (it has no such option);
* ``--flops-target`` (MFLOPs) goes to FP-NAS alone: PARSEC has no cost term and ``toponas search
  --strategy parsec --flops-target`` is refused, so PARSEC runs the same K without a target;
* the runs alternate between the two strategies seed by seed (FP-NAS first for even seeds, PARSEC
  first for odd ones), so a change in the load of a shared machine hits both alike; with ``--jobs 2``
  the two runs of a seed run at the same time instead (one core each);
* the number of threads per run is set (``--threads``, default 1; the sweep uses all cores for one
  job, and two OpenMP threads on two cores that other work also uses ran a step ten times slower
  than one thread on this project's machine).

It writes ``summary.csv``/``summary.md`` (the sweep's) and ``comparison.json``/``comparison.md``:
samples drawn, search seconds, ms per step, the found cells' accuracy (NAS-Bench-201) and MFLOPs
(the mobile space, at FP-NAS's FLOPs convention: C=16, 32x32, 10 classes) per strategy and seed,
their ratios, and FP-NAS's K and entropy per epoch.

    python benchmarks/fpnas_vs_parsec.py --out runs/prob-cmp --seeds 0,1,2,3,4 --hp a_lr=0.05 \\
        --data ../shared/data/cifar10-jpeg.tar.gz --benchmark ../shared/benchmarks/nb201-cifar10.csv
    python benchmarks/fpnas_vs_parsec.py --out runs/prob-cmp-mobile --space mobile --flops-target 20 \\
        --dataset digits --budget none --set subset=512 --set epochs=6 --set batch_size=32 \\
        --set channels=8 --set image_size=16 --set device=cpu --hp a_lr=0.2 --jobs 2  # docs/hardware.md
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import time
from pathlib import Path

from toponas.spaces import create_space
from toponas.strategies import create_strategy
from toponas.strategies.parsec import ParsecHyper
from toponas.sweep import BUDGETS, Run, run_command, summarize


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def starting_k(space: str, hyper: dict[str, str]) -> int:
    """FP-NAS's K at its first step: ``ceil(sample_scale * H)`` of a freshly built distribution."""
    return create_strategy("fp-nas", create_space(space), hyper).num_samples()


def arch_mflops(space: str, genotype: str) -> float | None:
    """MFLOPs of a found network at FP-NAS's FLOPs convention (None for a space without a cost table)."""
    s = create_space(space)
    if not hasattr(s, "arch_flops"):
        return None
    return s.arch_flops(genotype) / 1e6


def compare(
    out: Path,
    runs: list[Run],
    k: int,
    dataset: str = "cifar10",
    space: str = "nb201",
    flops_target: float | None = None,
) -> dict:
    """Per-strategy figures over seeds and FP-NAS's ratios against PARSEC."""
    per: dict[str, dict] = {}
    for strategy in ("parsec", "fp-nas"):
        results = [
            json.loads((out / r.name / "result.json").read_text())
            for r in runs
            if r.strategy == strategy and (out / r.name / "result.json").exists()
        ]
        if not results:
            continue
        acc = [(r.get("benchmark") or {}).get(dataset) for r in results]
        per[strategy] = {
            "runs": len(results),
            "seeds": [r["seed"] for r in results],
            "samples_total": [r["samples_total"] for r in results],
            "search_seconds": [r["search_seconds"] for r in results],
            "ms_per_step": [r["ms_per_step"] for r in results],
            "steps": [r["steps"] for r in results],
            "accuracy": acc,
            "mflops": [arch_mflops(space, r["genotype"]) for r in results],
            "cells": [r["genotype"] for r in results],
            "k_per_epoch": [[h["samples"] / (r["steps"] / r["epochs"]) for h in r["history"]] for r in results],
            "entropy_per_epoch": [[h["entropy"] for h in r["history"]] for r in results],
        }
        for key in ("samples_total", "search_seconds", "ms_per_step", "accuracy", "mflops"):
            values = per[strategy][key]
            if any(v is None for v in values):
                per[strategy][f"{key}_mean"] = per[strategy][f"{key}_std"] = None
            else:
                per[strategy][f"{key}_mean"], per[strategy][f"{key}_std"] = mean_std(values)
    report: dict = {
        "space": space,
        "dataset": dataset,
        "parsec_samples": k,
        "fpnas_flops_target": flops_target,
        "strategies": per,
    }
    if len(per) == 2:
        p, f = per["parsec"], per["fp-nas"]
        report["fewer_samples"] = 1 - f["samples_total_mean"] / p["samples_total_mean"]
        report["speedup"] = p["search_seconds_mean"] / f["search_seconds_mean"]
        paired = {s: (n, t) for s, n, t in zip(p["seeds"], p["samples_total"], p["search_seconds"])}
        report["per_seed"] = [
            {"seed": s, "fewer_samples": 1 - n / paired[s][0], "speedup": paired[s][1] / t}
            for s, n, t in zip(f["seeds"], f["samples_total"], f["search_seconds"])
            if s in paired
        ]
        if f["accuracy_mean"] is not None and p["accuracy_mean"] is not None:
            report["accuracy_difference"] = f["accuracy_mean"] - p["accuracy_mean"]
    return report


def _num(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def markdown(report: dict) -> str:
    dataset = report.get("dataset", "cifar10")
    lines = [
        f"| strategy | seed | samples drawn | steps | search s | ms/step | {dataset} (benchmark) | MFLOPs |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    target = report.get("fpnas_flops_target")
    for name, s in report["strategies"].items():
        label = (
            f"parsec (K={report['parsec_samples']})"
            if name == "parsec"
            else "fp-nas" + (f" (target {target:g} MFLOPs)" if target else "")
        )
        for i, seed in enumerate(s["seeds"]):
            lines.append(
                f"| {label} | {seed} | {s['samples_total'][i]} | {s['steps'][i]} | "
                f"{s['search_seconds'][i]:.0f} | {s['ms_per_step'][i]:.0f} | "
                f"{_num(s['accuracy'][i], '.2f')} | {_num(s['mflops'][i], '.1f')} |"
            )
        acc = "n/a" if s["accuracy_mean"] is None else f"{s['accuracy_mean']:.2f} ± {s['accuracy_std']:.2f}"
        lines.append(
            f"| {label} | mean | {s['samples_total_mean']:.0f} | | {s['search_seconds_mean']:.0f} | "
            f"{s['ms_per_step_mean']:.0f} | {acc} | {_num(s['mflops_mean'], '.1f')} |"
        )
    if "speedup" in report:
        text = f"FP-NAS: {100 * report['fewer_samples']:.1f}% fewer samples, {report['speedup']:.2f}x faster search"
        if "accuracy_difference" in report:
            text += f", accuracy {report['accuracy_difference']:+.2f} points"
        lines += [
            "",
            text
            + " against PARSEC (means over seeds). Per seed: "
            + "; ".join(
                f"seed {r['seed']} {100 * r['fewer_samples']:.1f}% fewer, {r['speedup']:.2f}x"
                for r in report["per_seed"]
            )
            + ".",
        ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--space", default="nb201", choices=("nb201", "mobile"))
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--flops-target", type=float, help="MFLOPs, FP-NAS only (PARSEC has no cost term)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--topo", default="full")
    ap.add_argument("--budget", default="cpu", choices=(*sorted(BUDGETS), "none"))
    ap.add_argument(
        "--set",
        dest="sets",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="override a budget option, as toponas sweep --set",
    )
    ap.add_argument(
        "--hp",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a hyperparameter of both strategies (e.g. a_lr=0.05); FP-NAS's own (sample_scale) go to FP-NAS alone",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--jobs", type=int, default=1, choices=(1, 2), help="2: run the two strategies of a seed at the same time"
    )
    ap.add_argument("--data")
    ap.add_argument("--benchmark")
    ap.add_argument("--summary-only", action="store_true")
    return ap.parse_args(argv)


def plan(args: argparse.Namespace) -> tuple[int, dict[str, str], list[Run], dict[str, list[str]]]:
    """``(K, the budget's options, the runs in order, each strategy's extra arguments)``."""
    hyper = dict(item.split("=", 1) for item in args.hp)
    k = starting_k(args.space, hyper)
    options = dict(BUDGETS.get(args.budget, {}))
    for item in args.sets:
        key, _, value = item.partition("=")
        options[key.strip().replace("_", "-")] = value.strip()
    if args.space != "nb201":
        options["space"] = args.space
        options.pop("cells", None)  # the mobile space's depth is its stage table
    options["dataset"] = args.dataset
    if args.data:
        options["data"] = str(Path(args.data).resolve())
    if args.benchmark:
        options["benchmark"] = str(Path(args.benchmark).resolve())
    shared = {f.name for f in dataclasses.fields(ParsecHyper)}  # FP-NAS's own (sample_scale, ...) go to it alone
    hp_args = [a for item in args.hp for a in ("--hp", item)]
    parsec_hp = [a for item in args.hp if item.split("=", 1)[0].strip() in shared for a in ("--hp", item)]
    target = ["--flops-target", f"{args.flops_target:g}"] if args.flops_target else []
    extra = {"parsec": ["--samples", str(k), *parsec_hp], "fp-nas": [*target, *hp_args]}
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    runs = []
    for seed in seeds:
        order = ("fp-nas", "parsec") if seed % 2 == 0 else ("parsec", "fp-nas")
        runs += [Run(s, args.topo, seed) for s in order]
    return k, options, runs, extra


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    k, options, runs, extra = plan(args)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    todo = [] if args.summary_only else [r for r in runs if not (out / r.name / "result.json").exists()]
    groups = [todo[i : i + args.jobs] for i in range(0, len(todo), args.jobs)]
    for group in groups:
        started = []
        for run in group:
            (out / run.name).mkdir(parents=True, exist_ok=True)
            log = open(out / run.name / "log.txt", "a")
            proc = subprocess.Popen(
                run_command(run, out, options, extra[run.strategy]),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                stdin=subprocess.DEVNULL,
            )
            started.append((run, proc, log, time.perf_counter()))
        while started:  # report each run when it ends (its wall time), in the order they end
            for item in [item for item in started if item[1].poll() is not None]:
                run, proc, log, t = item
                started.remove(item)
                log.close()
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                print(f"{run.name}: {status} in {time.perf_counter() - t:.0f} s", flush=True)
            time.sleep(0.5)
    summarize(out, runs, args.dataset)
    report = compare(out, runs, k, args.dataset, args.space, args.flops_target)
    (out / "comparison.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / "comparison.md").write_text(markdown(report) + "\n")
    print(markdown(report))


if __name__ == "__main__":
    main()
