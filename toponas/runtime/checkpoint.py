"""Checkpoints: everything needed to continue a killed run exactly where it stopped, and nothing that runs code.

Checkpoints hold tensors and plain containers only and are read with ``torch.load(weights_only=True)``:
a shared run directory is data, so a crafted pickle is refused before anything in it executes.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from ..config import ConfigError
from .files import atomic_write_bytes

CHECKPOINT = "checkpoint.pt"


class CheckpointError(ConfigError):
    """A checkpoint that is missing, unreadable, truncated, foreign or holds code."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` (tensors and plain containers) atomically."""
    atomic_write_bytes(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` on the CPU (the loop moves it).

    Only tensors and plain containers are accepted (``weights_only=True``); anything else is a
    :class:`CheckpointError` (one readable line), never code that runs.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint file {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e).lower():
            raise CheckpointError(
                f"{path} holds objects other than tensors and plain data; refused (loading it could run code). "
                "Delete it or choose another run directory") from None
        raise CheckpointError(f"checkpoint {path} cannot be read ({_first_line(e)}); delete it to start afresh") \
            from None
    except Exception as e:  # a truncated or foreign file: zip errors, EOF, ...
        raise CheckpointError(f"checkpoint {path} cannot be read ({_first_line(e)}); delete it to start afresh") \
            from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a checkpoint written by toponas")
    return state


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__
