"""How the "decided" fraction of finished searches grows with epochs, read from their per-epoch history.

For every run and every epoch k it applies the end-of-search verdict (``toponas.separation.verdict``)
to the history up to epoch k: would the run have been reported as decided had it stopped there? One
long run thus stands in for runs of every shorter length (an approximation: a shorter run anneals its
weight learning rate, GDAS/SNAS their temperature and beta-DARTS its regularization weight over fewer
epochs). It prints one row per group of runs and one column per epoch: decided runs / runs, and the
median over the runs of their median edge margin at that epoch; then, per group and epoch, the mean
number of edges whose winner changed from the previous epoch (what keeps a run with large margins
from being decided).

    python benchmarks/decided_by_epoch.py runs/sweep-cpu-long --group strategy
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from toponas.separation import DEFAULT_MARGIN, verdict

#: How runs are grouped into rows (``run``: one row per run directory).
GROUPS = {"strategy": lambda d: d.get("strategy", "?"),
          "topo": lambda d: f"{d.get('strategy', '?')} {d.get('topo', '?')}",
          "all": lambda d: "all", "run": None}


def winners(line: dict) -> list[int]:
    """The argmax candidate of every edge in one history line (groups in name order)."""
    return [max(range(len(row)), key=row.__getitem__)
            for _, rows in sorted(line.get("probabilities", {}).items()) for row in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="Run or sweep directories (searched for result.json).")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="The decided threshold.")
    parser.add_argument("--group", choices=sorted(GROUPS), default="topo",
                        help="One row per strategy, per strategy and topo, per run, or for all runs.")
    args = parser.parse_args()
    runs = sorted({p.parent for d in args.dirs for p in d.rglob("result.json")})
    groups: dict[str, list[list[dict]]] = {}
    for run in runs:
        data = json.loads((run / "result.json").read_text())
        lines = [h for h in data.get("history", []) if "median_margin" in h]
        key = run.name if GROUPS[args.group] is None else GROUPS[args.group](data)
        if lines:
            groups.setdefault(key, []).append(lines)
    if not groups:
        raise SystemExit("error: no run with a per-epoch margin history found")
    longest = max(len(h) for hs in groups.values() for h in hs)
    print(f"{len(runs)} runs; decided at epoch k: median margin >= {args.margin:g} at k and the cell unchanged "
          f"in epochs k-1 and k; each cell: decided / runs (median of the median margins)")
    print("| runs | " + " | ".join(f"epoch {k}" for k in range(1, longest + 1)) + " |")
    print("| --- |" + " --- |" * longest)
    for group, histories in sorted(groups.items()):
        cells = []
        for k in range(1, longest + 1):
            upto = [h[:k] for h in histories if len(h) >= k]
            if not upto:
                cells.append("")
                continue
            decided = sum(verdict(h, args.margin).decided for h in upto)
            margin = statistics.median(float(h[-1]["median_margin"]) for h in upto)
            cells.append(f"{decided}/{len(upto)} ({margin:.4f})")
        print(f"| {group} | " + " | ".join(cells) + " |")
    print()
    print("mean number of edges whose winner changed from the previous epoch")
    print("| runs | " + " | ".join(f"epoch {k}" for k in range(2, longest + 1)) + " |")
    print("| --- |" + " --- |" * (longest - 1))
    for group, histories in sorted(groups.items()):
        cells = []
        for k in range(2, longest + 1):
            flips = [sum(a != b for a, b in zip(winners(h[k - 2]), winners(h[k - 1]))) for h in histories
                     if len(h) >= k and h[k - 1].get("probabilities")]
            cells.append(f"{statistics.fmean(flips):.1f}" if flips else "")
        print(f"| {group} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
