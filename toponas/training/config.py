"""The training configuration: protocol defaults, an optional preset over them, explicit values last.

The resolved configuration is stored in every checkpoint and in ``train.json``, so a run can be
resumed and read back from its directory alone.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import ConfigError, check_known_keys, check_types
from .protocol import PRESETS, protocol_for

SCHEDULES = ("cosine-step", "cosine-epoch")

#: Fields that may differ between a run and its resumption (where data lives, which device, output).
RESUME_FREE = ("data", "cache_dir", "device", "out", "amp", "eval_every", "source")


@dataclass
class TrainConfig:
    """Everything one training run needs. Defaults are NAS-Bench-201's protocol (see ``protocol.py``)."""

    arch: str
    space: str = "nb201"
    dataset: str = "cifar10"
    data: str | None = None
    cache_dir: str | None = None
    subset: int | None = None
    epochs: int = 200
    batch_size: int = 256
    lr: float = 0.1
    lr_min: float = 0.0
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "cosine-step"
    channels: int = 16
    cells: int = 5
    augment: bool = True
    cutout: int = 0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    aux_weight: float = 0.0
    drop_path: float = 0.0
    seed: int = 0
    out: str = "runs/train"
    device: str = "auto"
    amp: bool = False
    eval_every: int = 1
    preset: str | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        check_types(self)
        if self.subset is not None and self.subset < 2:
            raise ConfigError(f"subset must be at least 2 images, got {self.subset}")
        for name in ("epochs", "batch_size", "channels", "cells", "eval_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("lr", "lr_min", "momentum", "weight_decay", "cutout", "label_smoothing", "aux_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.drop_path < 1:
            raise ConfigError(f"drop_path must lie in [0, 1), got {self.drop_path}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            raise ConfigError(f"grad_clip must be positive (or None for no clipping), got {self.grad_clip}")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {self.schedule!r}; choose from {', '.join(SCHEDULES)}")

    @classmethod
    def resolve(cls, arch: str, space: str, preset: str | None = None, **explicit: Any) -> TrainConfig:
        """The space's protocol, then ``preset`` (if any), then the ``explicit`` values that are not None."""
        values: dict[str, Any] = protocol_for(space)
        if preset is not None:
            if preset not in PRESETS:
                raise ConfigError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
            values.update(PRESETS[preset])
        values.update({k: v for k, v in explicit.items() if v is not None})
        return cls.from_dict({**values, "arch": arch, "space": space, "preset": preset})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> TrainConfig:
        """Build from a mapping; unknown keys are an error."""
        check_known_keys(cls, values, "training option(s)")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def differences(self, other: TrainConfig) -> list[str]:
        """The fields (outside :data:`RESUME_FREE`) where ``other`` differs, as readable lines."""
        mine, theirs = self.to_dict(), other.to_dict()
        return [f"{k}: saved {mine[k]!r}, given {theirs[k]!r}"
                for k in mine if k not in RESUME_FREE and mine[k] != theirs[k]]
