"""Image-folder datasets: ``ROOT/{train,test}/<class>/*.png|jpg|jpeg`` as a folder, .tar(.gz) or .zip.

This is how users bring their own images. ROOT may be the folder or archive itself or its single
top-level folder (as in ``cifar10-jpeg.tar.gz``, whose files are ``cifar10/train/...``). A ``val/``
folder is accepted in place of ``test/``. Classes are the sorted names of the class folders that hold
images; train and test must have the same ones. Images are decoded with Pillow and converted to RGB;
all must share one size. Samples are ordered by (class, path), whatever the container's order.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from .dataset import DataError, ImageDataset, make_dataset
from .sources import FileSource

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
LAYOUT_HINT = "expected ROOT/train/<class>/*.png and ROOT/test/<class>/*.png (.jpg and .jpeg work too)"


def _is_junk(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in name.split("/"))


def _subdirs(names: list[str], prefix: str) -> set[str]:
    return {
        n[len(prefix) :].split("/", 1)[0] for n in names if n.startswith(prefix) and "/" in n[len(prefix) :]
    }


def _shown(items: set[str] | list[str], limit: int = 8) -> str:
    items = sorted(items)
    more = f", ... ({len(items)} in all)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more if items else "nothing"


def locate_splits(names: list[str], where: str) -> tuple[str, str, str]:
    """Return (root prefix, train folder, test folder) of an image-folder layout; DataError if absent."""
    names = [n for n in names if not _is_junk(n)]
    prefix = ""
    top = _subdirs(names, prefix)
    if not top & {"train", "test", "val"} and len(top) == 1:
        prefix = next(iter(top)) + "/"
        top = _subdirs(names, prefix)
    test = "test" if "test" in top or "val" not in top else "val"
    missing = [s + "/" for s in ("train", test) if s not in top]
    if missing:
        raise DataError(
            f"{where} is not an image folder: it has no {' and no '.join(missing)} folder "
            f"(found folders: {_shown(top)}); {LAYOUT_HINT}"
        )
    return prefix, prefix + "train/", prefix + test + "/"


def _class_files(names: list[str], split: str) -> dict[str, list[str]]:
    """Image files per class folder directly under ``split`` (files in nested folders count too)."""
    per_class: dict[str, list[str]] = {}
    for name in names:
        if not name.startswith(split) or _is_junk(name) or not name.lower().endswith(IMAGE_SUFFIXES):
            continue
        rest = name[len(split) :]
        if "/" in rest:
            per_class.setdefault(rest.split("/", 1)[0], []).append(name)
    return {c: sorted(files) for c, files in per_class.items()}


def decode_image(data: bytes, where: str) -> np.ndarray:
    """Decode one PNG/JPEG (any Pillow format) to an RGB uint8 array (H, W, 3); DataError naming the file."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            rgb = image if image.mode == "RGB" else image.convert("RGB")
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(
            f"{where} is not a readable image ({type(exc).__name__}: {exc}); replace or remove it"
        ) from None


def read_image_folder(src: FileSource, name: str, progress: bool) -> ImageDataset:
    """Decode every image of an image-folder layout in ``src`` into an ImageDataset called ``name``."""
    names = src.names()
    _, train_dir, test_dir = locate_splits(names, str(src.path))
    train_files = _class_files(names, train_dir)
    test_files = _class_files(names, test_dir)
    for split_dir, files in ((train_dir, train_files), (test_dir, test_files)):
        if not files:
            raise DataError(
                f"{src.path}: {split_dir} has no class folders with images (suffixes "
                f"{', '.join(IMAGE_SUFFIXES)}); {LAYOUT_HINT}"
            )
    if set(train_files) != set(test_files):
        only_train = set(train_files) - set(test_files)
        only_test = set(test_files) - set(train_files)
        raise DataError(
            f"{src.path}: train and test must have the same class folders with images; only in {train_dir}: "
            f"{_shown(only_train)}; only in {test_dir}: {_shown(only_test)}"
        )
    classes = sorted(train_files)
    slots: dict[str, tuple[int, int]] = {}  # file -> (split 0/1, row)
    labels: list[list[int]] = [[], []]
    for split, files in enumerate((train_files, test_files)):
        for label, cls in enumerate(classes):
            for f in files[cls]:
                slots[f] = (split, len(labels[split]))
                labels[split].append(label)

    arrays: list[np.ndarray] = []
    first: tuple[str, tuple[int, int]] | None = None
    bar = tqdm(total=len(slots), desc=f"decoding {name} images", unit="img", disable=not progress)
    with bar:
        for f, data in src.read_many(slots):
            pixels = decode_image(data, src.label(f))
            size = (pixels.shape[1], pixels.shape[0])  # Pillow's (width, height)
            if first is None:
                first = (f, size)
                arrays = [
                    np.empty((len(labels[s]), pixels.shape[0], pixels.shape[1], 3), np.uint8) for s in (0, 1)
                ]
            elif size != first[1]:
                raise DataError(
                    f"image sizes differ: {src.label(f)} is {size[0]}x{size[1]} but {first[0]} is "
                    f"{first[1][0]}x{first[1][1]} (width x height); resize all images to one size first"
                )
            split, row = slots[f]
            arrays[split][row] = pixels
            bar.update()

    def tensor(split: int) -> torch.Tensor:
        return torch.from_numpy(arrays[split]).permute(0, 3, 1, 2).contiguous()

    ys = [torch.tensor(labels[s], dtype=torch.int64) for s in (0, 1)]
    return make_dataset(name, tensor(0), ys[0], tensor(1), ys[1], classes)
