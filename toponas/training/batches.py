"""Deterministic, resumable training batches: one stream over the training images, augmented on the device.

The same scheme as the search batches (``toponas.data.batches``): the epoch's order is a permutation
seeded by (seed, epoch), step s is augmented from a generator seeded by (seed, epoch, s), so a batch
depends on nothing else and a resumed run skips straight to its step.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch

from ..data import DataError, ImageDataset, augment_batch, normalize, search_split
from ..data.batches import derive_seed


def training_indices(ds: ImageDataset, subset: int | None, seed: int) -> torch.Tensor:
    """All training images, or ``subset`` of them drawn stratified by class (sorted int64 indices).

    A ``subset`` at least as large as the training set means all of it (so ``--preset cpu`` also
    fits a small dataset).

    The subset is the union of the two halves :func:`toponas.data.search_split` draws, so a
    retraining subset holds the same images a search with the same ``--subset`` and seed used.
    """
    if subset is None or subset >= len(ds.train_y):
        return torch.arange(len(ds.train_y), dtype=torch.int64)
    weight, arch = search_split(ds, subset, seed)
    return torch.cat([weight, arch]).sort().values


def cutout(x: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``length`` x ``length`` square per image (centre uniform, clipped at the border).

    As DARTS' ``Cutout`` (DeVries & Taylor, 2017), applied to the normalized batch.
    """
    n, _, h, w = x.shape
    draw = {"generator": generator, "device": generator.device}
    cy = torch.randint(0, h, (n,), **draw).to(x.device)
    cx = torch.randint(0, w, (n,), **draw).to(x.device)
    rows = torch.arange(h, device=x.device)[None, :]
    cols = torch.arange(w, device=x.device)[None, :]
    inside_r = (rows >= (cy[:, None] - length // 2)) & (rows < (cy[:, None] + length - length // 2))
    inside_c = (cols >= (cx[:, None] - length // 2)) & (cols < (cx[:, None] + length - length // 2))
    mask = inside_r[:, :, None] & inside_c[:, None, :]  # (N, H, W)
    return x.masked_fill(mask[:, None], 0.0)


class TrainBatches:
    """Yields (x, y) per step over ``indices``: float32 normalized images and int64 labels on ``device``.

    An epoch has ``ceil(len(indices) / batch_size)`` steps; the last batch may be smaller. With
    ``augment``: random crop with padding 4 and horizontal flip, then ``cutout`` when > 0.
    """

    def __init__(self, ds: ImageDataset, indices: torch.Tensor, batch_size: int, seed: int,
                 device: torch.device | str = "cpu", augment: bool = True, cutout: int = 0) -> None:
        if batch_size < 1:
            raise DataError(f"batch_size must be positive, got {batch_size}")
        if len(indices) == 0:
            raise DataError("no training images to train on")
        self.indices = indices.to(torch.int64).cpu()
        self.batch_size = batch_size
        self.seed = int(seed)
        self.device = torch.device(device)
        self.augment = augment
        self.cutout = cutout
        self._x = ds.train_x.to(self.device)
        self._y = ds.train_y.to(self.device)
        self._mean = torch.tensor(ds.mean, dtype=torch.float32, device=self.device)
        self._std = torch.tensor(ds.std, dtype=torch.float32, device=self.device)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.batch_size)

    def order(self, epoch: int) -> torch.Tensor:
        """The epoch's order of training images (CPU int64)."""
        generator = torch.Generator().manual_seed(derive_seed("train-order", self.seed, epoch))
        return self.indices[torch.randperm(len(self.indices), generator=generator)]

    def epoch(self, epoch: int, start_step: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The batches of ``epoch`` from ``start_step`` on (skipped steps cost nothing)."""
        if not 0 <= start_step <= len(self):
            raise DataError(f"start_step must lie in 0..{len(self)}, got {start_step}")
        order = self.order(epoch).to(self.device)
        for step in range(start_step, len(self)):
            idx = order[step * self.batch_size:(step + 1) * self.batch_size]
            x = self._x[idx]
            generator = torch.Generator().manual_seed(derive_seed("train-augment", self.seed, epoch, step))
            if self.augment:
                x = augment_batch(x, generator)
            x = normalize(x, self._mean, self._std)
            if self.cutout:
                x = cutout(x, self.cutout, generator)
            yield x, self._y[idx]
