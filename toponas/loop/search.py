"""The search loop: alternating weight and architecture steps, checkpoints, resume, results.

It knows no strategy and no space in detail: a strategy takes a step and derives the architecture,
a space builds the supernet, ``toponas.topo.simplify`` (when asked) rewrites it.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.nn import functional as F
from tqdm import tqdm

from .. import separation, topo
from ..benchmark import BenchmarkError, resolve_benchmark
from ..config import ConfigError, SearchConfig
from ..data import ImageDataset, PairedBatches, load_dataset, search_split
from ..spaces import CellError, create_space
from ..strategies import STRATEGIES, create_strategy
from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint, sigint_sets, write_json
from .result import SearchResult

# Fields that may differ between a run and its resumption (where data lives, which device).
RESUME_FREE = ("data", "cache_dir", "device", "benchmark", "out", "decided_margin")


class SearchDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class SearchInterrupted(RuntimeError):
    """The run was stopped (Ctrl-C); its state is saved and ``--resume`` continues it."""


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ConfigError(f"unknown device {name!r}: {e}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; use --device cpu")
    return device


def cosine_lr(base: float, minimum: float, epoch: int, epochs: int) -> float:
    """Per-epoch cosine annealing from ``base`` to ``minimum`` (the reference schedule)."""
    return minimum + (base - minimum) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def step_seed(seed: int, epoch: int, step: int) -> int:
    """The RNG seed of one step, so a resumed run draws the same samples as an uninterrupted one."""
    return (seed * 1_000_003 + epoch * 10_007 + step) % (2**63)


def resized(ds: ImageDataset, size: int) -> ImageDataset:
    """The dataset with every image resized to ``size`` x ``size`` (antialiased; cheaper searches)."""

    def resize(x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return out.round().clamp(0, 255).to(torch.uint8)

    return dataclasses.replace(ds, train_x=resize(ds.train_x), test_x=resize(ds.test_x))


class Search:
    """One search run in ``config.out``: set up, run epochs, write ``result.json``."""

    def __init__(
        self,
        config: SearchConfig,
        resume: bool = False,
        progress: bool = True,
        log: Callable[[str], None] = print,
        interrupt_after: int | None = None,
    ) -> None:
        self.config = config
        self.resume = resume
        self.progress = progress
        self.log = log
        self.interrupt_after = interrupt_after  # simulate Ctrl-C after this many steps (tests)
        self.out = Path(config.out)
        self._stop = False

    # -- set-up --------------------------------------------------------------------------------
    def _check_out_dir(self) -> dict | None:
        ckpt_path = self.out / CHECKPOINT
        if not self.resume:
            if ckpt_path.exists() or (self.out / "result.json").exists():
                raise ConfigError(
                    f"{self.out} already holds a run; pass --resume to continue it or choose another --out"
                )
            return None
        if not ckpt_path.exists():
            self.log(f"no checkpoint in {self.out}; starting a new run")
            return None
        state = load_checkpoint(ckpt_path)
        saved = SearchConfig.from_dict(state["config"])
        diffs = [
            f"{k}: saved {getattr(saved, k)!r}, given {getattr(self.config, k)!r}"
            for k in saved.to_dict()
            if k not in RESUME_FREE and getattr(saved, k) != getattr(self.config, k)
        ]
        if diffs:
            raise ConfigError("cannot resume with a different configuration: " + "; ".join(diffs))
        return state

    def setup(self) -> None:
        cfg = self.config
        if cfg.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {cfg.strategy!r}; known: {', '.join(STRATEGIES.names())}")
        if cfg.topo not in topo.MODES:
            raise ConfigError(f"unknown --topo {cfg.topo!r}; choose from {', '.join(topo.MODES)}")
        state = self._check_out_dir()
        self.device = resolve_device(cfg.device)
        self.benchmark = resolve_benchmark(cfg.benchmark)
        self.space = create_space(cfg.space)
        try:
            self.strategy = create_strategy(cfg.strategy, self.space, cfg.hyper)
        except (ValueError, NotImplementedError) as e:  # bad hyperparameters, or not for this space
            raise ConfigError(str(e)) from None
        self.hyper = self.strategy.hyper

        self.ds = load_dataset(cfg.dataset, cfg.data, cache_dir=cfg.cache_dir, progress=self.progress)
        if cfg.image_size and cfg.image_size != self.ds.image_size:
            self.ds = resized(self.ds, cfg.image_size)
        w_idx, a_idx = search_split(self.ds, cfg.subset, cfg.seed)
        self.batches = PairedBatches(self.ds, w_idx, a_idx, cfg.batch_size, cfg.seed, self.device)

        torch.manual_seed(cfg.seed)
        model = self.space.build_supernet(cfg.channels, cfg.cells or self.space.default_cells,
                                          self.ds.num_classes)
        self.strategy = create_strategy(cfg.strategy, self.space, self.hyper)  # alphas from the seed
        model = self.strategy.prepare_supernet(model, state["epoch"] if state is not None else 0)
        self.model = self._simplify(model)
        self.strategy.to(self.device)
        self.ctx = self.strategy.make_context(self.model)
        w_opt, a_opt = self.ctx.w_optimizer, self.ctx.a_optimizer
        h = self.hyper

        self.epoch, self.step, self.history, self.step_ms, self.seconds = 0, 0, [], [], 0.0
        self.partial = None
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.strategy.load_state_dict(state["strategy"])
            w_opt.load_state_dict(state["w_optimizer"])
            a_opt.load_state_dict(state["a_optimizer"])
            self.epoch, self.step = state["epoch"], state["step"]
            self.history, self.step_ms = state["history"], state["step_ms"]
            self.seconds, self.partial = state["seconds"], state.get("partial")
            self.log(f"resuming {self.out} at epoch {self.epoch + 1}, step {self.step}")
        self.out.mkdir(parents=True, exist_ok=True)
        resolved = cfg.to_dict()
        resolved["resolved_hyper"] = vars(h)
        write_json(self.out / "config.json", resolved)

    def _simplify(self, module: torch.nn.Module) -> torch.nn.Module:
        """The run's ``--topo`` rewrite of a plain module, on the run's device, in training mode."""
        cfg = self.config
        return topo.simplify(module, cfg.topo, disable=cfg.topo_disable).to(self.device).train()

    # -- checkpoint ----------------------------------------------------------------------------
    def _save(self, epoch: int, step: int, partial: dict | None) -> None:
        save_checkpoint(self.out / CHECKPOINT, {
            "config": self.config.to_dict(),
            "epoch": epoch,
            "step": step,
            "model": self.model.state_dict(),
            "strategy": self.strategy.state_dict(),
            "w_optimizer": self.ctx.w_optimizer.state_dict(),
            "a_optimizer": self.ctx.a_optimizer.state_dict(),
            "history": self.history,
            "step_ms": self.step_ms,
            "seconds": self.seconds,
            "partial": partial,
        })

    # -- run -----------------------------------------------------------------------------------
    def run(self) -> SearchResult:
        """Run (or continue) the search and write ``result.json``; returns the result."""
        self.setup()
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        with sigint_sets(lambda: setattr(self, "_stop", True), lambda: self._stop):
            for epoch in range(self.epoch, self.hyper.epochs):
                self._run_epoch(epoch)
        return self._finish()

    def _run_epoch(self, epoch: int) -> None:
        h, cfg = self.hyper, self.config
        self.strategy.new_epoch(epoch, h.epochs)
        lr = cosine_lr(h.w_lr, h.w_lr_min, epoch, h.epochs)
        for group in self.ctx.w_optimizer.param_groups:
            group["lr"] = lr
        self.ctx.epoch = epoch
        start = self.step if epoch == self.epoch else 0
        sums = self.partial if (self.partial and start > 0) else {
            "w_loss": 0.0, "w_correct": 0, "a_loss": 0.0, "a_correct": 0, "n": 0, "seconds": 0.0}
        bar = tqdm(total=len(self.batches), initial=start, desc=f"epoch {epoch + 1}/{h.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True)
        cuda = self.device.type == "cuda"
        for step, (x_w, y_w, x_a, y_a) in enumerate(self.batches.epoch(epoch, start), start=start):
            torch.manual_seed(step_seed(cfg.seed, epoch, step))
            t0 = time.perf_counter()
            stats = self.strategy.step(self.ctx, x_w, y_w, x_a, y_a)
            w_loss, a_loss = stats.w_loss.item(), stats.a_loss.item()  # also synchronizes the device
            if cuda:
                torch.cuda.synchronize(self.device)
            dt = time.perf_counter() - t0
            if not (math.isfinite(w_loss) and math.isfinite(a_loss)):
                bar.close()
                raise SearchDiverged(
                    f"the loss became {'weight' if not math.isfinite(w_loss) else 'architecture'} "
                    f"loss = {w_loss if not math.isfinite(w_loss) else a_loss} at epoch {epoch + 1}, "
                    f"step {step + 1}; the last good checkpoint in {self.out} is kept. Lower the "
                    "learning rates (--hp w_lr=... / --hp a_lr=...) or check the data."
                )
            self.step_ms.append(dt * 1000)
            self.seconds += dt
            n = stats.batch
            sums["w_loss"] += w_loss * n
            sums["a_loss"] += a_loss * n
            sums["w_correct"] += int(stats.w_correct)
            sums["a_correct"] += int(stats.a_correct)
            sums["n"] += n
            sums["seconds"] += dt
            bar.update(1)
            bar.set_postfix(loss=f"{w_loss:.3f}", acc=f"{sums['w_correct'] / sums['n']:.3f}",
                            arch_loss=f"{a_loss:.3f}")
            if self.interrupt_after is not None:
                self.interrupt_after -= 1
                self._stop = self._stop or self.interrupt_after <= 0
            if self._stop and step + 1 < len(self.batches):
                bar.close()
                self._save(epoch, step + 1, sums)
                raise SearchInterrupted(
                    f"stopped at epoch {epoch + 1}, step {step + 1}; state saved in {self.out}. "
                    "Continue with the same command and --resume."
                )
        bar.close()
        self._end_epoch(epoch, lr, sums)
        if self._stop and epoch + 1 < self.hyper.epochs:
            raise SearchInterrupted(
                f"stopped after epoch {epoch + 1}; state saved in {self.out}. "
                "Continue with the same command and --resume."
            )

    def _end_epoch(self, epoch: int, lr: float, sums: dict) -> None:
        cell = self.strategy.derive()
        n = max(sums["n"], 1)
        probabilities = self.strategy.probabilities()
        previous = self.history[-1]["genotype"] if self.history else None
        record = {
            "epoch": epoch + 1,
            "lr": lr,
            "w_loss": sums["w_loss"] / n,
            "w_acc": sums["w_correct"] / n,
            "a_loss": sums["a_loss"] / n,
            "a_acc": sums["a_correct"] / n,
            "seconds": sums["seconds"],
            "genotype": str(cell),
            "probabilities": {g: p.cpu().tolist() for g, p in probabilities.items()},
            **separation.epoch_record(probabilities, str(cell), previous),
            **self.strategy.epoch_summary(),
        }
        bench = self._lookup(cell)
        if bench is not None:
            record["benchmark"] = bench
        self.history.append(record)
        line = (f"epoch {epoch + 1}/{self.hyper.epochs}  loss {record['w_loss']:.3f}  "
                f"acc {record['w_acc']:.3f}  arch-loss {record['a_loss']:.3f}  "
                f"arch-acc {record['a_acc']:.3f}  margin {record['median_margin']:.3f}  "
                f"{record['seconds']:.1f}s  cell {cell}")
        if bench:
            line += "  " + "  ".join(f"{k} {v:.2f}" for k, v in bench.items())
        self.log(line)
        self.strategy.after_epoch(self.ctx, epoch, self._simplify)  # may change the supernet
        self.model = self.ctx.model
        self._save(epoch + 1, 0, None)

    def _lookup(self, cell) -> dict | None:
        if self.benchmark is None:
            return None
        try:
            return self.benchmark.lookup(cell)
        except (BenchmarkError, CellError) as e:  # a cell of another space is not in the table
            self.log(f"benchmark: {e}")
            return None

    def _finish(self) -> SearchResult:
        cfg = self.config
        cell = self.strategy.derive()
        if self.device.type == "cuda":
            peak, kind = torch.cuda.max_memory_allocated(self.device), "cuda_max_memory_allocated"
        else:
            scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
            peak, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale, "cpu_max_rss"
        edge_keys = self.space.edge_keys
        alphas = {
            g: {edge_keys[g][e]: dict(zip(self.space.op_names, row))
                for e, row in enumerate(a.detach().cpu().tolist())}
            for g, a in self.strategy.alphas.items()
        }
        decision = separation.verdict(self.history, threshold=cfg.decided_margin)
        if not decision.decided:
            self.log(f"warning: not decided: {decision.reason}")
        connected = not separation.disconnected(cell)
        if not connected:
            self.log("warning: the derived cell has no path from input to output (every path passes through "
                     "'none'): it outputs a constant and scores chance. The argmax over all candidates, none "
                     "included, is the NAS-Bench-201 protocol and stays the default.")
        result = SearchResult(
            genotype=str(cell),
            space=cfg.space,
            strategy=cfg.strategy,
            dataset=cfg.dataset,
            seed=cfg.seed,
            epochs=self.hyper.epochs,
            topo=cfg.topo,
            search_seconds=self.seconds,
            ms_per_step=statistics.median(self.step_ms) if self.step_ms else float("nan"),
            steps=len(self.step_ms),
            peak_memory_bytes=int(peak),
            peak_memory_kind=kind,
            device=str(self.device),
            alphas=alphas,
            history=self.history,
            benchmark=self._lookup(cell),
            out_dir=str(self.out),
            decided=decision.decided,
            decided_reason=decision.reason,
            cell_connected=connected,
            extras=self.strategy.result_extras(),
        )
        write_json(self.out / "result.json", result.to_dict())
        return result


def search(config: SearchConfig | None = None, *, resume: bool = False, progress: bool = False,
           log: Callable[[str], None] = print, **overrides) -> SearchResult:
    """Run a search from Python: ``toponas.search(strategy="gdas", dataset="digits", epochs=2)``.

    Keyword arguments override fields of ``config`` (the defaults when ``None``); keywords that are
    not config fields (``epochs``, ``w_lr``, ``tau_max`` ...) override the strategy's hyperparameters.
    """
    config = config or SearchConfig()
    fields = set(config.to_dict())
    hyper = {**config.hyper, **{k: v for k, v in overrides.items() if k not in fields}}
    config = config.replace(**{k: v for k, v in overrides.items() if k in fields}, hyper=hyper)
    return Search(config, resume=resume, progress=progress, log=log).run()
