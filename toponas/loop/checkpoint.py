"""Atomic checkpoints: everything needed to continue a killed search exactly where it stopped."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

CHECKPOINT = "checkpoint.pt"


def atomic_write_bytes(path: Path, write) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any) -> None:
    """Write JSON atomically (a reader never sees half a file)."""
    text = json.dumps(data, indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(Path(path), lambda f: f.write(text.encode()))


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    atomic_write_bytes(Path(path), lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint` (on the CPU; the loop moves it)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except FileNotFoundError:
        raise
    except Exception as e:  # a truncated or foreign file
        raise RuntimeError(f"checkpoint {path} cannot be read ({e}); delete it to start afresh") from e


@contextlib.contextmanager
def sigint_sets(flag: Callable[[], None], stopping: Callable[[], bool]) -> Iterator[None]:
    """First Ctrl-C calls ``flag`` (finish the step, save, stop); a second one stops at once."""
    def handler(signum, frame):
        if stopping():
            raise KeyboardInterrupt
        flag()
    try:
        old = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave signals alone
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)
