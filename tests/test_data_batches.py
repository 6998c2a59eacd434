"""Paired search batches (determinism, resume, pairing), augmentation, normalization, evaluation batches."""

from __future__ import annotations

import pytest
import torch

from toponas.data import (
    DataError,
    ImageDataset,
    PairedBatches,
    augment_batch,
    eval_batches,
    normalize,
    search_split,
)
from toponas.data import batches as batches_mod

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def make_ds(n: int = 100, side: int = 12) -> ImageDataset:
    """Random images whose label is their own index, so a batch's labels tell which images it holds."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n, 3, side, side), generator=g, dtype=torch.uint8)
    y = torch.arange(n)
    test_x = torch.randint(0, 256, (10, 3, side, side), generator=g, dtype=torch.uint8)
    classes = [str(i) for i in range(n)]
    return ImageDataset("t", x, y, test_x, torch.arange(10), classes, (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


def batches_equal(a, b) -> bool:
    return len(a) == len(b) and all(all(torch.equal(s, t) for s, t in zip(p, q)) for p, q in zip(a, b))


def halves(n: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    idx = torch.randperm(n, generator=torch.Generator().manual_seed(1))
    return idx[: n // 2], idx[n // 2 :]


# ---------------------------------------------------------------- PairedBatches


def test_steps_shapes_and_pairing():
    ds = make_ds()
    w, a = halves()
    pb = PairedBatches(ds, w, a, batch_size=16, seed=0)
    assert len(pb) == 4  # ceil(50 / 16)
    steps = list(pb.epoch(0))
    assert len(steps) == 4
    for x_w, y_w, x_a, y_a in steps:
        assert x_w.dtype == x_a.dtype == torch.float32 and x_w.shape[1:] == (3, 12, 12)
        assert y_w.dtype == torch.int64 and len(y_w) == len(x_w) == len(y_a) == len(x_a)
        assert bool(torch.isin(y_w, w).all()) and bool(torch.isin(y_a, a).all())
    assert [len(s[1]) for s in steps] == [16, 16, 16, 2]
    assert torch.equal(torch.cat([s[1] for s in steps]).sort().values, w.sort().values)  # each once per epoch


def test_reference_step_count():
    x = torch.zeros(50_000, 3, 1, 1, dtype=torch.uint8)
    y = torch.arange(50_000) % 10
    ds = ImageDataset("c", x, y, x[:1], y[:1], [str(i) for i in range(10)], (0.5,) * 3, (0.5,) * 3)
    w, a = search_split(ds)
    assert len(PairedBatches(ds, w, a, batch_size=64, seed=0)) == 391


def test_same_seed_same_batches_other_seed_or_epoch_differs():
    ds = make_ds()
    w, a = halves()
    first = list(PairedBatches(ds, w, a, 16, seed=7).epoch(2))
    second = list(PairedBatches(ds, w, a, 16, seed=7).epoch(2))
    assert batches_equal(first, second)
    assert not batches_equal(first, list(PairedBatches(ds, w, a, 16, seed=8).epoch(2)))
    assert not batches_equal(first, list(PairedBatches(ds, w, a, 16, seed=7).epoch(3)))


def test_resume_reproduces_the_tail_without_touching_skipped_steps(monkeypatch):
    ds = make_ds()
    w, a = halves()
    pb = PairedBatches(ds, w, a, 8, seed=3)
    full = list(pb.epoch(5))
    calls = []
    original = batches_mod.augment_batch

    def counting(x, generator, pad=4):
        calls.append(len(x))
        return original(x, generator, pad)

    monkeypatch.setattr(batches_mod, "augment_batch", counting)
    resumed = list(PairedBatches(ds, w, a, 8, seed=3).epoch(5, start_step=4))
    assert batches_equal(resumed, full[4:])
    assert len(calls) == 2 * (len(full) - 4)  # skipped steps were never augmented
    assert list(pb.epoch(5, start_step=len(pb))) == []


def test_arch_half_of_another_length_is_cycled():
    ds = make_ds()
    w, a = torch.arange(0, 50), torch.arange(80, 100)
    steps = list(PairedBatches(ds, w, a, 16, seed=0).epoch(0))
    arch_labels = torch.cat([s[3] for s in steps])
    assert len(arch_labels) == 50
    counts = torch.bincount(arch_labels, minlength=100)[80:]
    assert int(counts.min()) >= 2 and int(counts.max()) <= 3  # every arch image used, none over-used
    larger = list(PairedBatches(ds, torch.arange(0, 10), torch.arange(50, 100), 4, seed=0).epoch(0))
    used = torch.cat([s[3] for s in larger])
    assert len(used) == 10 and len(used.unique()) == 10  # a larger arch half is subsampled without repeats


def test_without_augmentation_batches_are_just_normalized():
    ds = make_ds()
    w, a = halves()
    x_w, y_w, x_a, y_a = next(PairedBatches(ds, w, a, 16, seed=0, augment=False).epoch(0))
    assert torch.allclose(x_w, normalize(ds.train_x[y_w], ds.mean, ds.std))
    assert torch.allclose(x_a, normalize(ds.train_x[y_a], ds.mean, ds.std))


def test_iterating_the_object_gives_epoch_zero():
    ds = make_ds()
    w, a = halves()
    pb = PairedBatches(ds, w, a, 16, seed=0)
    assert batches_equal(list(pb), list(pb.epoch(0)))


@pytest.mark.parametrize("device", DEVICES)
def test_batches_on_device_match_cpu(device):
    ds = make_ds()
    w, a = halves()
    on_device = list(PairedBatches(ds, w, a, 16, seed=0, device=device).epoch(1))
    assert on_device[0][0].device.type == device
    on_cpu = list(PairedBatches(ds, w, a, 16, seed=0).epoch(1))
    for dev_step, cpu_step in zip(on_device, on_cpu):
        for d, c in zip(dev_step, cpu_step):
            assert torch.allclose(d.cpu(), c, atol=1e-6)


def test_invalid_arguments():
    ds = make_ds()
    w, a = halves()
    with pytest.raises(DataError, match="overlap"):
        PairedBatches(ds, w, torch.cat([a, w[:1]]), 16, seed=0)
    with pytest.raises(DataError, match="outside 0..99"):
        PairedBatches(ds, w, torch.tensor([100]), 16, seed=0)
    with pytest.raises(DataError, match="empty"):
        PairedBatches(ds, w, torch.tensor([], dtype=torch.int64), 16, seed=0)
    with pytest.raises(DataError, match="batch_size"):
        PairedBatches(ds, w, a, 0, seed=0)
    pb = PairedBatches(ds, w, a, 16, seed=0)
    with pytest.raises(DataError, match=r"start_step must lie in 0..4"):
        pb.epoch(0, start_step=5)  # raised at the call, not at the first step


# ---------------------------------------------------------------- augmentation


def reference_augment(x: torch.Tensor, seed: int, pad: int) -> torch.Tensor:
    """A per-image loop doing what augment_batch documents, with the same random draws."""
    g = torch.Generator().manual_seed(seed)
    n, _, h, w = x.shape
    top = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    left = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    flip = torch.rand(n, generator=g) < 0.5
    out = torch.empty_like(x)
    for i in range(n):
        padded = torch.zeros(x.shape[1], h + 2 * pad, w + 2 * pad, dtype=x.dtype)
        padded[:, pad : pad + h, pad : pad + w] = x[i]
        crop = padded[:, top[i] : top[i] + h, left[i] : left[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


@pytest.mark.parametrize("pad", [0, 1, 4])
def test_augment_matches_per_image_reference(pad):
    x = make_ds(n=32).train_x
    out = augment_batch(x, torch.Generator().manual_seed(11), pad=pad)
    assert out.dtype == torch.uint8 and out.shape == x.shape
    assert torch.equal(out, reference_augment(x, 11, pad))


def test_augment_really_crops_and_flips():
    x = make_ds(n=64).train_x
    out = augment_batch(x, torch.Generator().manual_seed(0))
    same = [torch.equal(o, i) for o, i in zip(out, x)]
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(out, x)]
    assert not all(same)
    assert any(not s and not f for s, f in zip(same, flipped))  # shifted crops
    assert bool((out == 0).any())  # zero padding shows up
    only_flips = augment_batch(x, torch.Generator().manual_seed(0), pad=0)
    flipped = [torch.equal(o, i.flip(-1)) for o, i in zip(only_flips, x)]
    same = [torch.equal(o, i) for o, i in zip(only_flips, x)]
    assert any(flipped) and any(same) and all(f or s for f, s in zip(flipped, same))


def test_augment_is_deterministic_per_generator_seed():
    x = make_ds(n=16).train_x
    a = augment_batch(x, torch.Generator().manual_seed(5))
    b = augment_batch(x, torch.Generator().manual_seed(5))
    c = augment_batch(x, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_augment_rejects_bad_input():
    with pytest.raises(DataError, match=r"\(N, C, H, W\)"):
        augment_batch(torch.zeros(3, 4, 4, dtype=torch.uint8), torch.Generator())


# ---------------------------------------------------------------- normalize / eval


def test_normalize_uses_dataset_statistics():
    x = torch.full((2, 3, 4, 4), 51, dtype=torch.uint8)  # 51 / 255 = 0.2
    out = normalize(x, (0.1, 0.2, 0.3), (0.1, 0.5, 1.0))
    assert out.dtype == torch.float32
    assert torch.allclose(out[:, :, 0, 0], torch.tensor([[1.0, 0.0, -0.1]] * 2), atol=1e-6)


def test_normalized_training_set_is_standardized():
    x = torch.randint(0, 200, (256, 3, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    from toponas.data.dataset import make_dataset

    ds = make_dataset(
        "t", x, torch.zeros(256, dtype=torch.int64), x[:2], torch.zeros(2, dtype=torch.int64), ["a"]
    )
    z = normalize(ds.train_x, ds.mean, ds.std)
    assert torch.allclose(z.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-4)
    assert torch.allclose(z.std(dim=(0, 2, 3), unbiased=False), torch.ones(3), atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_eval_batches_cover_the_split_in_order(device):
    ds = make_ds()
    got = list(eval_batches(ds, "test", batch_size=4, device=device))
    assert [len(y) for _, y in got] == [4, 4, 2]
    xs = torch.cat([x.cpu() for x, _ in got])
    assert torch.allclose(xs, normalize(ds.test_x, ds.mean, ds.std), atol=1e-6)
    assert torch.equal(torch.cat([y.cpu() for _, y in got]), ds.test_y)
    assert sum(len(y) for _, y in eval_batches(ds, "train", 64, device)) == 100
    with pytest.raises(DataError, match="'test' or 'train'"):
        eval_batches(ds, "valid", 4, device)  # type: ignore[arg-type]  # raised at the call
