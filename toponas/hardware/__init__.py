"""Hardware-aware search: latency tables measured on the device (and, from them, latency models)."""

from .lut import FIT_SEED, LatencyTable, build, check, measure_network, random_archs
from .parts import LatencyError, all_parts, arch_parts


def predict_latency(arch: str, lut: str) -> float:
    """Predicted latency (ms) of ``arch`` from the table in ``lut``: the sum of its (fitted) entries plus the overhead.

    ``toponas.hardware.predict_latency("s1:w1:k3e3|...", "LUT.json")``; a table that does not fit (another
    space, a missing entry, a corrupt file) raises :class:`LatencyError`.
    """
    from ..spaces import create_space

    table = LatencyTable.load(lut)
    space = create_space(table.space)
    table.check_complete(space, lut)
    return table.predict(space, space.parse(arch))


__all__ = ["FIT_SEED", "predict_latency", "LatencyError", "LatencyTable", "all_parts", "arch_parts", "build", "check",
           "measure_network", "random_archs"]
