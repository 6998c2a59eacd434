"""One-shot supernets searched by evolution: SPOS, BN-NAS and Pi-NAS (see ``docs/ranking.md``).

* **SPOS** (Guo et al. 2020): each step trains one path drawn uniformly (one candidate per edge).
* **BN-NAS** (Chen et al. 2021): the same, with every convolution frozen at initialization and only
  BatchNorm parameters (and the classifier, our choice) trained; a candidate is scored by the mean
  ``|gamma|`` of its last BN, an architecture by the sum over its edges.
* **Pi-NAS** (Peng et al. 2021): two paths per batch, a mean teacher (EMA of the supernet) and a
  contrastive cross-path loss (our reading; see the class docstring).

After the last epoch the architecture is chosen by regularized evolution
(:mod:`toponas.strategies.evolution`) over the shared-weight accuracy on the first
``eval_batches`` validation batches of the last epoch (BN-NAS: over the BN score), under an optional
FLOPs cap in MFLOPs of the NAS-Bench-201 benchmark network (C=16, N=5, 32x32). The search BN uses
batch statistics, so no BN recalibration is needed before a subnet is evaluated. The kept batches
and the evolution's result are part of the strategy's state, so a resumed run finds the same cell.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from ..config import ConfigError
from ..spaces import Mixing
from .base import Hyper, StepContext, StepStats
from .darts import DartsV1
from .evolution import Arch, evolve
from .registry import register_strategy


@dataclass
class OneShotHyper(Hyper):
    """SGD settings of ``Hyper``; evolution: ``evo_population``, ``evo_sample``, ``evo_cycles`` (mutations),
    ``eval_batches`` validation batches per fitness, ``flops_cap`` in MFLOPs (0: none)."""

    evo_population: int = 16
    evo_sample: int = 4
    evo_cycles: int = 48
    eval_batches: int = 2
    flops_cap: float = 0.0

    def __post_init__(self) -> None:
        for name in ("evo_population", "evo_sample", "eval_batches"):
            if getattr(self, name) < 1:
                raise ValueError(f"hyperparameter {name} must be at least 1, got {getattr(self, name)}")
        if self.evo_cycles < 0 or self.flops_cap < 0:
            raise ValueError("hyperparameters evo_cycles and flops_cap must be >= 0")


def uniform_choices(arch_shapes: Mapping[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    """One candidate per edge of every group, uniformly (global RNG: reseeded by the loop every step)."""
    return {g: torch.randint(0, c, (e,)) for g, (e, c) in arch_shapes.items()}


def path_mixing(choices: Mapping[str, torch.Tensor], arch_shapes: Mapping[str, tuple[int, int]],
                like: torch.Tensor) -> Mixing:
    """The single-path ``Mixing`` of ``choices``: one-hot gates, only the chosen candidate runs."""
    weights = {g: F.one_hot(c.to(like.device), arch_shapes[g][1]).to(like) for g, c in choices.items()}
    active = {g: [[int(i)] for i in c.tolist()] for g, c in choices.items()}
    return Mixing(weights, active)


def flat(choices: Mapping[str, torch.Tensor]) -> Arch:
    """Choices of all groups as one tuple (groups in their order)."""
    return tuple(int(i) for c in choices.values() for i in c.tolist())


def unflat(arch: Arch, arch_shapes: Mapping[str, tuple[int, int]]) -> dict[str, torch.Tensor]:
    out, k = {}, 0
    for g, (e, _) in arch_shapes.items():
        out[g] = torch.tensor(arch[k:k + e], dtype=torch.int64)
        k += e
    return out


@torch.no_grad()
def shared_accuracy(model: nn.Module, mixing: Mixing, batches) -> tuple[float, float]:
    """(accuracy in 0..1, mean cross-entropy) of one path of the supernet over ``batches``."""
    correct, loss, n = 0, 0.0, 0
    for x, y in batches:
        logits = model(x, mixing)
        correct += int((logits.argmax(-1) == y).sum())
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        n += len(y)
    return correct / max(n, 1), loss / max(n, 1)


@register_strategy
class OneShot(DartsV1):
    """A supernet trained one sampled path at a time, then searched by evolution (SPOS itself)."""

    name: ClassVar[str] = "spos"
    any_task: ClassVar[bool] = False  # its losses are cross-entropies
    budgets: ClassVar[tuple[str, ...]] = ()
    data_parallel: ClassVar[bool] = False  # keeps this process's architecture batches for its evolution
    Hyper: ClassVar[type[Hyper]] = OneShotHyper

    def __init__(self, space, hyper: Hyper | None = None) -> None:
        super().__init__(space, hyper)
        self.shapes = dict(space.arch_shapes)
        self._epoch, self._epochs = 0, self.hyper.epochs
        self._kept: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._found: Arch | None = None
        self._found_fitness: float | None = None
        self._evaluations = 0
        self._model: nn.Module | None = None

    # -- state kept across a resume ---------------------------------------------------------------
    def get_extra_state(self) -> dict[str, Any]:
        return {"kept": [(x.cpu(), y.cpu()) for x, y in self._kept], "found": self._found,
                "found_fitness": self._found_fitness, "evaluations": self._evaluations}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._kept = list(state.get("kept", []))
        self._found = None if state.get("found") is None else tuple(state["found"])
        self._found_fitness = state.get("found_fitness")
        self._evaluations = int(state.get("evaluations", 0))

    # -- lifecycle -------------------------------------------------------------------------------
    def make_context(self, model: nn.Module) -> StepContext:
        self._model = model
        self.allowed()  # a FLOPs cap that no cell meets, or a space without FLOPs, fails before training
        return super().make_context(model)

    def new_epoch(self, epoch: int, epochs: int) -> None:
        self._epoch, self._epochs = epoch, epochs

    def mixing(self) -> Mixing:
        """One uniformly sampled path (for generic callers such as the profiler)."""
        return self.path(uniform_choices(self.shapes))

    def sample_choices(self) -> dict[str, torch.Tensor]:
        """The path of one training step: uniform (SPOS); HURRICANE samples some rows only."""
        return uniform_choices(self.shapes)

    def path(self, choices: Mapping[str, torch.Tensor]) -> Mixing:
        return path_mixing(choices, self.shapes, next(iter(self.alphas.values())))

    def keep(self, ctx: StepContext, x_a: torch.Tensor, y_a: torch.Tensor) -> None:
        """Keep the first ``eval_batches`` validation batches of the last epoch for the evolution."""
        if ctx.epoch == self._epochs - 1 and len(self._kept) < self.hyper.eval_batches:
            self._kept.append((x_a.detach().clone(), y_a.detach().clone()))

    # -- one step --------------------------------------------------------------------------------
    def step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> StepStats:
        """One uniformly sampled path: an SGD step on the weight batch, a forward on the validation batch."""
        self.keep(ctx, x_a, y_a)
        mixing = self.path(self.sample_choices())
        w_loss, w_logits = self.train_path(ctx, x_w, y_w, mixing)
        with torch.no_grad():
            a_logits = ctx.model(x_a, mixing)
            a_loss = F.cross_entropy(a_logits, y_a)
        return StepStats(w_loss.detach(), (w_logits.argmax(-1) == y_w).sum(), a_loss,
                         (a_logits.argmax(-1) == y_a).sum(), int(y_w.shape[0]))

    def train_path(self, ctx: StepContext, x, y, mixing: Mixing) -> tuple[torch.Tensor, torch.Tensor]:
        logits = ctx.model(x, mixing)
        loss = F.cross_entropy(logits, y)
        self.apply_gradients(ctx, loss)
        return loss, logits

    def apply_gradients(self, ctx: StepContext, loss: torch.Tensor) -> None:
        """SGD on the weights the path used (unused candidates get no gradient and no update), clipped."""
        grads = torch.autograd.grad(loss, ctx.weights, allow_unused=True)
        for p, g in zip(ctx.weights, grads):
            p.grad = g
        used = [p for p in ctx.weights if p.grad is not None]
        if ctx.hyper.grad_clip > 0 and used:
            nn.utils.clip_grad_norm_(used, ctx.hyper.grad_clip)
        ctx.w_optimizer.step()

    # -- the search ------------------------------------------------------------------------------
    def fitness(self, arch: Arch) -> float:
        """Shared-weight accuracy of ``arch`` on the kept batches; ties broken by lower loss (1e-4 weight)."""
        assert self._model is not None
        acc, loss = shared_accuracy(self._model, self.path(unflat(arch, self.shapes)), self._kept)
        return acc - 1e-4 * loss

    def allowed(self):
        """The FLOPs-cap constraint (``None``: no cap)."""
        if not self.hyper.flops_cap:
            return None
        from ..flops import cost_table

        try:
            table = cost_table(self.space)
        except NotImplementedError as e:
            raise ConfigError(f"flops_cap: {e}") from None
        cap = self.hyper.flops_cap * 1e6
        smallest = table.base + int(table.edges.min(dim=1).values.sum())
        if smallest > cap:
            raise ConfigError(f"flops_cap {self.hyper.flops_cap:g} MFLOPs is below the smallest cell's "
                              f"{smallest / 1e6:.2f} MFLOPs (the benchmark network, C=16, N=5, 32x32)")
        return lambda a: int(table(torch.tensor(a, dtype=torch.int64))) <= cap

    def search(self) -> None:
        """Run the evolution once (after the last epoch's steps) and keep its result."""
        h = self.hyper
        choices = [c for e, c in self.shapes.values() for _ in range(e)]
        was_training = self._model.training if self._model is not None else True
        result = evolve(self.fitness, choices, population=h.evo_population, sample=h.evo_sample,
                        cycles=h.evo_cycles, rng=random.Random(torch.initial_seed()), allowed=self.allowed())
        if self._model is not None:
            self._model.train(was_training)
        self._found, self._found_fitness, self._evaluations = result.best, result.fitness, len(result.history)

    def ready(self) -> bool:
        """Whether the supernet is trained (the last epoch has run) and the evolution can run."""
        return self._found is None and self._epoch == self._epochs - 1 and bool(self._kept)

    def derive(self):
        """The evolution's cell once the last epoch has run (it runs here, once); before: argmax of ``alphas``."""
        if self.ready():
            self.search()
        if self._found is None:
            return super().derive()
        scores = {g: F.one_hot(c, self.shapes[g][1]).float() for g, c in unflat(self._found, self.shapes).items()}
        return self.space.derive(scores)

    def epoch_summary(self) -> dict[str, Any]:
        return {"searched": self._found is not None}

    def result_extras(self) -> dict[str, Any]:
        return {"evolution": {"evaluations": self._evaluations, "fitness": self._found_fitness,
                              "flops_cap_mflops": self.hyper.flops_cap or None}}


SPOS = OneShot


# -- BN-NAS ---------------------------------------------------------------------------------------
def candidate_bns(model: nn.Module) -> dict[tuple[int, int], list[nn.BatchNorm2d | None]]:
    """``(edge, candidate) -> [last BN of that candidate in each cell]`` (``None`` where it has none).

    Edges are counted per cell in the order of the cell's ``edges`` list; every cell shares the
    architecture, so a candidate's score averages over cells.
    """
    from ..spaces.mixed import MixedEdge

    out: dict[tuple[int, int], list] = {}
    for cell in model.modules():
        edges = getattr(cell, "edges", None)
        if not isinstance(edges, nn.ModuleList) or not all(isinstance(e, MixedEdge) for e in edges):
            continue
        for e, edge in enumerate(edges):
            for c, op in enumerate(edge.ops):
                last = op[-1] if isinstance(op, nn.Sequential) and len(op) else None
                out.setdefault((e, c), []).append(last if isinstance(last, nn.BatchNorm2d) else None)
    return out


def gamma_scores(bns: Mapping[tuple[int, int], list], edges: int, candidates: int) -> torch.Tensor:
    """``(edges, candidates)``: mean ``|gamma|`` of the candidate's last BN, averaged over cells (0: no BN)."""
    scores = torch.zeros(edges, candidates)
    for (e, c), layers in bns.items():
        gammas = [bn.weight.detach().abs().mean().item() for bn in layers if bn is not None and bn.affine]
        if gammas and e < edges and c < candidates:
            scores[e, c] = sum(gammas) / len(gammas)
    return scores


@register_strategy
class BNNAS(OneShot):
    """BN-NAS: convolutions frozen at initialization, only BN parameters trained; scored by BN gammas.

    Our reading for NAS-Bench-201 (see ``docs/ranking.md``): the search BN at the end of every
    convolution candidate becomes affine (gamma = 1, beta = 0 at the start; batch statistics as
    before); ``skip_connect`` and ``avg_pool_3x3`` get a scoring-only affine BN appended (the paper's
    space has none without BN); ``none`` scores 0. Trained: every BN's affine parameters and the
    classifier (a frozen random classifier barely learns; our choice). A candidate's score is the mean
    ``|gamma|`` of its last BN, averaged over the cells; an architecture's the sum over its edges.
    The candidates' declarations are updated to match, so the simplifier sees the affine BNs (it runs
    a chain it has no planner for, e.g. ``avg_pool -> bn``, as its original modules); the first step
    checks that the BNs were trained.
    """

    name = "bn-nas"
    families = ("nb201",)  # candidate BNs are found on NB201-style edges

    def prepare_supernet(self, model: nn.Module, epoch: int) -> nn.Module:
        from ..spaces.mixed import MixedEdge
        from ..spaces.primitives import BN, OpSpec, ZeroOp

        scoring_bn = BN(affine=True, track_running_stats=False)
        for edge in [m for m in model.modules() if isinstance(m, MixedEdge)]:
            specs = list(edge.specs)
            for c, op in enumerate(edge.ops):
                if isinstance(op, nn.Sequential) and len(op) and isinstance(op[-1], ZeroOp):
                    continue
                bn = nn.BatchNorm2d(edge.channels, affine=True, track_running_stats=False)
                chain = specs[c].chain
                if isinstance(op[-1], nn.BatchNorm2d):
                    op[-1] = bn
                    chain = chain[:-1] + (scoring_bn,)
                else:
                    edge.ops[c] = nn.Sequential(*op, bn)
                    chain = chain + (scoring_bn,)
                specs[c] = OpSpec(specs[c].name, chain)  # declared as it now is (the simplifier reads it)
            edge.specs = tuple(specs)
        for name, p in model.named_parameters():
            owner = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            p.requires_grad_(isinstance(owner, nn.modules.batchnorm._BatchNorm) or name.startswith("classifier."))
        return model

    def make_context(self, model: nn.Module) -> StepContext:
        ctx = super().make_context(model)
        self._bns = candidate_bns(model)
        self._checked = False
        return ctx

    def apply_gradients(self, ctx: StepContext, loss: torch.Tensor) -> None:
        super().apply_gradients(ctx, loss)
        if not self._checked:
            trained = [bn.weight.grad for bns in self._bns.values() for bn in bns if bn is not None]
            if not trained or all(g is None for g in trained):
                raise ConfigError("bn-nas trains the candidates' BN parameters, which this supernet does not "
                                  "run; use --topo off")
            self._checked = True

    def candidate_scores(self) -> torch.Tensor:
        """``(edges, candidates)`` mean |gamma| of each candidate's last BN over the cells (0 without BN)."""
        if len(self.shapes) != 1:
            raise ConfigError("bn-nas scores spaces with one architecture group (NAS-Bench-201 style)")
        (edges, cands), = self.shapes.values()
        return gamma_scores(self._bns, edges, cands)

    def fitness(self, arch: Arch) -> float:
        scores = self.candidate_scores()
        return float(sum(scores[e, c] for e, c in enumerate(arch)))

    def ready(self) -> bool:
        return self._found is None and self._epoch == self._epochs - 1

    def keep(self, ctx: StepContext, x_a, y_a) -> None:
        """BN-NAS scores without data: nothing to keep."""


# -- Pi-NAS ---------------------------------------------------------------------------------------
@dataclass
class PiNASHyper(OneShotHyper):
    """``ema``: mean-teacher decay; ``nce_tau``: temperature of the contrastive loss; ``supervised``: add
    cross-entropy on both paths (default off: unsupervised, as in the paper) with ``consistency`` the
    weight of the cross-path term then."""

    ema: float = 0.99
    nce_tau: float = 0.2
    supervised: bool = False
    consistency: float = 1.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.ema < 1 or self.nce_tau <= 0:
            raise ValueError("hyperparameters: need 0 <= ema < 1 and nce_tau > 0")


def features_and_logits(model: nn.Module, x: torch.Tensor, mixing: Mixing) -> tuple[torch.Tensor, torch.Tensor]:
    """The input of ``model.classifier`` (pooled features) and the logits, in one forward."""
    box: list[torch.Tensor] = []
    handle = model.classifier.register_forward_hook(lambda m, i, o: box.append(i[0]))
    try:
        logits = model(x, mixing)
    finally:
        handle.remove()
    return box[0], logits


def info_nce(q: torch.Tensor, k: torch.Tensor, tau: float) -> torch.Tensor:
    """Contrastive loss: ``q[i]`` should match ``k[i]`` against the other images' ``k[j]`` (negatives)."""
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    logits = q @ k.T / tau
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))


@register_strategy
class PiNAS(OneShot):
    """Pi-NAS: cross-path learning and a mean teacher with negative samples (our reading of the paper).

    Per step, two paths ``a1, a2`` are drawn uniformly and two views of the weight batch are made
    (``v1`` the batch, ``v2`` its horizontal flip). The student (the supernet) embeds ``(v1, a1)`` and
    ``(v2, a2)``; the teacher (an EMA of the student, decay ``ema``) embeds ``(v2, a2)`` and ``(v1, a1)``.
    The cross-path loss pulls the student's embedding of one (view, path) to the teacher's of the other,
    against the other images of the batch as negatives (InfoNCE, temperature ``nce_tau``). Embeddings
    are the pooled features that enter the classifier. Unsupervised (default): the classifier is an
    online linear probe trained on detached features, so the shared-weight accuracy used by the
    evolution exists; the backbone sees no labels. ``supervised``: cross-entropy on both paths plus
    ``consistency`` times the cross-path loss, all flowing into the backbone.
    """

    name = "pi-nas"
    Hyper = PiNASHyper

    def make_context(self, model: nn.Module) -> StepContext:
        if not hasattr(model, "classifier"):
            raise ConfigError("pi-nas needs a supernet with a `classifier` head (NAS-Bench-201 style spaces)")
        self.teacher = copy.deepcopy(model)
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        return super().make_context(model)

    @torch.no_grad()
    def update_teacher(self, model: nn.Module) -> None:
        m = self.hyper.ema
        for t, s in zip(self.teacher.parameters(), model.parameters()):
            t.mul_(m).add_(s.detach(), alpha=1 - m)

    def train_path(self, ctx: StepContext, x, y, mixing: Mixing) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hyper
        second = self.path(uniform_choices(self.shapes))
        v1, v2 = x, x.flip(-1)
        f1, logits1 = features_and_logits(ctx.model, v1, mixing)
        f2, logits2 = features_and_logits(ctx.model, v2, second)
        with torch.no_grad():
            k1, _ = features_and_logits(self.teacher, v1, mixing)
            k2, _ = features_and_logits(self.teacher, v2, second)
        cross = (info_nce(f1, k2, h.nce_tau) + info_nce(f2, k1, h.nce_tau)) / 2
        if h.supervised:
            ce = (F.cross_entropy(logits1, y) + F.cross_entropy(logits2, y)) / 2
            loss = ce + h.consistency * cross
        else:
            probe = ctx.model.classifier
            ce = (F.cross_entropy(probe(f1.detach()), y) + F.cross_entropy(probe(f2.detach()), y)) / 2
            loss = cross + ce  # ce reaches only the classifier (the linear probe)
        self.apply_gradients(ctx, loss)
        self.update_teacher(ctx.model)
        return ce.detach(), logits1
