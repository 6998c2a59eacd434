"""CIFAR-10 and CIFAR-100 in the official python format: the archive, its extracted batches, or a download."""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .dataset import DataError, ImageDataset, make_dataset
from .pickles import load_batch
from .sources import FileSource

DATA_HINT = (
    "pass --data PATH (data=PATH): the official {filename}, a folder of its extracted batches, "
    "or an image folder ROOT/{{train,test}}/<class>/*.png (or a .tar.gz/.zip of one)"
)


@dataclass(frozen=True)
class OfficialArchive:
    """Where the official python-format archive of one CIFAR dataset lives and how to check it."""

    filename: str
    md5: str
    url: str
    train_files: tuple[str, ...]
    test_file: str
    meta_file: str
    label_key: str
    names_key: str
    title: str

    def hint(self) -> str:
        """What to pass instead when this archive cannot be had."""
        return DATA_HINT.format(filename=self.filename)


OFFICIAL_ARCHIVES: dict[str, OfficialArchive] = {
    "cifar10": OfficialArchive(
        filename="cifar-10-python.tar.gz",
        md5="c58f30108f718f92721af3b95e74349a",
        url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_file="test_batch",
        meta_file="batches.meta",
        label_key="labels",
        names_key="label_names",
        title="CIFAR-10",
    ),
    "cifar100": OfficialArchive(
        filename="cifar-100-python.tar.gz",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        train_files=("train",),
        test_file="test",
        meta_file="meta",
        label_key="fine_labels",
        names_key="fine_label_names",
        title="CIFAR-100",
    ),
}


def file_md5(path: Path, chunk: int = 1 << 20) -> str:
    """The hex md5 of a file."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def verify_if_official(path: Path) -> None:
    """If ``path`` carries an official archive's file name, check its md5; DataError on mismatch."""
    for archive in OFFICIAL_ARCHIVES.values():
        if path.is_file() and path.name == archive.filename:
            actual = file_md5(path)
            if actual != archive.md5:
                raise DataError(
                    f"checksum mismatch for {path}: md5 is {actual}, but the official {archive.title} "
                    f"archive has md5 {archive.md5}; the file is corrupt, truncated or not the official one. "
                    f"Delete it and download it again from {archive.url}, or rename it if it is your own data"
                )


def find_batches(names: list[str]) -> dict[str, str]:
    """Map each CIFAR dataset whose official batches appear among ``names`` to their folder prefix."""
    found = {}
    files = set(names)
    for key, archive in OFFICIAL_ARCHIVES.items():
        for name in names:
            base = name.rsplit("/", 1)[-1]
            if base != archive.meta_file:
                continue
            prefix = name[: len(name) - len(base)]
            if f"{prefix}{archive.test_file}" in files or f"{prefix}{archive.train_files[0]}" in files:
                found[key] = prefix
                break
    return found


def official_archive_path(name: str, cache_root: Path, download: bool, progress: bool) -> Path:
    """The official archive in the cache folder, downloading it first when absent and allowed."""
    archive = OFFICIAL_ARCHIVES[name]
    path = cache_root / archive.filename
    if path.is_file():
        return path
    if not download:
        raise DataError(
            f"no data given for {name}, {archive.filename} is not in the cache folder {cache_root}, and "
            f"downloading is off; {archive.hint()}"
        )
    return download_archive(archive, path, progress)


def download_archive(archive: OfficialArchive, dest: Path, progress: bool) -> Path:
    """Download ``archive`` to ``dest`` (atomically, checking its md5); DataError with advice on failure."""
    from .cache import ensure_writable_dir

    ensure_writable_dir(dest.parent)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    digest = hashlib.md5()
    try:
        with os.fdopen(fd, "wb") as out:
            with urllib.request.urlopen(archive.url, timeout=60) as response:
                total = int(response.headers.get("Content-Length") or 0) or None
                with tqdm(
                    total=total,
                    unit="B",
                    unit_scale=True,
                    desc=f"downloading {archive.filename}",
                    disable=not progress,
                ) as bar:
                    while block := response.read(1 << 20):
                        out.write(block)
                        digest.update(block)
                        bar.update(len(block))
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
        os.unlink(tmp)
        reason = getattr(exc, "reason", exc)
        raise DataError(
            f"could not download {archive.title} from {archive.url} ({reason}); this machine may be offline: "
            f"{archive.hint()}"
        ) from None
    if digest.hexdigest() != archive.md5:
        os.unlink(tmp)
        raise DataError(
            f"the download from {archive.url} has md5 {digest.hexdigest()}, expected {archive.md5} "
            f"(incomplete or altered); try again, or {archive.hint()}"
        )
    os.replace(tmp, dest)
    return dest


def _images(batch: dict[str, Any], where: str) -> np.ndarray:
    data = batch.get("data")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{where}: 'data' should be an N x 3072 uint8 array, got {shape}")
    return data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32)


def _labels(batch: dict[str, Any], key: str, count: int, classes: int, where: str) -> np.ndarray:
    if key not in batch:
        raise DataError(f"{where} has no {key!r} entry; is it a batch of the right dataset?")
    labels = np.asarray(batch[key], dtype=np.int64)
    if labels.shape != (count,):
        raise DataError(f"{where}: {count} images but {labels.size} labels")
    if count and (labels.min() < 0 or labels.max() >= classes):
        raise DataError(f"{where}: labels must lie in 0..{classes - 1}, got {labels.min()}..{labels.max()}")
    return labels


def read_official(src: FileSource, prefix: str, name: str, progress: bool) -> ImageDataset:
    """Decode the official python batches of CIFAR-10/100 found under ``prefix`` in ``src``."""
    archive = OFFICIAL_ARCHIVES[name]
    wanted = [prefix + f for f in (*archive.train_files, archive.test_file, archive.meta_file)]
    present = set(src.names())
    missing = [w for w in wanted if w not in present]
    if missing:
        raise DataError(
            f"{src.path} looks like the official {archive.title} batches but lacks {', '.join(missing)}; "
            f"{archive.hint()}"
        )
    raw = dict(
        tqdm(
            src.read_many(wanted),
            total=len(wanted),
            desc=f"reading {archive.title} batches",
            unit=" files",
            disable=not progress,
            leave=False,
        )
    )
    meta_where = src.label(prefix + archive.meta_file)
    meta = load_batch(raw[prefix + archive.meta_file], meta_where)
    names = meta.get(archive.names_key)
    if not isinstance(names, list) or not names:
        raise DataError(f"{meta_where} has no {archive.names_key!r} list of class names")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]

    def split(files: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for f in files:
            where = src.label(prefix + f)
            batch = load_batch(raw[prefix + f], where)
            x = _images(batch, where)
            xs.append(x)
            ys.append(_labels(batch, archive.label_key, len(x), len(classes), where))
        return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))

    train_x, train_y = split(archive.train_files)
    test_x, test_y = split((archive.test_file,))
    return make_dataset(name, train_x, train_y, test_x, test_y, classes)
