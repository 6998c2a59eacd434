"""Saved-for-backward bytes of the simplified supernet (``full``) and the largest single network, per space.

Measured at ``--batch-size`` itself (one forward pass, no backward, no timing; deterministic). Not
extrapolated from small batches: whether a unit rebuilds its kernels in backward depends on the batch
(``toponas.topo.program.recompute_build``), so saved bytes are not affine in the batch.

    python benchmarks/saved_bytes.py --spaces nb201,nb201-wide3,nb201-wide4,nb201-wide6,darts,mobile
"""

from __future__ import annotations

import argparse
import json
import warnings

import torch
from torch.nn import functional as F

from toponas import topo
from toponas.spaces import create_space
from toponas.spaces.primitives import SEARCH_BN
from toponas.strategies import create_strategy
from toponas.topo.measure import saved_activation_bytes


def measure(name: str, batch: int, channels: int, mode: str) -> dict[str, int]:
    """Saved bytes of one forward pass of ``mode`` and of the largest single network at ``batch``."""
    space = create_space(name)
    torch.manual_seed(0)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the DARTS reduction's skip runs unplanned (a known warning)
        model = topo.simplify(space.build_supernet(channels, space.default_cells, 10), mode).train()
    strategy = create_strategy("darts-v1", space)
    out = {mode: saved_activation_bytes(lambda: F.cross_entropy(model(x, strategy.mixing()), y))}
    net = space.build_network(space.largest_genotype(), channels, space.default_cells, 10, bn=SEARCH_BN).train()
    out["single"] = saved_activation_bytes(lambda: F.cross_entropy(net(x), y))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spaces", default="nb201,nb201-wide3,nb201-wide4,nb201-wide6,darts,mobile")
    p.add_argument("--topo", default="full")
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=64, help="the batch the figures are given for")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    torch.set_num_threads(1)
    rows = []
    print(f"{'space':12s} {args.topo + ' MB':>9s} {'single MB':>9s} {args.topo + '/single':>11s}  "
          f"(batch {args.batch_size})")
    for name in [s.strip() for s in args.spaces.split(",") if s.strip()]:
        at = measure(name, args.batch_size, args.channels, args.topo)
        rows.append({"space": name, f"batch_{args.batch_size}": at})
        print(f"{name:12s} {at[args.topo] / 2**20:9.1f} {at['single'] / 2**20:9.1f} "
              f"{at[args.topo] / at['single']:10.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "torch": torch.__version__, "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
