"""The off/full table of a sweep, paired by seed: accuracy, the paired difference, decided counts, cost.

Reads every ``result.json`` of a sweep directory (``toponas sweep --out DIR``) and prints two Markdown
tables: per strategy and mode the benchmark accuracy (mean, standard deviation, per seed), the paired
difference full - off over the seeds both modes finished (mean and standard deviation), and per
strategy and mode the decided count, search seconds and ms/step (means), with the ms/step ratio
full/off. A run that has not finished is listed as missing, never left out silently.

    python benchmarks/paired_table.py runs/sweep-cpu-long --strategies darts-v1,gdas --seeds 0,1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def mean_std(values: list[float]) -> str:
    if not values:
        return "n/a"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.2f} ± {std:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--strategies", default="darts-v1,darts-v2,gdas,snas,drnas,beta-darts")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--modes", default="off,full", help="The two modes to pair: BASE,OTHER.")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    base, other = args.modes.split(",")
    runs: dict[tuple[str, str, int], dict] = {}
    for path in sorted(args.sweep.glob("*/result.json")):
        data = json.loads(path.read_text())
        runs[(data["strategy"], data["topo"], int(data["seed"]))] = data
    strategies = [s.strip() for s in args.strategies.split(",") if s.strip()]
    acc = {k: (v.get("benchmark") or {}).get(args.dataset) for k, v in runs.items()}

    print(f"| strategy | {base} mean ± std | {other} mean ± std | {base} per seed | {other} per seed | "
          f"paired {other} - {base} (mean ± std) | per seed {other} - {base} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    missing = []
    for s in strategies:
        cols, per = {}, {}
        for m in (base, other):
            vals = [acc.get((s, m, seed)) for seed in seeds]
            missing += [f"{s}-topo_{m}-seed{seed}" for seed, v in zip(seeds, vals) if v is None]
            cols[m] = mean_std([v for v in vals if v is not None])
            per[m] = " ".join("—" if v is None else f"{v:.2f}" for v in vals)
        diffs = [acc[(s, other, seed)] - acc[(s, base, seed)] for seed in seeds
                 if acc.get((s, other, seed)) is not None and acc.get((s, base, seed)) is not None]
        per_diff = " ".join(f"{d:+.2f}" for d in diffs)
        print(f"| {s} | {cols[base]} | {cols[other]} | {per[base]} | {per[other]} | "
              f"{mean_std(diffs)} ({len(diffs)} pairs) | {per_diff} |")
    print()
    print(f"| strategy | topo | finished | decided | search s (mean) | ms/step (mean) | ms/step {other}/{base} |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s in strategies:
        ms = {}
        for m in (base, other):
            mine = [runs[(s, m, seed)] for seed in seeds if (s, m, seed) in runs]
            ms[m] = statistics.fmean(r["ms_per_step"] for r in mine) if mine else None
            secs = f"{statistics.fmean(r['search_seconds'] for r in mine):.0f}" if mine else "n/a"
            ratio = f"{ms[other] / ms[base]:.2f}" if m == other and ms[base] and ms[other] else ""
            print(f"| {s} | {m} | {len(mine)}/{len(seeds)} | {sum(bool(r.get('decided')) for r in mine)}"
                  f"/{len(mine)} | {secs} | {ms[m]:.1f} | {ratio} |" if mine else
                  f"| {s} | {m} | 0/{len(seeds)} | n/a | n/a | n/a | |")
    if missing:
        print(f"\nmissing ({len(missing)}): {' '.join(missing)}")


if __name__ == "__main__":
    main()
