"""Loading every supported format from tiny generated fixtures, the cache, and every data error."""

from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import http.server
import os
import pickle
import shutil
import tarfile
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import toponas.data as data_pkg
from toponas.data import DATASETS, DataError, ImageDataset, cifar, imagefolder, imagenet16, load_dataset

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------- fixture builders


def _pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def _cifar_images(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)


def write_cifar10(root: Path, per_batch: int = 4) -> Path:
    """The official CIFAR-10 python layout, tiny: five train batches, a test batch and batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        labels = [int(v) for v in rng.integers(0, 10, per_batch)]
        _pickle(
            folder / f"data_batch_{i}",
            {b"batch_label": b"x", b"labels": labels, b"data": _cifar_images(rng, per_batch)},
        )
    test = {
        b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
        b"data": _cifar_images(rng, per_batch),
    }
    _pickle(folder / "test_batch", test)
    _pickle(folder / "batches.meta", {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_vis": 3072})
    (folder / "readme.html").write_text("<html></html>")
    return folder


def write_cifar100(root: Path, n_train: int = 6, n_test: int = 3) -> Path:
    """The official CIFAR-100 python layout, tiny: train, test and meta with fine labels."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    for name, n in (("train", n_train), ("test", n_test)):
        _pickle(
            folder / name,
            {
                b"fine_labels": [int(v) for v in rng.integers(0, 100, n)],
                b"coarse_labels": [int(v) for v in rng.integers(0, 20, n)],
                b"data": _cifar_images(rng, n),
            },
        )
    _pickle(
        folder / "meta",
        {
            b"fine_label_names": [f"fine{i}".encode() for i in range(100)],
            b"coarse_label_names": [f"coarse{i}".encode() for i in range(20)],
        },
    )
    return folder


def tar_folder(folder: Path, archive: Path, arcname: str | None = None) -> Path:
    """Pack ``folder`` (as ``arcname``) into a tar archive, compressed by the suffix."""
    mode = "w:gz" if archive.name.endswith((".tar.gz", ".tgz")) else "w"
    with tarfile.open(archive, mode) as tar:
        tar.add(folder, arcname=arcname if arcname is not None else folder.name)
    return archive


def zip_folder(folder: Path, archive: Path, arcname: str) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(folder.rglob("*")):
            zf.write(path, f"{arcname}/{path.relative_to(folder).as_posix()}")
    return archive


def pixel_value(cls: int, index: int) -> int:
    return 40 * cls + 7 * index + 3


def write_image(path: Path, value: int, size: tuple[int, int] = (8, 8), mode: str = "RGB") -> None:
    """A PNG/JPEG whose channels are (value, value + 1, value + 2) and whose top-left pixel is 0."""
    path.parent.mkdir(parents=True, exist_ok=True)
    w, h = size
    arr = np.empty((h, w, 3), np.uint8)
    arr[...] = (value, value + 1, value + 2)
    arr[0, 0] = 0
    image = Image.fromarray(arr)
    if mode != "RGB":
        image = image.convert(mode)
    image.save(path)


def write_image_folder(root: Path, classes=("cat", "dog", "ant"), n_train: int = 3, n_test: int = 2) -> Path:
    """ROOT/{train,test}/<class>/NN.png with pixel values telling class (sorted index) and image number."""
    ordered = sorted(classes)
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in classes:
            for i in range(n):
                write_image(root / split / cls / f"{i:02d}.png", pixel_value(ordered.index(cls), i))
    return root


def write_imagenet16(root: Path, per_batch: int = 6) -> tuple[Path, int, int]:
    """NAS-Bench-201's ImageNet16 layout, tiny; returns (folder, kept train count, kept val count)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    kept = []
    for name in [f"train_data_batch_{i}" for i in range(1, 11)] + ["val_data"]:
        labels = [int(v) for v in rng.integers(1, 1001, per_batch)]
        labels[0], labels[1] = 1, 120  # the edges of the kept range
        labels[2] = 121  # the first dropped class
        _pickle(
            root / name,
            {
                "data": rng.integers(0, 256, (per_batch, 768), dtype=np.uint8),
                "labels": labels,
                "mean": np.zeros(768),
            },
        )
        kept.append(sum(1 <= v <= 120 for v in labels))
    return root, sum(kept[:10]), kept[10]


def load(name: str, data, tmp_path: Path, **kwargs) -> ImageDataset:
    return load_dataset(name, data, cache_dir=tmp_path / "cache", progress=False, **kwargs)


def assert_same(a: ImageDataset, b: ImageDataset) -> None:
    for field in ("train_x", "train_y", "test_x", "test_y"):
        assert torch.equal(getattr(a, field), getattr(b, field)), field
    assert a.classes == b.classes and a.mean == b.mean and a.std == b.std


# ---------------------------------------------------------------- official CIFAR


def test_cifar10_extracted_batches(tmp_path):
    folder = write_cifar10(tmp_path / "src")
    ds = load("cifar10", folder, tmp_path)
    assert (len(ds.train_y), len(ds.test_y)) == (20, 4)
    assert ds.train_x.shape == (20, 3, 32, 32) and ds.train_x.dtype == torch.uint8
    assert ds.train_y.dtype == torch.int64 and ds.classes == CIFAR10_NAMES
    assert ds.num_classes == 10 and ds.image_size == 32
    first = pickle.loads((folder / "data_batch_1").read_bytes(), encoding="bytes")
    assert torch.equal(ds.train_x[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))  # channel-major
    assert ds.train_y[:4].tolist() == first[b"labels"]
    expected_mean = ds.train_x.double().div(255).mean(dim=(0, 2, 3))
    assert np.allclose(ds.mean, expected_mean.numpy())
    # the parent folder of the extracted batches works as well
    assert_same(load("cifar10", folder.parent, tmp_path), ds)


def test_cifar10_archive_matches_extracted_batches(tmp_path):
    folder = write_cifar10(tmp_path / "src")
    archive = tar_folder(folder, tmp_path / "tiny-cifar10.tar.gz")
    assert_same(load("cifar10", archive, tmp_path / "a"), load("cifar10", folder, tmp_path / "b"))


def test_cifar100_fine_labels(tmp_path):
    folder = write_cifar100(tmp_path / "src")
    ds = load("cifar100", folder, tmp_path)
    assert (len(ds.train_y), len(ds.test_y), ds.num_classes) == (6, 3, 100)
    train = pickle.loads((folder / "train").read_bytes(), encoding="bytes")
    assert ds.train_y.tolist() == train[b"fine_labels"] and ds.classes[5] == "fine5"


def test_official_archive_name_checks_md5(tmp_path, monkeypatch):
    archive = tar_folder(write_cifar10(tmp_path / "src"), tmp_path / "cifar-10-python.tar.gz")
    with pytest.raises(DataError, match="checksum mismatch.*c58f30108f718f92721af3b95e74349a"):
        load("cifar10", archive, tmp_path)
    md5 = hashlib.md5(archive.read_bytes()).hexdigest()
    official = dataclasses.replace(cifar.OFFICIAL_ARCHIVES["cifar10"], md5=md5)
    monkeypatch.setitem(cifar.OFFICIAL_ARCHIVES, "cifar10", official)
    assert len(load("cifar10", archive, tmp_path).train_y) == 20


def test_download_failure_offline_says_pass_data(tmp_path, monkeypatch):
    unreachable = dataclasses.replace(
        cifar.OFFICIAL_ARCHIVES["cifar10"], url="http://127.0.0.1:9/cifar-10-python.tar.gz"
    )
    monkeypatch.setitem(cifar.OFFICIAL_ARCHIVES, "cifar10", unreachable)
    with pytest.raises(DataError, match=r"could not download CIFAR-10.*--data PATH"):
        load("cifar10", None, tmp_path)
    assert not list((tmp_path / "cache").glob("*.part"))  # no partial download left behind


def test_no_download_and_no_archive(tmp_path):
    with pytest.raises(DataError, match=r"downloading is off.*--data PATH"):
        load("cifar10", None, tmp_path, download=False)


def test_download_from_local_server(tmp_path, monkeypatch):
    """The download path end to end against a server on localhost (no network)."""
    served = tmp_path / "served"
    served.mkdir()
    archive = tar_folder(write_cifar10(tmp_path / "src"), served / "cifar-10-python.tar.gz")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz"
        md5 = hashlib.md5(archive.read_bytes()).hexdigest()
        monkeypatch.setitem(
            cifar.OFFICIAL_ARCHIVES,
            "cifar10",
            dataclasses.replace(cifar.OFFICIAL_ARCHIVES["cifar10"], url=url, md5=md5),
        )
        ds = load("cifar10", None, tmp_path)
        assert (tmp_path / "cache" / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
        assert len(ds.train_y) == 20
        assert_same(load("cifar10", None, tmp_path, download=False), ds)  # from the cached archive
        # a download whose checksum is wrong is rejected and not kept
        (tmp_path / "cache" / "cifar-10-python.tar.gz").unlink()
        monkeypatch.setitem(
            cifar.OFFICIAL_ARCHIVES,
            "cifar10",
            dataclasses.replace(cifar.OFFICIAL_ARCHIVES["cifar10"], url=url, md5="0" * 32),
        )
        with pytest.raises(DataError, match="md5"):
            load("cifar10", None, tmp_path)
        assert not (tmp_path / "cache" / "cifar-10-python.tar.gz").exists()
    finally:
        server.shutdown()
        server.server_close()


def test_official_batches_of_another_dataset(tmp_path):
    folder = write_cifar10(tmp_path / "src")
    with pytest.raises(DataError, match="holds the CIFAR-10 batches.*--dataset cifar10"):
        load("cifar100", folder, tmp_path)


def test_missing_batch_file(tmp_path):
    folder = write_cifar10(tmp_path / "src")
    (folder / "data_batch_3").unlink()
    with pytest.raises(DataError, match="lacks .*data_batch_3"):
        load("cifar10", folder, tmp_path)


def test_corrupt_batch_file_is_named(tmp_path):
    folder = write_cifar10(tmp_path / "src")
    (folder / "data_batch_2").write_bytes(b"\x80\x02}q\x00(garbage")
    with pytest.raises(DataError, match="data_batch_2 is not a readable pickled batch"):
        load("cifar10", folder, tmp_path)


def test_pickled_code_is_refused(tmp_path):
    folder = write_cifar10(tmp_path / "src")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    (folder / "test_batch").write_bytes(pickle.dumps({"data": Evil()}))
    with pytest.raises(DataError, match="refusing to load"):
        load("cifar10", folder, tmp_path)


def test_truncated_archive(tmp_path):
    archive = tar_folder(write_cifar10(tmp_path / "src"), tmp_path / "tiny.tar.gz")
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(DataError, match="corrupt or truncated"):
        load("cifar10", archive, tmp_path)


# ---------------------------------------------------------------- image folders


def test_image_folder_directory(tmp_path):
    root = write_image_folder(tmp_path / "mine")
    (root / "train" / ".DS_Store").write_bytes(b"junk")  # ignored
    (root / "README.txt").write_text("not an image")  # ignored
    ds = load("folder", root, tmp_path)
    assert ds.name == "folder" and ds.classes == ["ant", "cat", "dog"]
    assert ds.train_x.shape == (9, 3, 8, 8) and ds.test_x.shape == (6, 3, 8, 8)
    assert ds.train_y.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and ds.test_y.tolist() == [0, 0, 1, 1, 2, 2]
    for row, (label, index) in enumerate([(c, i) for c in range(3) for i in range(3)]):
        assert ds.train_y[row] == label
        assert ds.train_x[row, :, 1, 1].tolist() == [pixel_value(label, index) + k for k in range(3)]
        assert ds.train_x[row, :, 0, 0].tolist() == [0, 0, 0]  # (H, W) orientation kept


def test_image_folder_archives_match_directory(tmp_path):
    root = write_image_folder(tmp_path / "mine")
    reference = load("folder", root, tmp_path / "c0")
    tgz = tar_folder(root, tmp_path / "mine.tgz", arcname="mine")  # one top-level folder
    assert_same(load("folder", tgz, tmp_path / "c1"), reference)
    flat_tar = tar_folder(root, tmp_path / "flat.tar", arcname=".")  # no top-level folder
    assert_same(load("folder", flat_tar, tmp_path / "c2"), reference)
    zipped = zip_folder(root, tmp_path / "mine.zip", arcname="mine")
    assert_same(load("folder", zipped, tmp_path / "c3"), reference)


def test_image_folder_order_does_not_depend_on_archive_order(tmp_path):
    root = write_image_folder(tmp_path / "mine")
    archive = tmp_path / "shuffled.tar.gz"
    files = sorted(p for p in root.rglob("*.png"))
    with tarfile.open(archive, "w:gz") as tar:
        for path in reversed(files):
            tar.add(path, arcname=f"data/{path.relative_to(root).as_posix()}")
    assert_same(load("folder", archive, tmp_path / "a"), load("folder", root, tmp_path / "b"))


def test_image_folder_jpeg_grayscale_and_val(tmp_path):
    root = tmp_path / "mixed"
    write_image(root / "train" / "a" / "0.jpg", 100)
    write_image(root / "train" / "b" / "0.JPEG", 100, mode="L")  # grayscale -> RGB
    write_image(root / "val" / "a" / "0.png", 50, mode="P")
    write_image(root / "val" / "b" / "0.png", 60, mode="RGBA")
    ds = load("folder", root, tmp_path)
    assert ds.classes == ["a", "b"] and ds.train_x.shape == (2, 3, 8, 8) and len(ds.test_y) == 2
    gray = ds.train_x[1, :, 4, 4]
    assert gray[0] == gray[1] == gray[2]


def test_image_folder_without_test(tmp_path):
    root = tmp_path / "mine"
    write_image(root / "train" / "a" / "0.png", 1)
    with pytest.raises(DataError, match=r"no test/ folder.*ROOT/test/<class>"):
        load("cifar10", root, tmp_path)


def test_image_folder_without_train_or_test(tmp_path):
    root = tmp_path / "mine"
    write_image(root / "pictures" / "a" / "0.png", 1)
    write_image(root / "other" / "a" / "0.png", 1)
    with pytest.raises(DataError, match=r"no train/ and no test/ folder \(found folders: other, pictures\)"):
        load("cifar10", root, tmp_path)


def test_image_folder_without_classes(tmp_path):
    root = tmp_path / "mine"
    write_image(root / "train" / "0.png", 1)  # images directly in train/, no class folders
    write_image(root / "test" / "a" / "0.png", 1)
    with pytest.raises(DataError, match="train/ has no class folders with images"):
        load("cifar10", root, tmp_path)


def test_image_folder_class_mismatch(tmp_path):
    root = write_image_folder(tmp_path / "mine")
    write_image(root / "test" / "zebra" / "0.png", 1)
    shutil.rmtree(root / "test" / "ant")
    with pytest.raises(DataError, match=r"same class folders.*only in train/: ant; only in test/: zebra"):
        load("cifar10", root, tmp_path)


def test_unreadable_image_is_named(tmp_path):
    root = write_image_folder(tmp_path / "mine")
    (root / "train" / "dog" / "01.png").write_bytes(b"this is not a png")
    with pytest.raises(DataError, match=r"train/dog/01\.png is not a readable image"):
        load("cifar10", root, tmp_path)
    archive = zip_folder(root, tmp_path / "mine.zip", arcname="mine")
    with pytest.raises(DataError, match=r"mine/train/dog/01\.png \(in .*mine\.zip\) is not a readable image"):
        load("cifar10", archive, tmp_path)


def test_mismatched_image_sizes(tmp_path):
    root = write_image_folder(tmp_path / "mine")
    write_image(root / "train" / "dog" / "01.png", 9, size=(10, 6))
    with pytest.raises(DataError, match=r"sizes differ: .*train/dog/01\.png is 10x6 but .* is 8x8"):
        load("cifar10", root, tmp_path)


def test_not_an_archive(tmp_path):
    path = tmp_path / "data.bin"
    path.write_bytes(b"hello world\n" * 100)
    with pytest.raises(DataError, match="not a directory, a tar archive"):
        load("cifar10", path, tmp_path)
    path.write_bytes(b"\x00" * 1024)  # reads as a tar archive with no files
    with pytest.raises(DataError, match="empty archive"):
        load("cifar10", path, tmp_path)
    corrupt_zip = tmp_path / "data.zip"
    corrupt_zip.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match="corrupt or truncated"):
        load("cifar10", corrupt_zip, tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"does not exist; pass an existing folder or archive"):
        load("cifar10", tmp_path / "nowhere", tmp_path)


def test_unknown_name_lists_valid_ones(tmp_path):
    with pytest.raises(
        DataError, match="unknown dataset 'mnist'; valid names: cifar10, cifar100, imagenet16-120, digits"
    ):
        load("mnist", None, tmp_path)
    assert DATASETS == ("cifar10", "cifar100", "imagenet16-120", "digits", "folder")


def test_an_image_folder_is_its_own_dataset_and_names_are_honest(tmp_path):
    root = write_image_folder(tmp_path / "mine")
    with pytest.raises(DataError, match="--dataset cifar10 has 10 classes but .* holds 3; pass --dataset folder"):
        load("cifar10", root, tmp_path)
    assert load("folder", root, tmp_path).name == "folder"
    with pytest.raises(DataError, match="needs --data"):
        load("folder", None, tmp_path)
    one = write_image_folder(tmp_path / "one", classes=("cat",))
    with pytest.raises(DataError, match="one class"):
        load("folder", one, tmp_path)


# ---------------------------------------------------------------- ImageNet16-120


def test_imagenet16_keeps_first_120_classes(tmp_path):
    folder, n_train, n_val = write_imagenet16(tmp_path / "imagenet16")
    ds = load("imagenet16-120", folder, tmp_path)
    assert (len(ds.train_y), len(ds.test_y)) == (n_train, n_val)
    assert ds.num_classes == 120 and ds.image_size == 16 and ds.train_x.shape[1:] == (3, 16, 16)
    assert int(ds.train_y.min()) >= 0 and int(ds.train_y.max()) <= 119
    first = pickle.loads((folder / "train_data_batch_1").read_bytes())
    assert ds.train_y[:2].tolist() == [0, 119]
    assert torch.equal(ds.train_x[0], torch.from_numpy(first["data"][0].reshape(3, 16, 16)))


def test_imagenet16_errors(tmp_path):
    folder, _, _ = write_imagenet16(tmp_path / "imagenet16")
    with pytest.raises(DataError, match="holds the ImageNet16-120 batches.*--dataset imagenet16-120"):
        load("cifar10", folder, tmp_path)
    (folder / "val_data").unlink()
    with pytest.raises(DataError, match="lacks .*val_data"):
        load("imagenet16-120", folder, tmp_path)
    with pytest.raises(DataError, match="cannot be downloaded automatically.*--data PATH"):
        load("imagenet16-120", None, tmp_path)


# ---------------------------------------------------------------- digits


def test_digits_is_embedded_and_stratified(tmp_path):
    ds = load("digits", None, tmp_path)
    assert len(ds.train_y) + len(ds.test_y) == 1797 and ds.num_classes == 10 and ds.image_size == 16
    assert ds.train_x.dtype == torch.uint8 and int(ds.train_x.max()) > 200
    assert torch.equal(ds.train_x[:, 0], ds.train_x[:, 1]) and torch.equal(ds.train_x[:, 0], ds.train_x[:, 2])
    train_counts = torch.bincount(ds.train_y, minlength=10)
    test_counts = torch.bincount(ds.test_y, minlength=10)
    fractions = train_counts.double() / (train_counts + test_counts)
    assert bool(((fractions - 0.8).abs() < 0.01).all())
    assert_same(load("digits", None, tmp_path), ds)  # deterministic
    assert not (tmp_path / "cache").exists()  # nothing written for the built-in set


def test_digits_errors(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="digits is built in .* takes no data path"):
        load("digits", tmp_path, tmp_path)
    monkeypatch.setitem(__import__("sys").modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match="pip install scikit-learn"):
        load("digits", None, tmp_path)


# ---------------------------------------------------------------- cache


def _fail(*args, **kwargs):
    raise AssertionError("decoded again instead of reading the cache")


def test_second_load_reads_the_cache(tmp_path, monkeypatch):
    archive = tar_folder(write_image_folder(tmp_path / "mine"), tmp_path / "mine.tar.gz", arcname="mine")
    first = load("folder", archive, tmp_path)
    cached = list((tmp_path / "cache" / "decoded").glob("folder-*.pt"))
    assert len(cached) == 1 and not list((tmp_path / "cache" / "decoded").glob("*.tmp"))
    monkeypatch.setattr(imagefolder, "read_image_folder", _fail)
    second = load("folder", archive, tmp_path)
    assert_same(second, first)
    assert second.name == "folder"


def test_cache_is_keyed_by_name_and_source(tmp_path, monkeypatch):
    root = write_image_folder(tmp_path / "mine")
    load("folder", root, tmp_path)
    calls = []
    original = imagefolder.read_image_folder

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(imagefolder, "read_image_folder", counting)
    load("folder", root, tmp_path)
    assert calls == []
    with pytest.raises(DataError, match="--dataset cifar100 has 100 classes but .* holds 3"):
        load("cifar100", root, tmp_path)  # another name: its own entry (decoded, then refused)
    assert calls == [1]
    write_image(root / "train" / "ant" / "99.png", 5)  # the source changed: decoded again
    assert len(load("folder", root, tmp_path).train_y) == 10
    assert calls == [1, 1]


def test_corrupt_cache_is_rebuilt(tmp_path, monkeypatch):
    folder = write_cifar10(tmp_path / "src")
    first = load("cifar10", folder, tmp_path)
    (cache_file,) = (tmp_path / "cache" / "decoded").glob("*.pt")
    cache_file.write_bytes(cache_file.read_bytes()[:100])
    with pytest.warns(UserWarning, match="ignoring unreadable dataset cache"):
        again = load("cifar10", folder, tmp_path)
    assert_same(again, first)
    monkeypatch.setattr(cifar, "read_official", _fail)
    assert_same(load("cifar10", folder, tmp_path), first)  # rewritten and valid again


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("TOPONAS_CACHE", str(tmp_path / "env-cache"))
    load_dataset("cifar10", write_cifar10(tmp_path / "src"), progress=False)
    assert list((tmp_path / "env-cache" / "decoded").glob("cifar10-*.pt"))


def test_imagenet16_reader_is_used_from_cache(tmp_path, monkeypatch):
    folder, _, _ = write_imagenet16(tmp_path / "imagenet16")
    first = load("imagenet16-120", folder, tmp_path)
    monkeypatch.setattr(imagenet16, "read_imagenet16", _fail)
    assert_same(load("imagenet16-120", folder, tmp_path), first)


# ---------------------------------------------------------------- package hygiene


def test_no_torchvision_import():
    package = Path(data_pkg.__file__).parent
    for path in package.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                assert not any(a.name.split(".")[0] == "torchvision" for a in node.names), path
            elif isinstance(node, ast.ImportFrom):
                assert (node.module or "").split(".")[0] != "torchvision", path


def test_image_dataset_validates_and_prints_briefly():
    x = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    y = torch.zeros(2, dtype=torch.int64)
    ds = ImageDataset("t", x, y, x, y, ["a"], (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert repr(ds) == "ImageDataset(name='t', train=2, test=2, classes=1, size=4x4)"
    with pytest.raises(DataError, match="uint8"):
        ImageDataset("t", x.float(), y, x, y, ["a"], (0.0,) * 3, (1.0,) * 3)
    with pytest.raises(DataError, match="labels must lie in 0..0"):
        ImageDataset("t", x, y + 1, x, y, ["a"], (0.0,) * 3, (1.0,) * 3)
