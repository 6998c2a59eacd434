"""GA-NAS (Rezaei et al., "Generative Adversarial Neural Architecture Search", IJCAI 2021).

Each iteration: the top-k cells queried so far are the *truth set*; the generator is first fitted
to it (maximum likelihood), then trained adversarially: a discriminator learns, pairwise and
relativistically, to score truth-set cells above generated ones, and the generator is updated by
policy gradient with the discriminator's verdict as its reward; finally the generator's new cells
are queried. What is ours (``docs/query.md``): the encoder is the one-hot operation of each edge
read by an MLP (the paper: a graph network), the decoder a GRU over the edges in order (as in the
paper); REINFORCE with a mean baseline and an entropy bonus stands in for the paper's trust-region
policy update; the new cells of an iteration are the generator's samples ranked by the
discriminator, topped up with one-edge mutations of the truth set when the generator repeats itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .base import QueryHyper, QueryStrategy
from .encoding import Arch, CellEncoding


@dataclass
class GANASHyper(QueryHyper):
    init_queries: int = 10  # random cells before the first iteration
    top_k: int = 8  # size of the truth set
    per_iteration: int = 4  # new cells queried per iteration
    candidates: int = 256  # generator samples drawn per iteration, new ones ranked by the discriminator
    hidden: int = 32  # width of the GRU decoder and of the discriminator's MLP
    fit_steps: int = 20  # maximum-likelihood steps fitting the generator to the truth set
    rounds: int = 5  # adversarial rounds per iteration: d_steps discriminator steps, one generator step
    d_steps: int = 3
    batch: int = 64  # generated cells per adversarial round
    lr: float = 2e-3  # Adam, both models
    entropy: float = 0.02  # entropy bonus of the policy-gradient step (keeps exploring)

    def __post_init__(self) -> None:
        for name in ("init_queries", "top_k", "per_iteration", "candidates", "hidden", "batch"):
            if getattr(self, name) < 1:
                raise ValueError(f"ga-nas: {name} must be positive, got {getattr(self, name)}")
        for name in ("fit_steps", "rounds", "d_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"ga-nas: {name} must not be negative, got {getattr(self, name)}")


class Generator(nn.Module):
    """Autoregressive cell decoder: a GRU emits one candidate per edge, given the ones before."""

    def __init__(self, num_edges: int, num_ops: int, hidden: int) -> None:
        super().__init__()
        self.num_edges, self.num_ops = num_edges, num_ops
        self.embed = nn.Embedding(num_ops + 1, hidden)  # index num_ops: the start token
        self.position = nn.Parameter(torch.zeros(num_edges, hidden))
        self.gru = nn.GRUCell(hidden, hidden)
        self.head = nn.Linear(hidden, num_ops)

    def _logits(self, prev: torch.Tensor, h: torch.Tensor, edge: int) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.gru(self.embed(prev) + self.position[edge], h)
        return self.head(h), h

    def log_prob(self, archs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Log-probability and entropy (summed over edges) of ``archs`` ``(B, edges)``, teacher-forced."""
        batch = archs.shape[0]
        h = archs.new_zeros(batch, self.gru.hidden_size, dtype=torch.float32)
        prev = archs.new_full((batch,), self.num_ops)
        logp, ent = 0.0, 0.0
        for e in range(self.num_edges):
            logits, h = self._logits(prev, h, e)
            log_soft = F.log_softmax(logits, -1)
            logp = logp + log_soft.gather(1, archs[:, e:e + 1]).squeeze(1)
            ent = ent - (log_soft.exp() * log_soft).sum(-1)
            prev = archs[:, e]
        return logp, ent

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        """``n`` cells ``(n, edges)`` drawn from the decoder."""
        h = torch.zeros(n, self.gru.hidden_size)
        prev = torch.full((n,), self.num_ops, dtype=torch.long)
        out = []
        for e in range(self.num_edges):
            logits, h = self._logits(prev, h, e)
            prev = torch.multinomial(F.softmax(logits, -1), 1, generator=generator).squeeze(1)
            out.append(prev)
        return torch.stack(out, 1)


class Discriminator(nn.Module):
    """A score per cell from its one-hot encoding; pairs are compared by score difference."""

    def __init__(self, in_features: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class GANAS(QueryStrategy):
    """Generator fitted to the top cells, refined against a relativistic discriminator, queried."""

    name = "ga-nas"
    Hyper = GANASHyper

    def __init__(self, encoding: CellEncoding, hyper: GANASHyper | None = None, seed: int = 0) -> None:
        super().__init__(encoding, hyper, seed)
        h = self.hyper
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.generator = Generator(encoding.num_edges, encoding.num_ops, h.hidden)
            self.discriminator = Discriminator(encoding.num_edges * encoding.num_ops, h.hidden)
        self.g_opt = torch.optim.Adam(self.generator.parameters(), lr=h.lr)
        self.d_opt = torch.optim.Adam(self.discriminator.parameters(), lr=h.lr)
        self.torch_rng = torch.Generator().manual_seed(seed)
        self.iterations = 0
        self.trained_on: list[Arch] = []

    def truth_set(self) -> list[Arch]:
        """The top-k distinct cells queried so far."""
        best: dict[Arch, float] = {}
        for arch, acc in self.history:
            best[arch] = max(acc, best.get(arch, acc))
        return [a for a, _ in sorted(best.items(), key=lambda kv: -kv[1])[: self.hyper.top_k]]

    def ask(self) -> list[Arch]:
        h = self.hyper
        seen = {a for a, _ in self.history}
        if len(seen) < h.init_queries:
            while True:
                arch = self.encoding.random(self.rng)
                if arch not in seen:
                    return [arch]
        self.iterations += 1
        truth = self.truth_set()
        if truth != self.trained_on:  # an unchanged truth set keeps the trained models (saves CPU)
            self._train(truth)
            self.trained_on = truth
        return self._propose(truth, seen)

    # -- one iteration ---------------------------------------------------------------------------
    def _train(self, truth: list[Arch]) -> None:
        h, enc = self.hyper, self.encoding
        real = torch.tensor(truth, dtype=torch.long)
        real_x = enc.one_hot(truth)
        for _ in range(h.fit_steps):  # the generator starts from a fit to the truth set
            logp, _ = self.generator.log_prob(real)
            self.g_opt.zero_grad()
            (-logp.mean()).backward()
            self.g_opt.step()
        for _ in range(h.rounds):
            fake = self.generator.sample(h.batch, self.torch_rng)
            fake_x = enc.one_hot([tuple(r) for r in fake.tolist()])
            for _ in range(h.d_steps):  # relativistic pairwise loss: every truth cell against every fake
                diff = self.discriminator(real_x)[:, None] - self.discriminator(fake_x)[None, :]
                self.d_opt.zero_grad()
                F.softplus(-diff).mean().backward()
                self.d_opt.step()
            with torch.no_grad():  # reward: how likely the fake beats a truth cell, by the discriminator
                reward = torch.sigmoid(self.discriminator(fake_x)[:, None] - self.discriminator(real_x)[None, :])
                reward = reward.mean(1)
            logp, ent = self.generator.log_prob(fake)
            loss = -((reward - reward.mean()) * logp).mean() - h.entropy * ent.mean()
            self.g_opt.zero_grad()
            loss.backward()
            self.g_opt.step()

    def _propose(self, truth: list[Arch], seen: set[Arch]) -> list[Arch]:
        h, enc = self.hyper, self.encoding
        samples = [tuple(r) for r in self.generator.sample(h.candidates, self.torch_rng).tolist()]
        new = list(dict.fromkeys(a for a in samples if a not in seen))
        if new:
            with torch.no_grad():
                score = self.discriminator(enc.one_hot(new))
            order = sorted(range(len(new)), key=lambda i: -float(score[i]))
            new = [new[i] for i in order]
        picked = new[: h.per_iteration]
        tries = 0
        while len(picked) < h.per_iteration and tries < 100 * h.per_iteration:  # the generator repeats itself
            tries += 1
            child = enc.mutate(truth[self.rng.randrange(len(truth))], self.rng)
            if tries > 10 * h.per_iteration:  # the truth set's neighbourhood is spent: explore at random
                child = enc.random(self.rng)
            if child not in seen and child not in picked:
                picked.append(child)
        return picked or [enc.random(self.rng)]
