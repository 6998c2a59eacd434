"""The result of a search, as written to ``RUN/result.json``."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class SearchResult:
    """What a search found and what it cost."""

    genotype: str
    space: str
    strategy: str
    dataset: str
    seed: int
    epochs: int
    topo: str
    search_seconds: float
    ms_per_step: float | None
    steps: int
    peak_memory_bytes: int
    peak_memory_kind: str
    device: str
    alphas: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    benchmark: dict[str, float] | None = None
    out_dir: str | None = None
    decided: bool | None = None  # did the architecture parameters separate (toponas.separation)
    decided_reason: str | None = None  # why not, when ``decided`` is false
    cell_connected: bool | None = None  # False: the derived cell has no path from input to output
    extras: dict[str, Any] = field(default_factory=dict)  # strategy-specific fields, written top-level

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {**data.pop("extras"), **data}

    @classmethod
    def load(cls, path: str | os.PathLike) -> SearchResult:
        """Read a ``result.json`` (or the run directory holding it)."""
        path = Path(path)
        if path.is_dir():
            path = path / "result.json"
        try:
            data = json.loads(path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            from ..config import ConfigError

            raise ConfigError(f"{path} cannot be read as a search result ({e})") from None
        if not isinstance(data, dict) or "genotype" not in data:
            from ..config import ConfigError

            raise ConfigError(f"{path} is not a search result.json")
        known = {f.name for f in dataclasses.fields(cls)}
        extras = {k: v for k, v in data.items() if k not in known}
        return cls(**{k: v for k, v in data.items() if k in known}, extras=extras)

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [
            f"cell       {self.genotype}",
            f"strategy   {self.strategy} on {self.space}/{self.dataset}, topo={self.topo}, seed {self.seed}",
            f"cost       {self.search_seconds:.1f} s, {self.ms_per_step or float('nan'):.1f} ms/step (median), "
            f"peak memory {self.peak_memory_bytes / 2**20:.0f} MiB ({self.peak_memory_kind})",
        ]
        if self.decided is False:
            lines.append(f"NOT DECIDED {self.decided_reason}")
        if self.cell_connected is False:
            lines.append("WARNING    the cell has no path from input to output (it scores chance)")
        if "psnr" in self.extras:
            lines.append(f"test       PSNR {self.extras['psnr']:.2f} dB, SSIM {self.extras['ssim']:.4f} (the derived "
                         "network with the supernet's weights, on the test images)")
        if self.benchmark:
            lines.append("benchmark  " + ", ".join(f"{k} {v:.2f}" for k, v in self.benchmark.items()))
        return "\n".join(lines)
