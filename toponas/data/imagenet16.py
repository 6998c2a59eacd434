"""ImageNet16-120, the NAS-Bench-201 downsampled ImageNet: pickled 16x16 batches, first 120 classes kept.

The folder (or archive) holds ``train_data_batch_1`` ... ``train_data_batch_10`` and ``val_data``;
each is a dict with ``data`` (N x 768 uint8, channel-major 3 x 16 x 16) and ``labels`` (1-based).
Labels 1..120 are kept and shifted to 0..119; ``val_data`` becomes the test split (NAS-Bench-201
splits it further into valid/test halves; that is left to the caller).
"""

from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

from .dataset import DataError, ImageDataset, make_dataset
from .pickles import load_batch
from .sources import FileSource

NUM_CLASSES = 120
SIDE = 16
TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
TEST_FILE = "val_data"
DATA_HINT = (
    "pass --data PATH to the NAS-Bench-201 ImageNet16 folder (with train_data_batch_1 ... "
    "train_data_batch_10 and val_data), or an image folder ROOT/{train,test}/<class>/*.png "
    "(or a .tar.gz/.zip of one)"
)


def find_batches(names: list[str]) -> str | None:
    """The folder prefix holding ImageNet16 batches among ``names``, or None."""
    for name in names:
        base = name.rsplit("/", 1)[-1]
        if base in (TEST_FILE, TRAIN_FILES[0]):
            return name[: len(name) - len(base)]
    return None


def _split(batch: dict, where: str) -> tuple[np.ndarray, np.ndarray]:
    data, labels = batch.get("data"), batch.get("labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3 * SIDE * SIDE:
        shape = getattr(data, "shape", type(data).__name__)
        raise DataError(f"{where}: 'data' should be an N x {3 * SIDE * SIDE} uint8 array, got {shape}")
    if labels is None:
        raise DataError(f"{where} has no 'labels' entry")
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if len(labels) != len(data):
        raise DataError(f"{where}: {len(data)} images but {len(labels)} labels")
    keep = (labels >= 1) & (labels <= NUM_CLASSES)
    images = data[keep].astype(np.uint8, copy=False).reshape(-1, 3, SIDE, SIDE)
    return images, labels[keep] - 1


def read_imagenet16(src: FileSource, prefix: str, name: str, progress: bool) -> ImageDataset:
    """Decode the ImageNet16 batches under ``prefix`` in ``src``, keeping classes 1..120."""
    wanted = [prefix + f for f in (*TRAIN_FILES, TEST_FILE)]
    present = set(src.names())
    missing = [w for w in wanted if w not in present]
    if missing:
        raise DataError(f"{src.path} looks like ImageNet16 but lacks {', '.join(missing)}; {DATA_HINT}")
    parts: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    reading = tqdm(
        src.read_many(wanted),
        total=len(wanted),
        desc="reading ImageNet16 batches",
        unit=" files",
        disable=not progress,
    )
    for file, data in reading:
        parts[file] = _split(load_batch(data, src.label(file)), src.label(file))
    train = [parts[prefix + f] for f in TRAIN_FILES]
    test_x, test_y = parts[prefix + TEST_FILE]
    return make_dataset(
        name,
        torch.from_numpy(np.concatenate([x for x, _ in train])),
        torch.from_numpy(np.concatenate([y for _, y in train])),
        torch.from_numpy(np.ascontiguousarray(test_x)),
        torch.from_numpy(np.ascontiguousarray(test_y)),
        [str(i) for i in range(1, NUM_CLASSES + 1)],
    )
