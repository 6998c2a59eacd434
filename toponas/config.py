"""The search configuration, in layers: defaults here, a saved ``config.json`` over them, flags last.

The resolved configuration (with the strategy's hyperparameters filled in) is written beside every
run, so ``toponas search --config RUN/config.json`` repeats a run from its directory alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .separation import DEFAULT_MARGIN


class ConfigError(ValueError):
    """An invalid configuration value or an unknown key (the message lists the known ones)."""


def check_known_keys(cls: type, values: Mapping[str, Any], what: str) -> None:
    """Reject keys that are not fields of the dataclass ``cls``, listing the known ones."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {what} {', '.join(unknown)}; known: {', '.join(sorted(known))}")


MAX_SEED = 2**63 - 1
_TYPES = {"int": (int,), "float": (int, float), "str": (str,), "bool": (bool,), "None": (type(None),),
          "dict": (dict,), "tuple": (tuple, list), "list": (list, tuple)}


def check_types(obj: Any) -> None:
    """Every field of the dataclass ``obj`` holds a value of its annotated type (a config file's values)."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        allowed: tuple[type, ...] = ()
        for part in str(f.type).split("|"):
            allowed += _TYPES.get(part.strip().split("[")[0], (object,))
        if isinstance(value, bool) and bool not in allowed:
            ok = False
        else:
            ok = isinstance(value, allowed)
        if not ok:
            raise ConfigError(f"{f.name} must be of type {f.type}, got {value!r}")
    seed = getattr(obj, "seed", 0)
    if not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"seed must lie in 0..2**63-1, got {seed}")


@dataclass
class SearchConfig:
    """Everything a search needs. ``hyper`` overrides the strategy's hyperparameter defaults."""

    space: str = "nb201"
    strategy: str = "darts-v1"
    dataset: str = "cifar10"
    data: str | None = None
    subset: int | None = None
    image_size: int | None = None
    batch_size: int = 64
    channels: int = 16
    cells: int | None = None  # cells per stage (NB201) or layers (DARTS); None: the space's default
    seed: int = 0
    seeds: list[int] | None = None  # many seeds in one pass (toponas.loop.seeds): one run per seed in out/seed-S
    out: str = "runs/search"
    benchmark: str | None = None
    topo: str = "full"  # meets its targets (docs/profile.md), so it is the default
    topo_disable: tuple[str, ...] = ()
    device: str = "auto"
    cache_dir: str | None = None
    hyper: dict[str, Any] = field(default_factory=dict)
    decided_margin: float = DEFAULT_MARGIN  # median edge margin below which a search is "not decided"
    # the task (toponas.loop.task): classify, or restoration (denoise, sr) with its degradation and patches
    task: str = "classify"
    sigma: float = 25.0  # denoise: noise standard deviation on the 0..255 scale
    scale: int = 2  # sr: the upscaling factor
    patch_size: int = 48  # restoration: side of the clean training patches
    grey: bool = False  # restoration: grey (1 channel) images and networks
    loss: str = "l2"  # restoration: l2 or l1 (docs/restoration.md: l1 stalls at short budgets)
    patches: int = 1024  # restoration: training patches per epoch (each of the weight and architecture halves)
    lut: str | None = None  # a latency table (`toponas latency build`): latency of the result, --latency-target
    latency_target: float | None = None  # ms on the LUT's device (docs/hardware.md)
    flops_target: float | None = None  # MFLOPs, for strategies without their own FLOPs hyperparameter

    def __post_init__(self) -> None:
        if isinstance(self.topo_disable, list):
            self.topo_disable = tuple(self.topo_disable)
        check_types(self)
        if not 0.0 <= self.decided_margin <= 1.0:
            raise ConfigError(f"decided_margin must be a number in [0, 1], got {self.decided_margin!r}")
        if self.subset is not None and self.subset < 2:
            raise ConfigError(f"subset must be at least 2 images, got {self.subset}")
        if self.image_size is not None and self.image_size < 4:
            raise ConfigError(f"image_size must be at least 4 pixels, got {self.image_size}")
        for name in ("latency_target", "flops_target"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be a positive number, got {getattr(self, name)}")
        for name in ("batch_size", "channels", "cells"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        self.topo_disable = tuple(self.topo_disable)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> SearchConfig:
        """Build from a mapping; unknown keys are an error."""
        check_known_keys(cls, values, "config key(s)")
        return cls(**values)

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchConfig:
        """Read a ``config.json`` written by an earlier run (or by hand)."""
        path = Path(path)
        if path.is_dir():
            path = path / "config.json"
        try:
            values = json.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConfigError(f"config file {path} is not valid JSON: {e}") from None
        except OSError as e:
            raise ConfigError(f"config file {path} cannot be read: {e.strerror}") from None
        if not isinstance(values, dict):
            raise ConfigError(f"config file {path} must hold a JSON object of options, got a {type(values).__name__}")
        values.pop("resolved_hyper", None)
        return cls.from_dict(values)

    def replace(self, **changes: Any) -> SearchConfig:
        """A copy with some fields changed (the command line over a config file)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["topo_disable"] = list(self.topo_disable)
        return d
