"""What every run (search, training) shares: files, checkpoints, device, seeds, signals, and the run loop.

Nothing here knows a strategy, a space or the simplifier; ``toponas.loop`` (search) and
``toponas.training`` (retraining) build on it.
"""

from .checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from .device import peak_memory, resolve_device
from .files import OutputError, atomic_write_bytes, check_writable, write_json
from .seeding import step_seed
from .signals import Interrupted, StopSignals

__all__ = ["CHECKPOINT", "CheckpointError", "Interrupted", "OutputError", "StopSignals", "atomic_write_bytes",
           "check_writable", "load_checkpoint", "peak_memory", "resolve_device", "save_checkpoint", "step_seed",
           "write_json"]
