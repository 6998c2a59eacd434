"""The kernel build rebuilt in backward: always, never, or by cost (the default), side by side.

One darts-v1 forward and backward of the whole simplified supernet (``--topo full``) per setting,
interleaved over ``--rounds`` rounds (alternating order), one thread: the median and the minimum of
the process CPU time (other work on a shared machine inflates it less than wall time), the number of
ATen operations one step runs (forward and backward; deterministic, what rebuilding adds), and the bytes
each setting keeps for backward (``saved_activation_bytes``).

    python benchmarks/kernel_build.py --space nb201 --image-size 16 --batch-size 64 --rounds 10
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch.nn import functional as F

from toponas import topo
from toponas.spaces import create_space
from toponas.strategies import create_strategy
from toponas.topo import program
from toponas.topo.measure import aten_ops, saved_activation_bytes


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--space", default="nb201")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--image-size", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--rounds", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(1)
    settings = {"always": 0.0, "never": float("inf"), "by cost": program.RECOMPUTE_BUILD_RATIO}
    space = create_space(args.space)
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # candidates the planner leaves to their modules
        model = topo.simplify(space.build_supernet(args.channels, space.default_cells, 10), "full").train()
    strategy = create_strategy("darts-v1", space)
    x = torch.randn(args.batch_size, 3, args.image_size, args.image_size)
    y = torch.randint(0, 10, (args.batch_size,))

    def loss() -> torch.Tensor:
        return F.cross_entropy(model(x, strategy.mixing()), y)

    def step() -> None:
        model.zero_grad(set_to_none=True)
        loss().backward()

    saved, ops, times = {}, {}, {name: [] for name in settings}
    for name, ratio in settings.items():  # bytes, operations, and one warm-up step each
        program.RECOMPUTE_BUILD_RATIO = ratio
        saved[name] = saved_activation_bytes(loss) / 2**20
        ops[name] = sum(aten_ops(step).values())
    order = list(settings)
    for r in range(args.rounds):
        for name in order if r % 2 == 0 else order[::-1]:
            program.RECOMPUTE_BUILD_RATIO = settings[name]
            start = time.process_time()
            step()
            times[name].append(time.process_time() - start)
    base = statistics.median(times["never"])
    print(f"{args.space} C={args.channels} {args.image_size}x{args.image_size} batch {args.batch_size}, "
          f"{args.rounds} rounds")
    for name in order:
        med, low = statistics.median(times[name]), min(times[name])
        print(f"  {name:8s} CPU median {med * 1000:7.1f} ms ({med / base:.3f}x of never), min {low * 1000:7.1f} ms "
              f"({low / min(times['never']):.3f}x)  ATen ops {ops[name]:6d} ({ops[name] / ops['never']:.3f}x)  "
              f"saved {saved[name]:7.1f} MB")


if __name__ == "__main__":
    main()
