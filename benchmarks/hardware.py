"""Hardware-aware search figures for ``docs/hardware.md``: the LUT's MAPE, and latency-targeted searches.

    python benchmarks/hardware.py mape --out runs/hw --image-size 32 --networks 50
    python benchmarks/hardware.py targets --out runs/hw --lut runs/hw/lut-16.json --strategies gdas,hurricane,fox-nas
    python benchmarks/hardware.py refit --lut runs/hw/lut-32.json --check runs/hw/check-32.json
    python benchmarks/hardware.py repeat --lut runs/hw/lut-32.json --protocols 10x30x3,5x5x18
    python benchmarks/hardware.py remeasure --lut runs/hw/lut-16.json runs/hw/gdas-50 runs/hw/fox-nas-50

``mape`` builds a table with each timing protocol (``wall``/``median``, the default; ``cpu``/``min``,
for a shared machine) and checks it on the same ``--networks`` random networks (seed 0; the entries'
correction is fitted on 60 other networks), printing one row per protocol. ``targets`` runs each
strategy at 25%, 50% and 75% (``--fractions``) of the way from the smallest to the largest network's
predicted latency and prints the found network's predicted and measured latency against the target.
The load average is printed before and after (the machine may be shared). ``refit``
fits every correction (``stages``, ``parts``, ``overhead``) on a table's recorded fit networks, without
timing anything, and scores each on the networks of a check of that table. ``repeat`` measures the
same random networks twice with each protocol (warm-up x repeats x rounds) and prints how far the two
measurements differ: the error no predictor can go below on this machine at that load. ``remeasure``
measures found networks again in one session with the table's fit networks: the fit networks' median
ratio to their measurement at the build is the drift of the machine's speed since (other processes'
load), and a found network's time divided by it is its latency at the build's load.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

PROTOCOLS = {"wall-median": ["--clock", "wall", "--statistic", "median"],
             "cpu-min": ["--clock", "cpu", "--statistic", "min"]}


def toponas(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "toponas.cli", *args], check=True)


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def mape(args) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.protocols.split(","):
        lut = out / f"lut-{args.image_size}-{name}.json"
        toponas("latency", "build", "--image-size", str(args.image_size), "--threads", "1", "--repeats",
                str(args.repeats), "--warmup", str(args.warmup), "--rounds", str(args.rounds), "--correction",
                args.correction, "--out", str(lut), "--no-progress", *PROTOCOLS[name])
        check = out / f"check-{args.image_size}-{name}.json"
        toponas("latency", "check", "--lut", str(lut), "--networks", str(args.networks), "--rounds",
                str(args.rounds), "--json", str(check), "--no-progress")
        d = json.loads(check.read_text())
        rows.append((name, d["mape"], d["within_5pct"], d["within_10pct"], d["max_ape"], d["overhead_ms"],
                     min(n["measured_ms"] for n in d["networks"]), max(n["measured_ms"] for n in d["networks"])))
        print(load(), flush=True)
    print("| protocol | MAPE % | within 5% | within 10% | max APE % | overhead ms | measured ms (min-max) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]:.2f} | {100 * r[2]:.0f}% | {100 * r[3]:.0f}% | {r[4]:.1f} | {r[5]:.3f} | "
              f"{r[6]:.2f}-{r[7]:.2f} |")


def refit(args) -> None:
    """Each correction fitted on the table's recorded fit networks, scored on a check's measured networks."""
    from toponas.hardware import LatencyTable, arch_parts
    from toponas.hardware.fit import CORRECTIONS, corrected, fit_correction
    from toponas.spaces import create_space

    table = LatencyTable.load(args.lut)
    space = create_space(table.space)
    fits = table.overhead["networks"]
    nets = [arch_parts(space, n["arch"], table.channels) for n in fits]
    checked = json.loads(Path(args.check).read_text())["networks"]
    print(f"{len(fits)} fit networks, {len(checked)} checked ({table.made_for()})")
    print("| correction | leave-one-out MAPE % (fit networks) | MAPE % | within 5% | max APE % |")
    print("| --- | --- | --- | --- | --- |")
    for name in CORRECTIONS:
        fit = fit_correction(table.entries, nets, [n["measured_ms"] for n in fits], name)
        errors = []
        for n in checked:
            keys = arch_parts(space, n["arch"], table.channels)
            predicted = sum(corrected(table.entries[k], k, fit) for k in keys) + fit["ms"]
            errors.append(abs(predicted - n["measured_ms"]) / n["measured_ms"])
        loo = f"{fit['loo_mape']:.2f}" if "loo_mape" in fit else "-"
        print(f"| {name} | {loo} | {100 * sum(errors) / len(errors):.2f} | "
              f"{100 * sum(e <= 0.05 for e in errors) / len(errors):.0f}% | {100 * max(errors):.1f} |")


def repeat(args) -> None:
    """How far two measurements of the same networks differ (the floor of any predictor's MAPE), per protocol."""
    import dataclasses

    import torch

    from toponas.hardware import LatencyTable, random_archs
    from toponas.hardware.lut import measure_networks
    from toponas.spaces import create_space

    torch.set_num_threads(1)
    table = LatencyTable.load(args.lut)
    space = create_space(table.space)
    archs = random_archs(space, args.networks, args.seed)
    print(f"{len(archs)} networks (seed {args.seed}), {table.made_for()}; {load()}")
    print("| warmup | repeats | rounds | repeat MAPE % | max % | load |")
    print("| --- | --- | --- | --- | --- | --- |")
    for spec in args.protocols.split(","):
        warmup, repeats, rounds = (int(v) for v in spec.split("x"))
        t = dataclasses.replace(table, protocol={**table.protocol, "warmup": warmup, "repeats": repeats})
        a = measure_networks(space, archs, t, torch.device("cpu"), rounds)
        b = measure_networks(space, archs, t, torch.device("cpu"), rounds)
        d = [abs(x - y) / y for x, y in zip(a, b)]
        print(f"| {warmup} | {repeats} | {rounds} | {100 * sum(d) / len(d):.2f} | {100 * max(d):.1f} | {load()} |",
              flush=True)


def remeasure(args) -> None:
    """Found networks measured again beside the table's fit networks: the drift of the load since the build."""
    import torch

    from toponas.hardware import LatencyTable
    from toponas.hardware.lut import measure_with_drift
    from toponas.spaces import create_space

    torch.set_num_threads(1)
    table = LatencyTable.load(args.lut)
    space = create_space(table.space)
    runs = [json.loads((Path(r) / "result.json").read_text()) for r in args.runs]
    before = load()
    measured, drift, _ = measure_with_drift(space, [r["genotype"] for r in runs], table, torch.device("cpu"),
                                            table.rounds, drift_networks=len(table.overhead["networks"]))
    print(f"fit networks now / at the build: median {drift:.3f} ({before}; {load()})")
    print("| run | target ms | predicted ms | measured in the search | measured now | now / drift | / target |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path, r, m in zip(args.runs, runs, measured):
        t = r["latency_target_ms"]
        print(f"| {Path(path).name} | {t:.3f} | {r['predicted_latency_ms']:.3f} | {r['measured_latency_ms']:.3f} | "
              f"{m:.3f} | {m / drift:.3f} | {m / drift / t:.3f} |")


def targets(args) -> None:
    import dataclasses

    from toponas.hardware import LatencyTable
    from toponas.hardware.model import LatencyModel
    from toponas.spaces import create_space
    from toponas.strategies import STRATEGIES

    table = LatencyTable.load(args.lut)
    space = create_space(table.space)
    (lo, _), (hi, _) = LatencyModel(table, space).extremes()
    print(f"smallest {lo:.3f} ms, largest {hi:.3f} ms predicted ({table.made_for()}); {load()}", flush=True)
    rows = []
    for frac in (float(f) for f in args.fractions.split(",")):
        target = lo + frac * (hi - lo)
        for strategy in args.strategies.split(","):
            run = Path(args.out) / f"{strategy}-{int(100 * frac)}"
            known = {f.name for f in dataclasses.fields(STRATEGIES.get(strategy).Hyper)}
            hp = [h for h in args.hp if h.split("=")[0] in known]  # each strategy takes its own keys
            toponas("search", "--space", table.space, "--strategy", strategy, "--dataset", args.dataset,
                    "--subset", str(args.subset), "--epochs", str(args.epochs), "--batch-size", str(args.batch_size),
                    "--channels", str(table.channels), "--lut", args.lut, "--latency-target", f"{target:.4f}",
                    "--device", "cpu", "--out", str(run), "--no-progress", *sum((["--hp", h] for h in hp), []))
            d = json.loads((run / "result.json").read_text())
            rows.append((frac, target, strategy, d["predicted_latency_ms"], d["measured_latency_ms"], d["mflops"],
                         d["genotype"]))
            print(load(), flush=True)
    print("| target | strategy | target ms | predicted ms | measured ms | measured / target | MFLOPs | network |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for f, t, s, p, m, fl, g in rows:
        print(f"| {int(100 * f)}% | {s} | {t:.3f} | {p:.3f} | {m:.3f} | {m / t:.3f} | {fl:.2f} | `{g}` |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="what", required=True)
    m = sub.add_parser("mape")
    m.add_argument("--out", required=True)
    m.add_argument("--image-size", type=int, default=32)
    m.add_argument("--networks", type=int, default=50)
    m.add_argument("--repeats", type=int, default=30)
    m.add_argument("--rounds", type=int, default=3)
    m.add_argument("--warmup", type=int, default=10)
    m.add_argument("--correction", default="stages")
    m.add_argument("--protocols", default="wall-median,cpu-min")
    t = sub.add_parser("targets")
    t.add_argument("--out", required=True)
    t.add_argument("--lut", required=True)
    t.add_argument("--strategies", default="gdas,hurricane,fox-nas")
    t.add_argument("--fractions", default="0.25,0.5,0.75", help="Targets, as fractions of the latency range.")
    t.add_argument("--dataset", default="digits")
    t.add_argument("--subset", type=int, default=512)
    t.add_argument("--epochs", type=int, default=4)
    t.add_argument("--batch-size", type=int, default=64)
    t.add_argument("--hp", action="append", default=[], help="KEY=VALUE for the searches whose strategy has KEY")
    r = sub.add_parser("refit")
    r.add_argument("--lut", required=True)
    r.add_argument("--check", required=True, help="A `toponas latency check` JSON of the same table.")
    n = sub.add_parser("repeat")
    n.add_argument("--lut", required=True, help="A table: its space, input and clock (its entries are not used).")
    n.add_argument("--networks", type=int, default=30)
    n.add_argument("--seed", type=int, default=0)
    n.add_argument("--protocols", default="10x30x3,5x5x18", help="WARMUPxREPEATSxROUNDS, comma-separated.")
    q = sub.add_parser("remeasure")
    q.add_argument("--lut", required=True)
    q.add_argument("runs", nargs="+", help="Search run directories (their result.json).")
    args = parser.parse_args()
    {"mape": mape, "targets": targets, "refit": refit, "repeat": repeat, "remeasure": remeasure}[args.what](args)


if __name__ == "__main__":
    main()
