"""FP-NAS: fast probabilistic search, PARSEC with adaptive sampling, coarse-to-fine and a FLOPs term.

Yan et al., "FP-NAS: Fast Probabilistic Neural Architecture Search" (CVPR 2021); see the
"Sampling family" of ``docs/METHODS.md``. Built on :class:`~toponas.strategies.parsec.PARSEC`:

* *adaptive sampling*: ``K = max(1, ceil(sample_scale * H))`` each step, ``H`` the entropy (nats) of
  the current distribution: many samples while it is uncertain, one when it is sharp;
* *coarse-to-fine*: after ``joint_after`` epochs (default: half of the run's) the edges into the
  last node of the cell (on NAS-Bench-201 ``3<-0, 3<-1, 3<-2``, rows 3-5) switch from three
  factorized categoricals to one joint categorical over their product (5^3 = 125 states),
  initialized to the sum of the factorized log-probabilities so the distribution is unchanged at
  the switch;
* *cost-aware* (optional, ``flops_target > 0``): the loss of child k in the distribution phase
  becomes ``-l_k + beta * log C_k``, ``C_k = max(0, FLOPs_k / target - 1) + eps``. FLOPs come from
  :mod:`toponas.flops` (computed from the candidate declarations).

Where the joint logits live: the search loop builds its Adam from ``alphas`` and writes ``alphas``
to ``result.json`` row by edge, so the joint logits are a separate parameter (``joint``), allocated
at construction and unused until the switch, with their own Adam (same hyperparameters, fresh state
at the switch), which :meth:`FPNAS.optimizers` hands the loop for its checkpoints. After the switch the
rows of ``alphas`` that the joint part replaces hold its log-marginals (centred), so the reported
``alphas`` and probabilities stay meaningful; the derived architecture is the argmax joint state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..flops import cost_table
from .base import StepContext, _coerce
from .parsec import PARSEC, ImportanceHyper
from .registry import register_strategy
from .sampling import (
    Draws,
    adaptive_samples,
    decode_joint,
    entropy,
    joint_logits,
    joint_marginals,
    one_hot,
    sample_choices,
    score_gradient,
)

#: Joint distributions larger than this are refused (their logits would not be a "group of choices").
MAX_JOINT_STATES = 1 << 16


@dataclass
class FPNASHyper(ImportanceHyper):
    """FP-NAS hyperparameters; the rest (optimizers, 50 epochs) are the NAS-Bench-201 DARTS defaults.

    * ``sample_scale`` lambda of ``K = ceil(lambda * H)``: 1.5 gives K = 15 on the uniform
      NAS-Bench-201 distribution (H = 6 ln 5 = 9.66 nats), as in ``docs/METHODS.md`` (unverified).
    * ``joint_after``: epochs of factorized search before the joint one. ``None`` (the default) is
      half of the run's epochs (25 of the default 50; 4 of the CPU budget's 8): our choice,
      unverified. It was a fixed 25, which never switched in a run shortened with ``--epochs``.
      A negative value never switches, 0 starts joint.
    * ``flops_target`` in MFLOPs (millions of multiply-accumulates, the NAS-Bench-201 convention)
      of the network given by ``flops_channels/cells/image_size/classes`` (default: the
      NAS-Bench-201 CIFAR-10 network, C=16, N=5, 32x32, 10 classes; 7.8 to 220 MFLOPs); 0 disables
      the cost term. A space with its own ``cost_table`` (``--space mobile``: 7.5 to 79.6 MFLOPs at
      C=16, 32x32; its depth is its stage table, ``flops_cells`` unused) gives the FLOPs.
      ``flops_beta`` (1.0) and ``flops_eps`` (0.01) are our choices (unverified).
    """

    sample_scale: float = 1.5
    joint_after: int | None = None
    flops_target: float = 0.0
    flops_beta: float = 1.0
    flops_eps: float = 0.01
    flops_channels: int = 16
    flops_cells: int = 5
    flops_image_size: int = 32
    flops_classes: int = 10

    @classmethod
    def resolve(cls, overrides: Mapping[str, Any] | None = None) -> FPNASHyper:
        """As :meth:`Hyper.resolve`; ``joint_after`` given as text may also be ``none`` (half the epochs)."""
        overrides = dict(overrides or {})
        value = overrides.get("joint_after")
        if isinstance(value, str):
            text = value.strip().lower()
            overrides["joint_after"] = None if text in ("", "none", "null") else _coerce(text, "int", "joint_after")
        return super().resolve(overrides)

    def joint_epoch(self, epochs: int) -> int:
        """The epoch of the switch in a run of ``epochs`` epochs (negative: never)."""
        return epochs // 2 if self.joint_after is None else self.joint_after

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.sample_scale <= 0:
            raise ValueError(f"hyperparameter sample_scale must be positive, got {self.sample_scale}")
        if self.flops_target < 0 or self.flops_eps <= 0:
            raise ValueError("hyperparameters flops_target must be >= 0 and flops_eps > 0")


def last_node_rows(edge_keys: list[str]) -> list[int]:
    """Rows of the edges into the highest-numbered node (``"i<-j"`` keys); empty if keys differ."""
    try:
        targets = [int(k.split("<-")[0]) for k in edge_keys]
    except ValueError:
        return []
    last = max(targets)
    return [r for r, t in enumerate(targets) if t == last]


@register_strategy
class FPNAS(PARSEC):
    """PARSEC with adaptive K, the factorized-to-joint switch and an optional FLOPs term."""

    name = "fp-nas"
    Hyper = FPNASHyper

    def __init__(self, space, hyper: FPNASHyper | None = None) -> None:
        super().__init__(space, hyper)
        h = self.hyper
        self.joint_rows: dict[str, list[int]] = {}
        for g, keys in space.edge_keys.items():
            rows = last_node_rows(keys)
            if len(rows) >= 2 and self.num_candidates[g] ** len(rows) <= MAX_JOINT_STATES:
                self.joint_rows[g] = rows
        self.joint = nn.ParameterDict({
            g: nn.Parameter(torch.zeros(self.num_candidates[g] ** len(rows)))
            for g, rows in self.joint_rows.items()
        })
        self.register_buffer("joint_on", torch.zeros((), dtype=torch.bool))
        self.joint_optimizer: torch.optim.Optimizer | None = None
        self.flops = None
        if h.flops_target > 0:
            if hasattr(space, "cost_table"):  # a space with its own FLOPs model (e.g. mobile: widths interact)
                self.flops = space.cost_table(h.flops_channels, h.flops_cells, h.flops_image_size, h.flops_classes)
            else:
                self.flops = cost_table(space, h.flops_channels, h.flops_cells, h.flops_image_size,
                                        h.flops_classes)

    # -- the switch ------------------------------------------------------------------------------
    @property
    def is_joint(self) -> bool:
        return bool(self.joint_on)

    def new_epoch(self, epoch: int, epochs: int) -> None:
        super().new_epoch(epoch, epochs)
        after = self.hyper.joint_epoch(epochs)
        if after >= 0 and epoch >= after and not self.is_joint:
            self.switch_to_joint()

    def switch_to_joint(self) -> None:
        """Replace the factorized rows by a joint categorical with the same distribution.

        The joint logits are ``sum_e log p_e(a_e)`` minus their mean (a shift softmax ignores; it
        keeps them near zero, where Adam's weight decay is as mild as on the factorized logits).
        The joint parameters get a fresh Adam. A space without such a group stays factorized.
        """
        if not self.joint_rows:
            return
        with torch.no_grad():
            for g, rows in self.joint_rows.items():
                alpha = self.alphas[g]
                logits = joint_logits(alpha[rows])
                self.joint[g].copy_(logits - logits.mean())
                log_p = F.log_softmax(alpha[rows], dim=-1)
                alpha[rows] = log_p - log_p.mean(-1, keepdim=True)
        self.joint_on.fill_(True)
        self.joint_optimizer = self._make_joint_optimizer()

    def _make_joint_optimizer(self) -> torch.optim.Optimizer:
        h = self.hyper
        return torch.optim.Adam(list(self.joint.values()), lr=h.a_lr, betas=(h.a_beta1, h.a_beta2),
                                weight_decay=h.a_wd)

    def make_context(self, model: nn.Module) -> StepContext:
        """The base context and the joint logits' own Adam (fresh, as at the switch; none without joint rows)."""
        ctx = super().make_context(model)
        self.joint_optimizer = self._make_joint_optimizer() if self.joint_rows else None
        return ctx

    def optimizers(self, ctx: StepContext) -> dict[str, Any]:
        """The base optimizers and the joint logits' Adam (checkpointed before the switch too: an empty state)."""
        if not self.joint_rows:
            return super().optimizers(ctx)
        if self.joint_optimizer is None:
            self.joint_optimizer = self._make_joint_optimizer()
        return {**super().optimizers(ctx), "joint_optimizer": self.joint_optimizer}

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """As ``nn.Module``'s; a checkpoint written before the strategy contract kept the joint Adam's state in
        the strategy's extra state: it is loaded into the joint Adam here (the loop then finds no entry for it)."""
        state_dict = dict(state_dict)
        legacy = state_dict.pop("_extra_state", None)
        out = super().load_state_dict(state_dict, strict=strict, assign=assign)
        if legacy is not None and legacy.get("joint_optimizer") is not None:
            if self.joint_optimizer is None:
                self.joint_optimizer = self._make_joint_optimizer()
            self.joint_optimizer.load_state_dict(legacy["joint_optimizer"])
        return out

    # -- the distribution --------------------------------------------------------------------------
    def _free_rows(self, g: str) -> list[int]:
        """Rows of group ``g`` that are still factorized."""
        joint = set(self.joint_rows.get(g, ())) if self.is_joint else set()
        return [r for r in range(self.alphas[g].shape[0]) if r not in joint]

    def sample(self, n: int) -> Draws:
        if not self.is_joint:
            return super().sample(n)
        choices, states = {}, {}
        for g, logits in self.logits().items():
            c = sample_choices(logits, n)
            if g in self.joint_rows:
                rows = self.joint_rows[g]
                s = sample_choices(self.joint[g].detach()[None], n)[:, 0]
                c[:, rows] = decode_joint(s, self.num_candidates[g], len(rows))
                states[g] = s
            choices[g] = c
        return Draws(choices, states)

    def entropy(self) -> float:
        """Sum of the factorized rows' entropies plus, after the switch, the joint ones'."""
        total = 0.0
        for g, logits in self.logits().items():
            total += float(entropy(logits[self._free_rows(g)]))
            if self.is_joint and g in self.joint:
                total += float(entropy(self.joint[g]))
        return total

    def num_samples(self) -> int:
        return adaptive_samples(self.entropy(), self.hyper.sample_scale)

    def joint_probabilities(self) -> dict[str, torch.Tensor]:
        """The distribution over each joint group's states (the product one before the switch)."""
        if self.is_joint:
            return {g: F.softmax(p.detach(), dim=-1) for g, p in self.joint.items()}
        return {g: F.softmax(joint_logits(self.alphas[g].detach()[rows]), dim=-1)
                for g, rows in self.joint_rows.items()}

    def probabilities(self) -> dict[str, torch.Tensor]:
        """Per-edge probabilities; the joint rows report the joint's marginals."""
        out = super().probabilities()
        if self.is_joint:
            for g, rows in self.joint_rows.items():
                out[g] = out[g].clone()
                out[g][rows] = joint_marginals(self.joint[g], self.num_candidates[g], len(rows)).to(out[g])
        return out

    def derive(self):
        """Argmax per factorized edge; the joint rows take the decoded most probable joint state."""
        if not self.is_joint:
            return super().derive()
        scores = {}
        for g, logits in self.logits().items():
            scores[g] = logits.clone()
            if g in self.joint_rows:
                rows = self.joint_rows[g]
                best = decode_joint(self.joint[g].detach().argmax(), self.num_candidates[g], len(rows))
                scores[g][rows] = one_hot(best, self.num_candidates[g], like=logits)
        return self.space.derive(scores)

    # -- updates -----------------------------------------------------------------------------------
    def cost(self, draws: Draws) -> torch.Tensor | float:
        """``beta * log(max(0, MFLOPs_k / target - 1) + eps)`` per child (0 without a target)."""
        if self.flops is None:
            return 0.0
        h = self.hyper
        mflops = self._flops(draws.choices).double() / 1e6
        c = (mflops / h.flops_target - 1).clamp_min(0) + h.flops_eps
        return (h.flops_beta * c.log()).to(next(iter(self.alphas.values())))

    def _flops(self, choices: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """FLOPs of architectures given as choices per group (the space protocol's ``CostModel``: the
        group's ``(..., rows)`` for a single-group space, the mapping for a space of several groups)."""
        if len(choices) == 1:
            (only,) = choices.values()
            return self.flops(only)
        return self.flops(choices)

    def update_distribution(self, ctx: StepContext, draws: Draws, omega: torch.Tensor) -> None:
        """Score gradients for the factorized rows (Adam of the loop) and the joint logits (own Adam)."""
        logits = self.logits()
        for g, a in self.alphas.items():
            grad = score_gradient(logits[g], draws.choices[g], omega)
            if self.is_joint and g in self.joint_rows:
                grad[self.joint_rows[g]] = 0.0
            a.grad = grad.to(a)
        ctx.a_optimizer.step()
        if not self.is_joint:
            return
        for g, p in self.joint.items():
            p.grad = score_gradient(p.detach()[None], draws.joint[g][:, None], omega)[0].to(p)
        self.joint_optimizer.step()
        with torch.no_grad():  # the replaced rows report the joint's (centred) log-marginals
            for g, rows in self.joint_rows.items():
                marg = joint_marginals(self.joint[g], self.num_candidates[g], len(rows))
                log_m = marg.clamp_min(1e-30).log()
                self.alphas[g][rows] = (log_m - log_m.mean(-1, keepdim=True)).to(self.alphas[g])

    def epoch_summary(self) -> dict[str, Any]:
        out = {**super().epoch_summary(), "joint": self.is_joint}
        if self.flops is not None:
            cell = self.derive()
            if hasattr(self.space, "choices"):
                choices = self.space.choices(cell)
            else:
                index = {op: i for i, op in enumerate(self.space.op_names)}
                choices = {g: torch.tensor([index[op] for op in cell.ops]) for g in self.alphas}
            out["mflops"] = int(self._flops(choices)) / 1e6
        return out
