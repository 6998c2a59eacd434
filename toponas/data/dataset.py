"""The in-memory dataset every loader returns, and the one error type every data problem raises."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


class DataError(Exception):
    """A user-facing data problem; the message says what is wrong and what to pass instead."""


@dataclass(eq=False)
class ImageDataset:
    """A labelled image classification dataset held as uint8 tensors (N, 3, H, W) in memory.

    ``mean`` and ``std`` are the per-channel statistics of ``train_x / 255``, used to normalize.
    """

    name: str
    train_x: torch.Tensor  # uint8 (N, 3, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor  # uint8 (M, 3, H, W)
    test_y: torch.Tensor  # int64 (M,)
    classes: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def __post_init__(self) -> None:
        for split, x, y in (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y)):
            if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[1] != 3:
                raise DataError(
                    f"dataset {self.name!r}: {split}_x must be a uint8 tensor (N, 3, H, W), "
                    f"got {x.dtype} {tuple(x.shape)}"
                )
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise DataError(
                    f"dataset {self.name!r}: {split}_y must be an int64 tensor of {x.shape[0]} labels, "
                    f"got {y.dtype} {tuple(y.shape)}"
                )
            if len(y) and (int(y.min()) < 0 or int(y.max()) >= len(self.classes)):
                raise DataError(
                    f"dataset {self.name!r}: {split} labels must lie in 0..{len(self.classes) - 1} "
                    f"(one per class name), got {int(y.min())}..{int(y.max())}"
                )
        if self.train_x.shape[2:] != self.test_x.shape[2:]:
            raise DataError(
                f"dataset {self.name!r}: train images are {tuple(self.train_x.shape[2:])} but test images "
                f"are {tuple(self.test_x.shape[2:])}; both splits must share one image size"
            )
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]

    @property
    def num_classes(self) -> int:
        """Number of classes (the length of ``classes``)."""
        return len(self.classes)

    @property
    def image_size(self) -> int:
        """Image height H in pixels (images are square for every built-in dataset)."""
        return int(self.train_x.shape[2])

    def __repr__(self) -> str:
        h, w = self.train_x.shape[2:]
        return (
            f"ImageDataset(name={self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
            f"classes={self.num_classes}, size={h}x{w})"
        )


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 images ``x / 255``, exact, from histograms."""
    if len(x) == 0:
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    values = torch.arange(256, dtype=torch.float64)
    means, stds = [], []
    for channel in range(x.shape[1]):
        counts = torch.bincount(x[:, channel].reshape(-1), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = (counts * values).sum() / total
        var = (counts * (values - mean).square()).sum() / total
        means.append(float(mean) / 255)
        stds.append(max(float(var.sqrt()), 1e-8) / 255)  # a constant channel must not divide by zero
    return tuple(means), tuple(stds)


def make_dataset(
    name: str,
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    test_x: torch.Tensor,
    test_y: torch.Tensor,
    classes: Sequence[str],
) -> ImageDataset:
    """Build an ImageDataset, computing mean/std from the training images."""
    mean, std = channel_stats(train_x)
    return ImageDataset(
        name=name,
        train_x=train_x.contiguous(),
        train_y=train_y.to(torch.int64),
        test_x=test_x.contiguous(),
        test_y=test_y.to(torch.int64),
        classes=list(classes),
        mean=mean,  # type: ignore[arg-type]
        std=std,  # type: ignore[arg-type]
    )
