"""DARTS-V1 (first order) and DARTS-V2 (second order, unrolled weight step)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Hyper, StepContext, Strategy, grads_or_zeros


class DartsV1(Strategy):
    """DARTS first order: the base strategy as is (xautodl ``DARTS-V1``)."""

    name = "darts-v1"
    any_task = True
    budgets = ("latency", "flops")


@dataclass
class DartsV2Hyper(Hyper):
    """DARTS-V2 takes the architecture step first (xautodl ``DARTS-V2`` search script)."""

    arch_first: bool = True
    fd_eps: float = 0.01  # finite-difference step: eps = fd_eps / ||v|| (reference: 0.01)


class DartsV2(Strategy):
    """DARTS second order: the architecture gradient through one virtual weight step.

    ``grad_alpha L_val(w') - lr * H`` with ``w' = w - lr (momentum * m + grad_w L_train + wd * w)``
    and the Hessian-vector product ``H`` by central finite differences, ``eps = 0.01 / ||v||``.
    Cost: about three extra forward/backward passes per step over DARTS-V1.
    """

    name = "darts-v2"
    budgets = ("latency", "flops")
    Hyper = DartsV2Hyper
    any_task = True

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
        eps = ctx.hyper.fd_eps / torch.sqrt(sum((g * g).sum() for g in v)).clamp_min(1e-12)
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
                    w.copy_(b + sign * eps * d)
            loss, _ = self.forward_loss(ctx, x, y)
            grads.append(grads_or_zeros(loss, alphas))
        return [(p - m) / (2 * eps) for p, m in zip(*grads)]
