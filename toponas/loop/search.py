"""The search loop: alternating weight and architecture steps, checkpoints, resume, results.

It knows no strategy and no space in detail: a strategy (the hooks of
:class:`toponas.strategies.base.Strategy`, called in the order its docstring gives) takes a step, owns its
optimizers and schedules and derives the architecture, a space builds the supernet, ``toponas.topo.simplify``
(when asked) rewrites it. The epochs, steps, checkpoints, signals and NaN guard are the shared run loop's
(``toponas.runtime.loop``).
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from .. import separation, topo
from ..benchmark import BenchmarkError, resolve_benchmark
from ..config import ConfigError, SearchConfig
from ..data import ImageDataset
from ..hardware.budget import attach_budget, make_budget
from ..runtime import peak_memory, resolve_device, step_seed, write_json
from ..runtime.distributed import GradientAverage
from ..runtime.loop import Diverged, RunLoop
from ..runtime.provenance import provenance
from ..runtime.signals import Interrupted
from ..spaces import CellError, candidate_names, create_space
from ..strategies import STRATEGIES, create_strategy
from ..strategies.base import cosine_lr
from .result import SearchResult
from .task import create_task

__all__ = ["RESUME_FREE", "Search", "SearchDiverged", "SearchInterrupted", "cosine_lr", "resized",
           "resolve_device", "search", "step_seed", "validate_hyper"]

# Fields that may differ between a run and its resumption (where data lives, which device).
RESUME_FREE = ("data", "cache_dir", "device", "benchmark", "out", "decided_margin")


class SearchDiverged(Diverged):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


class SearchInterrupted(Interrupted):
    """The run was stopped (Ctrl-C, SIGTERM); its state is saved and ``--resume`` continues it."""


NONNEGATIVE = ("lr", "wd", "momentum", "beta", "clip", "tau")


def validate_hyper(hyper: Any) -> None:
    """The same checks for every route (``--hp``, a config file, the Python API): a ConfigError naming the key.

    Epochs must be a positive integer, every number finite, learning rates, weight decays, momenta,
    betas, clipping norms and temperatures not negative.
    """
    for f in dataclasses.fields(hyper):
        value = getattr(hyper, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise ConfigError(f"hyperparameter {f.name} must be a finite number, got {value}")
        if f.name == "epochs" and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"hyperparameter epochs must be a positive integer, got {value}")
        if any(part in f.name.split("_") or f.name.startswith(part) for part in NONNEGATIVE) and value < 0:
            raise ConfigError(f"hyperparameter {f.name} must not be negative, got {value}")


def resized(ds: ImageDataset, size: int) -> ImageDataset:
    """The dataset with every image resized to ``size`` x ``size`` (antialiased; cheaper searches)."""

    def resize(x: torch.Tensor) -> torch.Tensor:
        out = F.interpolate(x.float(), size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return out.round().clamp(0, 255).to(torch.uint8)

    return dataclasses.replace(ds, train_x=resize(ds.train_x), test_x=resize(ds.test_x))


class Search(RunLoop):
    """One search run in ``config.out``: set up, run epochs, write ``result.json``."""

    interrupted = SearchInterrupted
    diverged = SearchDiverged
    loss_names = {"w_loss": "weight loss", "a_loss": "architecture loss"}
    diverged_hint = "Lower the learning rates (--hp w_lr=... / --hp a_lr=...) or check the data."
    data_parallel = True  # torchrun spreads one search over its processes (toponas.runtime.distributed)

    def __init__(
        self,
        config: SearchConfig,
        resume: bool = False,
        progress: bool = True,
        log: Callable[[str], None] = print,
        interrupt_after: int | None = None,
        command: list[str] | None = None,
        tensorboard: bool = False,
        compile: bool = False,
    ) -> None:
        super().__init__(config.out, resume=resume, progress=progress, log=log, interrupt_after=interrupt_after,
                         tensorboard=tensorboard, compile=compile)
        self.config = config
        self.command = command
        self.extended_from: int | None = None
        self.batched_with: list[int] | None = None  # the seeds of a many-seed pass this run is one of
        cfg = config
        if cfg.seeds is not None:
            raise ConfigError("a configuration with seeds runs them all in one pass: toponas search --seeds, or "
                              "toponas.search(seeds=[...]) (toponas.loop.seeds.SeedsSearch)")
        if cfg.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {cfg.strategy!r}; known: {', '.join(STRATEGIES.names())}")
        if cfg.topo not in topo.MODES:
            raise ConfigError(f"unknown --topo {cfg.topo!r}; choose from {', '.join(topo.MODES)}")
        self.task = create_task(cfg)  # what the data, loss and result fields are (classify, denoise, sr)
        self.space = self.task.configure_space(create_space(cfg.space))
        try:
            self.strategy = create_strategy(cfg.strategy, self.space, cfg.hyper)
        except (ValueError, NotImplementedError, TypeError) as e:  # bad hyperparameters, or not for this space
            raise ConfigError(str(e)) from None
        self.hyper = self.strategy.hyper
        validate_hyper(self.hyper)
        self.world.check_batch(cfg.batch_size)
        if self.world.distributed and not type(self.strategy).data_parallel:
            raise ConfigError(f"{cfg.strategy} does not run over several processes (its state follows each "
                              "process's own losses or data, not only averaged gradients); run it in one process, "
                              "or spread many runs with toponas sweep")

    @property
    def epochs(self) -> int:
        return self.hyper.epochs

    @property
    def seed(self) -> int:
        return self.config.seed

    # -- set-up --------------------------------------------------------------------------------
    def check_saved(self, state: dict[str, Any]) -> None:
        if "strategy" not in state or ("optimizers" not in state and "a_optimizer" not in state):
            raise ConfigError(f"{self.out / 'checkpoint.pt'} is not a checkpoint of `toponas search`; "
                              "choose another --out")
        saved = SearchConfig.from_dict(state["config"])
        diffs = [
            f"{k}: saved {getattr(saved, k)!r}, given {getattr(self.config, k)!r}"
            for k in saved.to_dict()
            if k not in RESUME_FREE and k != "hyper" and getattr(saved, k) != getattr(self.config, k)
        ]
        saved_hp = {k: v for k, v in saved.hyper.items() if k != "epochs"}
        given_hp = {k: v for k, v in self.config.hyper.items() if k != "epochs"}
        if saved_hp != given_hp:
            diffs.append(f"hyper: saved {saved.hyper!r}, given {self.config.hyper!r}")
        if diffs:
            raise ConfigError("cannot resume with a different configuration: " + "; ".join(diffs))
        saved_epochs = int(saved.hyper.get("epochs", create_strategy(saved.strategy, self.space).hyper.epochs))
        done = int(state["epoch"])
        if self.epochs != saved_epochs:
            if self.epochs < done:
                raise ConfigError(f"cannot resume with --epochs {self.epochs}: the run has already done {done} "
                                  f"epochs (of {saved_epochs})")
            self.extended_from = saved_epochs
            self._print(f"extending the run from {saved_epochs} to {self.epochs} epochs (the learning-rate and "
                        "temperature schedules follow the new length from here on)")

    def finished_result(self) -> SearchResult:
        return SearchResult.load(self.out)

    def setup(self, state: dict[str, Any] | None) -> None:
        cfg = self.config
        self.device = self.world.device(resolve_device(cfg.device))
        self.world.init(self.device)
        self.benchmark = resolve_benchmark(cfg.benchmark)
        self._lookup_failed = False
        if self.benchmark is not None and cfg.dataset not in self.benchmark.datasets:
            if cfg.benchmark is not None:  # named on the command line: refuse a table of other data
                raise ConfigError(f"the benchmark table {self.benchmark.path} has no {cfg.dataset} column (it has "
                                  f"{', '.join(self.benchmark.datasets)}); drop --benchmark or pass the table of "
                                  f"{cfg.dataset}")
            self.log(f"benchmark: $TOPONAS_BENCHMARK has no {cfg.dataset} column; not looked up for this run")
            self.benchmark = None

        prepared = self.task.prepare(self)
        self.batches = prepared.batches
        torch.manual_seed(cfg.seed)
        model = self.space.build_supernet(cfg.channels, cfg.cells or self.space.default_cells, **prepared.build)
        self.strategy = create_strategy(cfg.strategy, self.space, self.hyper)  # alphas from the seed
        self.budget = make_budget(self.space, prepared.image_size or cfg.image_size, cfg.lut, cfg.latency_target,
                                  cfg.flops_target)
        attach_budget(self.strategy, self.budget)
        model = self.strategy.prepare_supernet(model, state["epoch"] if state is not None else 0)
        self.model = self.compiled(self._simplify(model))
        self.strategy.to(self.device)
        self.ctx = self.strategy.make_context(self.model)
        self.ctx.task = self.task.step_task
        self.averager = GradientAverage(self.world)

        if state is not None:
            try:
                self.model.load_state_dict(state["model"])
                self.strategy.load_state_dict(state["strategy"])
                self._load_optimizers(state)
            except (RuntimeError, KeyError, ValueError, TypeError) as e:
                raise ConfigError(f"{self.out / 'checkpoint.pt'} does not fit this search ({str(e).splitlines()[0]}); "
                                  "choose another --out") from None
            self.restore(state)
            self.log(f"resuming {self.out} at epoch {self.epoch + 1}, step {self.step}")
        else:
            self.log(self.header(prepared.describe))
        if self.world.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            resolved = cfg.to_dict()
            resolved["resolved_hyper"] = vars(self.hyper)
            write_json(self.out / "config.json", resolved, only_if_changed=True)

    def _load_optimizers(self, state: dict[str, Any]) -> None:
        """The saved state of every optimizer the strategy names (:meth:`Strategy.optimizers`).

        A checkpoint written before the strategy contract holds ``w_optimizer`` and ``a_optimizer`` at its top
        level (a strategy keeps anything else it had in its own state, see ``FPNAS.load_state_dict``)."""
        saved = state.get("optimizers")
        legacy = saved is None
        if legacy:
            saved = {"w_optimizer": state["w_optimizer"], "a_optimizer": state["a_optimizer"]}
        live = self.strategy.optimizers(self.ctx)
        unknown = sorted(set(saved) - set(live)) + ([] if legacy else sorted(set(live) - set(saved)))
        if unknown:
            raise KeyError(f"optimizers {', '.join(unknown)} are not in both the checkpoint and the strategy")
        for name, optimizer in live.items():
            if name in saved:
                optimizer.load_state_dict(saved[name])

    def header(self, data_line: str) -> str:
        """The first lines of a run's log: space, strategy, simplifier, data (the task's line), device, hyper."""
        cfg = self.config
        hp = ", ".join(f"{k}={v}" for k, v in vars(self.hyper).items())
        return "\n".join([
            f"search {cfg.strategy} on {cfg.space} (C={cfg.channels}, N={cfg.cells or self.space.default_cells}), "
            f"topo={cfg.topo}" + (f" without {', '.join(cfg.topo_disable)}" if cfg.topo_disable else ""),
            data_line,
            f"device {self.device}" + (f" (rank 0 of {self.world.size} processes, {cfg.batch_size // self.world.size} "
                                        "images each per batch)" if self.world.distributed else ""),
            f"hyper  {hp}",
        ])

    def _simplify(self, module: torch.nn.Module) -> torch.nn.Module:
        """The run's ``--topo`` rewrite of a plain module, on the run's device, in training mode."""
        cfg = self.config
        return topo.simplify(module, cfg.topo, disable=cfg.topo_disable).to(self.device).train()

    # -- the loop's hooks ------------------------------------------------------------------------
    def checkpoint_state(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "strategy": self.strategy.state_dict(),
            "optimizers": {name: opt.state_dict() for name, opt in self.strategy.optimizers(self.ctx).items()},
        }

    def steps_per_epoch(self) -> int:
        return len(self.batches)

    def begin_epoch(self, epoch: int) -> None:
        self.schedule = dict(self.strategy.begin_epoch(self.ctx, epoch, self.hyper.epochs))

    def epoch_batches(self, epoch: int, start: int):
        return self.batches.epoch(epoch, start)

    def zero_sums(self) -> dict[str, Any]:
        return {"w_loss": 0.0, "w_correct": 0, "a_loss": 0.0, "a_correct": 0, "n": 0, "seconds": 0.0}

    def take_step(self, epoch: int, step: int, steps: int, batch) -> tuple[dict, dict, int]:
        if self.world.distributed:
            return self._distributed_step(batch)
        x_w, y_w, x_a, y_a = batch
        stats = self.strategy.step(self.ctx, x_w, y_w, x_a, y_a)
        losses = {"w_loss": stats.w_loss.item(), "a_loss": stats.a_loss.item()}  # also synchronizes the device
        return losses, {"w_correct": int(stats.w_correct), "a_correct": int(stats.a_correct)}, stats.batch

    def _distributed_step(self, batch) -> tuple[dict, dict, int]:
        """This process's share of the global batch, gradients averaged across processes, global figures."""
        total = int(batch[1].shape[0])
        x_w, y_w, x_a, y_a = self.world.shard(batch)
        self.averager.attach([*self.model.parameters(), *self.strategy.parameters()])
        self.averager.set_batch(int(y_w.shape[0]), total)
        stats = self.strategy.step(self.ctx, x_w, y_w, x_a, y_a)
        n = stats.batch
        sums = torch.tensor([float(stats.w_loss) * n, float(stats.w_correct), float(stats.a_loss) * n,
                             float(stats.a_correct)], dtype=torch.float64)
        torch.distributed.all_reduce(sums)
        w_loss, w_correct, a_loss, a_correct = sums.tolist()
        return ({"w_loss": w_loss / total, "a_loss": a_loss / total},
                {"w_correct": round(w_correct), "a_correct": round(a_correct)}, total)

    def postfix(self, losses: dict, sums: dict) -> dict[str, str]:
        return {"loss": f"{losses['w_loss']:.3f}", "acc": f"{sums['w_correct'] / sums['n']:.3f}",
                "arch_loss": f"{losses['a_loss']:.3f}"}

    def end_epoch(self, epoch: int, sums: dict) -> None:
        if not self.world.in_step([self.strategy.state_dict(), *self.model.parameters()]):
            raise ConfigError(f"the processes drifted apart in epoch {epoch + 1}: {self.config.strategy} changes its "
                              "state from more than the averaged gradients (e.g. from this process's own losses); "
                              "run it in one process")
        cell = self.strategy.derive()
        n = max(sums["n"], 1)
        probabilities = self.strategy.probabilities()
        previous = self.history[-1]["genotype"] if self.history else None
        record = {
            "epoch": epoch + 1,
            **self.schedule,  # the strategy's schedules of the epoch ({"lr": ...})
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
        ctx = self.strategy.after_epoch(self.ctx, epoch, self._simplify)  # may change the supernet
        if not isinstance(ctx, type(self.ctx)):
            raise TypeError(f"{type(self.strategy).__name__}.after_epoch returned {type(ctx).__name__}, not the "
                            "StepContext of the next epoch")
        self.ctx = ctx
        self.model = self.compiled(ctx.model)

    def _lookup(self, cell) -> dict | None:
        if self.benchmark is None:
            return None
        try:
            return self.benchmark.lookup(cell)
        except (BenchmarkError, CellError) as e:  # a cell of another space is not in the table: say so once
            if not self._lookup_failed:
                self.log(f"benchmark: {e} (not looked up for this run)")
            self._lookup_failed = True
            return None

    def finish(self) -> SearchResult:
        cfg = self.config
        cell = self.strategy.derive()
        peak, kind = peak_memory(self.device)
        edge_keys = self.space.edge_keys
        alphas = {
            g: {edge_keys[g][e]: dict(zip(candidate_names(self.space, g), row))
                for e, row in enumerate(a.detach().cpu().tolist())}
            for g, a in self.strategy.arch_parameters().items()
        }
        budget = {} if self.budget is None else self.budget.record(self.space, cell)
        extras = {**self.strategy.result_extras(), **budget, **space_record(cfg.space),
                  **self.task.result_fields(self, cell),
                  "provenance": provenance(self.device, self.command)}
        if self.extended_from is not None:
            extras["extended_from_epochs"] = self.extended_from
        if self.batched_with is not None:  # the step times are those of the whole pass (toponas.loop.seeds)
            extras["seeds_batched"] = {"seeds": self.batched_with, "steps_shared": True}
        if self.compile:
            from ..runtime.compiled import compile_mode

            extras["compiled"] = {"mode": compile_mode(self.device), "first_step_ms": self.step_ms[0] if self.step_ms
                                  else None}  # the first step of this process includes compiling
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
            ms_per_step=statistics.median(self.step_ms) if self.step_ms else None,
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
            extras=extras,
        )
        if self.world.is_main:
            write_json(self.out / "result.json", result.to_dict())
        return result


def space_record(space: str) -> dict[str, Any]:
    """For a custom space (a .json declaration): its path, checksum and the declaration itself, to rebuild it."""
    from ..spaces.declared import describe_space_file

    return describe_space_file(space)


def search(config: SearchConfig | None = None, *, resume: bool = False, progress: bool = False,
           log: Callable[[str], None] = print, **overrides) -> SearchResult | list[SearchResult]:
    """Run a search from Python: ``toponas.search(strategy="gdas", dataset="digits", epochs=2)``.

    Keyword arguments override fields of ``config`` (the defaults when ``None``); keywords that are
    not config fields (``epochs``, ``w_lr``, ``tau_max`` ...) override the strategy's hyperparameters.
    With ``seeds=[...]`` the seeds run in one pass (:mod:`toponas.loop.seeds`): one result per seed, in order.
    """
    config = config or SearchConfig()
    fields = set(config.to_dict())
    hyper = {**config.hyper, **{k: v for k, v in overrides.items() if k not in fields}}
    config = config.replace(**{k: v for k, v in overrides.items() if k in fields}, hyper=hyper)
    if config.seeds is not None:
        from .seeds import SeedsSearch

        return SeedsSearch(config, resume=resume, progress=progress, log=log).run()
    return Search(config, resume=resume, progress=progress, log=log).run()
