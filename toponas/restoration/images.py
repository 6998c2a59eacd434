"""Clean images for the restoration task: scikit-image's bundled photographs, an image folder, a CIFAR archive.

Every source gives float images in ``[0, 1]``, ``(C, H, W)`` with ``C = 3`` (colour) or ``1`` (``grey``),
split into training images (random patches are cropped from them) and test images (evaluated whole).

``skimage`` (the embedded default, ``pip install 'toponas[restoration]'``): the photographs scikit-image
ships inside its wheel, read from its ``data`` folder (no download). The split is fixed (:data:`SKIMAGE_TRAIN`,
:data:`SKIMAGE_TEST`); colour runs use the colour photographs, grey runs all of them (colour ones as BT.601
luma ``0.299 R + 0.587 G + 0.114 B``).

An image folder (``--data PATH``): ``PATH/train/**`` and ``PATH/test/**`` when both exist (Set5, Set14,
BSD68 or Urban100 as ``test/``), otherwise every image under ``PATH`` sorted by path with every fifth one
(the 5th, 10th, ...; at least one) a test image. A grey image in a colour run is an error (pass ``--grey``).

CIFAR-10 (``--dataset cifar10 --data ARCHIVE``): the archive's 32x32 training images as a patch source
(the first :data:`CIFAR_TRAIN`), its first :data:`CIFAR_TEST` test images as test images.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data import DataError

#: (file in skimage/data, colour?) of the training photographs, then the test photographs.
SKIMAGE_TRAIN = (("astronaut.png", True), ("rocket.jpg", True), ("hubble_deep_field.jpg", True),
                 ("ihc.png", True), ("motorcycle_left.png", True), ("retina.jpg", True),
                 ("moon.png", False), ("brick.png", False), ("grass.png", False), ("gravel.png", False),
                 ("page.png", False), ("text.png", False))
SKIMAGE_TEST = (("chelsea.png", True), ("coffee.png", True), ("camera.png", False), ("coins.png", False))
CIFAR_TRAIN, CIFAR_TEST = 5000, 64
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
SKIMAGE_HINT = "the skimage dataset needs scikit-image: pip install 'toponas[restoration]' (or pass --data PATH)"


@dataclass
class CleanImages:
    """Training and test images of one source (float ``(C, H, W)`` in ``[0, 1]``) and the test images' names."""

    name: str
    train: list[torch.Tensor]
    test: list[torch.Tensor]
    test_names: list[str]
    channels: int


def to_tensor(array: np.ndarray) -> torch.Tensor:
    """``(H, W)`` or ``(H, W, C)`` uint8 to float ``(C, H, W)`` in ``[0, 1]``."""
    a = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(np.array(a, copy=True)).permute(2, 0, 1).float() / 255.0


def to_grey(image: torch.Tensor) -> torch.Tensor:
    """BT.601 luma of a colour image (a grey one is returned as is)."""
    if image.shape[0] == 1:
        return image
    w = torch.tensor([0.299, 0.587, 0.114], dtype=image.dtype).view(3, 1, 1)
    return (image[:3] * w).sum(0, keepdim=True)


def read_image(path: Path, grey: bool) -> torch.Tensor:
    """One image file as ``(C, H, W)``; a grey image where colour is asked is a :class:`DataError`."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if grey:
                array = np.asarray(im.convert("L"))
            else:
                if mode in ("L", "LA", "1", "I", "I;16", "F"):
                    raise DataError(f"{path} is a greyscale image but the task is colour; pass --grey for grey "
                                    "denoising, or use colour images")
                array = np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as e:
        raise DataError(f"{path} cannot be read as an image ({e})") from None
    return to_tensor(array)


def skimage_images(grey: bool) -> CleanImages:
    """The embedded default (see the module docstring)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise DataError(SKIMAGE_HINT)
    folder = Path(spec.origin).parent / "data"

    def load(entries) -> tuple[list[torch.Tensor], list[str]]:
        images, names = [], []
        for file, colour in entries:
            if not (colour or grey):
                continue
            path = folder / file
            if not path.is_file():
                raise DataError(f"scikit-image's {file} is missing from {folder}; reinstall scikit-image")
            with Image.open(path) as im:
                array = np.asarray(im.convert("L" if grey else "RGB"))
            images.append(to_tensor(array))
            names.append(Path(file).stem)
        return images, names

    train, _ = load(SKIMAGE_TRAIN)
    test, names = load(SKIMAGE_TEST)
    return CleanImages("skimage" + ("-grey" if grey else ""), train, test, names, 1 if grey else 3)


def folder_images(root: str | Path, grey: bool) -> CleanImages:
    """An image folder (see the module docstring)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"--data {root}: not a folder of images (the restoration task reads image folders, "
                        "or a CIFAR archive with --dataset cifar10)")

    def files(where: Path) -> list[Path]:
        return sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                      and not any(part.startswith(".") for part in p.relative_to(root).parts))

    if (root / "train").is_dir() and (root / "test").is_dir():
        train_files, test_files = files(root / "train"), files(root / "test")
    else:
        every = files(root)
        if len(every) < 2:
            raise DataError(f"--data {root} holds {len(every)} image(s); the restoration task needs at least 2 "
                            "(training and test images), or ROOT/train and ROOT/test folders")
        test_files = every[4::5] or every[-1:]
        train_files = [p for p in every if p not in test_files]
    for what, found in (("training", train_files), ("test", test_files)):
        if not found:
            raise DataError(f"--data {root} has no {what} images ({', '.join(IMAGE_SUFFIXES)})")
    return CleanImages(root.name, [read_image(p, grey) for p in train_files],
                       [read_image(p, grey) for p in test_files], [p.stem for p in test_files], 1 if grey else 3)


def cifar_images(data: str | None, grey: bool, cache_dir: str | None = None, progress: bool = False) -> CleanImages:
    """CIFAR-10 as a patch source (see the module docstring)."""
    from ..data import load_dataset

    ds = load_dataset("cifar10", data, cache_dir=cache_dir, progress=progress)
    conv = to_grey if grey else (lambda t: t)
    train = [conv(x.float() / 255.0) for x in ds.train_x[:CIFAR_TRAIN]]
    test = [conv(x.float() / 255.0) for x in ds.test_x[:CIFAR_TEST]]
    return CleanImages(ds.name, train, test, [f"test{i:03d}" for i in range(len(test))], 1 if grey else 3)


#: The ``--dataset`` names of the restoration task (an image folder is ``--data PATH`` with any of them but cifar10).
RESTORATION_DATASETS = ("skimage", "cifar10", "folder")


def load_images(dataset: str, data: str | None, grey: bool, cache_dir: str | None = None,
                progress: bool = False) -> CleanImages:
    """The clean images of ``--dataset`` / ``--data`` (``--data`` wins for anything but cifar10)."""
    if dataset == "cifar10":
        return cifar_images(data, grey, cache_dir, progress)
    if data is not None:
        return folder_images(data, grey)
    if dataset == "skimage":
        return skimage_images(grey)
    if dataset == "folder":
        raise DataError("--dataset folder needs --data PATH (a folder of images)")
    raise DataError(f"--dataset {dataset} is not a restoration dataset; choose {', '.join(RESTORATION_DATASETS)} "
                    "or pass --data PATH (a folder of images)")


__all__ = ["CleanImages", "RESTORATION_DATASETS", "load_images", "skimage_images", "folder_images", "cifar_images",
           "to_grey", "SKIMAGE_TRAIN", "SKIMAGE_TEST"]
