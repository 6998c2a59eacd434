"""Calibrate the "decided" margin threshold of ``toponas.separation`` on finished search runs.

For every run, epoch and edge it takes the margin between the edge's two strongest candidates and asks
whether the edge's argmax at that epoch is still the one the run ends with. The threshold is the
smallest margin above which at most ``--flip-rate`` of the edges changed their argmax later: below it,
an edge's winner is still being decided by the steps to come.

    python benchmarks/calibrate_separation.py runs/sweep-a runs/sweep-b --flip-rate 0.05
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def samples(run: Path) -> list[tuple[float, bool, str]]:
    """``(margin, flips_later, strategy)`` per epoch (not the last) and edge of one run's history."""
    data = json.loads((run / "result.json").read_text())
    history = [h for h in data.get("history", []) if "margins" in h and h.get("probabilities")]
    if len(history) < 2:
        return []
    final = {g: [max(range(len(row)), key=row.__getitem__) for row in rows]
             for g, rows in history[-1]["probabilities"].items()}
    out = []
    for h in history[:-1]:
        for g, rows in h["probabilities"].items():
            for e, row in enumerate(rows):
                winner = max(range(len(row)), key=row.__getitem__)
                out.append((h["margins"][g][e], winner != final[g][e], data.get("strategy", "?")))
    return out


def threshold(points: list[tuple[float, bool, str]], flip_rate: float) -> float:
    """Smallest margin t with P(flip later | margin >= t) <= flip_rate (over the given points)."""
    points = sorted(points)
    flips_above = sum(f for _, f, _ in points)
    for i, (m, f, _) in enumerate(points):
        if flips_above <= flip_rate * (len(points) - i):
            return m
        flips_above -= f
    return points[-1][0] if points else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dirs", nargs="+", type=Path, help="Run or sweep directories (searched for result.json).")
    parser.add_argument("--flip-rate", type=float, default=0.05)
    args = parser.parse_args()
    runs = sorted({p.parent for d in args.dirs for p in d.rglob("result.json")})
    points = [s for run in runs for s in samples(run)]
    if not points:
        raise SystemExit("error: no run with a per-epoch margin history found")
    print(f"{len(runs)} runs, {len(points)} (epoch, edge) points, {sum(f for _, f, _ in points)} flipped later")
    print("| strategy | points | flipped later | threshold |")
    print("| --- | --- | --- | --- |")
    for name in sorted({s for _, _, s in points}):
        mine = [p for p in points if p[2] == name]
        print(f"| {name} | {len(mine)} | {sum(f for _, f, _ in mine)} | {threshold(mine, args.flip_rate):.4f} |")
    print(f"| all | {len(points)} | {sum(f for _, f, _ in points)} | {threshold(points, args.flip_rate):.4f} |")
    for lo, hi in ((0, 0.001), (0.001, 0.002), (0.002, 0.005), (0.005, 0.01), (0.01, 0.02), (0.02, 0.05),
                   (0.05, 1.01)):
        inside = [f for m, f, _ in points if lo <= m < hi]
        if inside:
            rate = 100 * sum(inside) / len(inside)
            print(f"margin [{lo:g}, {hi:g}): {len(inside)} points, {rate:.1f} % flipped later")


if __name__ == "__main__":
    main()
