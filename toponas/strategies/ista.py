"""ISTA-NAS (Yang et al., "ISTA-NAS: Efficient and Consistent Neural Architecture Search by Sparse
Coding", NeurIPS 2020): the architecture is a sparse code recovered from a dense low-dimensional one.

Each *block* of candidates (DARTS: all (input edge, candidate) pairs of one node; NB201: the candidates
of one edge) has a fixed random matrix ``A`` (``m x n``, ``m < n``) and a learned dense code ``b``
(``m``). At the start of every epoch the sparse code ``x`` is recovered from ``b`` by the LASSO
``min_x 1/2 |A x - b|^2 + lambda |x|_1`` (solved by FISTA, the accelerated ISTA) and its support ``S``
(the ``s`` largest ``|x|``: 2 per DARTS node, the genotype's inputs; 1 per NB201 edge) is fixed for
the epoch. Within the epoch the mixing weights are ``z = x + A^T (b - A x)`` on ``S`` and zero
elsewhere: linear in ``b``, so the architecture step is a gradient step on ``b``, and only the
candidates of ``S`` run (the mixing lists them as ``active``). The derived cell is ``S`` of the code
recovered from the final ``b``.

Two-stage (``ista-nas``): weights on the weight half of the data, ``b`` on the architecture half;
the cell is then retrained. One-stage (``ista-nas-one-stage``): ``b`` is stepped on the weight batch
as well (one level), a block whose recovered code moves less than ``freeze_tol`` between epochs is
frozen (its ``x`` fixed), and once all are frozen the run only trains the weights of the final cell.
What follows the paper and what is our reading: ``docs/ista.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..spaces import Mixing
from .base import Hyper, StepContext, StepStats, grads_or_zeros
from .darts import DartsV1
from .registry import register_strategy


@dataclass
class ISTAHyper(Hyper):
    """Defaults: the reference search script (``tools/train_search.py``, ``main_search.sh``) where it
    sets them; the weight optimizer stays the NAS-Bench-201 DARTS-V1 one for comparability."""

    a_lr: float = 6e-4  # main_search.sh --arch_learning_rate 6e-4 (Adam on b, betas 0.5/0.999, wd 1e-3)
    arch_first: bool = True  # the reference steps b before the weights
    proj_dims: int = 7  # m (reference --proj_dims 7); at most n - 1 per block
    sparseness: int = 0  # non-zeros per block; 0: the final cell's (2 per DARTS node, 1 per NB201 edge)
    lasso_lambda: float = 1e-5  # the reference LASSO's gamma
    lasso_iters: int = 3000  # FISTA iterations per block and recovery
    freeze_tol: float = 1e-3  # one-stage: freeze a block when its code moves less (reference: 1e-3)

    def __post_init__(self) -> None:
        if self.proj_dims < 1 or self.sparseness < 0 or self.lasso_iters < 1 or self.lasso_lambda < 0:
            raise ValueError("ista-nas needs proj_dims >= 1, sparseness >= 0, lasso_iters >= 1, lasso_lambda >= 0")


def lasso_fista(A: torch.Tensor, b: torch.Tensor, lam: float, iters: int) -> torch.Tensor:
    """``argmin_x 1/2 |A x - b|^2 + lam |x|_1`` by FISTA from zero (float64, deterministic)."""
    A, b = A.double(), b.double()
    step = 1.0 / float(torch.linalg.matrix_norm(A, ord=2) ** 2)
    x = y = torch.zeros(A.shape[1], dtype=torch.float64)
    t = 1.0
    for _ in range(iters):
        g = y - step * (A.T @ (A @ y - b))
        x_new = torch.sign(g) * torch.clamp(g.abs() - step * lam, min=0.0)
        t_new = (1 + (1 + 4 * t * t) ** 0.5) / 2
        y = x_new + ((t - 1) / t_new) * (x_new - x)
        x, t = x_new, t_new
    return x


def _blocks(space) -> dict[str, list[list[tuple[int, int]]]]:
    """Per group, the blocks as lists of (edge row, candidate) entries, and per group the sparsity.

    A space whose derivation keeps ``inputs_per_node`` inputs per node (DARTS-like) picks inputs per
    node: a block is a node's incoming (edge, candidate) pairs without ``none``. Otherwise every edge
    picks one candidate: a block is an edge's candidates.
    """
    out = {}
    for g, keys in space.edge_keys.items():
        if getattr(space, "inputs_per_node", None):
            nodes: dict[str, list[int]] = {}
            for row, key in enumerate(keys):
                nodes.setdefault(key.split("<-")[0], []).append(row)
            cands = [c for c, op in enumerate(space.op_names) if op != "none"]
            out[g] = [[(r, c) for r in rows for c in cands] for rows in nodes.values()]
        else:
            out[g] = [[(r, c) for c in range(len(space.op_names))] for r in range(len(keys))]
    return out


@register_strategy
class ISTANAS(DartsV1):
    """Two-stage ISTA-NAS: sparse codes recovered each epoch, ``b`` learned on the architecture half."""

    name = "ista-nas"
    any_task = False  # its counts are argmax accuracies
    budgets = ()
    families = ("nb201", "darts")  # blocks are edges or nodes of one shared candidate list
    Hyper = ISTAHyper
    one_stage = False

    def __init__(self, space, hyper: ISTAHyper | None = None) -> None:
        super().__init__(space, hyper)
        h = self.hyper
        self.blocks = _blocks(space)
        self.sparsity = h.sparseness or getattr(space, "inputs_per_node", None) or 1
        self.codes = nn.ParameterDict()
        for g, blocks in self.blocks.items():
            sizes = [len(b) for b in blocks]
            if self.sparsity > min(sizes):
                raise ValueError(f"ista-nas: sparseness {self.sparsity} exceeds a block of {min(sizes)} candidates")
            m = max(1, min(h.proj_dims, min(sizes) - 1))
            self.codes[g] = nn.Parameter(1e-3 * torch.randn(len(blocks), m))  # reference init of b
            for k, n in enumerate(sizes):
                self.register_buffer(f"A_{g}_{k}", torch.rand(m, n, dtype=torch.float64))  # reference: rand
                self.register_buffer(f"x_{g}_{k}", torch.zeros(n, dtype=torch.float64))
                self.register_buffer(f"support_{g}_{k}", torch.zeros(n, dtype=torch.bool))
            self.register_buffer(f"frozen_{g}", torch.zeros(len(blocks), dtype=torch.bool))
        self.register_buffer("recovered_epoch", torch.tensor(-1))
        for a in self.alphas.values():
            a.requires_grad_(False)  # alphas only report the support (see _report); b is learned

    def _buf(self, kind: str, g: str, k: int) -> torch.Tensor:
        return getattr(self, f"{kind}_{g}_{k}")

    def make_context(self, model: nn.Module) -> StepContext:
        """The supernet's SGD and Adam on the dense codes ``b``."""
        ctx = super().make_context(model)
        h = self.hyper
        ctx.a_optimizer = torch.optim.Adam(list(self.codes.values()), lr=h.a_lr, betas=(h.a_beta1, h.a_beta2),
                                           weight_decay=h.a_wd)
        return ctx

    # -- recovery --------------------------------------------------------------------------------
    def recover(self) -> dict[str, list[torch.Tensor]]:
        """The sparse code of every block from the current ``b`` (frozen blocks keep theirs)."""
        h = self.hyper
        out = {}
        for g, blocks in self.blocks.items():
            b = self.codes[g].detach().cpu()
            frozen = getattr(self, f"frozen_{g}")
            out[g] = [self._buf("x", g, k).cpu() if bool(frozen[k]) else
                      lasso_fista(self._buf("A", g, k).cpu(), b[k], h.lasso_lambda, h.lasso_iters)
                      for k in range(len(blocks))]
        return out

    def _top(self, x: torch.Tensor) -> torch.Tensor:
        mask = torch.zeros_like(x, dtype=torch.bool)
        mask[torch.argsort(-x.abs(), stable=True)[: self.sparsity]] = True
        return mask

    def new_epoch(self, epoch: int, epochs: int) -> None:
        """Recover the codes and fix the supports for this epoch (not again when resuming within it)."""
        if int(self.recovered_epoch) == epoch:
            return
        fresh = self.recover()
        for g, xs in fresh.items():
            frozen = getattr(self, f"frozen_{g}")
            for k, x in enumerate(xs):
                old = self._buf("x", g, k)
                if self.one_stage and epoch > 0 and not frozen[k]:
                    frozen[k] = bool(torch.linalg.vector_norm(x.to(old) - old) <= self.hyper.freeze_tol)
                old.copy_(x.to(old))
                self._buf("support", g, k).copy_(self._top(x).to(old.device))
        self.recovered_epoch.fill_(epoch)
        self._report()

    def _report(self, xs: dict[str, list[torch.Tensor]] | None = None) -> None:
        """``alphas`` as derivation scores: ``10 |x| / max |x|`` on the support, 0 elsewhere (monotone)."""
        for g, blocks in self.blocks.items():
            scores = torch.zeros_like(self.alphas[g])
            for k, entries in enumerate(blocks):
                x = (xs[g][k] if xs is not None else self._buf("x", g, k)).abs().float().cpu()
                mask = self._top(x) if xs is not None else self._buf("support", g, k).cpu()
                top = float(x[mask].max()) if bool(mask.any()) and float(x[mask].max()) > 0 else 1.0
                for (row, cand), keep, value in zip(entries, mask.tolist(), x.tolist()):
                    if keep:
                        scores[row, cand] = 10.0 * value / top + 1e-3  # + 1e-3: a zero code still wins
            self.alphas[g].data.copy_(scores)

    # -- mixing ----------------------------------------------------------------------------------
    def mixing(self) -> Mixing:
        """``z = x + A^T (b - A x)`` on each block's support (frozen blocks: ``x``), with its candidates active."""
        weights, active = {}, {}
        for g, blocks in self.blocks.items():
            b = self.codes[g]
            w = torch.zeros(self.alphas[g].shape, dtype=b.dtype, device=b.device)
            on: list[list[int]] = [[] for _ in range(w.shape[0])]
            frozen = getattr(self, f"frozen_{g}")
            for k, entries in enumerate(blocks):
                A = self._buf("A", g, k).to(b.dtype)
                x = self._buf("x", g, k).to(b.dtype)
                support = self._buf("support", g, k)
                z = x if bool(frozen[k]) else x + A.T @ (b[k] - A @ x)
                idx = support.nonzero().flatten().tolist()
                rows = torch.tensor([entries[i][0] for i in idx], device=b.device)
                cols = torch.tensor([entries[i][1] for i in idx], device=b.device)
                w = w.index_put((rows, cols), z[idx], accumulate=True)
                for i in idx:
                    on[entries[i][0]].append(entries[i][1])
            weights[g], active[g] = w, [sorted(c) for c in on]
        return Mixing(weights, active)

    def probabilities(self) -> dict[str, torch.Tensor]:
        """``|z|`` normalized per edge (zero rows: edges no candidate of the support sits on)."""
        out = {}
        for g, w in self.mixing().weights.items():
            w = w.detach().abs()
            out[g] = w / w.sum(-1, keepdim=True).clamp_min(1e-12)
        return out

    def derive(self):
        """The support of the code recovered from the current ``b`` (the end of an epoch)."""
        saved = {g: a.detach().clone() for g, a in self.alphas.items()}
        self._report(self.recover())
        cell = self.space.derive({g: a.detach() for g, a in self.alphas.items()})
        for g, a in saved.items():
            self.alphas[g].data.copy_(a)
        return cell

    # -- one step --------------------------------------------------------------------------------
    def all_frozen(self) -> bool:
        return all(bool(getattr(self, f"frozen_{g}").all()) for g in self.blocks)

    def step(self, ctx: StepContext, x_w, y_w, x_a, y_a) -> StepStats:
        """Two-stage: the base step. One-stage: ``b`` on the weight batch; weights only once all are frozen."""
        if self.one_stage:
            x_a, y_a = x_w, y_w
            if self.all_frozen():
                loss, logits = self.weight_step(ctx, x_w, y_w)
                correct = (logits.argmax(-1) == y_w).sum()
                return StepStats(loss.detach(), correct, loss.detach(), correct, int(y_w.shape[0]))
        return super().step(ctx, x_w, y_w, x_a, y_a)

    def arch_step(self, ctx: StepContext, x_w, y_w, x_a, y_a):
        """Adam on ``b``: gradient of the loss through the linear map to ``z``."""
        loss, logits = self.forward_loss(ctx, x_a, y_a)
        codes = list(self.codes.values())
        for p, grad in zip(codes, grads_or_zeros(loss, codes)):
            p.grad = grad
        ctx.a_optimizer.step()
        return loss, logits

    def epoch_summary(self) -> dict[str, Any]:
        return {"active_candidates": {g: sum(len(c) for c in a) for g, a in self.mixing().active.items()},
                "frozen_blocks": {g: int(getattr(self, f"frozen_{g}").sum()) for g in self.blocks}}

    def result_extras(self) -> dict[str, Any]:
        return {"ista": {"variant": "one-stage" if self.one_stage else "two-stage", "sparsity": self.sparsity,
                         "proj_dims": {g: int(c.shape[1]) for g, c in self.codes.items()},
                         "frozen_blocks": {g: int(getattr(self, f"frozen_{g}").sum()) for g in self.blocks}}}


@register_strategy
class ISTANASOneStage(ISTANAS):
    """One-stage ISTA-NAS: one level, blocks freeze as their codes settle, then the final cell trains."""

    name = "ista-nas-one-stage"
    one_stage = True
