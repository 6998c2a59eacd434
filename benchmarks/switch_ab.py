"""A/B in one process: the simplified supernet's search step with an executor switch of ``toponas.topo.program``
on and off (``--switch``), or with a simplifier rule on and off (``--disable``), beside the largest single
network's two training steps.

The configurations are ``toponas profile``'s (:func:`toponas.profiling.step_configs`). A switch is read when a
step runs, so both settings run the same model; a rule is planned, so ``--disable`` builds a second model from
the same seed. Every configuration runs on the same batches, interleaved (the order alternates every round).
Prints the median wall time per step, ATen operations per step and bytes kept for backward of each setting,
and the ratios against the single network.

    python benchmarks/switch_ab.py --switch POOLED_TAPS --space nb201 --rounds 7
    python benchmarks/switch_ab.py --disable fusion --space nb201 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

from toponas.profiling import step_configs
from toponas.topo import program
from toponas.topo.measure import aten_ops, saved_activation_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--switch", help="a boolean of toponas.topo.program, e.g. POOLED_TAPS")
    what.add_argument("--disable", help="a simplifier rule, e.g. fusion")
    p.add_argument("--space", default="nb201")
    p.add_argument("--strategy", default="darts-v1")
    p.add_argument("--topo", default="full")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    if args.switch and not isinstance(getattr(program, args.switch, None), bool):
        p.error(f"toponas.topo.program has no boolean {args.switch}")
    torch.set_num_threads(args.threads)
    shape = (args.channels, None, args.batch_size, args.image_size, torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        configs, seeded = step_configs(args.space, args.strategy, [args.topo], *shape)
        other = step_configs(args.space, args.strategy, [args.topo], *shape, disable=[args.disable],
                             single=False)[0] if args.disable else {}
    step, forward, _ = configs[f"topo={args.topo}"]
    single = configs["largest single network"][0]

    def with_switch(value: bool, fn):
        def run(i: int):
            original = getattr(program, args.switch)
            setattr(program, args.switch, value)
            try:
                return seeded(fn, i)
            finally:
                setattr(program, args.switch, original)
        return run

    if args.switch:
        arms = {f"{args.switch}=True": (with_switch(True, step), with_switch(True, forward)),
                f"{args.switch}=False": (with_switch(False, step), with_switch(False, forward))}
    else:
        b_step, b_forward, _ = other[f"topo={args.topo}"]
        arms = {"all rules": (lambda i: seeded(step, i), lambda i: seeded(forward, i)),
                f"without {args.disable}": (lambda i: seeded(b_step, i), lambda i: seeded(b_forward, i))}
    runs = {name: run for name, (run, _) in arms.items()}
    runs["largest single network"] = lambda i: seeded(single, i)
    rows: dict[str, dict] = {}
    for name, run in runs.items():
        run(-1)  # warm-up
        rows[name] = {"aten_ops": sum(aten_ops(lambda run=run: run(0)).values()), "ms": []}
        if name in arms:
            rows[name]["saved_bytes"] = saved_activation_bytes(lambda fwd=arms[name][1]: fwd(0))
    order = list(runs)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            runs[name](r)
            rows[name]["ms"].append((time.perf_counter() - start) * 1000)
    base = statistics.median(rows["largest single network"]["ms"])
    print(f"{args.space} {args.topo}, C={args.channels} {args.image_size}x{args.image_size} batch {args.batch_size}, "
          f"{args.strategy}, {args.threads} threads, median of {args.rounds} interleaved rounds")
    for name, row in rows.items():
        ms = statistics.median(row["ms"])
        row["median_ms"] = ms
        saved = f"  saved {row['saved_bytes'] / 2**20:7.1f} MB" if "saved_bytes" in row else ""
        print(f"  {name:26s} {ms:8.1f} ms/step (min {min(row['ms']):8.1f})  ATen ops {row['aten_ops']:6d}{saved}"
              f"  /single {ms / base:.3f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
