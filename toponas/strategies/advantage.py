"""AdvantageNAS: one-hot gates, credit from the gate gradient, sparse propagation.

Sato et al., "Efficient Search of Architecture Using AdvantageNAS"; see the "Sampling family" of
``docs/METHODS.md``. Per step one architecture is drawn exactly from ``softmax(theta_e)`` per edge
(the Gumbel-max trick samples the same categorical); only its candidate of each edge runs, but the
one-hot gate ``g_e`` multiplying it requires grad. One backward pass of the validation loss gives
every edge's credit ``c_e = dL / dg_e[a_e]`` (the first-order change of the loss when the sampled
operation is switched off), and ``theta_e`` takes the loss gradient ``(c_e - b_e) (onehot(a_e) - p_e)``:
a negative credit (the operation lowers the loss) raises its probability. ``b_e`` is an optional
per-edge moving average of the credit (rate 0.05), updated after use.

The public NAS-Bench-201 runs drop ``none`` (4 candidates: ``--hp drop_none=true``) and train the
weights only for the first 50 of 90 epochs (``--hp epochs=90 --hp w_epochs=50``); the defaults keep
the 5-candidate space and the 50-epoch budget of the other strategies so results compare.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .base import StepContext, grads_or_zeros
from .registry import register_strategy
from .sampling import Draws, SamplingHyper, SinglePathStrategy, one_hot


@dataclass
class AdvantageHyper(SamplingHyper):
    """AdvantageNAS hyperparameters; optimizers and epochs are the NAS-Bench-201 DARTS defaults.

    * ``baseline``: subtract the per-edge moving average of the credit (default on; rate
      ``baseline_rate`` = 0.05 from ``docs/METHODS.md``, unverified against the code).
    * ``drop_none``: give ``none`` probability 0 in sampling and derivation (public runs: true).
    * ``w_epochs``: train the weights only in the first ``w_epochs`` epochs, then update only the
      distribution (public runs: 50 of 90); 0 trains them every epoch.
    """

    baseline: bool = True
    baseline_rate: float = 0.05
    drop_none: bool = False
    w_epochs: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.baseline_rate <= 1:
            raise ValueError(f"hyperparameter baseline_rate must be in (0, 1], got {self.baseline_rate}")


@register_strategy
class AdvantageNAS(SinglePathStrategy):
    """One sampled single path per step; distribution update from the gates' gradient."""

    name = "advantage"
    data_parallel = False  # its reward baseline follows this process's losses
    Hyper = AdvantageHyper

    def __init__(self, space, hyper: AdvantageHyper | None = None) -> None:
        super().__init__(space, hyper)
        self._baseline_names = {}
        for i, (g, (edges, _)) in enumerate(space.arch_shapes.items()):
            self._baseline_names[g] = f"credit_baseline_{i}"
            self.register_buffer(self._baseline_names[g], torch.zeros(edges))
        self.last_credit: dict[str, torch.Tensor] = {}

    def baseline_of(self, group: str) -> torch.Tensor:
        """The moving-average credit baseline of each edge of ``group`` (a buffer)."""
        return getattr(self, self._baseline_names[group])

    def train_weights(self, epoch: int) -> bool:
        return self.hyper.w_epochs <= 0 or epoch < self.hyper.w_epochs

    def arch_phase(self, ctx: StepContext, x, y, draws: Draws) -> tuple[torch.Tensor, torch.Tensor]:
        """Credit of every edge from one backward pass to differentiable one-hot gates, then Adam."""
        choices = draws.child(0)
        gates = {g: one_hot(c, self.num_candidates[g], like=self.alphas[g]).requires_grad_(True)
                 for g, c in choices.items()}
        logits = ctx.model(x, draws.mixing(0, gates))
        loss = F.cross_entropy(logits, y)
        grads = grads_or_zeros(loss, list(gates.values()))
        probs = self.probabilities()
        for (g, a), gate_grad in zip(self.alphas.items(), grads):
            credit = gate_grad.gather(1, choices[g][:, None])[:, 0].detach()
            self.last_credit[g] = credit
            advantage = credit
            if self.hyper.baseline:
                base = self.baseline_of(g)
                advantage = credit - base.to(credit)
                base.add_(self.hyper.baseline_rate * (credit.to(base) - base))
            a.grad = (advantage[:, None] * (gates[g].detach() - probs[g])).to(a)
        ctx.a_optimizer.step()
        return loss.detach(), (logits.detach().argmax(-1) == y).sum().float()
