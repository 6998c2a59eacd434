"""The restoration task: (degraded, clean) pairs, its loss, its metrics and its batches.

A :class:`RestorationTask` is the small object the search and training loops call instead of knowing
the task: ``loss(output, target)``, ``correct(output, target)`` (nothing to count here), ``batches`` (paired
training patches), ``evaluate`` (PSNR / SSIM on the whole test images). Denoising (``kind="denoise"``):
``degraded = clean + N(0, sigma^2)``; super-resolution (``kind="sr"``): ``degraded = bicubic_down(clean)``,
metrics on the Y channel with ``scale`` border pixels shaved (:mod:`toponas.restoration.metrics`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from ..config import ConfigError
from ..data import DataError
from ..data.batches import derive_seed
from .degrade import SCALES, add_noise, bicubic_down, modcrop
from .images import CleanImages
from .metrics import psnr, ssim

KINDS = ("denoise", "sr")
LOSSES = ("l1", "l2")


@dataclass(frozen=True)
class RestorationTask:
    """Denoising at ``sigma`` or super-resolution by ``scale`` (see the module docstring).

    ``patch_size``: the side of the clean training patches; ``channels``: 3 (colour) or 1 (grey).
    """

    kind: str
    sigma: float = 25.0
    scale: int = 2
    patch_size: int = 48
    channels: int = 3
    loss_name: str = "l2"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown task {self.kind!r}; choose from classify, {', '.join(KINDS)}")
        if self.loss_name not in LOSSES:
            raise ConfigError(f"unknown restoration loss {self.loss_name!r}; choose from {', '.join(LOSSES)}")
        if self.kind == "denoise" and not 0 < self.sigma <= 255:
            raise ConfigError(f"--sigma must lie in (0, 255] (0..255 scale; 15, 25, 50 are usual), got {self.sigma}")
        if self.kind == "sr" and self.scale not in SCALES:
            raise ConfigError(f"--scale must be one of {', '.join(map(str, SCALES))}, got {self.scale}")
        if self.kind == "sr" and self.patch_size % self.scale:
            raise ConfigError(f"--patch-size {self.patch_size} is not a multiple of --scale {self.scale}")
        if self.patch_size < 4 * (self.scale if self.kind == "sr" else 1):
            raise ConfigError(f"--patch-size {self.patch_size} is too small (at least "
                              f"{4 * (self.scale if self.kind == 'sr' else 1)})")

    name = property(lambda self: self.kind)

    @property
    def y_channel(self) -> bool:
        return self.kind == "sr"

    @property
    def border(self) -> int:
        return self.scale if self.kind == "sr" else 0

    @property
    def out_scale(self) -> int:
        """Output side over input side: ``scale`` for SR, 1 for denoising."""
        return self.scale if self.kind == "sr" else 1

    def describe(self) -> str:
        what = f"denoising, sigma {self.sigma:g}" if self.kind == "denoise" else f"super-resolution x{self.scale}"
        return f"{what}, {'grey' if self.channels == 1 else 'colour'}, {self.loss_name} loss"

    # -- what the loops call ----------------------------------------------------------------------
    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """L2 (default: the error PSNR measures) or L1 between the restored and the clean batch (mean over pixels)."""
        return F.l1_loss(output, target) if self.loss_name == "l1" else F.mse_loss(output, target)

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Restoration has no correct count (the loops' accuracy column reads 0)."""
        return torch.zeros((), dtype=torch.int64, device=output.device)

    def degrade(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The degraded input of a clean batch or image (its sides multiples of ``scale`` for SR)."""
        if self.kind == "denoise":
            return add_noise(clean, self.sigma, generator)
        return bicubic_down(clean, self.scale)

    def check(self, images: CleanImages) -> None:
        """Images too small for the patch, or for the scale, and a channel mismatch are :class:`DataError` s."""
        if images.channels != self.channels:
            raise DataError(f"the images are {'grey' if images.channels == 1 else 'colour'} but the network is "
                            f"{'grey' if self.channels == 1 else 'colour'}; pass --grey only for grey networks")
        for i, im in enumerate(images.train):
            if min(im.shape[-2:]) < self.patch_size:
                raise DataError(f"training image {i} of {images.name} is {im.shape[-2]}x{im.shape[-1]}, smaller than "
                                f"--patch-size {self.patch_size}; pass a smaller --patch-size")
        least = 11 + 2 * self.border  # SSIM's window after the shaved border
        if self.kind == "sr":
            least = max(least, 4 * self.scale)
        for name, im in zip(images.test_names, images.test):
            if min(im.shape[-2:]) < least:
                raise DataError(f"test image {name} of {images.name} is {im.shape[-2]}x{im.shape[-1]}; "
                                f"{self.describe().split(',')[0]} needs at least {least}x{least}")

    def patches(self, images: Sequence[torch.Tensor], n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` clean patches ``(n, C, p, p)``: a random image, position and one of the 8 flips/rotations each."""
        p = self.patch_size
        out = []
        which = torch.randint(0, len(images), (n,), generator=generator).tolist()
        for i in which:
            im = images[i]
            top = int(torch.randint(0, im.shape[-2] - p + 1, (1,), generator=generator))
            left = int(torch.randint(0, im.shape[-1] - p + 1, (1,), generator=generator))
            patch = im[:, top:top + p, left:left + p]
            k = int(torch.randint(0, 8, (1,), generator=generator))
            patch = torch.rot90(patch, k % 4, dims=(1, 2))
            out.append(patch.flip(2) if k >= 4 else patch)
        return torch.stack(out)

    def pair(self, clean: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(degraded, clean)`` of a clean batch."""
        return self.degrade(clean, generator), clean

    @torch.no_grad()
    def evaluate(self, restore: Callable[[torch.Tensor], torch.Tensor], images: CleanImages,
                 device: torch.device | str = "cpu", keep: int = 0) -> dict:
        """Mean PSNR / SSIM of ``restore`` over the whole test images (noise drawn from a fixed seed per image).

        Returns ``{"psnr", "ssim", "per_image": [...], "examples": [(degraded, restored, clean), ...]}`` (the
        first ``keep`` images, for ``report``).
        """
        scores, examples = [], []
        for i, (name, im) in enumerate(zip(images.test_names, images.test)):
            clean = modcrop(im, self.scale) if self.kind == "sr" else im
            gen = torch.Generator().manual_seed(derive_seed("test", i))
            degraded = self.degrade(clean[None], gen)
            restored = restore(degraded.to(device)).float().cpu()
            if restored.shape != clean[None].shape:
                raise ConfigError(f"the network gives {tuple(restored.shape[1:])} for test image {name}, expected "
                                  f"{tuple(clean.shape)}: was it built for this task (scale, channels)?")
            scores.append({"image": name, "psnr": psnr(restored, clean, self.y_channel, self.border),
                           "ssim": ssim(restored, clean, self.y_channel, self.border)})
            if i < keep:
                examples.append((degraded[0], restored[0].clamp(0, 1), clean))
        n = max(len(scores), 1)
        return {"psnr": sum(s["psnr"] for s in scores) / n, "ssim": sum(s["ssim"] for s in scores) / n,
                "per_image": scores, "examples": examples}

    def baseline_psnr(self, images: CleanImages) -> dict:
        """The identity (denoising: the noisy image) or bicubic upscaling (SR), on the same test images."""
        from .degrade import bicubic_up

        if self.kind == "denoise":
            return self.evaluate(lambda x: x, images)
        return self.evaluate(lambda x: bicubic_up(x, self.scale), images)


class RestorationBatches:
    """Paired (weight, architecture) batches of patches: ``(x_w, y_w, x_a, y_a)`` per step, from (seed, epoch, step).

    The weight and architecture patches come from disjoint halves of the training images (even and odd
    positions; one image serves both). ``train``: one batch of the same patches (``x, y``) per step.
    """

    def __init__(self, task: RestorationTask, images: CleanImages, batch_size: int, steps: int, seed: int,
                 device: torch.device, paired: bool = True) -> None:
        self.task, self.batch_size, self.steps, self.seed, self.device = task, batch_size, steps, seed, device
        train = images.train
        self.halves = (train[0::2], train[1::2] or train[0::2]) if paired else (train,)

    def __len__(self) -> int:
        return self.steps

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, ...]]:
        for step in range(start, self.steps):
            gen = torch.Generator().manual_seed(derive_seed("restore", self.seed, epoch, step))
            out: list[torch.Tensor] = []
            for half in self.halves:
                x, y = self.task.pair(self.task.patches(half, self.batch_size, gen), gen)
                out += [x.to(self.device), y.to(self.device)]
            yield tuple(out)


__all__ = ["RestorationTask", "RestorationBatches", "KINDS", "LOSSES"]
