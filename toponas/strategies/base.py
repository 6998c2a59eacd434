"""The strategy lifecycle: how architecture parameters become mixing weights, and one search step.

A strategy is a small override of :class:`Strategy`: DARTS is the base itself, GDAS overrides
:meth:`Strategy.mixing`, DARTS-V2 overrides :meth:`Strategy.arch_step`. The search loop only calls
``prepare_supernet``, ``new_epoch``, ``step``, ``after_epoch`` and ``derive`` and checkpoints
``state_dict``; it knows no strategy by name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..spaces import Mixing


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
        return cls(**typed)


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
    """What a strategy needs to take one step: the supernet, its weights, both optimizers and the task."""

    model: nn.Module
    weights: Sequence[nn.Parameter]
    w_optimizer: torch.optim.Optimizer
    a_optimizer: torch.optim.Optimizer
    hyper: Hyper
    epoch: int = 0
    extras: dict[str, Any] = field(default_factory=dict)
    task: Any = CLASSIFICATION  # loss(output, target) and correct(output, target)


@dataclass
class StepStats:
    """Losses and correct counts of one step (plain floats/ints would force a device sync)."""

    w_loss: torch.Tensor
    w_correct: torch.Tensor
    a_loss: torch.Tensor
    a_correct: torch.Tensor
    batch: int



def grads_or_zeros(output: torch.Tensor, inputs: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``autograd.grad(output, inputs)`` with zeros for inputs the output does not depend on.

    A DARTS supernet with fewer than three layers has no normal (or no reduction) cell, so one
    architecture group takes no part in the loss; its gradient is zero, not an error.
    """
    grads = torch.autograd.grad(output, list(inputs), allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads)]

class Strategy(nn.Module):
    """DARTS-V1 (first order): softmax mixing, weight step then architecture step.

    Cost note: every candidate of every edge runs and is kept for backward, so time and activation
    memory grow with the number of candidates; ``toponas.topo`` simplifies the supernet for that.
    """

    name: ClassVar[str] = "darts-v1"
    contract: ClassVar[str] = "supernet"  # the search entry dispatches on it (query-based: toponas.query)
    #: The space families (``space.family``) this strategy searches; ``None``: every space.
    families: ClassVar[tuple[str, ...] | None] = None
    #: Whether every change of the strategy's state follows from gradients, so that the processes of one
    #: ``torchrun`` search (which average every gradient) stay equal; False where it also follows each
    #: process's own losses or data (rewards, kept batches, evolution), which a search over processes refuses.
    data_parallel: ClassVar[bool] = True
    #: Whether every loss of its step goes through ``ctx.task`` (then it searches restoration spaces too).
    any_task: ClassVar[bool] = False
    #: The budgets (``"latency"``, ``"flops"``) the strategy is held to by :meth:`arch_objective` or its
    #: own search; the run gives it a :class:`~toponas.hardware.budget.Budget` in ``self.budget``.
    budgets: ClassVar[tuple[str, ...]] = ()
    Hyper: ClassVar[type[Hyper]] = Hyper

    def __init__(self, space, hyper: Hyper | None = None) -> None:
        super().__init__()
        self.space = space
        self.hyper = hyper if hyper is not None else self.Hyper()
        self.budget = None  # a toponas.hardware.budget.Budget when the run has a latency/FLOPs target
        # One architecture matrix per group, shared by all cells; reference init 1e-3 * randn.
        self.alphas = nn.ParameterDict(
            {g: nn.Parameter(1e-3 * torch.randn(*shape)) for g, shape in space.arch_shapes.items()}
        )

    def make_context(self, model: nn.Module) -> StepContext:
        """The supernet's SGD and the architecture's Adam, built from this strategy's hyperparameters."""
        h = self.hyper
        weights = [p for p in model.parameters() if p.requires_grad]
        w_opt = torch.optim.SGD(weights, lr=h.w_lr, momentum=h.w_momentum, weight_decay=h.w_wd,
                                nesterov=h.w_nesterov)
        a_opt = torch.optim.Adam(list(self.alphas.values()), lr=h.a_lr, betas=(h.a_beta1, h.a_beta2),
                                 weight_decay=h.a_wd)
        return StepContext(model, weights, w_opt, a_opt, h)

    # -- lifecycle -------------------------------------------------------------------------------
    def new_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (temperature schedules and the like)."""

    def prepare_supernet(self, model: nn.Module, epoch: int) -> nn.Module:
        """The supernet to search from ``epoch`` on, made from the space's plain one before the
        simplifier runs (set-up of a run, or of its resumption at ``epoch``). Default: ``model``."""
        return model

    def after_epoch(self, ctx: StepContext, epoch: int, simplify: Callable[[nn.Module], nn.Module]) -> None:
        """Called after the last step of ``epoch``, before its checkpoint. A strategy that changes the
        supernet's structure here (DrNAS's progressive variant) does it in place, passes each new
        plain module through ``simplify`` (the run's ``--topo`` rewrite, on its device) and updates
        ``ctx`` (weights, optimizers); :meth:`prepare_supernet` must then build the same structure
        for a run resumed at ``epoch + 1``. Default: nothing."""

    def mixing(self) -> Mixing:
        """Mixing weights for one forward pass: ``softmax(alpha)`` per edge."""
        return Mixing({g: F.softmax(a, dim=-1) for g, a in self.alphas.items()})

    def regularizer(self, epoch: int) -> torch.Tensor | float:
        """Extra term of the architecture loss (none for DARTS)."""
        return 0.0

    def arch_objective(self, loss: torch.Tensor, epoch: int) -> torch.Tensor:
        """The architecture loss: ``loss`` plus :meth:`regularizer`, times the budget's cost factor under a
        fresh mixing (``max(1, E[LAT]/T)^beta``, see :mod:`toponas.hardware.budget`) when there is one."""
        total = loss + self.regularizer(epoch)
        if self.budget is not None and self.budget.kinds:
            total = total * self.budget.factor(self.mixing().weights)
        return total

    def derive(self):
        """The discrete architecture: the space's derivation applied to the parameters (within the budget)."""
        return self.fit_budget(self.space.derive({g: a.detach() for g, a in self.alphas.items()}))

    def fit_budget(self, arch):
        """``arch``, or with a budget the nearest architecture (by probability) that meets it
        (:meth:`toponas.hardware.budget.Budget.project`)."""
        if self.budget is None or not self.budget.kinds or not self.budgets:
            return arch
        return self.budget.project(self.space, self.probabilities(), arch)

    def epoch_summary(self) -> dict[str, Any]:
        """Extra figures for this epoch's line in ``history`` (e.g. sampled architectures)."""
        return {}

    def result_extras(self) -> dict[str, Any]:
        """Extra top-level fields of ``result.json`` (e.g. ``samples_total``)."""
        return {}

    def probabilities(self) -> dict[str, torch.Tensor]:
        """Per-edge candidate probabilities for logs and reports."""
        return {g: F.softmax(a.detach(), dim=-1) for g, a in self.alphas.items()}

    # -- one step --------------------------------------------------------------------------------
    def step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> StepStats:
        """One search step: a weight step on the weight batch and an architecture step."""
        if self.hyper.arch_first:
            a_loss, a_logits = self.arch_step(ctx, x_w, y_w, x_a, y_a)
            w_loss, w_logits = self.weight_step(ctx, x_w, y_w)
        else:
            w_loss, w_logits = self.weight_step(ctx, x_w, y_w)
            a_loss, a_logits = self.arch_step(ctx, x_w, y_w, x_a, y_a)
        return StepStats(
            w_loss.detach(),
            ctx.task.correct(w_logits.detach(), y_w),
            a_loss.detach(),
            ctx.task.correct(a_logits.detach(), y_a),
            int(y_w.shape[0]),
        )

    def forward_loss(self, ctx: StepContext, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """The task's loss (cross-entropy for classification) of the supernet under a fresh mixing."""
        logits = ctx.model(x, self.mixing())
        return ctx.task.loss(logits, y), logits

    def weight_step(self, ctx: StepContext, x, y) -> tuple[torch.Tensor, torch.Tensor]:
        """SGD on the supernet weights (gradients of the weights only), clipped."""
        loss, logits = self.forward_loss(ctx, x, y)
        # Weights of candidates that did not run (sampling strategies) get no gradient and, as in
        # the reference, no update: SGD skips parameters whose ``grad`` is None.
        grads = torch.autograd.grad(loss, ctx.weights, allow_unused=True)
        for p, g in zip(ctx.weights, grads):
            p.grad = g
        if ctx.hyper.grad_clip > 0:
            nn.utils.clip_grad_norm_(ctx.weights, ctx.hyper.grad_clip)
        ctx.w_optimizer.step()
        return loss, logits

    def arch_step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> tuple[torch.Tensor, torch.Tensor]:
        """Adam on the architecture parameters, first order: gradient of the validation loss."""
        loss, logits = self.forward_loss(ctx, x_a, y_a)
        total = self.arch_objective(loss, ctx.epoch)
        self.set_arch_grads(grads_or_zeros(total, list(self.alphas.values())))
        ctx.a_optimizer.step()
        return loss, logits

    def set_arch_grads(self, grads: Sequence[torch.Tensor]) -> None:
        for a, g in zip(self.alphas.values(), grads):
            a.grad = g
