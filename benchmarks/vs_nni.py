"""Time one DARTS step of TopoNAS against both peers on NAS-Bench-201: NNI 3.0 and xautodl 1.0.0.

Every supernet gets the same batch; the steps are interleaved after warm-up (the order alternates
every step) and the median of each is compared, so both peers' ratios come from one run on one load.

* NNI (``pip install nni pytorch_lightning``): NNI's own ``NasBench201`` model space turned into its
  DARTS supernet by ``nni.nas.strategy.DARTS().mutate_model`` (every cell's choices carry one label, so
  the architecture weights are shared across cells, as here), and the body of NNI's
  ``DartsLightningModule.training_step`` without the Lightning trainer around it: an architecture step
  (Adam 3e-4, betas (0.5, 0.999), weight decay 1e-3, NNI's defaults) on the second batch, then a weight
  step (SGD 0.025, momentum 0.9, nesterov, weight decay 5e-4, gradients clipped to norm 5, as here).
* xautodl (``pip install --no-deps xautodl==1.0.0``): its DARTS-V1 supernet and search step
  (``benchmarks/vs_xautodl.py``).
* TopoNAS ``darts-v1`` with the simplifier modes of ``--topo``.

A peer that is not installed is left out with a note. Measured counters beside the time: minor page
faults per step (the allocator's churn, see ``toponas/runtime/allocator.py``; the process is one, so
every configuration runs under the same allocator settings).

    python benchmarks/vs_nni.py --steps 5 --warmup 1 --topo off,full --json nni.json
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from vs_xautodl import build_ours, build_reference, parse_args, random_batch  # noqa: E402  (the sibling benchmark script)

from toponas.runtime.allocator import allocator_state, minor_faults  # noqa: E402

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def build_nni(channels: int, cells: int, device: torch.device) -> Callable[[Batch], None]:
    """NNI 3.0's DARTS supernet of its NAS-Bench-201 space and one DARTS step (see the module docstring)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NNI warns about torch module classes newer than it knows
        from nni.nas.hub.pytorch import NasBench201
        from nni.nas.strategy import DARTS

        net = DARTS().mutate_model(NasBench201(channels, cells, 10)).to(device).train()
    alphas = list({id(p): p for m in net.modules() if hasattr(m, "arch_parameters")
                   for p in m.arch_parameters()}.values())
    arch = {id(p) for p in alphas}
    weights = [p for p in net.parameters() if id(p) not in arch]
    w_opt = torch.optim.SGD(weights, lr=0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)
    a_opt = torch.optim.Adam(alphas, lr=3e-4, betas=(0.5, 0.999), weight_decay=1e-3)

    def step(batch: Batch) -> None:
        x_w, y_w, x_a, y_a = batch
        a_opt.zero_grad()
        F.cross_entropy(net(x_a), y_a).backward()  # NNI: the architecture step first, on the val batch
        a_opt.step()
        w_opt.zero_grad()
        F.cross_entropy(net(x_w), y_w).backward()
        torch.nn.utils.clip_grad_norm_(weights, 5)
        w_opt.step()

    step.alphas = len(alphas)  # type: ignore[attr-defined]
    return step


def main() -> None:
    args = parse_args(__doc__)
    device = torch.device(args.device)
    batch = random_batch(args.batch_size, device)
    runs: dict[str, Callable[[Batch], None]] = {}
    peers = []
    for name, build, hint in (("nni 3.0 DARTS", build_nni, "pip install nni pytorch_lightning"),
                              ("xautodl DARTS-V1", build_reference, "pip install --no-deps xautodl==1.0.0")):
        try:
            runs[name] = build(args.channels, args.cells, device)
            peers.append(name)
        except ImportError as e:
            print(f"note: {name} left out ({e}; install with `{hint}`)", file=sys.stderr)
    for mode in args.topo.split(","):
        runs[f"toponas darts-v1 topo={mode}"] = build_ours(mode, args.channels, args.cells, device)

    def timed(fn: Callable[[Batch], None]) -> tuple[float, int]:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        f, t = minor_faults(), time.perf_counter()
        fn(batch)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return (time.perf_counter() - t) * 1000, minor_faults() - f

    for _ in range(args.warmup):
        for name, fn in runs.items():
            print(f"warm-up {name}", file=sys.stderr, flush=True)
            timed(fn)
    times: dict[str, list[float]] = {name: [] for name in runs}
    faults: dict[str, list[int]] = {name: [] for name in runs}
    for i in range(args.steps):
        order = list(runs.items())
        if i % 2:
            order.reverse()
        for name, fn in order:
            ms, f = timed(fn)
            times[name].append(ms)
            faults[name].append(f)
        print(f"step {i + 1}/{args.steps}: " + ", ".join(f"{n} {t[-1]:.0f} ms" for n, t in times.items()),
              file=sys.stderr, flush=True)
    med = {name: statistics.median(ts) for name, ts in times.items()}
    state = allocator_state()
    print(f"device {device}, C={args.channels}, N={args.cells}, batch {args.batch_size}, {args.steps} interleaved "
          f"steps after {args.warmup} warm-up, torch threads {torch.get_num_threads()}, allocator "
          f"{', '.join(state.applied) if state and state.applied else 'default'}")
    head = f"{'configuration':32s} {'ms/step':>10s} {'minflt/step':>11s}" + "".join(
        f" {peer.split()[0] + ' / this':>14s}" for peer in peers)
    print(head)
    rows = []
    for name in runs:
        ratios = {peer: med[peer] / med[name] for peer in peers}
        rows.append({"name": name, "ms_per_step": med[name], "ms_spread": [min(times[name]), max(times[name])],
                     "minor_faults_per_step": int(statistics.median(faults[name])),
                     "speedup_vs": ratios})
        print(f"{name:32s} {med[name]:10.1f} {rows[-1]['minor_faults_per_step']:11d}"
              + "".join(f" {ratios[peer]:13.2f}x" for peer in peers))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "peers": peers, "torch": torch.__version__,
                       "allocator": list(state.applied) if state else [], "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
