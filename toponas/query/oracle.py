"""Oracles answer a query: the accuracy (percent) of one cell, from a table, a training run or a supernet.

``benchmark`` reads the NAS-Bench-201 table (free, the standard way query counts are compared);
``train`` trains the cell from scratch with ``toponas train``'s CPU preset (the real, expensive path;
its figure is not comparable with the table's 200-epoch accuracy); ``supernet`` scores the cell with
the one-shot weights of a finished ``toponas search`` run (only the cell's candidates run).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from ..benchmark import BenchmarkError, BenchmarkTable
from ..config import ConfigError
from ..spaces import NB201_OPS
from .encoding import Arch, CellEncoding


class Oracle:
    """Answers ``accuracy(arch)`` in percent; ``identity`` is what a resumed run must share."""

    name: ClassVar[str]

    def accuracy(self, arch: Arch, index: int) -> float:
        """Accuracy of the cell ``arch``, the ``index``-th query of the run (1-based)."""
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        return {"oracle": self.name}


class BenchmarkOracle(Oracle):
    """Look-ups in a NAS-Bench-201 table (``--benchmark CSV``), column ``dataset``."""

    name = "benchmark"

    def __init__(self, encoding: CellEncoding, table: BenchmarkTable | None, dataset: str) -> None:
        if table is None:
            raise ConfigError("--oracle benchmark needs a benchmark table: pass --benchmark CSV or set "
                              "TOPONAS_BENCHMARK")
        if tuple(encoding.op_names) != tuple(NB201_OPS):
            raise ConfigError(f"--oracle benchmark: the table holds NAS-Bench-201 cells ({', '.join(NB201_OPS)}); "
                              f"space {encoding.space.name!r} has other candidates "
                              f"({', '.join(encoding.op_names)}) and no table; use --oracle train or supernet")
        if dataset not in table.datasets:
            raise ConfigError(f"--oracle benchmark: dataset {dataset!r} is not a column of {table.path} "
                              f"(it has {', '.join(table.datasets)})")
        self.encoding, self.table, self.dataset = encoding, table, dataset

    def accuracy(self, arch: Arch, index: int) -> float:
        try:
            return self.table.lookup(self.encoding.to_str(arch))[self.dataset]
        except BenchmarkError as e:
            raise ConfigError(f"--oracle benchmark: {e}") from None

    def identity(self) -> dict[str, Any]:
        return {"oracle": self.name, "dataset": self.dataset}


class TrainOracle(Oracle):
    """Trains each queried cell from scratch (``toponas train --preset cpu`` plus ``options``).

    Each query trains in ``OUT/trained/qNNNN``; a query killed mid-training resumes from there.
    """

    name = "train"

    def __init__(self, encoding: CellEncoding, out: Path, dataset: str, data: str | None = None,
                 cache_dir: str | None = None, device: str = "auto", seed: int = 0,
                 options: Mapping[str, Any] | None = None, log=print) -> None:
        from ..training import TrainConfig

        self.encoding, self.out, self.log = encoding, Path(out), log
        self.common = {"dataset": dataset, "data": data, "cache_dir": cache_dir, "device": device, "seed": seed,
                       **dict(options or {})}
        # Resolve once so a bad option fails before the first query.
        self.template = TrainConfig.resolve(encoding.to_str((0,) * encoding.num_edges), encoding.space.name,
                                            preset="cpu", **self.common)

    def accuracy(self, arch: Arch, index: int) -> float:
        from ..training import TrainConfig, train

        out = self.out / "trained" / f"q{index:04d}"
        cfg = TrainConfig.resolve(self.encoding.to_str(arch), self.encoding.space.name, preset="cpu",
                                  **{**self.common, "out": str(out)})
        result = train(cfg, resume=(out / "checkpoint.pt").exists(), progress=False, log=lambda m: None)
        acc = 100.0 * float(result["test_accuracy"])
        self.log(f"query {index}: trained {self.encoding.to_str(arch)} for {cfg.epochs} epochs: {acc:.2f}%")
        return acc

    def identity(self) -> dict[str, Any]:
        keep = ("dataset", "subset", "epochs", "batch_size", "channels", "cells", "seed", "lr")
        return {"oracle": self.name, **{k: getattr(self.template, k) for k in keep}}


class SupernetOracle(Oracle):
    """Accuracy of the cell on the architecture half of a search run's data, with its one-shot weights.

    The supernet of ``RUN`` (its ``config.json`` and checkpoint) is rebuilt, simplified as it was
    searched, and run with the one-hot mixing of the cell, so only the cell's candidates run. Batch
    normalization uses batch statistics, as during the search (the supernet keeps no cell's running
    statistics).
    """

    name = "supernet"

    def __init__(self, encoding: CellEncoding, run: str | None, data: str | None = None,
                 cache_dir: str | None = None, device: str = "auto", images: int = 1000,
                 batch_size: int = 250) -> None:
        import torch

        from .. import topo
        from ..config import SearchConfig
        from ..data import load_dataset, search_split
        from ..data.batches import _eval_steps
        from ..loop.checkpoint import CHECKPOINT, load_checkpoint
        from ..loop.search import resized, resolve_device
        from ..strategies import create_strategy

        if not run:
            raise ConfigError("--oracle supernet needs --supernet RUN (the directory of a finished toponas search)")
        run_dir = Path(run)
        if not (run_dir / "config.json").is_file() or not (run_dir / CHECKPOINT).is_file():
            raise ConfigError(f"--supernet {run_dir}: not a search run (expected config.json and {CHECKPOINT})")
        cfg = SearchConfig.load(run_dir)
        if cfg.space != encoding.space.name:
            raise ConfigError(f"--supernet {run_dir} searched space {cfg.space!r}, not {encoding.space.name!r}")
        try:
            state = load_checkpoint(run_dir / CHECKPOINT)
        except RuntimeError as e:
            raise ConfigError(str(e)) from None
        self.device = resolve_device(device)
        ds = load_dataset(cfg.dataset, data or cfg.data, cache_dir=cache_dir or cfg.cache_dir, progress=False)
        if cfg.image_size and cfg.image_size != ds.image_size:
            ds = resized(ds, cfg.image_size)
        _, a_idx = search_split(ds, cfg.subset, cfg.seed)
        a_idx = a_idx[:images]
        space = encoding.space
        model = space.build_supernet(cfg.channels, cfg.cells or space.default_cells, ds.num_classes)
        strategy = create_strategy(cfg.strategy, space, cfg.hyper)
        model = strategy.prepare_supernet(model, state["epoch"])
        model = topo.simplify(model, cfg.topo, disable=cfg.topo_disable).to(self.device)
        model.load_state_dict(state["model"])
        self.model = model.train()  # batch statistics: see the class docstring
        self.batches = list(_eval_steps(ds.train_x[a_idx], ds.train_y[a_idx], ds.mean, ds.std, batch_size,
                                        self.device))
        self.encoding, self.run, self.images, self.torch = encoding, str(run_dir), len(a_idx), torch

    def accuracy(self, arch: Arch, index: int) -> float:
        from ..spaces import Mixing

        torch, enc = self.torch, self.encoding
        weights = enc.one_hot([arch]).reshape(enc.num_edges, enc.num_ops).to(self.device)
        group = enc.space.group
        mixing = Mixing({group: weights}, active={group: [[op] for op in arch]})
        correct = 0
        with torch.no_grad():
            for x, y in self.batches:
                correct += int((self.model(x, mixing).argmax(-1) == y).sum())
        acc = 100.0 * correct / self.images
        if not math.isfinite(acc):
            raise ConfigError(f"--oracle supernet: no images to evaluate in {self.run}")
        return acc

    def identity(self) -> dict[str, Any]:
        return {"oracle": self.name, "images": self.images}


ORACLES = ("benchmark", "train", "supernet")
