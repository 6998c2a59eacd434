"""Many seeds in one pass (``toponas search --seeds 0,1,2,3``): K independent searches batched in one process.

Each seed is an ordinary :class:`~toponas.loop.search.Search` of its own directory ``OUT/seed-S`` (its data
order, initial weights and architecture parameters, checkpoint, history, ``result.json``: a solo run's
directory, which ``report``, ``train RUN`` and a solo ``--resume`` read as such). What runs the steps is one
stacked copy of them: the supernets' parameters and buffers stacked along a leading seed dimension
(:class:`~toponas.runtime.stacked.Stacked`, ``vmap`` over ``functional_call``), the strategy's architecture
parameters stacked the same way, and the strategy's own step code on the stacked tensors with the sum of
the seeds' losses: its gradient in slice ``k`` is seed ``k``'s own, the optimizers are elementwise, gradient
clipping is per seed (``ctx.clip_grad_norm``), random draws come from each seed's own stream
(:class:`SeedStreams`), and learning-rate and temperature schedules are shared. The stacked state is
copied back into the seeds' own searches before every checkpoint and at the end, so each seed's files are
written by the solo code. Strategies declare whether they batch exactly (``Strategy.seed_batched``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..config import MAX_SEED, ConfigError, SearchConfig
from ..runtime import step_seed, write_json
from ..runtime.loop import RunLoop, open_tensorboard
from ..runtime.stacked import Stacked, clip_per_copy, optimizer_shapes, slice_state, stack_states
from ..spaces import Mixing
from ..strategies import STRATEGIES, create_strategy
from .result import SearchResult
from .search import Search, SearchDiverged, SearchInterrupted

KEYS = ("w_loss", "w_correct", "a_loss", "a_correct")
#: The space families whose seeds are shown to batch exactly (tests/test_seeds.py). A tiny mobile search turns
#: any change of round-off into another cell within four steps (its solo runs too, docs/scaling.md), so its
#: pass could not be shown equal to its solo runs: refused rather than run unchecked.
SEED_FAMILIES = ("nb201", "darts")


def seed_dir(out: str | Path, seed: int) -> Path:
    """The run directory of ``seed`` in a many-seed run's ``out``."""
    return Path(out) / f"seed-{seed}"


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` as ``[0, 1, 2]``; a ConfigError for anything else (not whole numbers, duplicates)."""
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise ConfigError(f"--seeds takes comma-separated whole numbers (e.g. 0,1,2,3), got {text!r}") from None
    return check_seeds(seeds)


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """The seeds of a many-seed run: at least one, none repeated, each a valid seed."""
    seeds = list(seeds)
    if not seeds:
        raise ConfigError("--seeds needs at least one seed (e.g. 0,1,2,3)")
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise ConfigError(f"--seeds repeats seed(s) {', '.join(map(str, repeated))}; each seed runs once")
    for s in seeds:
        if isinstance(s, bool) or not isinstance(s, int) or not 0 <= s <= MAX_SEED:
            raise ConfigError(f"--seeds: seed {s!r} must be a whole number in 0..2**63-1")
    return seeds


def batched_strategies() -> list[str]:
    """The strategies whose seeds batch exactly (``Strategy.seed_batched``)."""
    return [name for name in STRATEGIES.names() if STRATEGIES.get(name).batches_seeds()]


class SeedStreams:
    """Each seed's own random stream: reset every step to that seed's step seed (as its solo run's loop
    reseeds torch), drawn from in turn, so that each slice gets the numbers its solo run draws."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.states: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def _get(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return torch.get_rng_state(), cuda

    def _set(self, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
        torch.set_rng_state(state[0])
        if state[1] is not None:
            torch.cuda.set_rng_state(state[1], self.device)

    def reset(self, seeds: Sequence[int]) -> None:
        """Every stream seeded afresh (``seeds``: this step's seed of each run)."""
        self.states = []
        for s in seeds:
            torch.manual_seed(s)
            self.states.append(self._get())

    def each(self, fn: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
        """``fn(*(t[k] for t in tensors))`` drawn from stream ``k`` for every seed ``k``, stacked."""
        if any(t.shape[0] != len(self.states) for t in tensors):
            raise RuntimeError(f"a draw from shapes {[tuple(t.shape) for t in tensors]} is not stacked over the "
                               f"{len(self.states)} seeds")
        outs = []
        for k, state in enumerate(self.states):
            self._set(state)
            outs.append(fn(*(t[k] for t in tensors)))
            self.states[k] = self._get()
        return torch.stack(outs)


class SeedTask:
    """The seeds' task on stacked outputs: the loss is the sum of each seed's loss (so each slice's gradient
    is its own), counts are per seed; each loss's per-seed values are kept for the step's figures."""

    def __init__(self, task: Any) -> None:
        self.task = task
        self.name = getattr(task, "name", "classify")
        self.parts: dict[int, torch.Tensor] = {}

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        losses = torch.stack([self.task.loss(o, t) for o, t in zip(output, target)])
        total = losses.sum()
        self.parts[total.data_ptr()] = losses.detach()
        return total

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.stack([torch.as_tensor(self.task.correct(o, t)) for o, t in zip(output, target)])

    def per_seed(self, loss: torch.Tensor) -> torch.Tensor:
        """The per-seed values of a loss this task returned (the strategy's step returns them detached)."""
        try:
            return self.parts[loss.data_ptr()]
        except KeyError:
            raise RuntimeError("the strategy's step returned a loss that its task did not compute; it cannot "
                               "run with --seeds") from None


class StackedSupernet(Stacked):
    """The seeds' supernets stacked; ``forward(x, mixing)`` with the seed dimension first in ``x`` and the weights."""

    pruned = False

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:  # type: ignore[override]
        if mixing.active is not None:
            raise RuntimeError("a mixing with active candidates (a sampled architecture) cannot run stacked seeds")
        self.pruned = mixing.pruned
        return super().forward(x, mixing.weights)

    def base_inputs(self, x: torch.Tensor, weights: dict) -> tuple:
        return x, Mixing(weights, None, self.pruned)


class SeedsSearch(RunLoop):
    """K searches, one per seed, in ``config.out/seed-S``, run as one stacked search (module docstring)."""

    interrupted = SearchInterrupted
    diverged = SearchDiverged
    data_parallel = True  # refused below with its own message

    def __init__(self, config: SearchConfig, seeds: Sequence[int] | None = None, resume: bool = False,
                 progress: bool = True, log: Callable[[str], None] = print, interrupt_after: int | None = None,
                 command: list[str] | None = None, tensorboard: bool = False, compile: bool = False) -> None:
        super().__init__(config.out, resume=resume, progress=progress, log=log, interrupt_after=interrupt_after)
        self.seeds = check_seeds(config.seeds or [] if seeds is None else seeds)
        if self.world.distributed:
            raise ConfigError("--seeds runs its seeds in one process; run it without torchrun (or spread single "
                              "seeds over processes with toponas sweep)")
        if compile:
            raise ConfigError("--compile does not combine with --seeds yet; drop one of them")
        strategy = STRATEGIES.get(config.strategy) if config.strategy in STRATEGIES else None
        if strategy is not None and not strategy.batches_seeds():
            raise ConfigError(f"--seeds batches {', '.join(batched_strategies())} exactly, not {config.strategy}; "
                              "run its seeds one by one (--seed) or with toponas sweep")
        if config.latency_target is not None or config.flops_target is not None:
            raise ConfigError("--seeds does not combine with a latency or FLOPs budget yet; drop the target or run "
                              "the seeds one by one (--seed)")
        if config.task != "classify":
            raise ConfigError(f"--seeds runs classification searches (--task classify), not --task {config.task}")
        self.config = config.replace(seeds=list(self.seeds))
        self.runs = [Search(config.replace(seed=s, seeds=None, out=str(seed_dir(config.out, s))), resume=resume,
                            progress=False, log=self._seed_log(s), command=command, tensorboard=tensorboard)
                     for s in self.seeds]
        because = self.runs[0].strategy.unbatched_because()
        if because:
            raise ConfigError(f"--seeds cannot batch {config.strategy} here: {because}; run its seeds one by one "
                              "(--seed) or with toponas sweep")
        family = getattr(self.runs[0].space, "family", None)
        if family not in SEED_FAMILIES:
            raise ConfigError(f"--seeds batches the {', '.join(SEED_FAMILIES)} spaces exactly, not {config.space}; run "
                              "its seeds one by one (--seed) or with toponas sweep")
        for run in self.runs:
            run.batched_with = list(self.seeds)

    def _seed_log(self, seed: int) -> Callable[[str], None]:
        say = self._print
        return lambda line: say("\n".join(f"[seed {seed}] {part}" for part in line.splitlines()))

    @property
    def epochs(self) -> int:
        return self.runs[0].epochs

    @property
    def seed(self) -> int:
        return self.seeds[0]

    # -- set-up --------------------------------------------------------------------------------
    def saved_state(self) -> dict[str, Any] | None:
        """The seeds' checkpoints (all or none), at one epoch and step, of the same seeds."""
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a file, not a directory")
        saved = self.out / "config.json"
        if saved.is_file():
            given = sorted(self.seeds)
            was_seeds = SearchConfig.load(saved).seeds
            if was_seeds is None:
                raise ConfigError(f"{self.out} holds a run of one seed (--seed), not of --seeds; choose another --out")
            was = sorted(was_seeds)
            if not self.resume:
                raise ConfigError(f"{self.out} already holds a run of seeds {was}; pass --resume to continue it or "
                                  "choose another --out")
            if was != given:
                raise ConfigError(f"cannot resume with different seeds: saved {was}, given {given}")
        states = [run.saved_state() for run in self.runs]
        if all(s is None for s in states):
            return None
        missing = [s for s, st in zip(self.seeds, states) if st is None]
        if missing:
            raise ConfigError(f"cannot resume: seed(s) {', '.join(map(str, missing))} of {self.out} have no "
                              "checkpoint; choose another --out")
        at = {(int(st["epoch"]), int(st.get("step", 0))) for st in states}
        if len(at) > 1:
            where = ", ".join(f"seed {s} at epoch {int(st['epoch'])} step {int(st.get('step', 0))}"
                              for s, st in zip(self.seeds, states))
            raise ConfigError(f"cannot resume the seeds together: their checkpoints differ ({where}); resume each "
                              "with --seed S --out OUT/seed-S")
        return {"runs": states, "epoch": states[0]["epoch"], "step": states[0].get("step", 0)}

    def result_written(self) -> bool:
        """Every seed's result file exists."""
        return all((r.out / r.result_file).exists() for r in self.runs)

    def finished_result(self) -> list[SearchResult]:
        return [r.finished_result() for r in self.runs]

    def close_writers(self) -> None:
        for r in self.runs:
            r.close_writers()

    def setup(self, state: dict[str, Any] | None) -> None:
        if self.runs[0].tensorboard:
            open_tensorboard(None)  # the extra is missing: say so before any work (the runs write their own)
        states = state["runs"] if state is not None else [None] * len(self.runs)
        for run, st in zip(self.runs, states):
            run.setup(st)
        if any(r.ctx.model is not r.model for r in self.runs) or len({len(r.batches) for r in self.runs}) > 1:
            raise ConfigError("the seeds' searches differ in shape; run them one by one (--seed)")
        first = self.runs[0]
        self.device = first.device
        if state is not None:
            self.restore(states[0])  # the loop's counters (every seed's are the same)
            self.history = []  # each seed keeps its own history; this loop's is not written
            self.partial = self._merged_partials([st.get("partial") for st in states])
        self.out.mkdir(parents=True, exist_ok=True)
        write_json(self.out / "config.json", self.config.to_dict(), only_if_changed=True)
        self.log(f"seeds {', '.join(map(str, self.seeds))}: {len(self.seeds)} searches stacked in one pass; each "
                 f"writes {self.out}/seed-S")
        self._stack()

    def _stack(self) -> None:
        """The stacked supernet, strategy (architecture parameters stacked, buffers shared) and optimizers."""
        first = self.runs[0]
        self.model = StackedSupernet(first.model, [r.model for r in self.runs])
        strategy = create_strategy(first.config.strategy, first.space, first.hyper)
        own = strategy.state_dict()
        states = [r.strategy.state_dict() for r in self.runs]
        params = {n for n, _ in strategy.named_parameters()}
        stacked = {}
        for key in own:
            values = [s[key] for s in states]
            if key in params:
                stacked[key] = torch.stack(values)
            elif all(torch.equal(v, values[0]) for v in values):
                stacked[key] = values[0]
            else:
                raise ConfigError(f"{first.config.strategy}'s state {key!r} differs between the seeds; it cannot run "
                                  "with --seeds")
        for name, p in list(strategy.named_parameters()):
            owner, _, leaf = name.rpartition(".")
            module = strategy.get_submodule(owner) if owner else strategy
            setattr(module, leaf, torch.nn.Parameter(stacked[name].clone(), requires_grad=p.requires_grad))
        strategy.load_state_dict(stacked)
        strategy.to(self.device)
        strategy.streams = SeedStreams(self.device)
        self.strategy = strategy
        self.ctx = strategy.make_context(self.model)
        self.ctx.task = SeedTask(first.ctx.task)
        self.ctx.clip_grad_norm = clip_per_copy
        self.ctx.seed_dims = 1
        live = strategy.optimizers(self.ctx)
        for name, optimizer in live.items():
            copies = [r.strategy.optimizers(r.ctx)[name] for r in self.runs]
            shapes = optimizer_shapes(copies[0])
            optimizer.load_state_dict(stack_states([c.state_dict() for c in copies], shapes))

    def _unstack(self) -> None:
        """Copy each seed's slice of the stacked state back into its own search (before its files are written)."""
        live = self.strategy.optimizers(self.ctx)
        stacked_strategy = self.strategy.state_dict()
        optimizer_states = {name: optimizer.state_dict() for name, optimizer in live.items()}
        for k, run in enumerate(self.runs):
            self.model.copy_into(k, run.model)
            params = {n for n, _ in run.strategy.named_parameters()}
            run.strategy.load_state_dict({key: (v[k] if key in params else v) for key, v in stacked_strategy.items()})
            for name, optimizer in run.strategy.optimizers(run.ctx).items():
                optimizer.load_state_dict(slice_state(optimizer_states[name], k, optimizer_shapes(optimizer)))
            run.step_ms, run.seconds = list(self.step_ms), self.seconds

    # -- the loop's hooks ------------------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return len(self.runs[0].batches)

    def begin_epoch(self, epoch: int) -> None:
        for run in self.runs:
            run.begin_epoch(epoch)
        self.strategy.begin_epoch(self.ctx, epoch, self.epochs)

    def epoch_batches(self, epoch: int, start: int):
        return zip(*[run.epoch_batches(epoch, start) for run in self.runs])

    def zero_sums(self) -> dict[str, Any]:
        return {"n": 0, "seconds": 0.0, **{f"{key}/{k}": 0 for key in KEYS for k in range(len(self.runs))}}

    def take_step(self, epoch: int, step: int, steps: int, batch) -> tuple[dict, dict, int]:
        sizes = {int(b[1].shape[0]) for b in batch}
        if len(sizes) > 1:
            raise RuntimeError(f"the seeds' batches of step {step + 1} differ in size ({sorted(sizes)})")
        x_w, y_w, x_a, y_a = (torch.stack(parts) for parts in zip(*batch))
        self.strategy.streams.reset([step_seed(s, epoch, step) for s in self.seeds])
        task = self.ctx.task
        task.parts.clear()
        stats = self.strategy.step(self.ctx, x_w, y_w, x_a, y_a)
        w_loss, a_loss = task.per_seed(stats.w_loss).tolist(), task.per_seed(stats.a_loss).tolist()
        w_correct, a_correct = stats.w_correct.tolist(), stats.a_correct.tolist()
        task.parts.clear()
        losses = {**{f"w_loss/{k}": v for k, v in enumerate(w_loss)},
                  **{f"a_loss/{k}": v for k, v in enumerate(a_loss)}}
        counts = {**{f"w_correct/{k}": int(v) for k, v in enumerate(w_correct)},
                  **{f"a_correct/{k}": int(v) for k, v in enumerate(a_correct)}}
        return losses, counts, sizes.pop()

    def postfix(self, losses: dict, sums: dict) -> dict[str, str]:
        k = len(self.runs)
        return {"loss": f"{sum(losses[f'w_loss/{i}'] for i in range(k)) / k:.3f}",
                "arch_loss": f"{sum(losses[f'a_loss/{i}'] for i in range(k)) / k:.3f}"}

    def _seed_sums(self, sums: dict[str, Any], k: int) -> dict[str, Any]:
        return {"n": sums["n"], "seconds": sums["seconds"], **{key: sums[f"{key}/{k}"] for key in KEYS}}

    def _merged_partials(self, partials: Sequence[dict | None]) -> dict | None:
        if any(p is None for p in partials):
            return None
        merged = {"n": partials[0]["n"], "seconds": partials[0]["seconds"]}
        for k, p in enumerate(partials):
            merged.update({f"{key}/{k}": p[key] for key in KEYS})
        return merged

    def _diverged_message(self, name: str, value: float, epoch: int, step: int) -> str:
        key, _, k = name.partition("/")
        what = {"w_loss": "weight loss", "a_loss": "architecture loss"}.get(key, key)
        return (f"the {what} of seed {self.seeds[int(k)]} became {value} at epoch {epoch + 1}, step {step + 1}; the "
                f"seeds' last good checkpoints in {self.out}/seed-S are kept (--resume continues from them, if any). "
                f"{self.runs[0].diverged_hint}")

    def end_epoch(self, epoch: int, sums: dict[str, Any]) -> None:
        self._unstack()
        for k, run in enumerate(self.runs):
            run.end_epoch(epoch, self._seed_sums(sums, k))
            if run.ctx.model is not run.model:
                raise RuntimeError(f"{run.config.strategy} changed its supernet after epoch {epoch + 1}; it cannot run "
                                   "with --seeds")

    def save(self, epoch: int, step: int, partial: dict | None) -> None:
        self._unstack()
        for k, run in enumerate(self.runs):
            run.save(epoch, step, None if partial is None else self._seed_sums(partial, k))

    def write_metrics(self) -> None:
        for run in self.runs:
            run.write_metrics()

    def finish(self) -> list[SearchResult]:
        self._unstack()
        return [run.finish() for run in self.runs]
