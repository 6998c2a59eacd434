"""Keep glibc from handing large freed blocks back to the system after every training step.

A training step allocates and frees the same large activation tensors (megabytes each) every time.
glibc's default ``malloc`` serves blocks above its mmap threshold by ``mmap`` and unmaps them on
``free``, and trims the top of the heap whenever more than ``M_TRIM_THRESHOLD`` is free: the next step
faults all those pages in again (hundreds of thousands of minor page faults and seconds of system
time per step on a plain supernet). :func:`configure_allocator` sets, once per process, the mmap
threshold to its largest value (32 MiB on 64-bit glibc), serves every block from the reusable heap
(``mallopt(M_MMAP_MAX, 0)``: tensors above 32 MiB, e.g. a stacked 432-channel activation at batch 64,
would otherwise still be mapped and unmapped on every step) and switches automatic trimming off
(``mallopt(M_TRIM_THRESHOLD, -1)``), the same as ``MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_MMAP_MAX_=0
MALLOC_TRIM_THRESHOLD_=<huge>`` in the environment. (glibc still maps memory when the heap cannot grow.)

It runs when the command line starts and when the search, training or profiling code is imported.
Freed memory then stays in the process for reuse (the resident size does not shrink between steps;
an explicit ``malloc_trim`` still returns it, and the settings outlive it). Opt out with
``TOPONAS_MALLOPT=0``; a setting the user made through ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_MMAP_MAX_``,
``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` is left alone. On a C library other than glibc
nothing is done.
"""

from __future__ import annotations

import ctypes
import os
import sys
from dataclasses import dataclass

#: ``mallopt`` parameter numbers (glibc ``malloc.h``).
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
#: The largest mmap threshold glibc accepts on 64-bit (``HEAP_MAX_SIZE / 2``).
MMAP_THRESHOLD = 32 * 2**20
#: ``M_TRIM_THRESHOLD`` of -1: never trim the heap top on ``free`` (documented in ``mallopt(3)``).
NO_TRIM = -1
OPT_OUT = "TOPONAS_MALLOPT"


@dataclass(frozen=True)
class AllocatorState:
    """What :func:`configure_allocator` did: ``applied`` names the settings it made (empty when none),
    ``reason`` says why not where it made none."""

    applied: tuple[str, ...]
    reason: str = ""


_state: AllocatorState | None = None


def _user_set(name: str, tunable: str) -> bool:
    return name in os.environ or tunable in os.environ.get("GLIBC_TUNABLES", "")


def _glibc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library this process runs on
        libc.gnu_get_libc_version  # noqa: B018  (only glibc has it)
        libc.mallopt  # noqa: B018
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def configure_allocator(force: bool = False) -> AllocatorState:
    """Apply the settings once per process (again with ``force``) and return what was done."""
    global _state
    if _state is not None and not force:
        return _state
    if os.environ.get(OPT_OUT, "1").strip().lower() in ("0", "off", "no", "false"):
        _state = AllocatorState((), f"{OPT_OUT}={os.environ[OPT_OUT]}")
        return _state
    libc = _glibc()
    if libc is None:
        _state = AllocatorState((), "not glibc")
        return _state
    applied = []
    for param, value, env, tunable, label in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold",
         f"M_MMAP_THRESHOLD={MMAP_THRESHOLD}"),
        (M_MMAP_MAX, 0, "MALLOC_MMAP_MAX_", "glibc.malloc.mmap_max", "M_MMAP_MAX=0"),
        (M_TRIM_THRESHOLD, NO_TRIM, "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold",
         "M_TRIM_THRESHOLD=-1"),
    ):
        if _user_set(env, tunable):
            continue
        if libc.mallopt(param, value) == 1:  # 1 on success
            applied.append(label)
    _state = AllocatorState(tuple(applied), "" if applied else "set by the user's environment or refused")
    return _state


def allocator_state() -> AllocatorState | None:
    """What the last :func:`configure_allocator` did (None before it ran)."""
    return _state


def minor_faults() -> int:
    """Minor page faults of this process so far (all threads; 0 where ``resource`` is missing)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
