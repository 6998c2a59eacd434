"""DARTS-V1 (first order), the reference implementation of the strategy contract, and DARTS-V2 (second order).

Liu, Simonyan and Yang, "DARTS: Differentiable Architecture Search" (ICLR 2019); the NAS-Bench-201 settings
are xautodl 1.0.0's (``configs/nas-benchmark/algos/DARTS.config`` and the DARTS-V1/V2 search scripts).
:class:`DartsV1` implements every hook of :class:`~toponas.strategies.base.Strategy`; most strategies
override a few of its smaller methods (``mixing``, ``regularizer``, ``arch_step``, ``new_epoch``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from ..spaces import Mixing
from .base import Hyper, StepContext, StepStats, Strategy, cosine_lr, grads_or_zeros, per_seed, set_arch_lr
from .registry import register_strategy


@register_strategy
class DartsV1(Strategy):
    """DARTS-V1 (first order, xautodl ``DARTS-V1``): softmax mixing, weight step then architecture step.

    One architecture matrix per group, shared by all cells, initialized ``1e-3 * randn``; the weights' SGD
    (lr cosine-annealed per epoch from ``w_lr`` to ``w_lr_min``) and the architecture's Adam are built by
    :meth:`make_context`. Cost note: every candidate of every edge runs and is kept for backward, so time
    and activation memory grow with the number of candidates; ``toponas.topo`` simplifies the supernet.
    """

    name = "darts-v1"
    any_task = True
    seed_batched = True
    budgets = ("latency", "flops")

    def __init__(self, space, hyper: Hyper | None = None) -> None:
        super().__init__(space, hyper)
        # One architecture matrix per group, shared by all cells; reference init 1e-3 * randn.
        self.alphas = nn.ParameterDict(
            {g: nn.Parameter(1e-3 * torch.randn(*shape)) for g, shape in space.arch_shapes.items()}
        )

    # -- the contract ----------------------------------------------------------------------------
    def make_context(self, model: nn.Module) -> StepContext:
        """The supernet's SGD and the architecture's Adam, built from this strategy's hyperparameters."""
        h = self.hyper
        weights = [p for p in model.parameters() if p.requires_grad]
        w_opt = torch.optim.SGD(weights, lr=h.w_lr, momentum=h.w_momentum, weight_decay=h.w_wd,
                                nesterov=h.w_nesterov)
        a_opt = torch.optim.Adam(list(self.alphas.values()), lr=h.a_lr, betas=(h.a_beta1, h.a_beta2),
                                 weight_decay=h.a_wd)
        return StepContext(model, weights, w_opt, a_opt, h)

    def begin_epoch(self, ctx: StepContext, epoch: int, epochs: int) -> dict[str, float]:
        """:meth:`new_epoch` (temperatures and the like), then the weights' cosine learning rate."""
        h = self.hyper
        self.new_epoch(epoch, epochs)
        lr = cosine_lr(h.w_lr, h.w_lr_min, epoch, epochs)
        for group in ctx.w_optimizer.param_groups:
            group["lr"] = lr
        ctx.epoch = epoch
        return {"lr": lr, **set_arch_lr(ctx, epoch, epochs)}

    def new_epoch(self, epoch: int, epochs: int) -> None:
        """The strategy's own per-epoch schedule (temperatures, supports ...), before the learning rate's."""

    def derive(self):
        """The discrete architecture: the space's derivation applied to the parameters (within the budget)."""
        return self.fit_budget(self.space.derive({g: a.detach() for g, a in self.alphas.items()}))

    def probabilities(self) -> dict[str, torch.Tensor]:
        """Per-edge candidate probabilities ``softmax(alpha)``."""
        return {g: F.softmax(a.detach(), dim=-1) for g, a in self.alphas.items()}

    def arch_parameters(self) -> dict[str, torch.Tensor]:
        return dict(self.alphas.items())

    # -- what the step is made of ----------------------------------------------------------------
    def mixing(self) -> Mixing:
        """Mixing weights for one forward pass: ``softmax(alpha)`` per edge (profilers call it too)."""
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

    def fit_budget(self, arch):
        """``arch``, or with a budget the nearest architecture (by probability) that meets it
        (:meth:`toponas.hardware.budget.Budget.project`)."""
        if self.budget is None or not self.budget.kinds or not self.budgets:
            return arch
        return self.budget.project(self.space, self.probabilities(), arch)

    def step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> StepStats:
        """One search step: a weight step on the weight batch and an architecture step (``arch_first``: reversed)."""
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
            ctx.clip_grad_norm(ctx.weights, ctx.hyper.grad_clip)
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


@dataclass
class DartsV2Hyper(Hyper):
    """DARTS-V2 takes the architecture step first (xautodl ``DARTS-V2`` search script)."""

    arch_first: bool = True
    fd_eps: float = 0.01  # finite-difference step: eps = fd_eps / ||v|| (reference: 0.01)


@register_strategy
class DartsV2(DartsV1):
    """DARTS second order: the architecture gradient through one virtual weight step.

    ``grad_alpha L_val(w') - lr * H`` with ``w' = w - lr (momentum * m + grad_w L_train + wd * w)``
    and the Hessian-vector product ``H`` by central finite differences, ``eps = 0.01 / ||v||``.
    Cost: about three extra forward/backward passes per step over DARTS-V1.
    """

    name = "darts-v2"
    Hyper = DartsV2Hyper
    seed_batched = True  # the finite-difference step is per seed (ctx.seed_dims)

    def arch_step(self, ctx: StepContext, x_w, y_w, x_a, y_a):
        weights = list(ctx.weights)
        alphas = list(self.alphas.values())
        lr = ctx.w_optimizer.param_groups[0]["lr"]
        momentum = ctx.hyper.w_momentum
        # Virtual step w' from the training loss (the architecture parameters are not in `weights`).
        train_loss, _ = self.forward_loss(ctx, x_w, y_w)
        grads = torch.autograd.grad(train_loss, weights)
        backup = [w.detach().clone() for w in weights]
        with torch.no_grad():
            for w, g in zip(weights, grads):
                buf = ctx.w_optimizer.state.get(w, {}).get("momentum_buffer")
                m = momentum * buf if buf is not None else torch.zeros_like(w)
                w.sub_(lr * (m + g + ctx.hyper.w_wd * w))
        # Validation loss at w': gradients for alpha and the direction v.
        logits = ctx.model(x_a, self.mixing())
        val_loss = ctx.task.loss(logits, y_a)
        total = self.arch_objective(val_loss, ctx.epoch)
        out = grads_or_zeros(total, alphas + weights)
        d_alpha, v = out[: len(alphas)], out[len(alphas):]
        norm = torch.sqrt(sum((g * g).flatten(ctx.seed_dims).sum(-1) for g in v))  # one per seed
        eps = ctx.hyper.fd_eps / norm.clamp_min(1e-12)
        hessian = self._hessian_vector(ctx, weights, backup, v, eps, x_w, y_w)
        with torch.no_grad():
            for w, b in zip(weights, backup):
                w.copy_(b)
        self.set_arch_grads([d - lr * h for d, h in zip(d_alpha, hessian)])
        ctx.a_optimizer.step()
        return val_loss, logits

    def _hessian_vector(self, ctx, weights, backup, v, eps, x, y) -> list[torch.Tensor]:
        """``(grad_alpha L_train(w + eps v) - grad_alpha L_train(w - eps v)) / (2 eps)``."""
        alphas = list(self.alphas.values())
        grads = []
        for sign in (1.0, -1.0):
            with torch.no_grad():
                for w, b, d in zip(weights, backup, v):
                    w.copy_(b + sign * per_seed(eps, d) * d)
            loss, _ = self.forward_loss(ctx, x, y)
            grads.append(grads_or_zeros(loss, alphas))
        return [(p - m) / (2 * per_seed(eps, p)) for p, m in zip(*grads)]
