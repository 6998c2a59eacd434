"""Best-so-far accuracy against queries for GA-NAS, REA and random search on a NAS-Bench-201 table.

Runs ``toponas search --strategy S --oracle benchmark`` (through :func:`toponas.query.query_search`,
the same driver, query log and result.json) for every method and seed, then writes the mean and
spread of the best-so-far curves (``curves.json``, ``curves.md``) and one plot (``curves.png``).

    python benchmarks/query_curves.py --benchmark ../shared/benchmarks/nb201-cifar10.csv \
        --seeds 20 --queries 500 --out runs/query-curves
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from toponas.query import QueryConfig, query_search

METHODS = ("ga-nas", "rea", "random")
BUDGETS = (50, 100, 150, 200, 250, 300, 350, 400, 450, 500)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", required=True)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--out", default="runs/query-curves")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--only-seeds", help="run just these seeds (e.g. 0-9) and write no summary")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (GA-NAS's models are tiny)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    curves: dict[str, list[list[float]]] = {}
    seconds: dict[str, float] = {}
    for method in args.methods.split(","):
        t0 = time.perf_counter()
        curves[method] = []
        seeds = range(args.seeds)
        if args.only_seeds:
            first, _, last = args.only_seeds.partition("-")
            seeds = range(int(first), int(last or first) + 1)
        for seed in seeds:
            run = out / method / f"seed{seed}"
            done = run / "result.json"
            if done.is_file() and json.loads(done.read_text())["queries_budget"] == args.queries:
                result = json.loads(done.read_text())
            else:
                result = query_search(QueryConfig(strategy=method, benchmark=args.benchmark, queries=args.queries,
                                                  seed=seed, out=str(run)), resume=True, log=lambda m: None)
            curves[method].append(result["best_so_far"])
        seconds[method] = time.perf_counter() - t0
        print(f"{method}: {len(seeds)} seeds in {seconds[method]:.1f} s", flush=True)
    if args.only_seeds:
        return
    budgets = [b for b in BUDGETS if b <= args.queries]
    table = {m: {b: (statistics.mean(c[b - 1] for c in cs), statistics.stdev(c[b - 1] for c in cs))
                 for b in budgets} for m, cs in curves.items()}
    lines = ["| queries | " + " | ".join(curves) + " |", "| --- |" + " --- |" * len(curves)]
    for b in budgets:
        lines.append(f"| {b} | " + " | ".join(f"{table[m][b][0]:.3f} ± {table[m][b][1]:.3f}" for m in curves) + " |")
    md = "\n".join(lines)
    print(md)
    (out / "curves.md").write_text(md + "\n")
    (out / "curves.json").write_text(json.dumps({"seeds": args.seeds, "queries": args.queries, "seconds": seconds,
                                                 "curves": curves}) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    xs = list(range(1, args.queries + 1))
    for m, cs in curves.items():
        mean = [statistics.mean(c[i] for c in cs) for i in range(args.queries)]
        std = [statistics.stdev(c[i] for c in cs) for i in range(args.queries)]
        ax.plot(xs, mean, label=m)
        ax.fill_between(xs, [a - s for a, s in zip(mean, std)], [a + s for a, s in zip(mean, std)], alpha=0.2)
    ax.axhline(94.3, color="grey", linestyle=":", linewidth=1, label="94.3 (goal)")
    ax.set_xlabel("queries (distinct cells)")
    ax.set_ylabel("best-so-far CIFAR-10 accuracy (%)")
    ax.set_ylim(93.0, 94.45)
    ax.set_title(f"NAS-Bench-201, mean ± std over {args.seeds} seeds")
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=120)
    print(f"wrote {out / 'curves.png'}")


if __name__ == "__main__":
    main()
