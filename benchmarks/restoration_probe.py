"""How far a small x2 upscaler gets over bicubic on the embedded photographs: test and training-image gains.

One network trained on the ``skimage`` colour training photographs with the training loop's batches (patches of
48x48, 16 per step, Adam with a cosine learning rate per step), then scored on the two test photographs and on
400x400 crops of the six training photographs (Y channel, 2-pixel border, as every SR figure here). A gain that
is as small on the training photographs as on the test ones says the network or its budget is the limit, not
the data. ``--arch`` is a baseline (``baseline:espcn:32,16``) or ``plain:W,D``: D plain 3x3 conv+ReLU layers of
width W at low resolution, a pixel shuffle and the bicubic skip (a VDSR-like probe, not one of the baselines).

    python benchmarks/restoration_probe.py --arch plain:32,8 --steps 2000
"""

from __future__ import annotations

import argparse
import math

import torch
from torch import nn

from toponas.restoration.baselines import build_baseline
from toponas.restoration.degrade import bicubic_up
from toponas.restoration.images import CleanImages, load_images
from toponas.restoration.task import RestorationBatches, RestorationTask
from toponas.spaces.restore_unit import output_conv


class Plain(nn.Module):
    """``depth`` conv 3x3 (+ReLU) at low resolution, a pixel shuffle, plus the bicubic upscaling of the input."""

    def __init__(self, width: int, depth: int, scale: int = 2, channels: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU()]
        for _ in range(depth - 2):
            layers += [nn.Conv2d(width, width, 3, padding=1), nn.ReLU()]
        layers += [output_conv(nn.Conv2d(width, channels * scale * scale, 3, padding=1)), nn.PixelShuffle(scale)]
        self.body, self.scale = nn.Sequential(*layers), scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bicubic_up(x, self.scale) + self.body(x)


def build(arch: str) -> nn.Module:
    if arch.startswith("plain:"):
        width, depth = (int(v) for v in arch[len("plain:") :].split(","))
        return Plain(width, depth)
    return build_baseline(arch, 3, "sr", 2, 12)


def gains(task: RestorationTask, net: nn.Module, images: CleanImages) -> list[tuple[str, float, float]]:
    """``(image, PSNR, PSNR - bicubic)`` per test image of ``images``."""
    got, ref = task.evaluate(net, images)["per_image"], task.baseline_psnr(images)["per_image"]
    return [(a["image"], a["psnr"], a["psnr"] - b["psnr"]) for a, b in zip(got, ref)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="plain:32,8")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--loss", default="l2")
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args()
    torch.set_num_threads(1)
    task = RestorationTask("sr", scale=2, patch_size=48, loss_name=args.loss)
    images = load_images("skimage", None, False)
    torch.manual_seed(0)
    net = build(args.arch)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    for step, (x, y) in enumerate(
        RestorationBatches(task, images, 16, args.steps, 0, torch.device("cpu"), paired=False).epoch(0)
    ):
        for group in opt.param_groups:
            group["lr"] = 1e-5 + (args.lr - 1e-5) * (1 + math.cos(math.pi * step / args.steps)) / 2
        opt.zero_grad()
        task.loss(net(x), y).backward()
        opt.step()
    net.eval()
    names = ["astronaut", "rocket", "hubble_deep_field", "ihc", "motorcycle_left", "retina"]
    crops = CleanImages("train-crops", [], [im[:, :400, :400] for im in images.train], names, 3)
    print(f"{args.arch}: {sum(p.numel() for p in net.parameters()):,} parameters, {args.steps} steps, {args.loss}")
    for what, imgs in (("test", images), ("train crop", crops)):
        rows = gains(task, net, imgs)
        for name, p, g in rows:
            print(f"  {what:10s} {name:18s} {p:6.2f} dB  {g:+.2f} over bicubic")
        print(f"  {what:10s} mean gain {sum(g for _, _, g in rows) / len(rows):+.2f} dB")


if __name__ == "__main__":
    main()
