"""The latency look-up table: measured on the user's device, saved as JSON, resumable, with a fitted overhead.

``build`` times every part of the space (:mod:`toponas.hardware.parts`) with the protocol of
:mod:`toponas.hardware.timing`, in ``rounds`` round-robin passes (an entry is the minimum over the
passes: a burst of load from other processes hits one pass, not every one), and writes the table
atomically every few entries, so a killed build keeps what it measured (from the first pass on) and a
second call measures only the entries it lacks. Then it corrects the entries to their context: it
measures ``fit_networks`` random networks end to end (their own seed, recorded in the file with
their measurements) and fits the overhead and a scale and offset per stage (:mod:`toponas.hardware.fit`).
``predict(arch) = sum of the network's corrected entries + overhead``. ``check`` measures other
random networks (the fit networks are excluded) and reports the mean absolute percentage error.

File versions: 2 records the fit in ``overhead`` (``correction``, ``groups``, ``parts``) beside the
isolated ``entries``; a version-1 file (the median overhead, no groups) loads and predicts as before.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..runtime.files import write_json
from .fit import CORRECTIONS, corrected, fit_correction
from .parts import LatencyError, all_parts, arch_parts, build_part, check_space
from .timing import device_record, median_ms, resolve_threads

FORMAT = "toponas-latency-table"
VERSION = 2
#: File versions this code reads (1: the median overhead only; 2: the entries' fit in ``overhead``).
READS = (1, 2)
#: Seed of the networks the overhead is fitted on (``check`` draws with its own seed and skips these).
FIT_SEED = 7919
#: Random networks the entries' correction is fitted on (seed ``FIT_SEED``), by default.
FIT_NETWORKS = 60
#: Fit networks a check measures again beside its own (the drift of the machine's speed since the build).
DRIFT_NETWORKS = 10
#: Header fields a resumed build and a user of the table must agree on.
HEADER = ("space", "image_size", "channels", "num_classes", "batch_size")


@dataclass
class LatencyTable:
    """A measured table: what it is for (space, input, device, protocol), its entries (ms) and overhead."""

    space: str
    image_size: int
    channels: int
    num_classes: int
    batch_size: int
    device: dict[str, Any]
    protocol: dict[str, Any]
    entries: dict[str, float] = field(default_factory=dict)
    # {"ms", "method", "correction", "groups", "parts", "seed", "networks": [{"arch", "sum_ms", "measured_ms"}]}
    overhead: dict[str, Any] | None = None

    # -- files ------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, **asdict(self)}

    def save(self, path: str | os.PathLike) -> None:
        write_json(Path(path), self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> LatencyTable:
        """Read a table; a missing, unreadable or malformed file is a :class:`LatencyError` naming it."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise LatencyError(f"latency table not found: {path}") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LatencyError(f"{path} is not a readable latency table ({e})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise LatencyError(f"{path} is not a latency table (made by `toponas latency build`)")
        if data.get("version", 1) not in READS:
            raise LatencyError(f"{path} is a latency table of format version {data.get('version')!r}; this "
                               f"toponas reads versions {', '.join(map(str, READS))} (build it again)")
        try:
            table = cls(**{k: v for k, v in data.items() if k not in ("format", "version")})
            table.validate()
        except (TypeError, ValueError) as e:
            raise LatencyError(f"{path} is a corrupt latency table ({e})") from None
        return table

    def validate(self) -> None:
        for name in ("image_size", "channels", "num_classes", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer")
        if not isinstance(self.entries, dict) or not isinstance(self.device, dict):
            raise ValueError("entries and device must be objects")
        for k, v in self.entries.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"entry {k!r} is not a latency in ms: {v!r}")
        if self.overhead is not None:
            ms = self.overhead.get("ms") if isinstance(self.overhead, dict) else None
            if not isinstance(ms, (int, float)) or not math.isfinite(ms):
                raise ValueError("overhead.ms is not a number")
            groups = self.overhead.get("groups", {})
            numbers = [v for g in groups.values() for v in (g.get("scale"), g.get("offset_ms"))]
            numbers += list(self.overhead.get("parts", {}).values())
            if not all(isinstance(v, (int, float)) and math.isfinite(v) for v in numbers):
                raise ValueError("overhead.groups or overhead.parts holds a value that is not a number")

    # -- what it was made for ---------------------------------------------------------------------
    def made_for(self) -> str:
        d = self.device
        return (f"space {self.space}, {self.image_size}x{self.image_size} images, C={self.channels}, "
                f"batch {self.batch_size}, {d.get('kind')} {d.get('name')!r} with {d.get('threads')} thread(s)")

    def check_space(self, space) -> None:
        check_space(space)
        if space.name != self.space:
            raise LatencyError(f"the latency table was made for the {self.space} space, not {space.name} "
                               f"({self.made_for()})")

    def check_image_size(self, size: int) -> None:
        if size != self.image_size:
            raise LatencyError(f"the latency table was made for {self.image_size}x{self.image_size} images, the data "
                               f"are {size}x{size}; pass --image-size {self.image_size} or build a table for "
                               f"--image-size {size}")

    def check_device(self, device: torch.device, threads: int | None = None) -> None:
        """Refuse to compare with measurements on another device (kind, model) or thread count."""
        here = device_record(device, torch.get_num_threads() if threads is None else threads)
        for k in ("kind", "name", "threads"):
            if here[k] != self.device.get(k):
                raise LatencyError(f"the latency table was made on {self.device.get('kind')} "
                                   f"{self.device.get('name')!r} with {self.device.get('threads')} thread(s), "
                                   f"this is {here['kind']} {here['name']!r} with {here['threads']} thread(s)")

    def missing(self, space) -> list[str]:
        """Keys of parts of ``space`` the table has no entry for."""
        return [p.key for p in all_parts(space, self.channels, self.image_size) if p.key not in self.entries]

    def check_complete(self, space, path: str = "the latency table") -> None:
        self.check_space(space)
        missing = self.missing(space)
        if missing:
            raise LatencyError(f"{path} has no entry for {missing[0]!r} ({len(missing)} missing); run "
                               f"`toponas latency build` with the same --out again to complete it")
        if self.overhead is None:
            raise LatencyError(f"{path} has no fitted overhead (its build stopped before the fit); run "
                               "`toponas latency build` with the same --out again")

    # -- prediction -------------------------------------------------------------------------------
    @property
    def statistic(self) -> str:
        return str(self.protocol.get("statistic", "median"))

    @property
    def rounds(self) -> int:
        """Passes over the fit networks (3 in a version-1 table): a network is measured the same way elsewhere."""
        return int((self.overhead or {}).get("rounds", 3))

    @property
    def overhead_ms(self) -> float:
        return 0.0 if self.overhead is None else float(self.overhead["ms"])

    @property
    def correction(self) -> str:
        """The fit of the entries to their context (``overhead`` alone for a version-1 table)."""
        return str((self.overhead or {}).get("correction", "overhead"))

    def entry_ms(self, key: str) -> float:
        """Part ``key``'s entry as its network runs it: the isolated entry corrected by the fit."""
        return corrected(self.entries[key], key, self.overhead)

    def sum_ms(self, space, arch, isolated: bool = False) -> float:
        """Sum of the (corrected; ``isolated``: as timed) entries of ``arch``'s parts; a missing one is named."""
        total = 0.0
        for key in arch_parts(space, arch, self.channels):
            if key not in self.entries:
                raise LatencyError(f"the latency table has no entry for {key!r}; run `toponas latency build` "
                                   "with the same --out again to complete it")
            total += self.entries[key] if isolated else self.entry_ms(key)
        return total

    def predict(self, space, arch) -> float:
        """Predicted latency of ``arch`` in ms: the sum of its corrected entries plus the fitted overhead."""
        return self.sum_ms(space, arch) + self.overhead_ms


def random_archs(space, n: int, seed: int, exclude: set[str] | frozenset = frozenset()) -> list[str]:
    """``n`` distinct random architecture strings (uniform per row), none of them in ``exclude``."""
    gen = torch.Generator().manual_seed(seed)
    out: list[str] = []
    seen = set(exclude)
    for _ in range(100 * n + 100):
        if len(out) == n:
            break
        pick = {g: torch.nn.functional.one_hot(torch.randint(0, k, (r,), generator=gen), k).float()
                for g, (r, k) in space.arch_shapes.items()}
        arch = str(space.derive(pick))
        if arch not in seen:
            seen.add(arch)
            out.append(arch)
    return out


def measure_network(space, arch, table: LatencyTable, device: torch.device) -> float:
    """End-to-end latency of ``arch``'s discrete network (retraining BN, eval mode), the table's protocol."""
    return measure_networks(space, [arch], table, device)[0]


def measure_networks(space, archs: list[str], table: LatencyTable, device: torch.device, rounds: int = 1,
                     progress: Callable[[], None] | None = None) -> list[float]:
    """End-to-end latencies of ``archs`` (ms): ``rounds`` round-robin passes over the networks, each pass
    timing every network with the table's protocol; a network's figure is the minimum over the passes
    (a burst of load from other processes then hits every network alike, and the quietest pass counts)."""
    torch.manual_seed(0)
    nets = [space.build_network(a, table.channels, num_classes=table.num_classes).to(device).eval() for a in archs]
    x = torch.randn(table.batch_size, 3, table.image_size, table.image_size, device=device)
    best = [math.inf] * len(nets)
    p = table.protocol
    for _ in range(max(1, rounds)):
        for i, net in enumerate(nets):
            best[i] = min(best[i], median_ms(net, x, p["warmup"], p["repeats"], table.statistic,
                                                 str(p.get("clock", "wall"))))
            if progress is not None:
                progress()
    return best


def measure_with_drift(space, archs: list[str], table: LatencyTable, device: torch.device, rounds: int,
                       drift_networks: int = DRIFT_NETWORKS, progress: Callable[[], None] | None = None
                       ) -> tuple[list[float], float | None, int]:
    """:func:`measure_networks` of ``archs`` with the table's first ``drift_networks`` fit networks in the same
    passes: ``archs``' latencies, the drift (the fit networks' median ratio of now to the build: how much
    slower the machine is now; None without fit networks) and how many fit networks it is of."""
    again = (table.overhead or {}).get("networks", [])[:drift_networks]
    measured = measure_networks(space, list(archs) + [n["arch"] for n in again], table, device, rounds, progress)
    now = measured[len(archs):]
    drift = statistics.median(m / n["measured_ms"] for m, n in zip(now, again)) if again else None
    return measured[:len(archs)], drift, len(again)


def _bar(total: int, desc: str, progress: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, disable=not progress, leave=False)


def build(space, out: str | os.PathLike, image_size: int, device: torch.device, batch_size: int = 1,
          threads: int = 1, channels: int = 16, num_classes: int = 10, warmup: int = 10, repeats: int = 30,
          fit_networks: int = FIT_NETWORKS, statistic: str = "median", rounds: int = 3, clock: str = "wall",
          progress: bool = False, log: Callable[[str], None] = print, save_every: float = 2.0,
          correction: str = "stages") -> LatencyTable:
    """Measure (or complete) the table in ``out`` and fit its entries' correction; see the module docstring.

    A complete table whose fit differs from ``correction`` or ``fit_networks`` is fitted again (its
    entries are kept)."""
    check_space(space)
    if correction not in CORRECTIONS:
        raise LatencyError(f"unknown correction {correction!r}; one of {', '.join(CORRECTIONS)}")
    threads = resolve_threads(threads)
    if clock == "cpu" and (threads != 1 or device.type != "cpu"):
        raise LatencyError("--clock cpu times the calling thread: it needs --device cpu --threads 1")
    fresh = LatencyTable(space.name, image_size, channels, num_classes, batch_size, device_record(device, threads),
                         {"warmup": warmup, "repeats": repeats, "statistic": statistic, "clock": clock,
                          "mode": "eval, no_grad"})
    out = Path(out)
    table = fresh
    if out.exists():
        table = LatencyTable.load(out)
        for name in HEADER:
            if getattr(table, name) != getattr(fresh, name):
                raise LatencyError(f"{out} holds a table for {table.made_for()}; it cannot be continued with "
                                   f"{name} {getattr(fresh, name)!r}; choose another --out")
        if table.protocol != fresh.protocol or any(table.device.get(k) != fresh.device[k]
                                                   for k in ("kind", "name", "threads")):
            raise LatencyError(f"{out} was measured with {table.made_for()}, protocol {table.protocol}; it cannot "
                               "be continued on another device, thread count or protocol; choose another --out")
        log(f"continuing {out}: {len(table.entries)} entries kept")
    parts = [p for p in all_parts(space, channels, image_size) if p.key not in table.entries]
    torch.manual_seed(0)
    last = time.monotonic()
    modules = {}
    with _bar(len(parts) * rounds, "latency table", progress) as bar:
        for r in range(rounds):  # round-robin passes; an entry is kept (saved) from its first pass on
            for i, part in enumerate(parts):
                if part.key not in modules:
                    modules[part.key] = (build_part(space, part, channels, num_classes).to(device).eval(),
                                         torch.randn(batch_size, part.channels, part.side, part.side, device=device))
                module, x = modules[part.key]
                ms = median_ms(module, x, warmup, repeats, statistic, clock)
                table.entries[part.key] = ms if r == 0 else min(ms, table.entries[part.key])
                bar.update(1)
                if not progress and (i + 1) % 100 == 0:
                    log(f"  pass {r + 1}/{rounds}: {i + 1}/{len(parts)} entries")
                if time.monotonic() - last > save_every:
                    table.save(out)
                    last = time.monotonic()
    fitted = table.overhead or {}
    if parts or table.correction != correction or len(fitted.get("networks", ())) != fit_networks:
        table.overhead = None
        table.save(out)
    if table.overhead is None:
        archs = random_archs(space, fit_networks, FIT_SEED)
        with _bar(len(archs) * rounds, "entries' fit", progress) as bar:
            measured = measure_networks(space, archs, table, device, rounds, lambda: bar.update(1))
        fit = fit_correction(table.entries, [arch_parts(space, a, channels) for a in archs], measured, correction)
        nets = [{"arch": a, "sum_ms": table.sum_ms(space, a, isolated=True), "measured_ms": m}
                for a, m in zip(archs, measured)]
        table.overhead = {**fit, "correction": correction, "seed": FIT_SEED, "rounds": rounds, "networks": nets}
        table.save(out)
    return table


def check(table: LatencyTable, space, networks: int, seed: int, device: torch.device, rounds: int | None = None,
          progress: bool = False, drift_networks: int = DRIFT_NETWORKS) -> dict[str, Any]:
    """Predicted vs measured latency of ``networks`` random networks (not the fit ones) and their MAPE (%).

    ``rounds``: passes over the networks (default: the table's, as its fit networks were measured). The
    first ``drift_networks`` fit networks are measured in the same passes: ``drift`` is their median
    ratio to their measurement at the build (how much slower the machine is now; it changes nothing)."""
    table.check_complete(space)
    rounds = table.rounds if rounds is None else rounds
    table.check_device(device, resolve_threads(int(table.device.get("threads", 0))))
    fitted = (table.overhead or {}).get("networks", [])
    fit = {n["arch"] for n in fitted}
    archs = random_archs(space, networks, seed, exclude=fit)
    with _bar((len(archs) + min(drift_networks, len(fitted))) * rounds, "latency check", progress) as bar:
        measured, drift, n_again = measure_with_drift(space, archs, table, device, rounds, drift_networks,
                                                      lambda: bar.update(1))
    rows = [{"arch": a, "predicted_ms": table.predict(space, a), "measured_ms": m} for a, m in zip(archs, measured)]
    errors = [abs(r["predicted_ms"] - r["measured_ms"]) / r["measured_ms"] for r in rows]
    return {"networks": rows, "mape": 100.0 * statistics.fmean(errors),
            "max_ape": 100.0 * max(errors), "within_5pct": sum(e <= 0.05 for e in errors) / len(errors),
            "within_10pct": sum(e <= 0.10 for e in errors) / len(errors), "seed": seed, "rounds": rounds,
            "overhead_ms": table.overhead_ms, "overhead_fit_networks": len(fit), "correction": table.correction,
            "drift": drift, "drift_networks": n_again,
            "table": table.made_for(),
            "device": table.device, "protocol": table.protocol}


__all__ = ["LatencyTable", "build", "check", "measure_network", "measure_networks", "random_archs", "FIT_SEED"]
