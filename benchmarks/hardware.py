"""Hardware-aware search figures for ``docs/hardware.md``: the LUT's MAPE, and latency-targeted searches.

    python benchmarks/hardware.py mape --out runs/hw --image-size 32 --networks 50
    python benchmarks/hardware.py targets --out runs/hw --lut runs/hw/lut-16.json --strategies gdas,hurricane,fox-nas
    python benchmarks/hardware.py refit --lut runs/hw/lut-32.json --check runs/hw/check-32.json
    python benchmarks/hardware.py repeat --lut runs/hw/lut-32.json --protocols 10x30x3,5x5x18
    python benchmarks/hardware.py remeasure --lut runs/hw/lut-16.json runs/hw/gdas-50 runs/hw/fox-nas-50
    python benchmarks/hardware.py accuracy --lut runs/hw/lut-16.json --out runs/hw/acc runs/hw/targets/*

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
load), and a found network's time divided by it is its latency at the build's load. ``accuracy`` draws
``--random`` (10) uniform random networks predicted within ``--band`` (5%) of each found network's
predicted latency (``toponas.hardware.sample.archs_near``), retrains every one and the found ones with
``toponas train --preset cpu`` (same seed, ``--jobs`` at a time), then measures all of them in one
session beside the fit networks and prints each found network's accuracy against its random networks' (and a plot
with ``--plot``); a rerun keeps the drawn networks, the measurements and the finished trainings.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import zlib
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


def accuracy(args) -> None:
    """Found networks against random networks of their latency, all retrained the same way (issue 12)."""
    import statistics
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from toponas.hardware import LatencyTable
    from toponas.hardware.lut import measure_with_drift
    from toponas.hardware.model import LatencyModel
    from toponas.hardware.sample import archs_near
    from toponas.spaces import create_space

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = LatencyTable.load(args.lut)
    space = create_space(table.space)
    model = LatencyModel(table, space)
    found = []
    for run in args.runs:
        r = json.loads((Path(run) / "result.json").read_text())
        found.append({"run": Path(run).name, "arch": r["genotype"], "target_ms": r.get("latency_target_ms"),
                      "predicted_ms": model.arch(r["genotype"])})
    plan_file = out / "plan.json"  # the random networks are drawn once per run: a rerun trains the same ones
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else {"lut": args.lut, "band": args.band,
                                                                         "found": []}
    known = {f["run"] for f in plan["found"]}
    taken = {a for f in plan["found"] for a in [f["arch"], *f["random"]]} | {f["arch"] for f in found}
    for f in found:
        if f["run"] not in known:  # seeded by the run's name, so the order of the runs does not matter
            f["random"] = archs_near(model, f["predicted_ms"], args.random, plan["band"],
                                     seed=args.seed + zlib.crc32(f["run"].encode()), exclude=taken,
                                     start=f["arch"])
            taken |= set(f["random"])
            plan["found"].append(f)
    plan_file.write_text(json.dumps(plan, indent=1))
    wanted = {f["run"] for f in found}
    plan["found"] = [f for f in plan["found"] if f["run"] in wanted]
    nets = [(f["run"], f["arch"]) for f in plan["found"]]
    nets += [(f"{f['run']}-r{j}", a) for f in plan["found"] for j, a in enumerate(f["random"])]

    def train(item) -> float:
        name, arch = item
        run = out / "train" / name
        if not (run / "train.json").exists():
            subprocess.run([sys.executable, "-m", "toponas.cli", "train", arch, "--space", table.space, "--dataset",
                            args.dataset, "--preset", args.preset, "--channels", str(table.channels), "--seed",
                            str(args.train_seed), "--device", "cpu", "--out", str(run), "--no-progress"],
                           check=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)},
                           stdout=subprocess.DEVNULL)
            print(f"trained {name} ({load()})", flush=True)
        return json.loads((run / "train.json").read_text())["test_accuracy"]

    with ThreadPoolExecutor(args.jobs) as pool:
        acc = dict(zip([n for n, _ in nets], pool.map(train, nets)))
    if not args.measure:
        return
    measured_file = out / "measured.json"  # every network measured in one session, beside the fit networks
    measured = json.loads(measured_file.read_text()) if measured_file.exists() else {"ms": {}}
    if not {n for n, _ in nets} <= set(measured["ms"]):
        torch.set_num_threads(1)
        before = load()
        ms, drift, _ = measure_with_drift(space, [a for _, a in nets], table, torch.device("cpu"), table.rounds)
        measured = {"ms": dict(zip([n for n, _ in nets], ms)), "drift": drift, "load": [before, load()]}
        measured_file.write_text(json.dumps(measured, indent=1))
        print(f"measured {len(nets)} networks, drift {drift:.3f} ({before}; {load()})", flush=True)
    rows = []
    for f in plan["found"]:
        rand = [acc[f"{f['run']}-r{j}"] for j in range(len(f["random"]))]
        rand_ms = [measured["ms"][f"{f['run']}-r{j}"] for j in range(len(f["random"]))]
        rows.append({"run": f["run"], "arch": f["arch"], "target_ms": f["target_ms"], "predicted_ms": f["predicted_ms"],
                     "measured_ms": measured["ms"][f["run"]], "accuracy": acc[f["run"]],
                     "random_accuracy": rand, "random_measured_ms": rand_ms, "random_archs": f["random"],
                     "random_mean": (mean := statistics.mean(rand)),
                     "random_std": statistics.stdev(rand) if len(rand) > 1 else 0.0,
                     "beats_random_mean": acc[f["run"]] > mean,
                     "random_below": sum(a < acc[f["run"]] for a in rand)})
    (out / "accuracy.json").write_text(json.dumps({"lut": args.lut, "band": plan["band"], "preset": args.preset,
                                                   "dataset": args.dataset, "drift": measured["drift"], "rows": rows},
                                                  indent=1))
    print(f"drift {measured['drift']:.3f}; band +-{100 * plan['band']:g}% of the found network's predicted latency")
    print("| run | target ms | found: predicted / measured ms | accuracy | random (n): mean +- std "
          "| random measured ms | random below found | beats the mean |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['run']} | {r['target_ms']:.3f} | {r['predicted_ms']:.3f} / {r['measured_ms']:.3f} | "
              f"{100 * r['accuracy']:.2f}% | ({len(r['random_accuracy'])}) {100 * r['random_mean']:.2f} +- "
              f"{100 * r['random_std']:.2f}% | {min(r['random_measured_ms']):.3f}-{max(r['random_measured_ms']):.3f} | "
              f"{r['random_below']}/{len(r['random_accuracy'])} | {'yes' if r['beats_random_mean'] else 'no'} |")
    if args.plot:
        plot_accuracy(rows, Path(args.plot))


def plot_accuracy(rows: list[dict], path: Path) -> None:
    """Accuracy against measured latency: each found network (by strategy) and its random networks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    strategies = sorted({r["run"].rsplit("-", 1)[0] for r in rows})
    colours = dict(zip(strategies, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple")))
    ax.scatter([m for r in rows for m in r["random_measured_ms"]],
               [100 * a for r in rows for a in r["random_accuracy"]], s=12, c="0.6",
               label="random, same predicted latency (+-5%)")
    for s in strategies:
        mine = [r for r in rows if r["run"].rsplit("-", 1)[0] == s]
        ax.scatter([r["measured_ms"] for r in mine], [100 * r["accuracy"] for r in mine], s=60, marker="*",
                   c=colours[s], edgecolors="k", linewidths=0.5, label=f"{s} (found)", zorder=3)
    ax.set_xlabel("measured latency (ms, batch 1, this CPU)")
    ax.set_ylabel("test accuracy after retraining (%)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    print(f"wrote {path}")


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
    a = sub.add_parser("accuracy")
    a.add_argument("--lut", required=True)
    a.add_argument("--out", required=True)
    a.add_argument("--random", type=int, default=10, help="Random networks per found network.")
    a.add_argument("--band", type=float, default=0.05, help="Their predicted latency within this of the found one's.")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--dataset", default="digits")
    a.add_argument("--preset", default="cpu")
    a.add_argument("--train-seed", type=int, default=0)
    a.add_argument("--jobs", type=int, default=2)
    a.add_argument("--threads", type=int, default=1)
    a.add_argument("--plot", help="Write the accuracy-latency plot here.")
    a.add_argument("--no-measure", dest="measure", action="store_false",
                   help="Only draw and train (measure every network later, in one session, with the last call).")
    a.add_argument("runs", nargs="+", help="Search run directories (their result.json).")
    args = parser.parse_args()
    {"mape": mape, "targets": targets, "refit": refit, "repeat": repeat, "remeasure": remeasure,
     "accuracy": accuracy}[args.what](args)


if __name__ == "__main__":
    main()
