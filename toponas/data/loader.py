"""``load_dataset``: one entry point that finds, decodes and caches any supported dataset."""

from __future__ import annotations

import os
from pathlib import Path

from . import cifar, imagefolder, imagenet16
from .cache import cache_path, load_cached, resolve_cache_dir, save_cached, source_fingerprint
from .dataset import DataError, ImageDataset
from .digits import load_digits_dataset
from .sources import FileSource

DATASETS = ("cifar10", "cifar100", "imagenet16-120", "digits", "folder")
#: Classes of the named datasets: an image folder passed under one of these names must have as many.
CLASS_COUNTS = {"cifar10": 10, "cifar100": 100, "imagenet16-120": 120}
_ALIASES = {
    "cifar-10": "cifar10",
    "cifar-100": "cifar100",
    "imagenet16": "imagenet16-120",
    "imagenet16_120": "imagenet16-120",
}
_TITLES = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet16-120": "ImageNet16-120"}


def canonical_name(name: str) -> str:
    """The dataset name in its canonical spelling; DataError listing the valid names if unknown."""
    key = str(name).strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)} "
            "(for your own images, pass folder with --data pointing at an image folder)"
        )
    return key


def load_dataset(
    name: str,
    data: str | os.PathLike[str] | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    download: bool = True,
    progress: bool = True,
) -> ImageDataset:
    """Load dataset ``name`` from ``data`` (or the cache/official download), decoding once and caching.

    ``data`` may be an official CIFAR archive or its extracted batches, the ImageNet16 batch folder,
    or an image folder ``ROOT/{train,test}/<class>/*`` as a directory, .tar(.gz) or .zip; the reader
    is chosen from what is found there, so any image folder works under any dataset name (except
    ``digits``, which is built in). With ``data=None``, CIFAR is taken from the official archive in
    ``cache_dir`` (default ``$TOPONAS_CACHE`` or ``~/.cache/toponas``), downloaded first if allowed.
    """
    key = canonical_name(name)
    if key == "digits":
        if data is not None:
            raise DataError(
                "digits is built in (scikit-learn's handwritten digits) and takes no data path; drop --data, "
                f"or name another dataset ({', '.join(d for d in DATASETS if d != 'digits')}) to load {data}"
            )
        return load_digits_dataset()

    cache_root = resolve_cache_dir(cache_dir)
    if key == "folder" and data is None:
        raise DataError(f"--dataset folder needs --data (an image folder: {imagefolder.LAYOUT_HINT})")
    if data is None:
        if key not in cifar.OFFICIAL_ARCHIVES:
            raise DataError(f"{_TITLES[key]} cannot be downloaded automatically; {imagenet16.DATA_HINT}")
        path = cifar.official_archive_path(key, cache_root, download, progress)
    else:
        path = Path(data).expanduser()
        if not path.exists():
            raise DataError(
                f"data path {path} does not exist; pass an existing folder or archive "
                "(an official CIFAR archive or its batches, the ImageNet16 batches, or an image folder "
                "ROOT/{train,test}/<class>/*.png or a .tar.gz/.zip of one)"
            )

    cached = cache_path(cache_root, key, source_fingerprint(path))
    ds = load_cached(cached, key)
    if ds is not None:
        return check_classes(key, ds, path)
    ds = decode_source(key, path, progress)
    save_cached(cached, ds, source=str(path.resolve()))
    return check_classes(key, ds, path)


def check_classes(key: str, ds: ImageDataset, path: Path) -> ImageDataset:
    """A dataset is honest about its name: at least two classes, and a named dataset's number of them."""
    if ds.num_classes < 2:
        raise DataError(f"{path} holds one class ({', '.join(ds.classes)}); a classifier needs at least two")
    expected = CLASS_COUNTS.get(key)
    if expected is not None and ds.num_classes != expected:
        raise DataError(f"--dataset {key} has {expected} classes but {path} holds {ds.num_classes}; "
                        "pass --dataset folder for your own images")
    return ds


def decode_source(key: str, path: Path, progress: bool) -> ImageDataset:
    """Decode ``path`` with the reader its contents call for (official batches or an image folder)."""
    cifar.verify_if_official(path)
    with FileSource(path, progress=progress) as src:
        names = src.names()
        if not names:
            what = "folder" if src.kind == "directory" else "archive (or not an archive at all)"
            raise DataError(f"{path} is an empty {what}; {imagefolder.LAYOUT_HINT}")
        official = cifar.find_batches(names)
        if key in official:
            return cifar.read_official(src, official[key], key, progress)
        if key == "imagenet16-120":
            prefix = imagenet16.find_batches(names)
            if prefix is not None:
                return imagenet16.read_imagenet16(src, prefix, key, progress)
        found = [_TITLES[k] for k in official]
        if imagenet16.find_batches(names) is not None:
            found.append(_TITLES["imagenet16-120"])
        if found:
            expected = {"CIFAR-10": "cifar10", "CIFAR-100": "cifar100", "ImageNet16-120": "imagenet16-120"}
            raise DataError(
                f"{path} holds the {found[0]} batches, but the dataset asked for is {key!r}; "
                f"pass --dataset {expected[found[0]]}, or point --data at {_TITLES.get(key, key)} data"
            )
        return imagefolder.read_image_folder(src, key, progress)
