"""Loading the shared CIFAR-10 JPEG archive (../shared beside the repo, or $TOPONAS_SHARED); slow."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from toponas.data import imagefolder, load_dataset, search_split


def shared_root() -> Path:
    env = os.environ.get("TOPONAS_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def test_shared_cifar10_archive_and_its_cache(tmp_path, monkeypatch):
    archive = shared_root() / "data" / "cifar10-jpeg.tar.gz"
    if not archive.is_file():
        pytest.skip(
            f"shared CIFAR-10 archive not found at {archive} (set TOPONAS_SHARED to the shared/ folder)"
        )
    ds = load_dataset("cifar10", archive, cache_dir=tmp_path, progress=False)
    assert (len(ds.train_y), len(ds.test_y)) == (50_000, 10_000)
    assert ds.num_classes == 10 and ds.image_size == 32 and ds.train_x.shape[1:] == (3, 32, 32)
    assert ds.classes[0] == "airplane" and ds.classes[-1] == "truck"
    assert torch.bincount(ds.train_y).tolist() == [5000] * 10
    assert torch.bincount(ds.test_y).tolist() == [1000] * 10
    assert all(0.4 < m < 0.55 for m in ds.mean) and all(0.2 < s < 0.3 for s in ds.std)
    weight, arch = search_split(ds)
    assert len(weight) == len(arch) == 25_000

    def no_decoding(*args, **kwargs):
        raise AssertionError("the second load decoded the archive instead of reading the cache")

    monkeypatch.setattr(imagefolder, "read_image_folder", no_decoding)
    again = load_dataset("cifar10", archive, cache_dir=tmp_path, progress=False)
    assert torch.equal(again.train_x, ds.train_x) and torch.equal(again.test_y, ds.test_y)
