"""The indicator table of ``docs/ranking.md`` from the JSON files of ``toponas rank``.

A ranking run with a combined indicator (``--indicator grad_norm+snip+synflow+...``) keeps every
component's score per cell (``scores`` in its JSON) and the seconds spent on each component
(``component_seconds``). This script prints, for each component alone and for each combination
asked with ``--combine a+b`` (the same sum of normalized ranks ``toponas rank --indicator a+b``
computes, :func:`toponas.ranking.runner.combined_scores`), Kendall tau, Spearman rho, the
seconds and the benchmark accuracy of its top-1 cell, as a Markdown table.

    python benchmarks/rank_table.py runs/rank/zc1000.json --benchmark ../shared/benchmarks/nb201-cifar10.csv \\
        --combine synflow+naswot --combine synflow+naswot+flops
"""

from __future__ import annotations

import argparse
import json
import math

from toponas.benchmark import BenchmarkTable
from toponas.ranking import kendall, spearman
from toponas.ranking.runner import combined_scores


def row(name: str, cells: list[str], scores: list[float], truth: list[float], seconds: float | None,
        table: BenchmarkTable, dataset: str) -> str:
    finite = [s if math.isfinite(s) else min(v for v in scores if math.isfinite(v)) - 1 for s in scores]
    best = max(range(len(cells)), key=lambda i: finite[i])
    secs = "" if seconds is None else f"{seconds:.0f}"
    return (f"| {name} | {kendall(finite, truth):.3f} | {spearman(finite, truth):.3f} | {secs} | "
            f"{table.lookup(cells[best])[dataset]:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="+", help="JSON files written by toponas rank")
    ap.add_argument("--benchmark", required=True)
    ap.add_argument("--dataset", default="cifar10")
    ap.add_argument("--combine", action="append", default=[], help="a+b: a sum of ranks of components")
    args = ap.parse_args()
    table = BenchmarkTable.load(args.benchmark)
    print("| indicator | Kendall tau | Spearman rho | seconds | top-1 accuracy |")
    print("|---|---|---|---|---|")
    for path in args.json:
        data = json.load(open(path))
        cells = [c["arch"] for c in data["cells"]]
        truth = [table.lookup(c)[args.dataset] for c in cells]
        per_cell = [{k: (-math.inf if v is None else v) for k, v in data["scores"][c].items()} for c in cells]
        seconds = data.get("component_seconds", {})
        for name in data["settings"]["indicator"].split("+"):
            print(row(name, cells, [s[name] for s in per_cell], truth, seconds.get(name), table, args.dataset))
        for combo in args.combine:
            parts = combo.split("+")
            if all(p in per_cell[0] for p in parts):
                total = sum(seconds.get(p, 0.0) for p in parts)
                print(row(combo, cells, combined_scores(parts, per_cell), truth, total, table, args.dataset))
        print(f"\n{path}: {len(cells)} cells, settings {json.dumps(data['settings'])}\n")


if __name__ == "__main__":
    main()
