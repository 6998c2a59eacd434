"""``--compile`` against eager: one search step of the same supernet, interleaved on the same batch.

Both copies start from the same weights and architecture parameters; after the warm-up (the compiled
copy's first step compiles, reported apart) the steps alternate eager / compiled, so machine noise
hits both alike. Prints the medians, their ratio, the compile time and the recompilations during the
timed steps.

    python benchmarks/compile_vs_eager.py --space nb201 --topo full --steps 5
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from toponas import topo
from toponas.runtime.compiled import check_compile, compile_mode, compile_module, compiled_frames
from toponas.spaces import create_space
from toponas.strategies import create_strategy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--space", default="nb201")
    ap.add_argument("--strategy", default="darts-v1")
    ap.add_argument("--topo", default="full")
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--cells", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    device = torch.device(args.device)
    check_compile(device)
    space = create_space(args.space)
    cells = args.cells or space.default_cells
    gen = torch.Generator().manual_seed(0)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    batch = [torch.randn(shape, generator=gen), torch.randint(0, 10, (args.batch_size,), generator=gen),
             torch.randn(shape, generator=gen), torch.randint(0, 10, (args.batch_size,), generator=gen)]
    batch = [t.to(device) for t in batch]
    torch.manual_seed(0)
    plain = space.build_supernet(args.channels, cells, 10)
    runs = {}
    for name in ("eager", "compiled"):
        model = topo.simplify(copy.deepcopy(plain), args.topo).to(device).train()
        if name == "compiled":
            compile_module(model, device)
        torch.manual_seed(0)
        strategy = create_strategy(args.strategy, space).to(device)
        ctx = strategy.make_context(model)
        strategy.new_epoch(0, ctx.hyper.epochs)
        runs[name] = (strategy, ctx)

    def step(name: str, i: int) -> float:
        strategy, ctx = runs[name]
        torch.manual_seed(i)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        stats = strategy.step(ctx, *batch)
        stats.w_loss.item()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t) * 1000

    warm = {name: step(name, -1) for name in runs}
    frames = compiled_frames()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for i in range(args.steps):
        for name in (("eager", "compiled") if i % 2 == 0 else ("compiled", "eager")):
            times[name].append(step(name, i))
    recompiles = compiled_frames() - frames
    med = {name: statistics.median(ts) for name, ts in times.items()}
    print(f"{args.space} {args.strategy} topo={args.topo} C={args.channels} N={cells} batch {args.batch_size} "
          f"{args.image_size}x{args.image_size} device {device} threads {torch.get_num_threads()} "
          f"mode {compile_mode(device)}, median of {args.steps} interleaved steps")
    for name in runs:
        print(f"{name:9s} {med[name]:9.1f} ms/step (steps: {', '.join(f'{t:.0f}' for t in times[name])}); "
              f"first step {warm[name] / 1000:.1f} s")
    print(f"eager/compiled: {med['eager'] / med['compiled']:.2f}x; compile (first compiled step): "
          f"{warm['compiled'] / 1000:.1f} s; recompilations during the timed steps: {recompiles}")


if __name__ == "__main__":
    main()
