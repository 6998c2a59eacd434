"""Peak memory of one PARSEC / FP-NAS search step against one training step of the largest single network.

``toponas profile`` does not answer this question for the sampling strategies: its memory figure is
the bytes one forward pass of *one randomly sampled child* keeps for backward (not the largest child,
not the whole step with its K children and the gradient accumulator), and its peak column exists
only on CUDA. This script measures, on the CPU, the peak of the bytes allocated by tensors during
one whole step above what was allocated before it (model, optimizer state and batches are already
resident in every configuration), from the allocation and free events of the PyTorch profiler
(``profile_memory=True``), in the order they happened. Every configuration takes one warm-up step
first, so the optimizers' state exists before the measured step in all of them, and its gradients
are then released (every step computes them afresh), so the measured peak includes the gradients
a step allocates and no free of memory allocated before the measurement is missed.

* ``largest single network``: one SGD training step (zero grad, forward, backward, SGD with
  momentum) of the NAS-Bench-201 network whose every edge is ``nor_conv_3x3``, search BN.
* ``parsec`` / ``fp-nas``, children ``largest``: one search step (weight phase: K children forward
  and backward one after another with the online importance-weighted gradient sum; distribution
  phase: K children forward) where every child is the largest network: the worst case.
* the same with ``random`` children: K architectures drawn from the uniform initial distribution.

    python benchmarks/sampling_memory.py --channels 16 --cells 5 --batch-size 64 --samples 15 \
        --json docs/figures/probabilistic/memory.json
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch
from torch.nn import functional as F
from torch.profiler import ProfilerActivity, profile

from toponas import topo
from toponas.spaces import create_space
from toponas.spaces.nb201 import SEARCH_BN
from toponas.strategies import create_strategy
from toponas.strategies.sampling import Draws


def step_peak_bytes(step: Callable[[], object]) -> tuple[int, float]:
    """Peak of the tensor bytes allocated during ``step()`` above the level before it, and its seconds."""
    t = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    seconds = time.perf_counter() - t
    events = [e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"]
    events.sort(key=lambda e: e.start_ns())
    level = peak = 0
    for e in events:
        level += e.nbytes()
        peak = max(peak, level)
    return peak, seconds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--cells", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--samples", type=int, default=15, help="PARSEC's K (FP-NAS's starting K at lambda 1.5)")
    ap.add_argument("--topo", default="full", help="simplifier mode of the supernet (as in the search)")
    ap.add_argument("--children", default="largest,random", help="largest (worst case), random, or both")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    space = create_space("nb201")
    gen = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    batch = [torch.randn(shape, generator=gen), torch.randint(0, 10, (args.batch_size,), generator=gen),
             torch.randn(shape, generator=gen), torch.randint(0, 10, (args.batch_size,), generator=gen)]
    largest = space.largest_genotype()
    largest_idx = torch.tensor([space.op_names.index(op) for op in largest.ops])
    rows = []

    def record(name: str, step: Callable[[], object], params, k: int | None = None,
               warm: Callable[[], object] | None = None) -> None:
        (warm or step)()  # warm-up: the optimizers' state
        for q in params:  # gradients are rebuilt by every step; freed here, not during the measured step
            q.grad = None
        peak, seconds = step_peak_bytes(step)
        rows.append({"configuration": name, "children_per_step": k, "peak_bytes": peak, "seconds": seconds})
        print(f"{name:44s} peak {peak / 2**20:8.1f} MiB  ({seconds:.1f} s with the profiler)", flush=True)

    net = space.build_network(largest, args.channels, args.cells, 10, bn=SEARCH_BN).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)

    def train_step(net=net, opt=opt) -> None:
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(batch[0]), batch[1]).backward()
        opt.step()

    record("largest single network, one training step", train_step, list(net.parameters()))
    single = rows[0]["peak_bytes"]
    del net, opt

    for name, hyper in (("parsec", {"samples": args.samples}), ("fp-nas", {})):
        for children in args.children.split(","):
            torch.manual_seed(args.seed)
            model = topo.simplify(space.build_supernet(args.channels, args.cells, 10), args.topo).train()
            strategy = create_strategy(name, space, hyper)
            ctx = strategy.make_context(model)
            strategy.new_epoch(0, strategy.hyper.epochs)
            k = strategy.num_samples()
            if children == "largest":
                strategy.sample = lambda n: Draws({"cell": largest_idx.repeat(n, 1)})

            def search_step(strategy=strategy, ctx=ctx) -> None:
                strategy.step(ctx, *batch)

            def one_child_step(strategy=strategy, ctx=ctx) -> None:  # the warm-up needs no K children
                strategy.num_samples = lambda: 1
                strategy.step(ctx, *batch)
                del strategy.num_samples

            record(f"{name} step, K={k} {children} children", search_step,
                   [*model.parameters(), *strategy.parameters()], k, one_child_step)
            del model, strategy, ctx

    for r in rows:
        r["vs_single"] = r["peak_bytes"] / single
    print("\nconfiguration                                peak MiB   vs single")
    for r in rows:
        print(f"{r['configuration']:44s} {r['peak_bytes'] / 2**20:8.1f}   {r['vs_single']:.3f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"channels": args.channels, "cells": args.cells, "batch_size": args.batch_size,
                       "image_size": args.image_size, "topo": args.topo, "torch": torch.__version__,
                       "threads": torch.get_num_threads(), "rows": rows}, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    main()
