"""The one resumable run loop shared by search and training.

Per epoch: steps from a resumable batch order, each with its own RNG seed (so a resumed run ends
bitwise equal to an uninterrupted one on the same device), a NaN guard, the progress bar, per-step
timing, partial-epoch sums kept in the checkpoint, and the stop signals (SIGINT, SIGTERM): the
step finishes, the state is saved, the run stops with exit 130 or 143. Under ``torchrun`` (see
``toponas.runtime.distributed``) every process runs the loop, rank 0 alone prints and writes files,
and a stop signal on any process stops all of them after the same step. A subclass supplies what
one step is, what an epoch ends with, what its checkpoint holds and what its result is.
"""

from __future__ import annotations

import csv
import io
import math
import signal
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from ..config import ConfigError
from .checkpoint import CHECKPOINT, load_checkpoint, save_checkpoint
from .distributed import World
from .files import atomic_write_bytes
from .seeding import step_seed
from .signals import Interrupted, StopSignals

METRICS_CSV = "metrics.csv"


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows as CSV (columns: the union of the rows' keys, in first-seen order), written atomically."""
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, restval="")
    writer.writeheader()
    writer.writerows(rows)
    data = buf.getvalue().encode()
    atomic_write_bytes(path, lambda f: f.write(data))


def open_tensorboard(where: Path | None):
    """A TensorBoard ``SummaryWriter`` into ``where`` (None: only check that the extra is installed)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise ConfigError("--tensorboard needs the tensorboard package: pip install 'toponas[tensorboard]'") from None
    return None if where is None else SummaryWriter(str(where))


class Diverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint (if any) is kept."""


class RunLoop:
    """Epochs of steps with checkpoints, resume, signals and a NaN guard (see the module docstring).

    Subclasses set :attr:`result_file`, :attr:`interrupted` and :attr:`diverged` and implement the
    hooks below; :meth:`run` drives them.
    """

    result_file = "result.json"
    interrupted: type[Interrupted] = Interrupted
    diverged: type[Diverged] = Diverged
    diverged_hint = "Lower the learning rate or check the data."
    loss_names: dict[str, str] = {}  # how the divergence message names a loss
    #: Whether the loop spreads one run over the processes of a ``torchrun`` launch (the search does);
    #: any other loop (the retrainings of ``toponas train``) refuses such a launch before any work.
    data_parallel = False

    def __init__(self, out: str | Path, resume: bool = False, progress: bool = True,
                 log: Callable[[str], None] = print, interrupt_after: int | None = None,
                 tensorboard: bool = False, compile: bool = False) -> None:
        self.out = Path(out)
        self.compile = compile  # torch.compile the network a step runs (toponas.runtime.compiled)
        self.world = World.from_env()
        if self.world.distributed and not self.data_parallel:
            raise ConfigError("toponas train runs in one process (torchrun spreads toponas search only); run it "
                              "without torchrun")
        if not self.world.is_main:  # rank 0 alone prints and writes
            log, progress, tensorboard = (lambda line: None), False, False
        self.tensorboard = tensorboard
        self._writer = None
        self.resume = resume
        self.progress = progress
        self._print = log
        self.interrupt_after = interrupt_after  # simulate Ctrl-C after this many steps (tests)
        self.signals = StopSignals(say=lambda m: self._print(m))
        self.epoch, self.step, self.history, self.step_ms, self.seconds = 0, 0, [], [], 0.0
        self.partial: dict | None = None
        self.device = torch.device("cpu")
        self.noop = False  # a finished run resumed as it was: nothing was written

    # -- hooks -------------------------------------------------------------------------------------
    @property
    def epochs(self) -> int:
        """Epochs of the whole run."""
        raise NotImplementedError

    @property
    def seed(self) -> int:
        raise NotImplementedError

    def check_saved(self, state: dict[str, Any]) -> None:
        """Raise a ConfigError when the saved state is not a resumable checkpoint of this configuration."""

    def setup(self, state: dict[str, Any] | None) -> None:
        """Build data, model and optimizers (and load ``state`` when resuming)."""
        raise NotImplementedError

    def steps_per_epoch(self) -> int:
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> None:
        """Set the epoch's schedule (learning rate, temperature ...)."""

    def epoch_batches(self, epoch: int, start: int) -> Iterable[Any]:
        raise NotImplementedError

    def zero_sums(self) -> dict[str, Any]:
        raise NotImplementedError

    def take_step(self, epoch: int, step: int, steps: int, batch: Any) -> tuple[dict[str, float], dict[str, int], int]:
        """One step: (losses as floats, correct counts, batch size)."""
        raise NotImplementedError

    def postfix(self, losses: dict[str, float], sums: dict[str, Any]) -> dict[str, str]:
        return {k: f"{v:.3f}" for k, v in losses.items()}

    def end_epoch(self, epoch: int, sums: dict[str, Any]) -> None:
        """Record the epoch in :attr:`history` and log it (the loop saves the checkpoint after it)."""
        raise NotImplementedError

    def checkpoint_state(self) -> dict[str, Any]:
        """What the checkpoint holds besides the loop's own counters."""
        raise NotImplementedError

    def finished_result(self) -> Any:
        """The result of a run that had already finished (a no-op resume reads it, writes nothing)."""
        raise NotImplementedError

    def finish(self) -> Any:
        """Write and return the result after the last epoch."""
        raise NotImplementedError

    # -- the loop ----------------------------------------------------------------------------------
    def compiled(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` with its forward compiled in place when the run has ``compile`` (each module once)."""
        if self.compile:
            from .compiled import check_compile, compile_module

            check_compile(self.device)
            if getattr(module, "_compiled_call_impl", None) is None:
                compile_module(module, self.device)
        return module

    def log(self, line: str) -> None:
        """Print a line and append it to ``RUN/log.txt`` (the log of the whole run; rank 0 only)."""
        self._print(line)
        if not self.world.is_main:
            return
        self.out.mkdir(parents=True, exist_ok=True)
        try:
            with open(self.out / "log.txt", "a") as f:
                f.write(line + "\n")
        except OSError as e:
            from .files import OutputError, describe_os_error

            raise OutputError(describe_os_error(e, self.out / "log.txt")) from None

    def write_metrics(self) -> None:
        """``RUN/metrics.csv``: one row per finished epoch (its scalar figures), and TensorBoard scalars if asked."""
        if not self.world.is_main:
            return
        rows = [{k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
                for r in self.history]
        write_csv(self.out / METRICS_CSV, rows)
        if self.tensorboard and self.history:
            if self._writer is None:
                self._writer = open_tensorboard(self.out / "tensorboard")
            last = rows[-1]
            for key, value in last.items():
                if key != "epoch":
                    self._writer.add_scalar(key, value, int(last.get("epoch", len(rows))))
            self._writer.flush()

    def saved_state(self) -> dict[str, Any] | None:
        """The checkpoint to resume from (None: a new run); refuses to overwrite a run without ``resume``."""
        ckpt = self.out / CHECKPOINT
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"--out {self.out} is a file, not a directory")
        if not self.resume:
            if ckpt.exists() or (self.out / self.result_file).exists():
                raise ConfigError(
                    f"{self.out} already holds a run; pass --resume to continue it or choose another --out")
            return None
        if not ckpt.exists():
            if (self.out / self.result_file).exists():
                raise ConfigError(f"{self.out} holds a {self.result_file} but no {CHECKPOINT} to resume from; "
                                  "choose another --out")
            self._print(f"no checkpoint in {self.out}; starting a new run")
            return None
        state = load_checkpoint(ckpt)
        for key in ("config", "epoch", "step", "model", "history"):
            if key not in state:
                raise ConfigError(f"{ckpt} is not a checkpoint of this command (no {key!r}); choose another --out")
        self.world.check_resume(int(state.get("world_size", 1)))
        self.check_saved(state)
        return state

    def restore(self, state: dict[str, Any]) -> None:
        """The loop's counters from a checkpoint."""
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.history, self.step_ms = state["history"], state["step_ms"]
        self.seconds, self.partial = state["seconds"], state.get("partial")

    def save(self, epoch: int, step: int, partial: dict | None) -> None:
        if not self.world.is_main:
            return
        save_checkpoint(self.out / CHECKPOINT, {
            **self.checkpoint_state(), "epoch": epoch, "step": step, "history": self.history,
            "step_ms": self.step_ms, "seconds": self.seconds, "partial": partial, "world_size": self.world.size})

    def run(self) -> Any:
        """Run (or continue) the run and write its result; a finished run resumed as it was changes no file."""
        state = self.saved_state()
        if (state is not None and int(state["epoch"]) >= self.epochs and state.get("step", 0) == 0
                and self.result_written()):
            self._print(f"{self.out} has already finished its {self.epochs} epochs; nothing to do")
            self.noop = True
            return self.finished_result()
        if self.tensorboard:
            open_tensorboard(None)  # the extra is missing: say so before any work
        self.setup(state)
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        try:
            with self.signals:
                for epoch in range(self.epoch, self.epochs):
                    self._run_epoch(epoch)
        finally:
            self.close_writers()
        try:
            return self.finish()
        finally:
            self.world.close()

    def result_written(self) -> bool:
        """Whether the run's result file exists (with a finished checkpoint: nothing left to do)."""
        return (self.out / self.result_file).exists()

    def close_writers(self) -> None:
        """Close the TensorBoard writer, if one was opened."""
        if self._writer is not None:
            self._writer.close()

    def _stopped(self, where: str) -> Interrupted:
        return self.interrupted(f"stopped {where}; state saved in {self.out}. "
                                "Continue with the same command and --resume.", self.signals.exit_code)

    def _run_epoch(self, epoch: int) -> None:
        self.begin_epoch(epoch)
        steps = self.steps_per_epoch()
        start = self.step if epoch == self.epoch else 0
        sums = self.partial if (self.partial and start > 0) else self.zero_sums()
        bar = tqdm(total=steps, initial=start, desc=f"epoch {epoch + 1}/{self.epochs}",
                   disable=not self.progress, leave=False, dynamic_ncols=True, file=sys.stderr)
        cuda = self.device.type == "cuda"
        for step, batch in enumerate(self.epoch_batches(epoch, start), start=start):
            torch.manual_seed(step_seed(self.seed, epoch, step))
            t0 = time.perf_counter()
            losses, counts, n = self.take_step(epoch, step, steps, batch)
            if cuda:
                torch.cuda.synchronize(self.device)
            dt = time.perf_counter() - t0
            bad = [k for k, v in losses.items() if not math.isfinite(v)]
            if bad:
                bar.close()
                raise self.diverged(self._diverged_message(bad[0], losses[bad[0]], epoch, step))
            self.step_ms.append(dt * 1000)
            self.seconds += dt
            for k, v in losses.items():
                sums[k] += v * n
            for k, c in counts.items():
                sums[k] += c
            sums["n"] += n
            sums["seconds"] += dt
            bar.update(1)
            bar.set_postfix(**self.postfix(losses, sums))
            if self.interrupt_after is not None:
                self.interrupt_after -= 1
                if self.interrupt_after <= 0:
                    self.signals.request()
            if self.world.distributed and self.world.any(self.signals.stopping):
                self.signals.request(signal.SIGTERM)  # another process was stopped (a no-op if this one was)
            if self.signals.stopping and step + 1 < steps:
                bar.close()
                self.save(epoch, step + 1, sums)
                raise self._stopped(f"at epoch {epoch + 1}, step {step + 1}")
        bar.close()
        self.end_epoch(epoch, sums)
        self.save(epoch + 1, 0, None)
        self.write_metrics()
        if self.signals.stopping and epoch + 1 < self.epochs:
            raise self._stopped(f"after epoch {epoch + 1}")

    def _diverged_message(self, name: str, value: float, epoch: int, step: int) -> str:
        ckpt = self.out / CHECKPOINT
        if ckpt.exists():
            kept = f"the last good checkpoint in {self.out} is kept (--resume continues from it)"
        else:
            kept = "no checkpoint was written yet (it diverged in the first epoch)"
        what = self.loss_names.get(name, name.replace("_", " "))
        return f"the {what} became {value} at epoch {epoch + 1}, step {step + 1}; {kept}. {self.diverged_hint}"
