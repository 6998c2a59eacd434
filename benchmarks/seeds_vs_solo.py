"""``--seeds``: one search step of K seeds in one pass against the K seeds' solo steps, interleaved.

Sets up a real many-seed search (``toponas.loop.seeds.SeedsSearch`` on the bundled digits, resized to
``--image-size``) and times, on the same batches, its stacked step (all K seeds at once) and each seed's
own solo step (``Search.take_step``, the code a ``--seed S`` run steps with), alternating, after one
warm-up step of each. Prints the medians: the pass, one solo step, K solo steps, and their ratios; wall
clock and, on the CPU, the process's CPU time.

    python benchmarks/seeds_vs_solo.py --seeds 4 --topo full --device cpu --threads 1
    python benchmarks/seeds_vs_solo.py --seeds 4 --topo full --device cuda   # the issue's goal: pass <= 1.5x one
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch

from toponas.config import SearchConfig
from toponas.loop.seeds import SeedsSearch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4, help="K")
    ap.add_argument("--strategy", default="darts-v1")
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--topo", default="full")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--cells", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (CPU)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as out:
        cfg = SearchConfig(strategy=args.strategy, space=args.space, topo=args.topo, dataset="digits",
                           image_size=args.image_size, batch_size=args.batch_size, channels=args.channels,
                           cells=args.cells, device=args.device, out=out,
                           subset=2 * args.batch_size * (args.steps + 1), hyper={"epochs": 1})
        many = SeedsSearch(cfg, list(range(args.seeds)), progress=False, log=lambda m: None)
        many.setup(None)
        many.begin_epoch(0)
        device = many.device
        steps = many.steps_per_epoch()
        batches = list(many.epoch_batches(0, 0))

        def timed(fn) -> tuple[float, float]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return (time.perf_counter() - wall) * 1000, (time.process_time() - cpu) * 1000

        def pass_step(i: int) -> tuple[float, float]:
            return timed(lambda: many.take_step(0, i, steps, batches[i]))

        def solo_step(i: int, k: int) -> tuple[float, float]:
            return timed(lambda: many.runs[k].take_step(0, i, steps, batches[i][k]))

        pass_step(0)
        solo_step(0, 0)
        passes, solos = [], []
        for i in range(1, min(args.steps + 1, len(batches))):
            for what in (("pass", "solo") if i % 2 else ("solo", "pass")):
                if what == "pass":
                    passes.append(pass_step(i))
                else:
                    solos.append([solo_step(i, k) for k in range(args.seeds)])
    k = args.seeds
    one = [statistics.median(t[j] for s in solos for t in s) for j in (0, 1)]
    all_k = [statistics.median(sum(t[j] for t in s) for s in solos) for j in (0, 1)]
    both = [statistics.median(t[j] for t in passes) for j in (0, 1)]
    print(f"{args.space} {args.strategy} topo={args.topo} C={args.channels} N={args.cells or 'default'} batch "
          f"{args.batch_size} {args.image_size}x{args.image_size} device {device} threads {torch.get_num_threads()}, "
          f"median of {len(passes)} interleaved steps")
    for j, clock in enumerate(("wall", "cpu")):
        if clock == "cpu" and device.type == "cuda":
            continue
        print(f"{clock:4s}  {k} seeds in one pass {both[j]:8.1f} ms/step   one solo step {one[j]:8.1f} ms   "
              f"{k} solo steps {all_k[j]:8.1f} ms   pass / one solo {both[j] / one[j]:.2f}x   "
              f"{k} solo / pass {all_k[j] / both[j]:.2f}x")


if __name__ == "__main__":
    main()
