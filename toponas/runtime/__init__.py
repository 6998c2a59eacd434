"""What every run (search, training) shares: files, checkpoints, device, seeds, signals, and the run loop.

Nothing here knows a strategy, a space or the simplifier; ``toponas.loop`` (search) and
``toponas.training`` (retraining) build on it.
"""

from .allocator import AllocatorState, allocator_state, configure_allocator, minor_faults
from .checkpoint import CHECKPOINT, CheckpointError, load_checkpoint, save_checkpoint
from .device import peak_memory, resolve_device
from .files import OutputError, atomic_write_bytes, check_writable, write_json
from .seeding import step_seed
from .signals import Interrupted, StopSignals

configure_allocator()  # search and training import this package: no per-step page faults (allocator.py)

__all__ = ["CHECKPOINT", "AllocatorState", "CheckpointError", "Interrupted", "OutputError", "StopSignals",
           "allocator_state", "atomic_write_bytes", "check_writable", "configure_allocator", "load_checkpoint",
           "minor_faults", "peak_memory", "resolve_device", "save_checkpoint", "step_seed", "write_json"]
