"""Which ``toponas train`` runs are restoration runs, and their configuration from the run and the flags."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..config import ConfigError
from .baselines import TASK_OF, is_baseline, parse_baseline
from .train import RestoreTrainConfig

#: ``toponas train`` options that a restoration run takes (the others are classification's).
RESTORE_OPTIONS = ("task", "sigma", "scale", "patch_size", "grey", "loss", "patches", "dataset", "data", "cache_dir",
                   "epochs", "batch_size", "lr", "channels", "seed", "out", "device")
#: ``toponas train --preset`` for restoration runs. ``cpu``: the CPU budget of docs/restoration.md, 40 epochs of
#: 32 steps (1,280 steps) of 16 patches of 48x48, Adam 1e-3 cosine, L2: about a minute per small network on one
#: core, enough for the SR baselines to leave bicubic (320 L1 steps were not). Flags win over it.
RESTORE_PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"epochs": 40, "patches": 512, "batch_size": 16, "patch_size": 48, "lr": 1e-3, "loss": "l2"},
}
#: Fields a restoration search's config.json passes on to its retraining (flags win).
FROM_SEARCH = ("task", "sigma", "scale", "patch_size", "grey", "loss", "dataset", "data", "cache_dir", "channels",
               "space")


def run_config(arch: str) -> dict[str, Any] | None:
    """The ``config.json`` of the search run ``arch`` names (a directory or its result.json), if it is one."""
    path = Path(arch).expanduser()
    try:
        folder = path if path.is_dir() else (path.parent if path.name == "result.json" and path.is_file() else None)
    except OSError:
        return None
    if folder is None or not (folder / "config.json").is_file():
        return None
    try:
        data = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def restoration_config(arch: str, space: str | None, flags: dict[str, Any],
                       preset: str | None = None) -> RestoreTrainConfig | None:
    """A :class:`RestoreTrainConfig` when ``arch`` is a restoration search run, a baseline, or ``--task`` is
    denoise/sr; ``None`` for classification. ``flags``: the options given on the command line (they win over
    ``preset``, a :data:`RESTORE_PRESETS` name, which wins over the search's own settings)."""
    saved = run_config(arch) or {}
    task = flags.get("task") or saved.get("task")
    if is_baseline(arch) and not task:
        task = TASK_OF[parse_baseline(arch)[0]]
    if task in (None, "classify"):
        return None
    if task not in ("denoise", "sr"):
        raise ConfigError(f"unknown task {task!r}; choose from classify, denoise, sr")
    values: dict[str, Any] = {k: saved[k] for k in FROM_SEARCH if k in saved}
    if saved and "grey" in flags and bool(flags["grey"]) != bool(saved.get("grey", False)):
        was = "grey" if saved.get("grey") else "colour"
        raise ConfigError(f"the run searched a {was} network; retrain it on {was} images "
                          f"({'pass --grey' if was == 'grey' else 'drop --grey'}), or search again")
    if saved and "task" in flags and flags["task"] != saved.get("task"):
        raise ConfigError(f"the run searched a --task {saved.get('task')} network, not {flags['task']}")
    if preset is not None:
        if preset not in RESTORE_PRESETS:
            raise ConfigError(f"unknown restoration preset {preset!r}; known: {', '.join(RESTORE_PRESETS)}")
        values.update(RESTORE_PRESETS[preset])
    values.update({k: v for k, v in flags.items() if k in RESTORE_OPTIONS})
    values["task"] = task
    genotype = arch
    if saved:
        result = Path(arch).expanduser()
        result = result / "result.json" if result.is_dir() else result
        try:
            genotype = json.loads(result.read_text())["genotype"]
        except (OSError, ValueError, KeyError):
            raise ConfigError(f"{arch} holds no finished search (result.json with a genotype)") from None
    values["space"] = space or values.get("space") or ("mod-nas" if task == "denoise" else "trilevel")
    if values.get("dataset") in (None, "cifar10") and "dataset" not in flags and not saved:
        values["dataset"] = "skimage"
    try:
        return RestoreTrainConfig(arch=genotype, source=str(arch), **values)
    except TypeError as e:
        raise ConfigError(str(e)) from None


__all__ = ["restoration_config", "RESTORE_OPTIONS", "RESTORE_PRESETS"]
