"""How one module is timed on the device, and what the device is (recorded in every latency table).

The protocol (the same for a table entry and for a whole network): ``torch.no_grad()``, the module
in ``eval()`` mode (BN with running statistics, as deployed), ``warmup`` calls, then ``repeats``
timed calls, each bracketed by a device synchronization; the figure is the median in milliseconds
(``statistic="min"``: the fastest call). ``clock="wall"`` (default) times with ``perf_counter``;
``clock="cpu"`` with the calling thread's CPU time (``thread_time``), which leaves out the time the
thread waits while other processes run: on a shared machine, with one torch thread, it estimates the
wall time of an unloaded run (not valid with several threads, whose work it would not count).
"""

from __future__ import annotations

import platform
import statistics
import time
from typing import Any

import torch
from torch import nn


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def median_ms(module: nn.Module, x: torch.Tensor, warmup: int, repeats: int, statistic: str = "median",
              clock: str = "wall") -> float:
    """Median (or ``min``) time of ``module(x)`` in ms over ``repeats`` calls after ``warmup`` calls."""
    timer = time.thread_time if clock == "cpu" else time.perf_counter
    module.eval()
    for _ in range(warmup):
        module(x)
    synchronize(x.device)
    times = []
    for _ in range(max(1, repeats)):
        t0 = timer()
        module(x)
        synchronize(x.device)
        times.append(timer() - t0)
    return (min(times) if statistic == "min" else statistics.median(times)) * 1000.0


STATISTICS = ("median", "min")
CLOCKS = ("wall", "cpu")


def cpuinfo_field(key: str) -> str | None:
    """The first ``key`` line of ``/proc/cpuinfo`` (e.g. ``model name``, ``vendor_id``); None where absent."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(key):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def processor_name() -> str:
    """The CPU model (``/proc/cpuinfo``'s ``model name`` on Linux, else :func:`platform.processor`)."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine() or "unknown"


def device_record(device: torch.device, threads: int) -> dict[str, Any]:
    """What a table is valid for: device kind and model, torch version, intra-op threads."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else processor_name()
    return {"kind": device.type, "name": name, "processor": processor_name(), "torch": torch.__version__,
            "threads": int(threads)}


def resolve_threads(threads: int) -> int:
    """Set torch's intra-op threads (0: leave torch's default) and return the number in use."""
    if threads > 0:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


__all__ = ["CLOCKS", "STATISTICS", "median_ms", "device_record", "processor_name", "resolve_threads", "synchronize"]
