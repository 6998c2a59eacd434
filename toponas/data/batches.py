"""Batches for search and evaluation: paired (weight, architecture) batches, augmentation, normalization.

Everything is batched tensor code on the target device (no per-image Python loop, no torchvision).
Random numbers are drawn on the CPU from explicitly seeded generators, so a batch depends only on
(seed, epoch, step), is the same on every device, and a resumed run can skip straight to its step.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from .dataset import DataError, ImageDataset

Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def derive_seed(*parts: object) -> int:
    """A 63-bit seed that depends on every part (e.g. ("augment", seed, epoch, step)) and nothing else."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def augment_batch(x_uint8: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop (after zero-padding by ``pad``) and random horizontal flip of each image of (N, C, H, W).

    Returns a tensor of the input's dtype and shape on the input's device (uint8 in, uint8 out). Per
    image it draws, from ``generator`` in this order, the vertical offsets, the horizontal offsets
    (each uniform in 0..2*pad) and the flips (probability 1/2), as torchvision's RandomCrop(padding)
    followed by RandomHorizontalFlip would, then gathers all crops with one indexing operation.
    """
    if x_uint8.ndim != 4:
        raise DataError(f"augment_batch expects images (N, C, H, W), got shape {tuple(x_uint8.shape)}")
    if pad < 0:
        raise DataError(f"augment_batch: pad must be >= 0, got {pad}")
    n, c, h, w = x_uint8.shape
    device = x_uint8.device
    draw = {"generator": generator, "device": generator.device}
    top = torch.randint(0, 2 * pad + 1, (n,), **draw).to(device)
    left = torch.randint(0, 2 * pad + 1, (n,), **draw).to(device)
    flip = (torch.rand(n, **draw) < 0.5).to(device)
    padded = F.pad(x_uint8, (pad, pad, pad, pad)) if pad else x_uint8
    rows = top[:, None] + torch.arange(h, device=device)  # (N, H)
    cols = left[:, None] + torch.arange(w, device=device)  # (N, W)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    return padded[
        torch.arange(n, device=device)[:, None, None, None],
        torch.arange(c, device=device)[None, :, None, None],
        rows[:, None, :, None],
        cols[:, None, None, :],
    ]


def normalize(
    x_uint8: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """Map images with values 0..255 (N, C, H, W) to float32 ``(x / 255 - mean) / std`` per channel."""
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=x_uint8.device).view(-1, 1, 1)
    std_t = torch.as_tensor(std, dtype=torch.float32, device=x_uint8.device).view(-1, 1, 1)
    return (x_uint8.to(torch.float32) / 255.0 - mean_t) / std_t


def _indices(idx: torch.Tensor | Sequence[int], n: int, what: str) -> torch.Tensor:
    idx = torch.as_tensor(idx).flatten()
    if idx.dtype.is_floating_point or idx.dtype == torch.bool:
        raise DataError(f"{what} must be integer indices into the training images, got dtype {idx.dtype}")
    idx = idx.to(torch.int64).cpu()
    if len(idx) == 0:
        raise DataError(f"{what} is empty; pass the indices from search_split")
    if int(idx.min()) < 0 or int(idx.max()) >= n:
        raise DataError(f"{what} has indices outside 0..{n - 1} (the training images)")
    return idx


class PairedBatches:
    """Yields (x_w, y_w, x_a, y_a) per step: a weight batch from one half, an arch batch from the other.

    Both batches are augmented (random crop with padding 4, horizontal flip; unless ``augment=False``),
    normalized with ``ds.mean``/``ds.std``, float32 on ``device``; labels are int64 on ``device``. The
    uint8 training images are moved to ``device`` once, here, and batches are gathered there.

    An epoch has ``ceil(len(weight_idx) / batch_size)`` steps (25,000 / 64 -> 391); the last weight
    batch may be smaller and the architecture batch of a step always has the weight batch's size.
    The weight order is a permutation drawn from a generator seeded by (seed, epoch); the architecture
    order, from the same generator, is a concatenation of fresh permutations of its half, as many as
    needed to pair every weight image (so a half of another length is cycled or subsampled
    independently). Step s is augmented from a generator seeded by (seed, epoch, s).
    """

    def __init__(
        self,
        ds: ImageDataset,
        weight_idx: torch.Tensor | Sequence[int],
        arch_idx: torch.Tensor | Sequence[int],
        batch_size: int,
        seed: int,
        device: torch.device | str = "cpu",
        augment: bool = True,
    ) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(f"batch_size must be a positive whole number, got {batch_size!r}")
        n = len(ds.train_y)
        self.weight_idx = _indices(weight_idx, n, "weight_idx")
        self.arch_idx = _indices(arch_idx, n, "arch_idx")
        if bool(torch.isin(self.weight_idx, self.arch_idx).any()):
            raise DataError(
                "weight_idx and arch_idx overlap; the bilevel search needs disjoint halves (use search_split)"
            )
        self.batch_size = batch_size
        self.seed = int(seed)
        self.device = torch.device(device)
        self.augment = augment
        self._x = ds.train_x.to(self.device)  # (N, 3, H, W) uint8, moved once
        self._y = ds.train_y.to(self.device)
        self._mean = torch.tensor(ds.mean, dtype=torch.float32, device=self.device)
        self._std = torch.tensor(ds.std, dtype=torch.float32, device=self.device)

    def __len__(self) -> int:
        """Steps per epoch: ceil(len(weight_idx) / batch_size)."""
        return math.ceil(len(self.weight_idx) / self.batch_size)

    def orders(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's weight order and its paired architecture order (index tensors of equal length, CPU)."""
        generator = torch.Generator().manual_seed(derive_seed("order", self.seed, epoch))
        n_w, n_a = len(self.weight_idx), len(self.arch_idx)
        weight = self.weight_idx[torch.randperm(n_w, generator=generator)]
        rounds = math.ceil(n_w / n_a)
        arch = torch.cat([self.arch_idx[torch.randperm(n_a, generator=generator)] for _ in range(rounds)])
        return weight, arch[:n_w]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[Batch]:
        """Iterate the batches of ``epoch`` from ``start_step`` on; skipped steps cost nothing."""
        if not 0 <= start_step <= len(self):
            raise DataError(f"start_step must lie in 0..{len(self)} (steps per epoch), got {start_step}")
        return self._steps(epoch, start_step)

    def _steps(self, epoch: int, start_step: int) -> Iterator[Batch]:
        weight, arch = (order.to(self.device) for order in self.orders(epoch))
        for step in range(start_step, len(self)):
            window = slice(step * self.batch_size, (step + 1) * self.batch_size)
            w_idx, a_idx = weight[window], arch[window]
            x_w, x_a = self._x[w_idx], self._x[a_idx]
            if self.augment:
                generator = torch.Generator().manual_seed(derive_seed("augment", self.seed, epoch, step))
                x_w = augment_batch(x_w, generator)
                x_a = augment_batch(x_a, generator)
            yield (
                normalize(x_w, self._mean, self._std),
                self._y[w_idx],
                normalize(x_a, self._mean, self._std),
                self._y[a_idx],
            )

    def __iter__(self) -> Iterator[Batch]:
        """Epoch 0 from its first step (use ``epoch(e, start_step)`` in a training loop)."""
        return self.epoch(0)


def eval_batches(
    ds: ImageDataset,
    split: Literal["test", "train"] = "test",
    batch_size: int = 256,
    device: torch.device | str = "cpu",
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (x, y) over a whole split in order, normalized float32 on ``device``, without augmentation."""
    if split not in ("test", "train"):
        raise DataError(f"split must be 'test' or 'train', got {split!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise DataError(f"batch_size must be a positive whole number, got {batch_size!r}")
    x, y = (ds.test_x, ds.test_y) if split == "test" else (ds.train_x, ds.train_y)
    return _eval_steps(x, y, ds.mean, ds.std, batch_size, torch.device(device))


def _eval_steps(
    x: torch.Tensor,
    y: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    batch_size: int,
    device: torch.device,
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for start in range(0, len(y), batch_size):
        xb = x[start : start + batch_size].to(device, non_blocking=True)
        yield normalize(xb, mean, std), y[start : start + batch_size].to(device, non_blocking=True)
