"""The NAS-Bench-201 search split: disjoint, stratified halves, and stratified subsets."""

from __future__ import annotations

import pytest
import torch

from toponas.data import DataError, ImageDataset, search_split


def make_ds(counts: list[int], shuffle: bool = True) -> ImageDataset:
    """A dataset whose class c has counts[c] training images, labels in shuffled order."""
    labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
    if shuffle:
        labels = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(5))]
    x = torch.zeros(len(labels), 3, 2, 2, dtype=torch.uint8)
    test_y = torch.zeros(1, dtype=torch.int64)
    classes = [f"c{i}" for i in range(len(counts))]
    return ImageDataset("t", x, labels, x[:1], test_y, classes, (0.5,) * 3, (0.25,) * 3)


def check_halves(ds: ImageDataset, weight: torch.Tensor, arch: torch.Tensor, total: int) -> None:
    assert weight.dtype == arch.dtype == torch.int64
    assert torch.equal(weight, weight.sort().values) and torch.equal(arch, arch.sort().values)
    assert len(weight) == (total + 1) // 2 and len(arch) == total // 2
    assert not bool(torch.isin(weight, arch).any())
    assert len(torch.cat([weight, arch]).unique()) == total


def test_full_split_is_two_stratified_halves():
    ds = make_ds([50] * 10)
    weight, arch = search_split(ds)
    check_halves(ds, weight, arch, 500)
    assert torch.bincount(ds.train_y[weight]).tolist() == [25] * 10
    assert torch.bincount(ds.train_y[arch]).tolist() == [25] * 10
    # within each class, the first half (in dataset order) is for the weights
    for c in range(10):
        members = (ds.train_y == c).nonzero().flatten()
        assert torch.equal(members[:25], weight[ds.train_y[weight] == c])


def test_full_split_ignores_seed_and_is_deterministic():
    ds = make_ds([7, 3, 12])
    a = search_split(ds)
    b = search_split(ds, seed=123)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_imbalanced_and_odd_classes_stay_balanced():
    ds = make_ds([7, 3, 12, 1, 0, 9])
    weight, arch = search_split(ds)
    check_halves(ds, weight, arch, 32)
    counts_w = torch.bincount(ds.train_y[weight], minlength=6)
    counts_a = torch.bincount(ds.train_y[arch], minlength=6)
    assert bool(((counts_w - counts_a).abs() <= 1).all())


def test_subset_is_stratified_deterministic_and_seeded():
    ds = make_ds([100] * 10)
    weight, arch = search_split(ds, subset=200, seed=3)
    check_halves(ds, weight, arch, 200)
    assert torch.bincount(ds.train_y[weight]).tolist() == [10] * 10
    assert torch.bincount(ds.train_y[arch]).tolist() == [10] * 10
    again = search_split(ds, subset=200, seed=3)
    assert torch.equal(weight, again[0]) and torch.equal(arch, again[1])
    other = search_split(ds, subset=200, seed=4)
    assert not torch.equal(weight, other[0])


def test_subset_proportional_to_class_sizes():
    ds = make_ds([60, 30, 10])
    weight, arch = search_split(ds, subset=21, seed=0)
    check_halves(ds, weight, arch, 21)
    chosen = torch.cat([weight, arch])
    assert torch.bincount(ds.train_y[chosen]).tolist() == [13, 6, 2]  # 12.6, 6.3, 2.1 by largest remainder


def test_subset_extremes():
    ds = make_ds([5, 5])
    weight, arch = search_split(ds, subset=2)
    check_halves(ds, weight, arch, 2)
    weight, arch = search_split(ds, subset=10)
    check_halves(ds, weight, arch, 10)


@pytest.mark.parametrize("subset", [0, 1, 11, -5])
def test_subset_out_of_range(subset):
    with pytest.raises(DataError, match=r"subset=.* is out of range.*2 <= subset <= 10"):
        search_split(make_ds([5, 5]), subset=subset)


@pytest.mark.parametrize("subset", [2.5, True, "10"])
def test_subset_must_be_an_int(subset):
    with pytest.raises(DataError, match="whole number"):
        search_split(make_ds([5, 5]), subset=subset)
