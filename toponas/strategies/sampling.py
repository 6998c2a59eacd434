"""Shared pieces of the sampling strategies (PARSEC, FP-NAS, AdvantageNAS): pure functions on logits.

Everything here is small and free of state so it can be tested on hand-computable cases:

* :func:`sample_choices` draws architectures exactly from per-edge categoricals;
* :func:`single_path_mixing` turns one architecture into the ``Mixing`` of a single-path forward
  (only the sampled candidate of each edge runs, so memory is that of one network; GDAS' hard
  samples are the same ``Mixing`` with straight-through weights);
* :func:`importance_weights`, :func:`score_gradient` and :class:`SoftmaxWeightedSum` are the PARSEC
  estimator (``omega = softmax_k(l_k)``, ``sum_k omega_k (onehot(a_k) - p)``, and the weights'
  ``sum_k omega_k grad_k`` accumulated child by child);
* :func:`entropy` and :func:`adaptive_samples` are FP-NAS' entropy-to-K rule;
* :func:`joint_logits` / :func:`decode_joint` the factorized-to-joint switch of FP-NAS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..spaces import Mixing
from .base import Hyper, StepContext, StepStats
from .darts import DartsV1


def sample_choices(logits: torch.Tensor, n: int) -> torch.Tensor:
    """``n`` exact draws from the categorical ``softmax(logits)`` of every row: shape ``(n, rows)``.

    Uses the global RNG (the search loop reseeds it every step, so sampling is resumable).
    Entries of ``logits`` at ``-inf`` have probability 0 and are never drawn.
    """
    probs = F.softmax(logits.detach().float(), dim=-1).reshape(-1, logits.shape[-1])
    return torch.multinomial(probs, n, replacement=True).t().contiguous()


def one_hot(choices: torch.Tensor, num_candidates: int, like: torch.Tensor | None = None) -> torch.Tensor:
    """One-hot rows of ``choices`` (any shape) over ``num_candidates``, in ``like``'s dtype/device."""
    out = F.one_hot(choices, num_candidates)
    return out.to(like) if like is not None else out.float()


def single_path_mixing(
    choices: Mapping[str, torch.Tensor],
    weights: Mapping[str, torch.Tensor] | None = None,
    num_candidates: Mapping[str, int] | None = None,
) -> Mixing:
    """The ``Mixing`` of a single-path forward: edge ``e`` of group ``g`` runs only ``choices[g][e]``.

    ``weights[g]`` (shape ``(edges, candidates)``) defaults to the constant one-hot of the choices;
    pass a one-hot that requires grad for a differentiable gate (AdvantageNAS) or GDAS' straight-
    through sample. The supernet adds inactive weights as zero-valued scalars, so every gate still
    receives a gradient although only one candidate per edge computes anything.
    """
    if weights is None:
        if num_candidates is None:
            raise ValueError("single_path_mixing needs weights or num_candidates")
        weights = {g: one_hot(c, num_candidates[g]) for g, c in choices.items()}
    active = {g: [[i] for i in c.tolist()] for g, c in choices.items()}
    return Mixing(dict(weights), active)


def importance_weights(loglik: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """PARSEC's importance weights ``omega = softmax_k(l_k / T)`` of the children's log-likelihoods.

    ``T = 1`` is the paper's estimator (self-normalized importance sampling with the prior as the
    proposal). With log-likelihoods summed over a batch the weights are very peaked; ``T > 1``
    flattens them (an option that is not from the paper).
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return F.softmax(loglik / temperature, dim=0)


def score_gradient(logits: torch.Tensor, choices: torch.Tensor, omega: torch.Tensor) -> torch.Tensor:
    """Loss gradient of the distribution: ``-sum_k omega_k (onehot(a_k) - softmax(logits))``.

    ``logits`` ``(rows, C)``, ``choices`` ``(K, rows)``, ``omega`` ``(K,)``. The ascent direction on
    the marginal likelihood ``log E_{a ~ p}[p(y | a)]`` is ``sum_k omega_k grad log p(a_k)``, and the
    gradient of ``log p(a)`` w.r.t. the logits of a categorical is ``onehot(a) - p``; the sign is
    flipped so an optimizer that *descends* (Adam) ascends the likelihood. Candidates at ``-inf``
    get zero gradient.
    """
    probs = F.softmax(logits.detach(), dim=-1)
    omega = omega.to(probs)
    hits = torch.einsum("k,krc->rc", omega, one_hot(choices, logits.shape[-1], like=probs))
    return -(hits - omega.sum() * probs)


class SoftmaxWeightedSum:
    """``sum_k softmax(l)_k g_k`` accumulated one ``(l_k, g_k)`` at a time (the online-softmax trick).

    PARSEC's weight gradient needs every child's likelihood before any weight is known; keeping K
    gradients would cost K copies of the weights' gradients. Instead the running sum is kept scaled
    by ``exp(l_k - m)`` with ``m`` the running maximum and rescaled whenever the maximum grows: one
    gradient buffer and one child's activations, exact up to rounding. ``None`` gradients (parameters
    a child does not use) count as zero.
    """

    def __init__(self) -> None:
        self.max: torch.Tensor | None = None
        self.norm: torch.Tensor | None = None
        self.sums: list[torch.Tensor | None] = []
        self.logliks: list[torch.Tensor] = []

    def add(self, loglik: torch.Tensor, grads: Sequence[torch.Tensor | None]) -> None:
        loglik = loglik.detach()
        self.logliks.append(loglik)
        if self.max is None:
            self.max, self.norm = loglik, torch.ones_like(loglik)
            self.sums = [None if g is None else g.detach().clone() for g in grads]
            return
        new_max = torch.maximum(self.max, loglik)
        old_scale, scale = torch.exp(self.max - new_max), torch.exp(loglik - new_max)
        self.max, self.norm = new_max, self.norm * old_scale + scale
        for i, g in enumerate(grads):
            s = self.sums[i]
            if s is not None:
                s.mul_(old_scale.to(s.dtype))
            if g is not None:
                term = g.detach() * scale.to(g.dtype)
                self.sums[i] = term if s is None else s.add_(term)

    def result(self) -> list[torch.Tensor | None]:
        """The weighted sum (``None`` where no child produced a gradient)."""
        if self.norm is None:
            raise ValueError("no gradients were added")
        return [None if s is None else s / self.norm.to(s.dtype) for s in self.sums]

    def weights(self) -> torch.Tensor:
        """The importance weights ``softmax(l)`` of the children added so far."""
        return F.softmax(torch.stack(self.logliks), dim=0)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Sum over rows of the entropy (nats) of ``softmax(row)``; ``-inf`` entries contribute 0."""
    probs = F.softmax(logits.detach().float(), dim=-1)
    return torch.special.entr(probs).sum()


def adaptive_samples(entropy_nats: float, scale: float) -> int:
    """FP-NAS' number of samples: ``K = max(1, ceil(scale * H))`` (many while uncertain, 1 when sharp)."""
    return max(1, math.ceil(scale * float(entropy_nats)))


def joint_logits(rows: torch.Tensor) -> torch.Tensor:
    """Joint logits over the product of the rows' categoricals, equal to the product distribution.

    ``rows`` ``(n, C)`` factorized logits; the result ``(C**n,)`` holds ``sum_e log p_e(a_e)`` at
    state ``s = a_0 C^(n-1) + ... + a_(n-1)`` (row-major), so ``softmax(result)`` is exactly the
    product of the factorized distributions: the switch leaves the distribution unchanged.
    """
    log_p = F.log_softmax(rows.detach(), dim=-1)
    total = log_p[0]
    for row in log_p[1:]:
        total = (total[:, None] + row[None, :]).reshape(-1)
    return total


def decode_joint(states: torch.Tensor, num_candidates: int, rows: int) -> torch.Tensor:
    """Per-row choices of joint states (any shape ``S``) as ``S + (rows,)``, row-major as in :func:`joint_logits`."""
    digits = []
    rest = states
    for _ in range(rows):
        digits.append(rest % num_candidates)
        rest = torch.div(rest, num_candidates, rounding_mode="floor")
    return torch.stack(digits[::-1], dim=-1)


def joint_marginals(logits: torch.Tensor, num_candidates: int, rows: int) -> torch.Tensor:
    """Per-row marginal probabilities ``(rows, C)`` of a joint categorical over ``C**rows`` states."""
    probs = F.softmax(logits.detach(), dim=-1).reshape((num_candidates,) * rows)
    dims = tuple(range(rows))
    return torch.stack([probs.sum(dim=tuple(d for d in dims if d != r)) for r in range(rows)])


# -- the common strategy ------------------------------------------------------------------------
@dataclass
class Draws:
    """``K`` sampled architectures: ``choices[g]`` ``(K, edges)`` candidate indices per group.

    ``joint[g]`` ``(K,)`` holds the joint states they were decoded from (FP-NAS after its switch to
    a joint distribution); empty otherwise. The active lists of the single-path forward are read
    back from the device once for all children.
    """

    choices: dict[str, torch.Tensor]
    joint: dict[str, torch.Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._lists = {g: c.tolist() for g, c in self.choices.items()}

    @property
    def n(self) -> int:
        return next(iter(self.choices.values())).shape[0]

    def child(self, k: int) -> dict[str, torch.Tensor]:
        """Choices of child ``k``: group -> ``(edges,)``."""
        return {g: c[k] for g, c in self.choices.items()}

    def mixing(self, k: int, weights: Mapping[str, torch.Tensor]) -> Mixing:
        """Single-path ``Mixing`` of child ``k`` with the given per-group gate weights."""
        return Mixing(dict(weights), {g: [[i] for i in rows[k]] for g, rows in self._lists.items()})


@dataclass
class SamplingHyper(Hyper):
    """What every sampling strategy shares (the rest: the NAS-Bench-201 DARTS defaults of ``Hyper``).

    ``share_samples``: the weight and the distribution phases of a step use the same sampled
    architectures (our choice, unverified against the papers; both estimates stay unbiased since the
    draws do not depend on the batches). ``False`` draws afresh for the distribution phase and
    counts twice the samples.
    """

    share_samples: bool = True


class SinglePathStrategy(DartsV1):
    """A distribution over architectures whose sampled children are trained one single path at a time.

    Per step: draw ``K = num_samples()`` architectures; the weight phase runs each child on the
    weight batch one after another, weighting its gradient by its importance weight (memory: one
    child plus one gradient buffer); the distribution phase (:meth:`arch_phase`, per strategy)
    updates the logits ``alphas`` on the validation batch. The counters of sampled architectures
    are buffers, so a resumed run counts on where it stopped.
    """

    any_task: ClassVar[bool] = False  # its children's losses are cross-entropies
    budgets: ClassVar[tuple[str, ...]] = ()
    Hyper: ClassVar[type[Hyper]] = SamplingHyper

    def __init__(self, space, hyper: Hyper | None = None) -> None:
        super().__init__(space, hyper)
        self.num_candidates = {g: shape[1] for g, shape in space.arch_shapes.items()}
        dropped = ("none",) if getattr(self.hyper, "drop_none", False) else ()
        self.dropped = {g: [i for i, op in enumerate(space.op_names) if op in dropped]
                        for g in self.num_candidates}
        if any(len(d) == n for d, n in zip(self.dropped.values(), self.num_candidates.values())):
            raise ValueError("drop_none leaves no candidate")
        self.register_buffer("samples_epoch", torch.zeros((), dtype=torch.int64))
        self.register_buffer("samples_total", torch.zeros((), dtype=torch.int64))
        self.register_buffer("counted_epoch", torch.full((), -1, dtype=torch.int64))
        self.last_w_omega: torch.Tensor | None = None  # importance weights of the last weight phase

    # -- the distribution -------------------------------------------------------------------------
    def logits(self) -> dict[str, torch.Tensor]:
        """Detached logits per group, dropped candidates at ``-inf`` (never sampled nor derived)."""
        out = {}
        for g, a in self.alphas.items():
            a = a.detach()
            if self.dropped[g]:
                a = a.clone()
                a[:, self.dropped[g]] = float("-inf")
            out[g] = a
        return out

    def sample(self, n: int) -> Draws:
        """``n`` architectures drawn exactly from the current distribution (global RNG)."""
        return Draws({g: sample_choices(a, n) for g, a in self.logits().items()})

    def num_samples(self) -> int:
        return 1

    def one_hot_weights(self, choices: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Constant one-hot gates of one child, in the architecture parameters' dtype and device."""
        return {g: one_hot(c, self.num_candidates[g], like=self.alphas[g]) for g, c in choices.items()}

    def child_mixing(self, draws: Draws, k: int) -> Mixing:
        return draws.mixing(k, self.one_hot_weights(draws.child(k)))

    def mixing(self) -> Mixing:
        """One sampled single path (for generic callers such as the profiler; not counted)."""
        return self.child_mixing(self.sample(1), 0)

    def derive(self):
        """The most probable architecture of the (factorized) distribution: argmax per edge."""
        return self.space.derive(self.logits())

    def probabilities(self) -> dict[str, torch.Tensor]:
        return {g: F.softmax(a, dim=-1) for g, a in self.logits().items()}

    def entropy(self) -> float:
        """Entropy of the distribution over architectures, in nats."""
        return float(sum(entropy(a) for a in self.logits().values()))

    # -- counters --------------------------------------------------------------------------------
    def new_epoch(self, epoch: int, epochs: int) -> None:
        if int(self.counted_epoch) != epoch:  # a resumed epoch keeps its count
            self.samples_epoch.zero_()
            self.counted_epoch.fill_(epoch)

    def count(self, n: int) -> None:
        self.samples_epoch += n
        self.samples_total += n

    def epoch_summary(self) -> dict[str, Any]:
        return {"samples": int(self.samples_epoch), "entropy": self.entropy()}

    def result_extras(self) -> dict[str, Any]:
        return {"samples_total": int(self.samples_total)}

    # -- one step --------------------------------------------------------------------------------
    def train_weights(self, epoch: int) -> bool:
        """Whether this epoch trains the weights (AdvantageNAS can stop early)."""
        return True

    def temperature(self) -> float:
        """Temperature of the importance weights ``softmax(l / T)`` (1: the plain estimator)."""
        return 1.0

    def step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> StepStats:
        """Draw ``K`` architectures, then a weight phase and a distribution phase (``arch_first`` order)."""
        n = self.num_samples()
        draws = self.sample(n)
        self.count(n)

        def arch_draws() -> Draws:
            if self.hyper.share_samples:
                return draws
            self.count(n)
            return self.sample(n)

        if self.hyper.arch_first:
            a_loss, a_correct = self.arch_phase(ctx, x_a, y_a, arch_draws())
            w_loss, w_correct = self.weight_phase(ctx, x_w, y_w, draws)
        else:
            w_loss, w_correct = self.weight_phase(ctx, x_w, y_w, draws)
            a_loss, a_correct = self.arch_phase(ctx, x_a, y_a, arch_draws())
        return StepStats(w_loss, w_correct, a_loss, a_correct, int(y_w.shape[0]))

    def weight_phase(self, ctx: StepContext, x, y, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """SGD on ``sum_k omega_k grad_w CE_k``: the children run one after another on the same batch.

        ``CE_k`` is the batch-mean cross-entropy (the scale every strategy's SGD settings assume);
        ``omega = softmax_k(l_k / T)`` with ``l_k = -sum CE_k`` the child's log-likelihood of the batch.
        The weighted sum is accumulated online (:class:`SoftmaxWeightedSum`), so memory is one child.
        Returns the children's mean loss and mean correct count (rounded to a whole count). In an
        epoch that trains no weights (:meth:`train_weights`) the children only run forward, to report.
        """
        if not self.train_weights(ctx.epoch):
            with torch.no_grad():  # only report the training loss
                return self._report(ctx, x, y, draws)
        acc = SoftmaxWeightedSum()
        losses, corrects = [], []
        temperature = self.temperature()
        for k in range(draws.n):
            logits = ctx.model(x, self.child_mixing(draws, k))
            ce = F.cross_entropy(logits, y, reduction="sum")
            loss = ce / y.shape[0]
            grads = torch.autograd.grad(loss, ctx.weights, allow_unused=True)
            acc.add(-ce.detach() / temperature, grads)
            losses.append(loss.detach())
            corrects.append((logits.detach().argmax(-1) == y).sum())
        for p, g in zip(ctx.weights, acc.result()):
            p.grad = g
        if ctx.hyper.grad_clip > 0:
            nn.utils.clip_grad_norm_([p for p in ctx.weights if p.grad is not None], ctx.hyper.grad_clip)
        ctx.w_optimizer.step()
        self.last_w_omega = acc.weights()
        return torch.stack(losses).mean(), torch.stack(corrects).float().mean().round()

    def _report(self, ctx: StepContext, x, y, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean loss and rounded mean correct count of the children, without any update."""
        losses, corrects = [], []
        for k in range(draws.n):
            logits = ctx.model(x, self.child_mixing(draws, k))
            losses.append(F.cross_entropy(logits, y))
            corrects.append((logits.argmax(-1) == y).sum())
        return torch.stack(losses).mean(), torch.stack(corrects).float().mean().round()

    def arch_phase(self, ctx: StepContext, x, y, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """Update the distribution on the validation batch; returns (mean loss, mean correct)."""
        raise NotImplementedError
