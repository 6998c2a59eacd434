"""The NAS-Bench-201 search split: training images in two disjoint, stratified halves."""

from __future__ import annotations

import numpy as np
import torch

from .dataset import DataError, ImageDataset


def _quotas(counts: list[int], total: int) -> list[int]:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder, ties to lower class)."""
    n = sum(counts)
    quotas = [c * total // n for c in counts]
    remainders = sorted(range(len(counts)), key=lambda c: (-(counts[c] * total % n), c))
    for c in remainders[: total - sum(quotas)]:
        quotas[c] += 1
    return quotas


def search_split(
    ds: ImageDataset, subset: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (weight_idx, arch_idx): disjoint halves of the training set, each stratified by class.

    Within every class, the first half of its images (in dataset order) goes to the weight half and
    the second half to the architecture half; classes are interleaved in proportion to their size,
    so both halves hold every class in the same share (25,000 + 25,000 for CIFAR-10). With
    ``subset=N``, N training images are first drawn per class in proportion (a permutation seeded
    with ``seed``), then halved the same way; ``seed`` is unused without ``subset``. The weight half
    gets the extra image when the count is odd. Both index tensors are int64 and sorted.
    """
    labels = ds.train_y
    n = len(labels)
    if subset is not None:
        if isinstance(subset, bool) or not isinstance(subset, int):
            raise DataError(f"subset must be a whole number of training images, got {subset!r}")
        if not 2 <= subset <= n:
            raise DataError(
                f"subset={subset} is out of range: {ds.name} has {n} training images and each half needs "
                f"at least one, so pass 2 <= subset <= {n} (or no subset for the full set)"
            )
    elif n < 2:
        raise DataError(f"{ds.name} has {n} training images; the search split needs at least 2")

    counts = torch.bincount(labels, minlength=ds.num_classes).tolist()
    quotas = counts if subset is None else _quotas(counts, subset)
    generator = torch.Generator().manual_seed(seed)
    chosen, ranks, classes = [], [], []
    for cls, quota in enumerate(quotas):
        members = (labels == cls).nonzero().flatten()
        if subset is not None:
            members = members[torch.randperm(len(members), generator=generator)[:quota]]
        if quota == 0:
            continue
        chosen.append(members.numpy())
        ranks.append((np.arange(quota) + 0.5) / quota)  # position inside its class, in (0, 1)
        classes.append(np.full(quota, cls))
    idx, rank, cls_of = np.concatenate(chosen), np.concatenate(ranks), np.concatenate(classes)
    order = np.lexsort((cls_of, rank))  # by rank, then class: the classes interleaved in proportion
    half = (len(idx) + 1) // 2
    weight = torch.from_numpy(np.sort(idx[order[:half]])).to(torch.int64)
    arch = torch.from_numpy(np.sort(idx[order[half:]])).to(torch.int64)
    return weight, arch
