"""ATen operations, saved bytes and CPU time of one search step, simplified against the largest single network.

The configurations of ``toponas profile`` (:func:`toponas.profiling.step_configs`: a darts-v1 search step,
a weight and an architecture pass, against two training steps of the largest single network on the same
two batches), one thread. The operation count (forward and backward, every ATen call) and the saved bytes
are deterministic; the CPU time is the median of ``--rounds`` interleaved steps (process time, which other
work on a shared machine inflates less than wall time; state the load beside it). ``--top N`` prints the
``N`` most frequent operations of each configuration, ``--profiler`` a ``torch.profiler`` table per
configuration (self CPU time by operation).

    python benchmarks/step_cost.py --space nb201 --image-size 16 --batch-size 64 --rounds 6
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import warnings

import torch

from toponas.profiling import step_configs
from toponas.topo.measure import aten_ops, saved_activation_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="nb201")
    p.add_argument("--strategy", default="darts-v1")
    p.add_argument("--topo", default="full", help="comma-separated simplifier modes")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--image-size", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=4, help="timed steps of each configuration (0: no timing)")
    p.add_argument("--top", type=int, default=0, help="print the N most frequent operations")
    p.add_argument("--profiler", type=int, default=0, help="print a torch.profiler table of N rows")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    torch.set_num_threads(1)
    modes = [m.strip() for m in args.topo.split(",") if m.strip()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # candidates the planner leaves to their modules
        configs, seeded = step_configs(
            args.space, args.strategy, modes, args.channels, None, args.batch_size, args.image_size, torch.device("cpu")
        )
    rows: dict[str, dict] = {}
    for name, (step, forward, _) in configs.items():
        seeded(step, -1)  # warm-up (caches, lazily made plans)
        ops = aten_ops(lambda step=step: seeded(step, 0))
        rows[name] = {
            "aten_ops": sum(ops.values()),
            "by_op": dict(sorted(ops.items(), key=lambda kv: -kv[1])),
            "saved_bytes": saved_activation_bytes(lambda forward=forward: seeded(forward, 0)),
            "cpu_ms": [],
        }
    order = list(configs)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            start = time.process_time()
            seeded(configs[name][0], r)
            rows[name]["cpu_ms"].append((time.process_time() - start) * 1000)
    single = rows.get("largest single network")
    print(
        f"{args.space} C={args.channels} {args.image_size}x{args.image_size} batch {args.batch_size}, "
        f"{args.strategy}, 1 thread, {args.rounds} rounds"
    )
    for name, row in rows.items():
        ms = statistics.median(row["cpu_ms"]) if row["cpu_ms"] else float("nan")
        line = (
            f"  {name:24s} ATen ops/step {row['aten_ops']:7d}  saved {row['saved_bytes'] / 2**20:8.1f} MB  "
            f"CPU {ms:8.1f} ms"
        )
        if single and row is not single:
            s_ms = statistics.median(single["cpu_ms"]) if single["cpu_ms"] else float("nan")
            line += (
                f"  /single: ops {row['aten_ops'] / single['aten_ops']:.2f}x, saved "
                f"{row['saved_bytes'] / single['saved_bytes']:.2f}x, CPU {ms / s_ms:.2f}x"
            )
        print(line)
        if args.top:
            print("    " + ", ".join(f"{k} {v}" for k, v in list(row["by_op"].items())[: args.top]))
    if args.profiler:
        from torch.profiler import ProfilerActivity, profile

        for name, (step, _, _) in configs.items():
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                seeded(step, 0)
            print(f"--- {name}")
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=args.profiler))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
