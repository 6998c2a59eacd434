"""Datasets for the search: loading (CIFAR, ImageNet16-120, digits, image folders), the search split, batches.

``load_dataset`` decodes a dataset once and caches it; ``search_split`` gives the NAS-Bench-201
weight/architecture halves; ``PairedBatches`` yields deterministic, resumable paired batches
augmented on the device; ``eval_batches`` iterates a split for evaluation. Every user-facing
problem is a ``DataError`` whose message says what to pass instead.
"""

from __future__ import annotations

from .batches import PairedBatches, augment_batch, eval_batches, normalize
from .dataset import DataError, ImageDataset
from .loader import DATASETS, load_dataset
from .split import search_split

__all__ = [
    "DATASETS",
    "DataError",
    "ImageDataset",
    "PairedBatches",
    "augment_batch",
    "eval_batches",
    "load_dataset",
    "normalize",
    "search_split",
]
