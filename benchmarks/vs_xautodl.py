"""Time one DARTS-V1 search step of TopoNAS against the NAS-Bench-201 reference (xautodl 1.0.0).

Both supernets get the same batch; their steps are interleaved after warm-up and the median time
of each is compared. The reference step is xautodl's own DARTS-V1 search step (weight step with
clipping, then architecture step). Install the reference with ``pip install --no-deps xautodl==1.0.0``.

    python benchmarks/vs_xautodl.py --channels 16 --cells 5 --batch-size 64 --steps 5 --topo off,full
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch.nn import functional as F

from toponas import topo
from toponas.spaces import create_space
from toponas.strategies import create_strategy


def reference_step(net, w_opt, a_opt, x_w, y_w, x_a, y_a) -> None:
    """xautodl's DARTS-V1 ``search_func`` body, verbatim in substance."""
    w_opt.zero_grad()
    _, logits = net(x_w)
    F.cross_entropy(logits, y_w).backward()
    torch.nn.utils.clip_grad_norm_(net.parameters(), 5)
    w_opt.step()
    a_opt.zero_grad()
    _, logits = net(x_a)
    F.cross_entropy(logits, y_a).backward()
    a_opt.step()


def build_reference(channels: int, cells: int, device: torch.device):
    from xautodl.models.cell_operations import NAS_BENCH_201
    from xautodl.models.cell_searchs import nas201_super_nets

    net = nas201_super_nets["DARTS-V1"](channels, cells, 4, 10, NAS_BENCH_201, False, False).to(device)
    weights = net.get_weights()
    w_opt = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(net.get_alphas(), lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)
    return lambda batch: reference_step(net, w_opt, a_opt, *batch)


def build_ours(mode: str, channels: int, cells: int, device: torch.device):
    space = create_space("nb201")
    model = topo.simplify(space.build_supernet(channels, cells, 10), mode).to(device).train()
    strategy = create_strategy("darts-v1", space).to(device)
    ctx = strategy.make_context(model)
    return lambda batch: strategy.step(ctx, *batch)


def parse_args(doc: str | None) -> argparse.Namespace:
    """The flags every peer benchmark takes (``vs_xautodl.py``, ``vs_nni.py``); sets the torch threads."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=5, help="timed steps of each, interleaved")
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--topo", default="off,full", help="TopoNAS modes to compare, comma-separated")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave as is)")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    return args


def random_batch(batch_size: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """One fixed weight batch and architecture batch of CIFAR-10 shape: ``(x_w, y_w, x_a, y_a)``."""
    torch.manual_seed(0)
    shape = (batch_size, 3, 32, 32)
    return (torch.randn(shape, device=device), torch.randint(0, 10, (batch_size,), device=device),
            torch.randn(shape, device=device), torch.randint(0, 10, (batch_size,), device=device))


def main() -> None:
    args = parse_args(__doc__)
    device = torch.device(args.device)
    batch = random_batch(args.batch_size, device)
    runs = {"xautodl DARTS-V1": build_reference(args.channels, args.cells, device)}
    for mode in args.topo.split(","):
        runs[f"toponas darts-v1 topo={mode}"] = build_ours(mode, args.channels, args.cells, device)

    def timed(fn) -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t = time.perf_counter()
        fn(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t) * 1000

    for _ in range(args.warmup):
        for fn in runs.values():
            timed(fn)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.steps):
        for name, fn in runs.items():
            times[name].append(timed(fn))
    ref = statistics.median(times["xautodl DARTS-V1"])
    print(f"device {device}, C={args.channels}, N={args.cells}, batch {args.batch_size}, "
          f"{args.steps} interleaved steps after {args.warmup} warm-up, torch threads {torch.get_num_threads()}")
    print(f"{'configuration':32s} {'ms/step':>10s} {'reference / this':>17s}")
    rows = []
    for name, ts in times.items():
        med = statistics.median(ts)
        rows.append({"name": name, "ms_per_step": med, "speedup_vs_reference": ref / med})
        print(f"{name:32s} {med:10.1f} {ref / med:16.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
