"""How the "decided" fraction of finished searches grows with epochs, read from their per-epoch history.

For every run and every epoch k it applies the end-of-search verdict (``toponas.separation.verdict``)
to the history up to epoch k: would the run have been reported as decided had it stopped there? One
long run thus stands in for runs of every shorter length (an approximation: a shorter run anneals its
weight learning rate, and GDAS/SNAS their temperature, over fewer epochs). It prints, per group of
runs (strategy and topo, or the whole directory with ``--pooled``), the decided fraction and the
median of the runs' median edge margins at each epoch.

    python benchmarks/decided_by_epoch.py runs/sweep-cpu-long --every 2
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from toponas.separation import DEFAULT_MARGIN, verdict


def run_lines(run: Path) -> tuple[str, list[dict]]:
    """``(group, history lines with separation fields)`` of one finished run."""
    data = json.loads((run / "result.json").read_text())
    group = f"{data.get('strategy', '?')} {data.get('topo', '?')}"
    return group, [h for h in data.get("history", []) if "median_margin" in h]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="Run or sweep directories (searched for result.json).")
    parser.add_argument("--margin", type=float, default=DEFAULT_MARGIN, help="The decided threshold.")
    parser.add_argument("--every", type=int, default=1, help="Print every n-th epoch (and the last).")
    parser.add_argument("--pooled", action="store_true", help="One group for all runs.")
    args = parser.parse_args()
    runs = sorted({p.parent for d in args.dirs for p in d.rglob("result.json")})
    groups: dict[str, list[list[dict]]] = {}
    for run in runs:
        group, lines = run_lines(run)
        if lines:
            groups.setdefault("all" if args.pooled else group, []).append(lines)
    if not groups:
        raise SystemExit("error: no run with a per-epoch margin history found")
    print(f"{len(runs)} runs; decided: median margin >= {args.margin:g} and the cell unchanged in the last 2 epochs")
    print("| runs | epoch | decided | median of median margins |")
    print("| --- | --- | --- | --- |")
    for group, histories in sorted(groups.items()):
        longest = max(len(h) for h in histories)
        for k in range(1, longest + 1):
            if k % args.every and k != longest:
                continue
            upto = [h[:k] for h in histories if len(h) >= k]
            decided = sum(verdict(h, args.margin).decided for h in upto)
            margin = statistics.median(float(h[-1]["median_margin"]) for h in upto)
            print(f"| {group} | {k} | {decided}/{len(upto)} | {margin:.4f} |")


if __name__ == "__main__":
    main()
