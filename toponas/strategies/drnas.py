"""DrNAS: Dirichlet architecture distributions, and its progressive variant; the DrNAS training recipe.

Chen et al., "DrNAS: Dirichlet Neural Architecture Search" (ICLR 2021); the NAS-Bench-201 settings are
those of the public DrNAS code (``201-space`` search script). :class:`DrNASRecipe` is shared by SNAS
(:mod:`toponas.strategies.snas`) and beta-DARTS (:mod:`toponas.strategies.beta_darts`), which the DrNAS
code runs with the same recipe.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.distributions import Dirichlet, kl_divergence
from torch.nn import functional as F

from ..spaces import Mixing
from ..spaces.partial import fit_shape, make_partial, widen_partial
from .base import Hyper, StepContext
from .darts import DartsV1
from .registry import register_strategy


@dataclass
class DrNASRecipe(Hyper):
    """The DrNAS NAS-Bench-201 recipe (public DrNAS code, ``201-space`` search script).

    100 epochs, SGD without Nesterov and weight decay 3e-4, architecture step first, first order;
    the rest as DARTS (lr 0.025 cosine to 0.001, clip 5, Adam 3e-4 with betas (0.5, 0.999)).
    """

    epochs: int = 100
    w_nesterov: bool = False
    w_wd: float = 3e-4
    arch_first: bool = True


@dataclass
class DrNASHyper(DrNASRecipe):
    """``reg``: ``l2`` (Adam weight decay ``a_wd``, the default) or ``kl`` (``reg_scale * KL``, a_wd 0).

    ``progressive`` switches on the progressive variant of the DrNAS paper (two stages, partial
    channels, pruning between the stages, warm-up epochs; see :class:`DrNAS`). Off by default: the
    published NAS-Bench-201 figures come from the plain variant.
    """

    reg: str = "l2"
    reg_scale: float = 1e-3
    progressive: bool = False
    stage1_k: int = 4  # progressive: 1/4 of the channels go through the candidates in stage 1 ...
    stage2_k: int = 2  # ... and 1/2 in stage 2
    keep: int = 3  # progressive: candidates kept per edge at the switch (largest concentration)
    warmup_frac: float = 0.2  # progressive: share of each stage without architecture steps (10 of 50)

    def __post_init__(self) -> None:
        if self.reg not in ("l2", "kl"):
            raise ValueError(f"hyperparameter reg: {self.reg!r}; choose l2 or kl")
        if self.reg == "kl":
            self.a_wd = 0.0  # the KL term replaces the L2 penalty, as in the DrNAS code
        if self.progressive:
            if self.epochs < 2:
                raise ValueError("progressive DrNAS needs at least 2 epochs (two stages)")
            if not 1 <= self.stage2_k <= self.stage1_k:
                raise ValueError(f"progressive DrNAS: need 1 <= stage2_k <= stage1_k, got "
                                 f"stage1_k={self.stage1_k}, stage2_k={self.stage2_k}")
            if self.keep < 1 or not 0 <= self.warmup_frac < 1:
                raise ValueError("progressive DrNAS: keep must be >= 1 and warmup_frac in [0, 1)")

    @property
    def switch(self) -> int:
        """The first epoch of stage 2: the stages are the two halves of ``epochs`` (50 + 50)."""
        return self.epochs // 2

    def warming_up(self, epoch: int) -> bool:
        """Whether ``epoch`` is among the first ``round(warmup_frac * stage length)`` of its stage."""
        start, length = (0, self.switch) if epoch < self.switch else (self.switch, self.epochs - self.switch)
        return epoch - start < math.floor(self.warmup_frac * length + 0.5)


@register_strategy
class DrNAS(DartsV1):
    """Dirichlet mixing: ``theta ~ Dir(ELU(alpha) + 1)``, sampled with ``rsample`` per forward pass.

    The sample is shared by all cells (one architecture matrix). Derivation: argmax of the
    concentration, i.e. of alpha (ELU + 1 is monotone).

    Progressive variant (``progressive = true``): stage 1 (the first half of the epochs) searches a
    supernet of partial-channel edges (``1 / stage1_k`` of the channels through the candidates,
    :mod:`toponas.spaces.partial`). After its last epoch every edge keeps its ``keep`` candidates of
    largest concentration (the others weigh zero, do not run and are never derived) and the edges
    are widened to ``1 / stage2_k``, the new channels copies of the trained ones, the SGD momentum
    carried along. The first ``warmup_frac`` of each stage takes weight steps only.
    """

    name = "drnas"
    Hyper = DrNASHyper
    seed_batched = True  # its Dirichlet samples per seed (Strategy.sample); not the progressive variant

    def unbatched_because(self) -> str | None:
        return "progressive DrNAS changes its supernet between stages" if self.hyper.progressive else None

    def __init__(self, space, hyper: DrNASHyper | None = None) -> None:
        super().__init__(space, hyper)
        if self.hyper.progressive and not getattr(space, "partial_channels", True):
            raise ValueError(f"progressive DrNAS runs partial-channel edges (C_in == C_out), which the {space.name} "
                             f"space does not have; leave progressive off")
        if self.hyper.progressive:
            for g, (edges, cands) in space.arch_shapes.items():
                if self.hyper.keep > cands:
                    raise ValueError(f"progressive DrNAS: keep = {self.hyper.keep} exceeds the "
                                     f"{cands} candidates of the space")
                # the candidates still searched, per edge (all until the switch); checkpointed
                self.register_buffer(f"kept_{g}", torch.ones(edges, cands, dtype=torch.bool))

    def concentration(self, alpha: torch.Tensor) -> torch.Tensor:
        return F.elu(alpha) + 1

    def kept(self, group: str) -> torch.Tensor | None:
        """``(edges, keep)`` indices of the candidates still searched; None before any pruning."""
        mask = getattr(self, f"kept_{group}", None)
        if mask is None or bool(mask.all()):
            return None
        return mask.nonzero()[:, 1].view(mask.shape[0], -1)

    def mixing(self) -> Mixing:
        weights, active, pruned = {}, {}, False
        for g, a in self.alphas.items():
            idx = self.kept(g)
            if idx is None:
                weights[g] = self.sample(lambda c: Dirichlet(c).rsample(), self.concentration(a))
                active[g] = [list(range(a.shape[-1]))] * a.shape[0]
            else:  # a Dirichlet over the kept candidates; the pruned ones weigh zero and do not run
                theta = Dirichlet(self.concentration(a).gather(-1, idx)).rsample()
                weights[g] = torch.zeros_like(a).scatter(-1, idx, theta)
                active[g], pruned = idx.tolist(), True
        return Mixing(weights, active if pruned else None)

    def regularizer(self, epoch: int) -> torch.Tensor | float:
        if self.hyper.reg != "kl":
            return 0.0
        total = 0.0
        for g, a in self.alphas.items():
            beta = self.concentration(a)
            idx = self.kept(g)
            if idx is not None:
                beta = beta.gather(-1, idx)
            total = total + kl_divergence(Dirichlet(beta), Dirichlet(torch.ones_like(beta))).sum()
        return self.hyper.reg_scale * total

    def _masked(self, g: str, a: torch.Tensor, fill: float) -> torch.Tensor:
        """``a`` with the pruned candidates' entries set to ``fill``."""
        mask = getattr(self, f"kept_{g}", None)
        return a if mask is None else a.masked_fill(~mask, fill)

    def derive(self):
        """Argmax of the concentration over the candidates still searched (a pruned one never wins)."""
        return self.fit_budget(self.space.derive({g: self._masked(g, a.detach(), float("-inf"))
                                                  for g, a in self.alphas.items()}))

    def probabilities(self) -> dict[str, torch.Tensor]:
        """The Dirichlet mean ``beta / sum(beta)`` per edge (over the kept candidates once pruned)."""
        out = {}
        for g, a in self.alphas.items():
            beta = self._masked(g, self.concentration(a.detach()), 0.0)
            out[g] = beta / beta.sum(-1, keepdim=True)
        return out

    # -- the progressive variant -----------------------------------------------------------------
    def prepare_supernet(self, model: nn.Module, epoch: int) -> nn.Module:
        """Progressive: the partial-channel supernet of the stage ``epoch`` is in."""
        h = self.hyper
        if not h.progressive:
            return model
        return make_partial(model, h.stage1_k if epoch < h.switch else h.stage2_k)

    def arch_step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> tuple[torch.Tensor, torch.Tensor]:
        if self.hyper.progressive and self.hyper.warming_up(ctx.epoch):
            with torch.no_grad():  # warm-up: the architecture batch is only scored
                return self.forward_loss(ctx, x_a, y_a)
        return super().arch_step(ctx, x_w, y_w, x_a, y_a)

    def prune(self) -> None:
        """Keep the ``keep`` candidates of largest concentration on every edge (among those kept)."""
        for g, a in self.alphas.items():
            mask = getattr(self, f"kept_{g}")
            top = self._masked(g, a.detach(), float("-inf")).topk(self.hyper.keep, dim=-1).indices
            mask.zero_().scatter_(-1, top, True)

    def after_epoch(self, ctx: StepContext, epoch: int, simplify: Callable[[nn.Module], nn.Module]) -> StepContext:
        """Progressive, after the last epoch of stage 1: prune, widen, carry the SGD state over (a new context)."""
        h = self.hyper
        if not h.progressive or epoch + 1 != h.switch:
            return ctx
        self.prune()
        old_params = dict(ctx.model.named_parameters())
        old_state = {n: ctx.w_optimizer.state.get(p) for n, p in old_params.items()}
        lrs = [group["lr"] for group in ctx.w_optimizer.param_groups]
        widen_partial(ctx.model, h.stage2_k, simplify)
        fresh = self.make_context(ctx.model)
        for name, p in ctx.model.named_parameters():
            shape, state = old_params[name].shape, old_state[name]
            if state:  # momentum buffers widened like their parameters
                fresh.w_optimizer.state[p] = {
                    k: fit_shape(v, p.shape) if torch.is_tensor(v) and v.shape == shape else v
                    for k, v in state.items()
                }
        for group, lr in zip(fresh.w_optimizer.param_groups, lrs):
            group["lr"] = lr
        return dataclasses.replace(ctx, weights=fresh.weights, w_optimizer=fresh.w_optimizer)
