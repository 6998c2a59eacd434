"""The strategy contract: the hooks the search loop calls, in the order it calls them, and what they share.

:class:`Strategy` is abstract: it lists exactly what :class:`toponas.loop.search.Search` calls (see its
docstring for the order). DARTS-V1 (:class:`toponas.strategies.darts.DartsV1`) is the reference
implementation, and most strategies are small overrides of it (GDAS its ``mixing``, DARTS-V2 its
``arch_step``). Query-based strategies (a population and an oracle, no supernet) have a sibling contract,
:class:`toponas.query.base.QueryStrategy`; ``contract`` tells the search entry which one a class follows.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class Hyper:
    """Optimization hyperparameters; defaults are the NAS-Bench-201 DARTS-V1 reference settings.

    Source: xautodl 1.0.0 ``configs/nas-benchmark/algos/DARTS.config`` and the DARTS-V1 search
    script (see ``docs/strategies.md``). Strategies subclass this to change or add defaults.
    """

    epochs: int = 50  # xautodl DARTS: 50 epochs
    w_lr: float = 0.025  # SGD learning rate, cosine-annealed per epoch ...
    w_lr_min: float = 0.001  # ... down to this
    w_momentum: float = 0.9
    w_nesterov: bool = True
    w_wd: float = 5e-4
    grad_clip: float = 5.0  # clip the weights' gradient norm (0 disables)
    a_lr: float = 3e-4  # Adam for the architecture parameters
    a_beta1: float = 0.5
    a_beta2: float = 0.999
    a_wd: float = 1e-3
    arch_first: bool = False  # reference order: weight step, then architecture step
    a_lr_schedule: str = "constant"  # the reference's constant a_lr, or "cosine": annealed per epoch to 0

    @classmethod
    def resolve(cls, overrides: Mapping[str, Any] | None = None) -> Hyper:
        """Defaults with ``overrides`` on top; unknown keys are an error listing the known ones."""
        overrides = dict(overrides or {})
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - set(names))
        if unknown:
            raise ValueError(
                f"unknown hyperparameter(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}"
            )
        typed = {k: _coerce(v, names[k].type, k) for k, v in overrides.items()}
        schedule = typed.get("a_lr_schedule", "constant")
        if schedule not in A_LR_SCHEDULES:
            raise ValueError(f"hyperparameter a_lr_schedule: {schedule!r} is not one of {', '.join(A_LR_SCHEDULES)}")
        return cls(**typed)


#: The architecture learning rate's schedules: ``constant`` (every reference) or ``cosine`` (per epoch from
#: ``a_lr`` to 0, as the weights' SGD: large steps while the supernet's ranking forms, small ones at the end
#: so the last epochs settle instead of drifting; the CPU budget ``cpu-long`` uses it, docs/quality.md).
A_LR_SCHEDULES = ("constant", "cosine")


def set_arch_lr(ctx: StepContext, epoch: int, epochs: int) -> dict[str, float]:
    """Apply ``ctx.hyper``'s architecture schedule to ``ctx.a_optimizer``; the figure for the epoch's history
    line. Under ``constant`` nothing is written: the optimizer keeps the lr it was built with (the reference)."""
    h = ctx.hyper
    if h.a_lr_schedule == "constant" or ctx.a_optimizer is None:
        return {}
    a_lr = cosine_lr(h.a_lr, 0.0, epoch, epochs)  # the one other schedule
    for group in ctx.a_optimizer.param_groups:
        group["lr"] = a_lr
    return {"a_lr": a_lr}


def _coerce(value: Any, typ: Any, name: str) -> Any:
    """Coerce a value given as text on the command line to the field's type."""
    typ = typ if isinstance(typ, str) else getattr(typ, "__name__", str(typ))
    if not isinstance(value, str):
        return float(value) if typ == "float" and isinstance(value, int) else value
    try:
        if typ == "bool":
            low = value.lower()
            if low not in ("1", "0", "true", "false", "yes", "no"):
                raise ValueError(value)
            return low in ("1", "true", "yes")
        if typ == "int":
            return int(value)
        if typ == "float":
            return float(value)
    except ValueError:
        raise ValueError(f"hyperparameter {name}: {value!r} is not a valid {typ}") from None
    return value


def cosine_lr(base: float, minimum: float, epoch: int, epochs: int) -> float:
    """Per-epoch cosine annealing from ``base`` to ``minimum`` (the reference schedule of the weights' SGD)."""
    return minimum + (base - minimum) * (1 + math.cos(math.pi * epoch / epochs)) / 2


def linear_schedule(start: float, end: float, epoch: int, epochs: int) -> float:
    """Linear per epoch from ``start`` (first epoch) to ``end`` (last epoch): the temperature schedules."""
    frac = epoch / (epochs - 1) if epochs > 1 else 0.0
    return start - (start - end) * frac


class Classification:
    """The default task of a step: cross-entropy on logits, correct counts by argmax.

    A task is what a step's loss and count come from (``loss(output, target)``, ``correct(output, target)``);
    the restoration task (:class:`toponas.restoration.task.RestorationTask`) is another."""

    name = "classify"

    def loss(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(output, target)

    def correct(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (output.argmax(-1) == target).sum()


CLASSIFICATION = Classification()


@dataclass
class StepContext:
    """What a strategy needs to take one step: the supernet, its weights, both optimizers and the task.

    Made by :meth:`Strategy.make_context` (the strategy builds its optimizers); the loop sets ``task``
    and hands the context back to every later hook. ``epoch`` is set by :meth:`Strategy.begin_epoch`."""

    model: nn.Module
    weights: Sequence[nn.Parameter]
    w_optimizer: torch.optim.Optimizer
    a_optimizer: torch.optim.Optimizer
    hyper: Hyper
    epoch: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    task: Any = CLASSIFICATION  # loss(output, target) and correct(output, target)
    #: ``clip_grad_norm(parameters, max_norm)``; per seed when many seeds run stacked (``toponas.loop.seeds``).
    clip_grad_norm: Callable[..., Any] = nn.utils.clip_grad_norm_
    #: Leading dimensions of every weight and architecture tensor that index seeds (1 when many run stacked):
    #: a norm over "all the weights" is then one per seed (:func:`per_seed`).
    seed_dims: int = 0


@dataclass
class StepStats:
    """Losses and correct counts of one step (plain floats/ints would force a device sync)."""

    w_loss: torch.Tensor
    w_correct: torch.Tensor
    a_loss: torch.Tensor
    a_correct: torch.Tensor
    batch: int



def per_seed(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``value`` (one number per seed: 0-d in a solo run, ``(K,)`` stacked) shaped to scale ``like`` per seed."""
    return value.view(*value.shape, *[1] * (like.dim() - value.dim()))


def grads_or_zeros(output: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``autograd.grad(output, inputs)`` with zeros for inputs the output does not depend on.

    A DARTS supernet with fewer than three layers has no normal (or no reduction) cell, so one
    architecture group takes no part in the loss; its gradient is zero, not an error.
    """
    grads = torch.autograd.grad(output, list(inputs), allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]


class Strategy(nn.Module, ABC):
    """The contract between the search loop and a supernet strategy: exactly the hooks the loop calls.

    The loop (:class:`toponas.loop.search.Search`) calls them in this order and knows no strategy by name:

    Set-up (a new run, and again on ``--resume``):

    1. ``Cls(space, hyper)`` (through :func:`toponas.strategies.create_strategy`, under the run's seed):
       the architecture parameters. The run then sets :attr:`budget` when it has a latency/FLOPs target.
    2. :meth:`prepare_supernet` ``(model, epoch)``: the supernet to search, before the simplifier runs.
    3. (the loop simplifies the supernet and moves it and the strategy to the run's device)
    4. :meth:`make_context` ``(model)``: a :class:`StepContext` holding the optimizers the strategy builds.
    5. On resume: ``load_state_dict`` (the strategy is an ``nn.Module``: parameters, buffers, extra state),
       then the saved state of each entry of :meth:`optimizers` ``(ctx)``.

    Every epoch:

    6. :meth:`begin_epoch` ``(ctx, epoch, epochs)``: the epoch's schedules (learning rate, temperature);
       returns the figures that open the epoch's ``history`` line (``{"lr": ...}``).
    7. :meth:`step` ``(ctx, x_w, y_w, x_a, y_a)`` for every pair of batches: a :class:`StepStats`.
    8. :meth:`derive`, :meth:`probabilities` and :meth:`epoch_summary`: the epoch's ``history`` line.
    9. :meth:`after_epoch` ``(ctx, epoch, simplify)``: the context of the next epoch (a new supernet, if the
       strategy changes it).
    10. The checkpoint: ``state_dict()`` and the ``state_dict()`` of each entry of :meth:`optimizers` ``(ctx)``.

    The end: :meth:`derive`, :meth:`arch_parameters` and :meth:`result_extras` (``result.json``).

    Under ``torchrun`` the loop also averages the gradients of ``parameters()`` and compares ``state_dict()``
    across processes after each epoch (``data_parallel``). The class attributes below are read before any
    hook: by :func:`~toponas.strategies.create_strategy` (``families``, ``any_task``), the search entry
    (``contract``), the budget (``budgets``) and ``toponas search --help`` (``Hyper``).
    """

    name: ClassVar[str]
    contract: ClassVar[str] = "supernet"  # the search entry dispatches on it (query-based: toponas.query)
    #: The space families (``space.family``) this strategy searches; ``None``: every space.
    families: ClassVar[tuple[str, ...] | None] = None
    #: Whether every change of the strategy's state follows from gradients, so that the processes of one
    #: ``torchrun`` search (which average every gradient) stay equal; False where it also follows each
    #: process's own losses or data (rewards, kept batches, evolution), which a search over processes refuses.
    data_parallel: ClassVar[bool] = True
    #: Whether many seeds of it run exactly as one stacked search (``toponas search --seeds``,
    #: :mod:`toponas.loop.seeds`): its state is its parameters (stacked) and per-epoch schedules (shared), its
    #: step only elementwise updates, sums of per-seed losses, ``ctx.clip_grad_norm`` and :meth:`noise` (each
    #: seed's own random stream), and every edge's candidates all run (no ``Mixing.active``). Declared by
    #: each class itself, not inherited (a subclass changes the step): see :meth:`batches_seeds`.
    seed_batched: ClassVar[bool] = False
    #: Whether every loss of its step goes through ``ctx.task`` (then it searches restoration spaces too).
    any_task: ClassVar[bool] = False
    #: The budgets (``"latency"``, ``"flops"``) the strategy is held to by its architecture loss or its own
    #: search; the run gives it a :class:`~toponas.hardware.budget.Budget` in ``self.budget``.
    budgets: ClassVar[tuple[str, ...]] = ()
    Hyper: ClassVar[type[Hyper]] = Hyper

    def __init__(self, space, hyper: Hyper | None = None) -> None:
        super().__init__()
        self.space = space
        self.hyper = hyper if hyper is not None else self.Hyper()
        self.budget = None  # a toponas.hardware.budget.Budget when the run has a latency/FLOPs target
        self.streams = None  # many seeds stacked: each seed's random stream (toponas.loop.seeds.SeedStreams)

    def noise(self, like: torch.Tensor, draw: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
        """``draw(torch.empty_like(like))``: random numbers of ``like``'s shape, from the run's random stream;
        with many seeds stacked each seed's slice from its own stream, as its solo run draws them."""
        return self.sample(lambda t: draw(torch.empty_like(t)), like)

    def sample(self, fn: Callable[..., torch.Tensor], *tensors: torch.Tensor) -> torch.Tensor:
        """``fn(*tensors)``, a random draw from the run's stream (e.g. ``Dirichlet(c).rsample()``); with many seeds
        stacked, ``fn`` of each seed's slices from that seed's own stream, stacked."""
        if self.streams is None:
            return fn(*tensors)
        return self.streams.each(fn, *tensors)

    @classmethod
    def batches_seeds(cls) -> bool:
        """Whether this class itself declares :attr:`seed_batched` (a subclass of one that does must say so again)."""
        return bool(cls.__dict__.get("seed_batched", False))

    def unbatched_because(self) -> str | None:
        """Why these hyperparameters keep a class that batches seeds from doing so (None: they do not)."""
        return None

    # -- set-up ----------------------------------------------------------------------------------
    def prepare_supernet(self, model: nn.Module, epoch: int) -> nn.Module:
        """The supernet to search from ``epoch`` on, made from the space's plain one before the
        simplifier runs (set-up of a run, or of its resumption at ``epoch``). Default: ``model``."""
        return model

    @abstractmethod
    def make_context(self, model: nn.Module) -> StepContext:
        """The step context of ``model`` (simplified, on the run's device): its weights and the optimizers
        this strategy steps. Everything :meth:`optimizers` returns must exist once this has run."""

    def optimizers(self, ctx: StepContext) -> dict[str, Any]:
        """Every optimizer (or schedule: anything with ``state_dict``/``load_state_dict``) the strategy
        steps, by a name unique in the run: the checkpoint saves each one's state under its name and a
        resumed run loads it back after :meth:`make_context`. Default: ``ctx``'s two optimizers."""
        return {"w_optimizer": ctx.w_optimizer, "a_optimizer": ctx.a_optimizer}

    # -- every epoch -----------------------------------------------------------------------------
    def begin_epoch(self, ctx: StepContext, epoch: int, epochs: int) -> dict[str, float]:
        """Before the first step of ``epoch`` (of ``epochs``, the run's current length): set the epoch's
        schedules and ``ctx.epoch``; return the figures that open its history line. Default: only the
        architecture learning rate's schedule (``a_lr_schedule``)."""
        ctx.epoch = epoch
        return set_arch_lr(ctx, epoch, epochs)

    @abstractmethod
    def step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> StepStats:
        """One search step on a weight batch ``(x_w, y_w)`` and an architecture batch ``(x_a, y_a)``."""

    @abstractmethod
    def derive(self):
        """The discrete architecture the strategy stands for now (the space's genotype)."""

    @abstractmethod
    def probabilities(self) -> dict[str, torch.Tensor]:
        """Per group, ``(edges, candidates)`` candidate probabilities (history, separation, reports)."""

    def epoch_summary(self) -> dict[str, Any]:
        """Extra figures for this epoch's line in ``history`` (e.g. sampled architectures)."""
        return {}

    def after_epoch(self, ctx: StepContext, epoch: int, simplify: Callable[[nn.Module], nn.Module]) -> StepContext:
        """After the last step of ``epoch``, before its checkpoint: the context of the next epoch.

        A strategy that changes the supernet's structure here (DrNAS's progressive variant) passes each
        new plain module through ``simplify`` (the run's ``--topo`` rewrite, on its device) and returns a
        context with the new model, weights and optimizers; :meth:`prepare_supernet` must then build the
        same structure for a run resumed at ``epoch + 1``. Default: ``ctx`` as it is."""
        return ctx

    # -- the end ---------------------------------------------------------------------------------
    @abstractmethod
    def arch_parameters(self) -> dict[str, torch.Tensor]:
        """Per group, the ``(edges, candidates)`` architecture parameters ``result.json`` reports."""

    def result_extras(self) -> dict[str, Any]:
        """Extra top-level fields of ``result.json`` (e.g. ``samples_total``)."""
        return {}
