"""Hardware-aware search: latency tables measured on the device (and, from them, latency models)."""

from .lut import FIT_SEED, LatencyTable, build, check, measure_network, random_archs
from .parts import LatencyError, all_parts, arch_parts

__all__ = ["FIT_SEED", "LatencyError", "LatencyTable", "all_parts", "arch_parts", "build", "check",
           "measure_network", "random_archs"]
