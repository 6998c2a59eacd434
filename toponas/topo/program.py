"""Running plans: a :class:`Program` holds the group plans of one cell and executes them each step.

Per step it first builds every convolution kernel of the cell at once (:meth:`Program.build`): the
kernels of all items with the same structure, across all groups, are stacked along a leading
dimension and normalized, padded and weighted in a handful of tensor operations, so that the
per-group convolution calls receive ready kernels (contiguous slices, no copies). Then each group
runs (:meth:`Program.run`): sources (shared relu, pooling), one convolution and one bn call per
:class:`~toponas.topo.plan.ConvCall`, separable stages, inverted-residual blocks, taps, and unplanned
chains. A node's terms are summed by :func:`toponas.topo.autograd.combine`; the module checks live in
:mod:`toponas.topo.checks`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from ..spaces.primitives import BN, AvgPool, MaxPool, Primitive, ReLU
from .autograd import Pooled, Term, plain_autograd, vmapped
from .checks import EdgeOps
from .items import Block, Chain, ConvBN, ConvCall, Dropped, GroupPlan, PlanError, SepStage, Source, Stack, Tap
from .kernels import avg_pool_same, embed_kernel, kernel_norm, normalize_kernel, unit_rms_kernel
from .lower import SOURCE_BN_EPS
from .recompute import recomputed_taps, scaled_bn, separable


def apply_prim(prim: Primitive, x: torch.Tensor) -> torch.Tensor:
    """One parameter-free primitive of a source (relu, pooling, search bn), on ``x`` (B, C, H, W)."""
    if isinstance(prim, ReLU):
        return F.relu(x)
    if isinstance(prim, AvgPool):
        if prim.stride == 1:
            return avg_pool_same(x, prim.kernel)
        return F.avg_pool2d(x, prim.kernel, prim.stride, prim.kernel // 2, count_include_pad=False)
    if isinstance(prim, MaxPool):
        return F.max_pool2d(x, prim.kernel, prim.stride, prim.kernel // 2)
    if isinstance(prim, BN) and not prim.affine and not prim.track_running_stats:
        return F.batch_norm(x, None, None, None, None, True, 0.0, SOURCE_BN_EPS)
    raise PlanError(f"primitive {prim!r} cannot be part of a source")


def signature(item: ConvBN) -> tuple:
    """Items with equal signatures build their kernels together (stacked along a leading dim)."""
    members = tuple((p.cand, pos, p.chain[pos], p.chain[pos + 1]) for p, pos in zip(item.paths, item.positions))
    return item.floated, members


def calls_of(plan: GroupPlan) -> list[tuple[Source, ConvCall]]:
    """Every convolution call of a plan with its source, in plan order (a loose item is one call)."""
    out: list[tuple[Source, ConvCall]] = []
    for it in plan.items:
        if isinstance(it, ConvBN):
            out.append((it.source, ConvCall((it,), it.kernel, it.dilation)))
        elif isinstance(it, Stack):
            out.extend((it.source, call) for call in it.calls)
    return out


def _blocks(call: ConvCall) -> list[list[ConvBN]]:
    """Consecutive items of a call with the same signature."""
    blocks: list[list[ConvBN]] = []
    for item in call.items:
        if blocks and signature(blocks[-1][0]) == signature(item):
            blocks[-1].append(item)
        else:
            blocks.append([item])
    return blocks


@dataclass(frozen=True)
class _Batch:
    """Items of one cell whose kernels are built together: ``(edge, item)`` pairs and the call geometry."""

    items: tuple[tuple[int, ConvBN], ...]
    kernel: int
    dilation: int


@dataclass(frozen=True)
class _Built:
    """A batch's kernels ``(n, C_out, C_in, k, k)``, bn scales and shifts ``(n, C_out)``, and bn eps."""

    kernel: torch.Tensor
    gamma: torch.Tensor
    beta: torch.Tensor | None
    eps: float


@dataclass(frozen=True)
class _StageBatch:
    """Floated separable stages of one cell with the same members, calls and channels: ``(edge, stage)``
    pairs whose kernels are built together (one stacked build for every edge, not one per edge)."""

    items: tuple[tuple[int, SepStage], ...]


@dataclass(frozen=True)
class _StageBuilt:
    """A stage batch's kernels, one entry per stage: the depthwise kernel ``(C, 1, k, k)`` of each call,
    the pointwise kernel ``(C_out, C_in, 1, 1)``, and the ending members' total weight (0-d, or None)."""

    depthwise: tuple[tuple[torch.Tensor, ...], ...]  # [call][stage]
    pointwise: tuple[torch.Tensor, ...]
    total: tuple[torch.Tensor, ...] | None


@dataclass(frozen=True)
class Kernels:
    """Every kernel of a unit for one step: the conv batches' and the stage batches' (:meth:`Program.build`)."""

    convs: list[_Built]
    stages: list[_StageBuilt]
    taps: dict[tuple[int, int], torch.Tensor]  # (edge, candidate) -> its 0-d weight, for every tap


#: Build the kernels of the separable stages of a cell in one stacked build per stage structure
#: (:func:`build_stages`); ``False`` builds them per edge inside each stage, as before (the reference the
#: batched build is tested against, ``tests/test_kernel_batch.py``).
BATCHED_STAGE_BUILD = True


def _rows(weights: torch.Tensor, edges: Sequence[int]) -> torch.Tensor:
    """``weights[edges]`` as (n, K): a slice when the edges are consecutive, else an index."""
    first = edges[0]
    if list(edges) == list(range(first, first + len(edges))):
        return weights[first:first + len(edges)]
    return weights[list(edges)]


def _cols(w: torch.Tensor, cols: Sequence[int]) -> torch.Tensor:
    """``w[:, cols]``: a slice when the columns are consecutive, else an index."""
    first = cols[0]
    if list(cols) == list(range(first, first + len(cols))):
        return w[:, first:first + len(cols)]
    return w[:, list(cols)]


@functools.lru_cache(maxsize=256)
def _flat_index(pairs: Sequence[tuple[int, int]] | tuple, width: int, device: torch.device) -> torch.Tensor:
    """``row * width + col`` of each pair, as an int64 index tensor on ``device`` (made once per unit)."""
    return torch.tensor([r * width + c for r, c in pairs], dtype=torch.int64, device=device)


def _member_weights(weights: torch.Tensor, row: int, cands: Sequence[int]) -> torch.Tensor:
    """``weights[row, cands]`` (members,): a slice when the candidates are consecutive, else an index."""
    return _cols(weights[row:row + 1], cands)[0]


def stage_signature(stage: SepStage) -> tuple:
    """Floated stages with equal signatures build their kernels together (stacked along a leading dim)."""
    members = tuple((p.cand, pos, p.chain[pos], p.chain[pos + 1]) for p, pos in zip(stage.paths, stage.positions))
    return members, stage.calls, stage.ending


def _floated_stages(plan: GroupPlan) -> list[SepStage]:
    """The floated separable stages of a plan in the order :meth:`Program.run` reaches them (pre-order)."""
    out: list[SepStage] = []

    def walk(stage: SepStage) -> None:
        if stage.floated:
            out.append(stage)
        for nxt in stage.next:
            walk(nxt)

    for item in plan.items:
        if isinstance(item, SepStage):
            walk(item)
    return out


def _mixed(kernels: Sequence[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """``sum_i w[:, i] unit_rms_kernel(K_i)`` for ``m`` stacks ``K_i`` of ``n`` kernels and ``w`` (n, m):
    the mixed kernels of ``n`` edges in a few operations, ``(n, ...)``."""
    stacked = torch.stack(list(kernels), 1)  # (n, m, C_out, ...)
    n, m = stacked.shape[:2]
    unit = unit_rms_kernel(stacked.flatten(0, 1)).view(stacked.shape)  # one scale per kernel
    return (unit * w.reshape(n, m, *([1] * (stacked.dim() - 2)))).sum(1)


def build_stages(batch: _StageBatch, weights: torch.Tensor, ops: EdgeOps) -> _StageBuilt:
    """The mixed kernels of a batch of like floated stages (rule 4), from the step's weights ``(edges, K)``:
    per depthwise call ``sum_i w_i Dhat_i`` (each embedded in the call's geometry), ``sum_i w_i Phat_i``,
    and the ending members' total weight, for every stage of the batch at once."""
    rows = [k for k, _ in batch.items]
    first = batch.items[0][1]
    w = _cols(_rows(weights, rows), [p.cand for p in first.paths])  # (n, members)
    mods = [[ops(k, p.cand) for p in st.paths] for k, st in batch.items]
    depthwise = []
    for kernel, dilation, members in first.calls:
        per = []
        for i in members:
            pos = first.positions[i]
            conv = mods[0][i][pos]
            stacked = torch.stack([m[i][pos].weight for m in mods])  # (n, C, 1, k_i, k_i)
            per.append(embed_kernel(stacked, conv.dilation[0], conv.kernel_size[0], kernel, dilation))
        depthwise.append(_mixed(per, _cols(w, members)).unbind(0))
    pointwise = _mixed([torch.stack([m[i][pos + 1].weight for m in mods]) for i, pos in enumerate(first.positions)],
                       w).unbind(0)
    total = None
    if first.ending:
        ending = _cols(w, first.ending)
        total = (ending.sum(1) if len(first.ending) > 1 else ending[:, 0]).unbind(0)  # (n,) as n 0-d
    return _StageBuilt(tuple(depthwise), pointwise, total)


def build_batch(batch: _Batch, weights: torch.Tensor, ops: EdgeOps) -> _Built:
    """Kernels, bn scales and shifts of a batch of like items, from the step's weights ``(edges, K)``.

    Unfloated items: the raw kernels, scale ``w * gamma``. Floated items (rule 3): ``sum_i w_i
    Khat_i`` and scale ``W_G = sum_i w_i`` (the group weight outside the shared bn).
    """
    edges = [k for k, _ in batch.items]
    items = [it for _, it in batch.items]
    first, n = items[0], len(items)
    w_rows = _rows(weights, edges)  # (n, K)
    kernel: torch.Tensor | None = None
    total: torch.Tensor | None = None
    for m, (path, pos) in enumerate(zip(first.paths, first.positions)):
        convs = [ops(k, it.paths[m].cand)[pos] for k, it in batch.items]
        stacked = torch.stack([c.weight for c in convs])  # (n, C_out, C_in, k, k)
        w = w_rows[:, path.cand]  # (n,)
        if first.floated:  # weight the normalized kernel before padding it (fewer elements)
            stacked = normalize_kernel(stacked) * w.view(n, 1, 1, 1, 1)
        stacked = embed_kernel(stacked, convs[0].dilation[0], convs[0].kernel_size[0], batch.kernel,
                               batch.dilation)
        if first.floated:
            kernel = stacked if kernel is None else kernel + stacked
            total = w if total is None else total + w
        else:
            kernel, total = stacked, w
    assert kernel is not None and total is not None
    c_out = kernel.shape[1]
    bns = [ops(k, it.paths[0].cand)[it.positions[0] + 1] for k, it in batch.items]
    if any(bn.eps != bns[0].eps for bn in bns):
        raise PlanError(f"stacked bn layers differ in eps: {sorted({bn.eps for bn in bns})}")
    beta = None
    if not first.floated and bns[0].affine:
        gamma = torch.stack([bn.weight for bn in bns]) * total.view(n, 1)  # (n, C_out)
        beta = torch.stack([bn.bias for bn in bns]) * total.view(n, 1)
    else:
        gamma = total.unsqueeze(1).expand(n, c_out)
    return _Built(kernel, gamma, beta, bns[0].eps)


#: Rebuild the kernels in backward when their kept copies are at least this fraction of the unit input's
#: elements (measured: ``docs/profile.md``, "Recomputed in backward").
RECOMPUTE_BUILD_RATIO = 1.0


def recompute_build(kept_numel: int, activation_numel: int | None) -> bool:
    """Whether a unit's kernel build runs under checkpointing: when the kernel copies it would keep are
    large against one activation of the unit (``RECOMPUTE_BUILD_RATIO``), or the activation is unknown."""
    return activation_numel is None or kept_numel >= RECOMPUTE_BUILD_RATIO * activation_numel


class Program:
    """The group plans of one cell (or one edge) and the batches their kernels are built in.

    ``groups[g] = (edges, plan)``: the plan of the edges reading one input (``edges[slot]`` is the
    cell's index of the plan's edge slot ``slot``).
    """

    def __init__(self, groups: Sequence[tuple[tuple[int, ...], GroupPlan]]) -> None:
        self.groups = list(groups)
        batches: list[list[tuple[int, ConvBN]]] = []
        geometry: list[tuple[int, int]] = []
        index: dict[tuple, int] = {}
        self.blocks: dict[tuple[int, int], list[tuple[int, int, int]]] = {}  # (g, call) -> (batch, start, stop)
        for g, (edges, plan) in enumerate(self.groups):
            for c, (_, call) in enumerate(calls_of(plan)):
                refs = []
                for block in _blocks(call):
                    key = (signature(block[0]), call.kernel, call.dilation)
                    if key not in index:
                        index[key] = len(batches)
                        batches.append([])
                        geometry.append((call.kernel, call.dilation))
                    i = index[key]
                    start = len(batches[i])
                    batches[i].extend((edges[it.slot], it) for it in block)
                    refs.append((i, start, len(batches[i])))
                self.blocks[(g, c)] = refs
        self.batches = [_Batch(tuple(b), *geo) for b, geo in zip(batches, geometry)]
        stages: list[list[tuple[int, SepStage]]] = []
        stage_index: dict[tuple, int] = {}
        self.stage_refs: list[list[tuple[int, int]]] = []  # per group, its floated stages in run order
        for edges, plan in self.groups:
            refs = []
            for stage in _floated_stages(plan):
                key = (stage_signature(stage), plan.channels)
                if key not in stage_index:
                    stage_index[key] = len(stages)
                    stages.append([])
                i = stage_index[key]
                refs.append((i, len(stages[i])))
                stages[i].append((edges[stage.slot], stage))
            self.stage_refs.append(refs)
        self.stage_batches = [_StageBatch(tuple(b)) for b in stages] if BATCHED_STAGE_BUILD else []
        self.tap_pairs: list[tuple[int, int]] = []  # (edge, candidate) of every tap of the unit, once each
        for edges, plan in self.groups:
            for it in plan.items:
                if isinstance(it, Tap) and (edges[it.path.slot], it.path.cand) not in self.tap_pairs:
                    self.tap_pairs.append((edges[it.path.slot], it.path.cand))
        self._kept_numel: int | None = None

    def build(self, weights: torch.Tensor, ops: EdgeOps, activation_numel: int | None = None) -> Kernels:
        """Every kernel of the cell for this step's weights ``(edges, K)``: the conv batches' and the
        separable stages' (each batch of like items or stages in one stacked build).

        With autograd on, the build may run under non-reentrant checkpointing: the normalized, weighted
        and embedded copies of the kernels are then not kept for backward but built again there
        (kernel-sized work, no randomness: the same tensors). That is a choice by cost
        (:func:`recompute_build`): the copies are a batch-independent part of the saved bytes, large
        against the activations of a deep, narrow-map unit or a small batch, and negligible against a
        wide-map unit's, where rebuilding them costs time (each build is many small operations) for
        little memory. ``activation_numel``: the elements of the unit's input this step (``None``:
        always recompute).
        """
        taps = self.tap_weights(weights)
        if not self.batches and not self.stage_batches:
            return Kernels([], [], taps)
        if (torch.is_grad_enabled() and not plain_autograd()  # compiled, vmapped: see plain_autograd
                and recompute_build(self.kept_numel(ops), activation_numel)):
            convs, stages = checkpoint(self._build, weights, ops, use_reentrant=False, preserve_rng_state=False)
        else:
            convs, stages = self._build(weights, ops)
        return Kernels(convs, stages, taps)

    def tap_weights(self, weights: torch.Tensor) -> dict[tuple[int, int], torch.Tensor]:
        """The 0-d weight of every tap of the unit, gathered in one indexing call (one backward call too)
        instead of one ``weights[edge, cand]`` each (two selects, and in backward a full-size zero tensor
        per select)."""
        if not self.tap_pairs:
            return {}
        if len(self.tap_pairs) == 1 or torch.compiler.is_compiling():  # compiled: plain indexing, no cache
            return {(k, c): weights[k, c] for k, c in self.tap_pairs}
        index = _flat_index(tuple(self.tap_pairs), weights.shape[1], weights.device)
        return dict(zip(self.tap_pairs, weights.reshape(-1).index_select(0, index).unbind(0)))

    def kept_numel(self, ops: EdgeOps) -> int:
        """Elements of the kernel copies one build keeps for backward when not recomputed (an estimate:
        one normalized-weighted-embedded copy per path of every item, at the call's extent)."""
        if self._kept_numel is None:
            total = 0
            for b in self.batches:
                k, first = b.items[0]
                conv = ops(k, first.paths[0].cand)[first.positions[0]]
                per_kernel = conv.weight.shape[0] * conv.weight.shape[1] * b.kernel * b.kernel
                total += len(b.items) * len(first.paths) * per_kernel
            for sb in self.stage_batches:
                k, st = sb.items[0]
                mods = [ops(k, p.cand) for p in st.paths]
                per_stage = sum(mods[i][st.positions[i]].weight.shape[0] * kernel * kernel
                                for kernel, _, members in st.calls for i in members)
                per_stage += sum(m[pos + 1].weight.numel() for m, pos in zip(mods, st.positions))
                total += len(sb.items) * per_stage
            self._kept_numel = total
        return self._kept_numel

    def _build(self, weights: torch.Tensor, ops: EdgeOps) -> tuple[list[_Built], list[_StageBuilt]]:
        return ([build_batch(b, weights, ops) for b in self.batches],
                [build_stages(b, weights, ops) for b in self.stage_batches])

    def run(self, g: int, x: torch.Tensor, weights: torch.Tensor, built: Kernels, ops: EdgeOps
            ) -> list[list[Term]]:
        """Run group ``g`` on its input ``x`` (B, C, H, W); the terms of each of its edge slots."""
        edges, plan = self.groups[g]
        terms: list[list[Term]] = [[] for _ in edges]
        cache: dict[tuple, torch.Tensor] = {}

        def source(src: Source, layout: torch.memory_format | None = None) -> torch.Tensor:
            t = x if layout is None else cache.setdefault(("layout", layout), x.contiguous(memory_format=layout))
            for k in range(1, len(src.prims) + 1):
                key = (src.prims[:k], src.owners, layout)
                if key not in cache:
                    cache[key] = apply_prim(src.prims[k - 1], t)
                t = cache[key]
            return t

        # compiled graphs keep or recompute by the compiler's own choice (AOTAutograd's partitioner)
        recomputed = [] if torch.compiler.is_compiling() else _recomputable_taps(plan)
        # this group's floated stages in run order: their batch's kernels and their place in the batch
        stage_kernels = iter([(built.stages[i], j) for i, j in self.stage_refs[g]]) if built.stages else None
        pooled = [t for t in recomputed if POOLED_TAPS and _linear_pool(t.source.prims, x) is not None]
        for tap in pooled:  # summed by linearity at the node (autograd.Pooled): nothing kept or recomputed
            p = tap.path
            terms[p.slot].append(Pooled(x, built.taps[(edges[p.slot], p.cand)], tap.source.prims[0].kernel))
        if len(pooled) < len(recomputed):
            _run_taps([t for t in recomputed if t not in pooled], x, built.taps, edges, terms)
        for item in plan.items:
            if isinstance(item, Tap):
                if item in recomputed:
                    continue
                p = item.path
                terms[p.slot].append((source(item.source), built.taps[(edges[p.slot], p.cand)]))
            elif isinstance(item, Chain):
                p = item.path
                terms[p.slot].append((ops(edges[p.slot], p.cand)(x), weights[edges[p.slot], p.cand]))
            elif isinstance(item, SepStage):
                _run_stage(item, source(item.source, stage_layout(x)), weights, edges, ops, terms, stage_kernels)
            elif isinstance(item, Block):
                _run_block(item, source(item.source, stage_layout(x)), weights, edges, ops, terms)
            elif not isinstance(item, (Dropped, ConvBN, Stack)):
                raise PlanError(f"unknown plan item {item!r}")
        for c, (src, call) in enumerate(calls_of(plan)):
            self._conv_call(call, self.blocks[(g, c)], source(src), built.convs, terms)
        return terms

    @staticmethod
    def _conv_call(call: ConvCall, refs: list[tuple[int, int, int]], inp: torch.Tensor, built: list[_Built],
                   terms: list[list[Term]]) -> None:
        """One conv call on ``inp`` with the stacked kernels, one bn call (weights as its scale), split."""
        parts = [(built[i], start, stop) for i, start, stop in refs]
        eps = parts[0][0].eps
        if any(b.eps != eps for b, _, _ in parts):
            raise PlanError(f"stacked bn layers differ in eps: {sorted({b.eps for b, _, _ in parts})}")
        kernels = [b.kernel[s:e] for b, s, e in parts]  # (n_i, C_out, C_in, k, k) each
        gammas = [b.gamma[s:e] for b, s, e in parts]  # (n_i, C_out) each
        kernel = kernels[0] if len(kernels) == 1 else torch.cat(kernels)
        gamma = gammas[0] if len(gammas) == 1 else torch.cat(gammas)
        beta = None
        if any(b.beta is not None for b, _, _ in parts):
            betas = [(b.beta if b.beta is not None else torch.zeros_like(b.gamma))[s:e] for b, s, e in parts]
            beta = torch.cat(betas).reshape(-1)
        n, c_out = kernel.shape[:2]
        kernel = kernel.reshape(n * c_out, *kernel.shape[2:])  # (n C_out, C_in, k, k)
        pad = call.dilation * (call.kernel - 1) // 2
        z = F.conv2d(inp, kernel, None, 1, pad, call.dilation)  # (B, n C_out, H, W)
        y = F.batch_norm(z, None, None, gamma.reshape(-1), beta, True, 0.0, eps)  # batch stats, weights as scale
        outs = y.split(c_out, dim=1) if n > 1 else (y,)
        for item, out in zip(call.items, outs):
            terms[item.slot].append((out, None))


def _recomputable_taps(plan: GroupPlan) -> list[Tap]:
    """Taps whose source is parameter-free work of their own (pooling, pooling -> bn), read by nothing else
    of the plan: they run as :class:`~toponas.topo.recompute.RecomputedTaps` (recomputed in backward)."""
    taps = [it for it in plan.items if isinstance(it, Tap) and it.source.prims]
    if not taps:
        return []
    others = {it.source.prims for it in plan.items if not isinstance(it, Tap) and hasattr(it, "source")}
    return [t for t in taps if not any(t.source.prims[:len(o)] == o or o[:len(t.source.prims)] == t.source.prims
                                       for o in others)]


#: same-size average-pooling taps summed by linearity at their node (:class:`~toponas.topo.autograd.Pooled`);
#: False runs them as :class:`~toponas.topo.recompute.RecomputedTaps` (the switch is for tests and benchmarks)
POOLED_TAPS = True


def _linear_pool(prims: tuple[Primitive, ...], x: torch.Tensor) -> AvgPool | None:
    """The source's one primitive if it is a same-size average pooling of a 4-d input (a :class:`Pooled`
    term), else None."""
    if len(prims) == 1 and isinstance(prims[0], AvgPool) and prims[0].stride == 1 and x.dim() == 4:
        return prims[0]
    return None


def _source_fn(prims: tuple[Primitive, ...]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The source's primitives as one function of the group input."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        for prim in prims:
            x = apply_prim(prim, x)
        return x

    return fn


def _run_taps(taps: Sequence[Tap], x: torch.Tensor, weights: dict[tuple[int, int], torch.Tensor],
              edges: Sequence[int], terms: list[list[Term]]) -> None:
    """Every edge's parameter-free taps on ``x`` as one term per edge, ``sum_s w_s f_s(x)``, with the
    sources recomputed in backward instead of kept (:mod:`toponas.topo.recompute`)."""
    sources: list[Source] = []  # a shared source once, a private one (rule prefix off) once per owner
    slots: list[int] = []
    layout: list[list[tuple[int, int]]] = []
    ws: list[torch.Tensor] = []
    for tap in taps:
        if tap.source not in sources:
            sources.append(tap.source)
        if tap.path.slot not in slots:
            slots.append(tap.path.slot)
            layout.append([])
        layout[slots.index(tap.path.slot)].append((sources.index(tap.source), len(ws)))
        ws.append(weights[(edges[tap.path.slot], tap.path.cand)])
    outs = recomputed_taps([_source_fn(src.prims) for src in sources], layout, x, ws)
    for slot, out in zip(slots, outs):
        terms[slot].append((out, None))


def _mix(kernels: Sequence[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i unit_rms_kernel(K_i)`` for kernels of one shape, in a few batched operations."""
    stacked = torch.stack(list(kernels))  # (m, C_out, C_in, k, k)
    return (unit_rms_kernel(stacked) * w.view(-1, 1, 1, 1, 1)).sum(0)


def stage_layout(x: torch.Tensor) -> torch.memory_format | None:
    """The memory layout separable stages run in: channels-last on CPU, else the input's own (None).

    PyTorch's CPU depthwise convolution is 2-4x faster forward and backward in channels-last (measured,
    dense 3x3 to 9x9 kernels at DARTS shapes, the conversion included); the source is converted once
    per node, before its relu, so only the converted tensor is kept for backward. Not under ``vmap`` (many
    seeds in one pass), which cannot convert layouts.
    """
    return torch.channels_last if x.device.type == "cpu" and x.dim() == 4 and not vmapped(x) else None


def _run_stage(stage: SepStage, z: torch.Tensor, weights: torch.Tensor, edges: Sequence[int], ops: EdgeOps,
               terms: list[list[Term]], built: Iterator[tuple[_StageBuilt, int]] | None = None) -> None:
    """A separable stage on its source tensor ``z`` (B, C, H, W), then the stages that follow it.

    One member: its own kernels (exact). Several: depthwise kernels ``sum_i w_i Dhat_i`` per call,
    one 1x1 conv with ``sum_i w_i Phat_i``, one bn; ending members add ``(sum of their w) * h``.
    ``built``: the program's stage kernels and positions, one pair per floated stage in the order the
    stages are reached (:func:`build_stages`); ``None``: build them here, for this edge alone.
    """
    row = edges[stage.slot]
    mods = [ops(row, p.cand) for p in stage.paths]
    bn = mods[0][stage.positions[0] + 2]
    if stage.floated and built is not None:
        kernels, j = next(built)
        dks = [call[j] for call in kernels.depthwise]
        p = kernels.pointwise[j]
        total = kernels.total[j] if kernels.total is not None else None
    else:
        dws = [m[pos] for m, pos in zip(mods, stage.positions)]
        pws = [m[pos + 1] for m, pos in zip(mods, stage.positions)]
        w = _member_weights(weights, row, [p.cand for p in stage.paths])  # (members,)
        if stage.floated:  # embedding adds only zeros, so the norms can be taken after it, all at once
            dks = [_mix([embed_kernel(dws[i].weight, dws[i].dilation[0], dws[i].kernel_size[0], kernel, dilation)
                         for i in members], w[list(members)]) for kernel, dilation, members in stage.calls]
            p = _mix([m.weight for m in pws], w)
        else:
            dks = [dws[members[0]].weight for _, _, members in stage.calls]
            p = pws[0].weight
        total = None
        if stage.ending:
            total = w[list(stage.ending)].sum() if len(stage.ending) > 1 else w[stage.ending[0]]
    # (B, C, H', W'): the depthwise calls summed, then the 1x1 conv; the sum is rebuilt in backward, not kept
    z = separable(z, dks, p, [(kernel, dilation) for kernel, dilation, _ in stage.calls], stage.stride)
    if stage.ending:  # h = bn(z); the edge gets (sum of the ending members' w) * h, h rebuilt in backward
        assert total is not None
        h, y = scaled_bn(z, total, bn.eps)
        terms[stage.slot].append((y, None))
    else:
        h = F.batch_norm(z, None, None, None, None, True, 0.0, bn.eps)
    for nxt in stage.next:
        t = h
        for prim in nxt.source.prims:
            t = apply_prim(prim, t)
        _run_stage(nxt, t, weights, edges, ops, terms, built)


def _pad_kernel(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    """A ``(..., k, k)`` kernel centred in ``kernel x kernel`` (zeros around it: the same convolution)."""
    off = (kernel - weight.shape[-1]) // 2
    return weight if off == 0 else F.pad(weight, (off, off, off, off))


def _pad_dim(weight: torch.Tensor, dim: int, size: int) -> torch.Tensor:
    """``weight`` zero-padded at the end of ``dim`` to ``size`` (extra channels that stay zero: a mask)."""
    extra = size - weight.shape[dim]
    if extra == 0:
        return weight
    shape = list(weight.shape)
    shape[dim] = extra
    return torch.cat([weight, weight.new_zeros(shape)], dim)


#: Build a merged block's kernels with one normalization per primitive over all members, zero-padded
#: first (:func:`_normalized_sum`); ``False``: one normalization per member, then padded (the reference
#: the batched build is tested against, ``tests/test_kernel_batch.py``).
BATCHED_BLOCK_BUILD = True


def _padded(weight: torch.Tensor, size: int, dim: int, kernel: int) -> torch.Tensor:
    """``weight`` (``(O, I, k, k)``) zero-padded at the end of ``dim`` (0 or 1) to ``size`` channels and
    centred in ``kernel x kernel``, in one call (zeros: a channel mask, and the same convolution)."""
    off = (kernel - weight.shape[-1]) // 2
    extra = size - weight.shape[dim]
    if off == 0 and extra == 0:
        return weight
    pad = [off, off, off, off, 0, 0, 0, 0]
    pad[7 - 2 * dim] = extra  # the end of dim 0 is the last pair, of dim 1 the one before
    return F.pad(weight, pad)


def _normalized_sum(kernels: Sequence[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i normalize_kernel(K_i)`` for kernels of one (padded) shape: one stack, one norm (per member
    and output channel; zero channels stay zero), the weights folded into the scale (autograd keeps one copy
    of the stack, as the per-member build kept one of its padded kernels), one sum."""
    if len(kernels) == 1:
        return normalize_kernel(kernels[0]) * w[0]
    stacked = torch.stack(list(kernels))  # (m, O, I, k, k)
    return (stacked * (w.view(-1, 1, 1, 1, 1) / kernel_norm(stacked))).sum(0)


def _weighted(kernels: Sequence[torch.Tensor], w: torch.Tensor) -> torch.Tensor:
    """``sum_i w_i K_i`` for kernels of one shape, as one stacked multiply and sum (fewer saved tensors)."""
    if len(kernels) == 1:
        return kernels[0] * w[0]
    stacked = torch.stack(list(kernels))  # (n, ...)
    return (stacked * w.view(-1, *([1] * (stacked.dim() - 1)))).sum(0)


def _bn(x: torch.Tensor, eps: float, scale: torch.Tensor | None = None) -> torch.Tensor:
    """Batch-statistics bn, no affine parameters (``scale``: a per-channel factor folded into it)."""
    return F.batch_norm(x, None, None, scale, None, True, 0.0, eps)


def _run_block(block: Block, z: torch.Tensor, weights: torch.Tensor, edges: Sequence[int], ops: EdgeOps,
               terms: list[list[Term]]) -> None:
    """An inverted-residual item on its source ``z`` (B, C, H, W): stacked (exact) or merged (one block).

    Module indices after a member's expand conv at ``pos``: bn ``+1``, relu ``+2``, depthwise ``+3``, bn
    ``+4``, relu ``+5``, project ``+6``, bn ``+7`` (:func:`toponas.topo.checks.check_modules` checked them).
    """
    row = edges[block.slot]
    mods = [ops(row, p.cand) for p in block.paths]
    at = [(m, pos) for m, pos in zip(mods, block.positions)]
    expand = [m[pos].weight for m, pos in at]  # (E_i, C, 1, 1)
    depth = [m[pos + 3].weight for m, pos in at]  # (E_i, 1, k_i, k_i)
    project = [m[pos + 6].weight for m, pos in at]  # (O, E_i, 1, 1)
    eps = [mods[0][block.positions[0] + d].eps for d in (1, 4, 7)]
    w = _member_weights(weights, row, [p.cand for p in block.paths])  # (members,)
    k, s = block.kernel, block.stride
    if block.merged:  # one block of the largest shape, each kernel sum_i w_i Khat_i (zero-padded: a mask)
        e_max = block.width
        if BATCHED_BLOCK_BUILD:  # zero-pad first (zeros change no norm), then normalize all members at once
            ek = _normalized_sum([_padded(e, e_max, 0, 1) for e in expand], w)  # (E_max, C, 1, 1)
            dk = _normalized_sum([_padded(d, e_max, 0, k) for d in depth], w)  # (E_max, 1, k, k)
            pk = _normalized_sum([_padded(p, e_max, 1, 1) for p in project], w)  # (O, E_max, 1, 1)
        else:
            ek = _weighted([_pad_dim(normalize_kernel(e), 0, e_max) for e in expand], w)
            dk = _weighted([_pad_dim(_pad_kernel(normalize_kernel(d), k), 0, e_max) for d in depth], w)
            pk = _weighted([_pad_dim(normalize_kernel(p), 1, e_max) for p in project], w)
        h = F.relu(_bn(F.conv2d(z, ek), eps[0]))  # (B, E_max, H, W)
        h = F.relu(_bn(F.conv2d(h, dk, None, s, k // 2, 1, e_max), eps[1]))  # (B, E_max, H', W')
        _, out = scaled_bn(F.conv2d(h, pk), w.sum() if len(block.paths) > 1 else w[0], eps[2])  # (B, O, H', W')
        terms[block.slot].append((out, None))
        return
    n = len(block.paths)
    ek = expand[0] if n == 1 else torch.cat(expand)  # (sum E_i, C, 1, 1)
    width = ek.shape[0]
    h = F.relu(_bn(F.conv2d(z, ek), eps[0]))  # (B, sum E_i, H, W)
    dk = depth[0] if n == 1 else torch.cat([_pad_kernel(d, k) for d in depth])  # (sum E_i, 1, k, k)
    h = F.relu(_bn(F.conv2d(h, dk, None, s, k // 2, 1, width), eps[1]))  # (B, sum E_i, H', W')
    if n == 1:
        terms[block.slot].append((scaled_bn(F.conv2d(h, project[0]), w[0], eps[2])[1], None))
        return
    start = 0  # members of equal width are contiguous (the rule sorted them): one grouped call each
    i = 0
    while i < n:
        j = i
        while j < n and block.widths[j] == block.widths[i]:
            j += 1
        e = block.widths[i]
        part = h[:, start:start + (j - i) * e]  # (B, (j - i) E, H', W')
        y = F.conv2d(part, torch.cat(project[i:j]), None, 1, 0, 1, j - i)  # (B, (j - i) O, H', W')
        y = _bn(y, eps[2], w[i:j].repeat_interleave(block.out))  # the weights as the bn's scale
        for out in (y.split(block.out, dim=1) if j - i > 1 else (y,)):
            terms[block.slot].append((out, None))
        start += (j - i) * e
        i = j
