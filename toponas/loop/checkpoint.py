"""Checkpoint and file helpers, now in :mod:`toponas.runtime` (shared by search and training); kept importable here."""

from ..runtime.checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from ..runtime.files import atomic_write_bytes, write_json

__all__ = ["CHECKPOINT", "CheckpointError", "atomic_write_bytes", "load_checkpoint", "save_checkpoint", "write_json"]
