"""How a mobile search step grows with the block's choices: kernels 1 -> 3, expansions 1 -> 2.

Three mobile spaces that differ only in the MBConv choices of every block (``MobileSpec.kernels`` and
``expansions``; the stage table, widths and ``skip`` unchanged): ``k7e6`` alone, ``k3/5/7 x e6``, and the
default ``k3/5/7 x e3/6``. Each runs ``toponas.profiling.profile`` (one interleaved run per space, the
median of the timed steps) with ``--topo off,full``; the script prints the figures and the growth of
each mode from the first space to the others (time and saved bytes). The simplifier's goal: full grows
at most 1.3x while off grows with the number of candidates.

    python benchmarks/mobile_scaling.py --batch-size 64 --image-size 32 --steps 3
"""

from __future__ import annotations

import argparse
import json

from toponas.profiling import profile
from toponas.spaces.mobile import MobileSpace
from toponas.spaces.mobile_arch import MobileSpec

VARIANTS = {"k7e6": ((7,), (6,)), "k357e6": ((3, 5, 7), (6,)), "k357e36": ((3, 5, 7), (3, 6))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--image-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args()
    figures = {}
    for name, (kernels, expansions) in VARIANTS.items():
        space = MobileSpace(f"mobile-{name}", MobileSpec(kernels=kernels, expansions=expansions))
        rows = profile(space, "darts-v1", ("off", "full"), channels=args.channels, batch_size=args.batch_size,
                       image_size=args.image_size, steps=args.steps, warmup=args.warmup, single=False)
        figures[name] = {r.name: {"ms": r.ms_per_step, "saved_bytes": r.saved_activation_bytes} for r in rows}
        for r in rows:
            print(f"{name:8} {r.name:10} {r.ms_per_step:10.1f} ms  {r.saved_activation_bytes / 2**20:8.1f} MB saved")
    base = figures["k7e6"]
    for name in list(VARIANTS)[1:]:
        for mode in ("topo=off", "topo=full"):
            t = figures[name][mode]["ms"] / base[mode]["ms"]
            b = figures[name][mode]["saved_bytes"] / base[mode]["saved_bytes"]
            print(f"{mode:10} k7e6 -> {name}: time x{t:.2f}, saved bytes x{b:.2f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
