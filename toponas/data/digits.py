"""The embedded default dataset: scikit-learn's 1,797 real 8x8 handwritten digits, no download needed.

Pixel values 0..16 are scaled to 0..255, upsampled to 16x16 with bilinear interpolation
(``torch.nn.functional.interpolate``, ``align_corners=False``), rounded to uint8 and replicated to
three channels. The split is stratified and fixed: in each class, a permutation seeded with 0 puts
80% (rounded) of the images into train and the rest into test.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dataset import DataError, ImageDataset, make_dataset

SIDE = 16
TRAIN_FRACTION = 0.8


def load_digits_dataset(name: str = "digits") -> ImageDataset:
    """Build the digits dataset from scikit-learn's bundled copy (imported lazily: an optional extra)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError(
            "the digits dataset needs scikit-learn: pip install scikit-learn "
            "(or pip install 'toponas[digits]'), or pass another dataset with --data PATH"
        ) from None
    bunch = load_digits()
    images = torch.as_tensor(bunch.images, dtype=torch.float32)  # (1797, 8, 8), values 0..16
    labels = torch.as_tensor(bunch.target, dtype=torch.int64)
    scaled = (images * (255.0 / 16.0)).unsqueeze(1)
    upsampled = F.interpolate(scaled, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    pixels = upsampled.round().clamp(0, 255).to(torch.uint8).expand(-1, 3, -1, -1).contiguous()

    generator = torch.Generator().manual_seed(0)
    train_idx, test_idx = [], []
    for cls in range(10):
        members = (labels == cls).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        cut = round(TRAIN_FRACTION * len(members))
        train_idx.append(members[:cut])
        test_idx.append(members[cut:])
    train = torch.cat(train_idx).sort().values
    test = torch.cat(test_idx).sort().values
    return make_dataset(
        name, pixels[train], labels[train], pixels[test], labels[test], [str(d) for d in range(10)]
    )
