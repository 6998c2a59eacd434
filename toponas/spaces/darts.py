"""The DARTS cell space: candidates as primitive chains, the search supernet and the discrete network.

Follows Liu, Simonyan & Yang, "DARTS: Differentiable Architecture Search" (ICLR 2019), reference code
``cnn/operations.py``, ``cnn/model_search.py`` (supernet) and ``cnn/model.py`` (``NetworkCIFAR``).

* Cells have two input nodes (0: the output of the cell before the previous one, 1: the previous
  cell's), four intermediate nodes 2..5, and 14 mixed edges ``i <- j`` (every earlier node into
  every intermediate node). A cell outputs the concatenation of its intermediate nodes (4C channels).
* Candidates (search forms, :func:`darts_candidates`): ``none``, ``max_pool_3x3`` and
  ``avg_pool_3x3`` (each followed by a BN without affine), ``skip_connect`` (identity; at stride 2
  the factorized reduction ``relu -> reduce(2) -> bn``), ``sep_conv_3x3/5x5`` (two stages of
  ``relu -> depthwise conv -> 1x1 conv -> bn``, the first at the edge's stride), ``dil_conv_3x3/5x5``
  (``relu -> depthwise dilation-2 conv -> 1x1 conv -> bn``). Edges from the inputs of a reduction
  cell have stride 2.
* The macro supernet: a 3x3 stem to 3C channels, ``layers`` cells with reduction cells at
  ``layers // 3`` and ``2 * layers // 3`` (each doubles C), global average pooling and a linear
  classifier. Two architecture groups, ``"normal"`` and ``"reduce"``, each ``(14, 8)``, shared by
  all cells of that type.
* During search every BN (candidates and the cells' preprocessing) is ``BN(affine=False,
  track_running_stats=False)``: batch statistics, as the NAS-Bench-201 space of this project (the
  reference keeps running statistics it never uses during search). The stem keeps an ordinary BN.

Cost note: every edge runs all 8 candidates (4 of them two- or three-convolution chains), so a plain
search step costs several times a step of the largest single network; ``toponas.topo`` rewrites it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .genotype import (
    INPUTS_PER_NODE,
    STEPS,
    Genotype,
    GenotypeError,
    default_concat,
    edge_index,
    edge_keys,
    edge_pairs,
)
from .mixed import MixedEdge, Mixing
from .primitives import (
    BN,
    SEARCH_BN,
    TRAIN_BN,
    AvgPool,
    Conv,
    Identity,
    MaxPool,
    OpSpec,
    Reduce,
    ReduceOp,
    ReLU,
    Zero,
    build_chain,
    with_bn,
)
from .protocol import ExampleUnit, UnitCall

#: The DARTS candidate names, in the reference order (``PRIMITIVES`` of ``cnn/genotypes.py``).
DARTS_OPS = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
             "dil_conv_3x3", "dil_conv_5x5")

STEM_MULTIPLIER = 3


def sep_conv(kernel: int, stride: int, bn: BN = SEARCH_BN) -> tuple:
    """DARTS ``SepConv``: ``relu -> dw conv(k, stride) -> conv 1x1 -> bn``, then the same at stride 1."""
    return (ReLU(), Conv(kernel, 1, True, stride), Conv(1), bn,
            ReLU(), Conv(kernel, 1, True, 1), Conv(1), bn)


def dil_conv(kernel: int, stride: int, bn: BN = SEARCH_BN) -> tuple:
    """DARTS ``DilConv`` (dilation 2): ``relu -> dw conv(k, dilation 2, stride) -> conv 1x1 -> bn``."""
    return (ReLU(), Conv(kernel, 2, True, stride), Conv(1), bn)


def darts_candidates(stride: int = 1) -> tuple[OpSpec, ...]:
    """The 8 candidates of an edge of the given stride, in their search forms (see module docstring)."""
    skip = (Identity(),) if stride == 1 else (ReLU(), Reduce(stride), SEARCH_BN)
    return (
        OpSpec("none", (Zero(stride),)),
        OpSpec("max_pool_3x3", (MaxPool(3, stride), SEARCH_BN)),
        OpSpec("avg_pool_3x3", (AvgPool(3, stride), SEARCH_BN)),
        OpSpec("skip_connect", skip),
        OpSpec("sep_conv_3x3", sep_conv(3, stride)),
        OpSpec("sep_conv_5x5", sep_conv(5, stride)),
        OpSpec("dil_conv_3x3", dil_conv(3, stride)),
        OpSpec("dil_conv_5x5", dil_conv(5, stride)),
    )


def darts_operations(stride: int = 1) -> tuple[OpSpec, ...]:
    """The candidates as the discrete (retraining) network builds them: pools without a BN after them.

    Everything else is the search form; :func:`~toponas.spaces.primitives.with_bn` then sets the BN.
    Module indices inside each chain are those of :func:`darts_candidates` (the pools hold no
    parameters), so conv weights copy across by state-dict key.
    """
    return tuple(OpSpec(s.name, s.chain[:1]) if s.name in ("max_pool_3x3", "avg_pool_3x3") else s
                 for s in darts_candidates(stride))


def chain_cost(spec: OpSpec, channels: int = 16) -> int:
    """Multiply-adds per output pixel of a candidate at ``channels`` (for :meth:`DartsSpace.largest_genotype`)."""
    total = 0
    for p in spec.chain:
        if isinstance(p, Conv):
            total += p.kernel ** 2 * (1 if p.depthwise else channels) * channels
        elif isinstance(p, Reduce):
            total += channels * channels
    return total


# -- fixed modules: the preprocessing of the cells' inputs -------------------------------------------
def bn_module(channels: int, bn: BN) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, affine=bn.affine, track_running_stats=bn.track_running_stats)


def relu_conv_bn(c_in: int, c_out: int, bn: BN) -> nn.Sequential:
    """DARTS ``ReLUConvBN(c_in, c_out, 1, 1, 0)``: ``[0] relu, [1] conv 1x1, [2] bn``."""
    return nn.Sequential(nn.ReLU(inplace=False), nn.Conv2d(c_in, c_out, 1, bias=False), bn_module(c_out, bn))


def factorized_reduce(c_in: int, c_out: int, bn: BN) -> nn.Sequential:
    """DARTS ``FactorizedReduce(c_in, c_out)``: ``[0] relu, [1] ReduceOp (conv_1, conv_2), [2] bn``."""
    return nn.Sequential(nn.ReLU(inplace=False), ReduceOp(c_in, c_out, 2), bn_module(c_out, bn))


def preprocessing(c_prev_prev: int, c_prev: int, c: int, reduction_prev: bool,
                  bn: BN) -> tuple[nn.Module, nn.Module]:
    """``(preprocess0, preprocess1)``: both inputs to ``c`` channels at the cell's input resolution."""
    pre0 = factorized_reduce(c_prev_prev, c, bn) if reduction_prev else relu_conv_bn(c_prev_prev, c, bn)
    return pre0, relu_conv_bn(c_prev, c, bn)


def cell_plan(layers: int) -> list[bool]:
    """Whether each of ``layers`` cells is a reduction cell (at ``layers // 3`` and ``2 * layers // 3``)."""
    reductions = {layers // 3, 2 * layers // 3}
    return [i in reductions for i in range(layers)]


# -- the supernet ----------------------------------------------------------------------------------
class DartsSearchCell(nn.Module):
    """A DARTS search cell: two preprocessed inputs, 4 intermediate nodes, 14 mixed edges.

    Attributes for a cell-level rewrite (``toponas.topo``):

    * ``edges``: ``nn.ModuleList`` of 14 :class:`MixedEdge`, in row order of the group's
      architecture matrix; ``edges[k].specs`` are its candidates (:func:`darts_candidates` at the
      edge's stride), ``edges[k].ops[c]`` the module chain of candidate ``c``.
    * ``edge_io[k] = (dst, src)``: node numbers as in DARTS (0, 1 the inputs, 2..5 intermediate);
      ``edge_keys[k] = "dst<-src"``. ``edge_strides[k]``: 2 for edges from nodes 0 and 1 of a
      reduction cell, else 1.
    * ``group``: the architecture group the cell reads (``"reduce"`` if ``reduction`` else
      ``"normal"``); ``reduction``; ``reduction_prev`` (``preprocess0`` is then a factorized
      reduction); ``channels`` (C of every edge); ``steps`` (4); ``concat`` (the nodes concatenated
      into the output, 2..5).
    * ``preprocess0``/``preprocess1``: fixed modules (not searched) bringing the two inputs to
      ``channels`` channels.

    Called as ``cell(s0, s1, mixing)`` (``takes_mixing = True``; the supernet passes both states);
    the edges are called as ``edges[k](x, weights, active)``, so a simplified edge with the same
    signature can replace any of them. A replacement cell must keep ``forward(s0, s1, mixing)``.
    """

    takes_mixing = True

    def __init__(self, c_prev_prev: int, c_prev: int, channels: int, reduction: bool,
                 reduction_prev: bool, steps: int = STEPS) -> None:
        super().__init__()
        self.reduction = reduction
        self.reduction_prev = reduction_prev
        self.group = "reduce" if reduction else "normal"
        self.channels = channels
        self.steps = steps
        self.concat = tuple(default_concat(steps))
        self.preprocess0, self.preprocess1 = preprocessing(c_prev_prev, c_prev, channels, reduction_prev,
                                                           SEARCH_BN)
        self.edge_io = edge_pairs(steps)
        self.edge_keys = edge_keys(steps)
        self.edge_strides = [2 if reduction and j < 2 else 1 for _, j in self.edge_io]
        self.edges = nn.ModuleList(MixedEdge(darts_candidates(s), channels) for s in self.edge_strides)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # 2 x (B, C, H, W) at input resolution
        k = 0
        for _ in range(self.steps):
            total = None
            for h in list(states):
                w, active = mixing.edge(self.group, k)
                y = self.edges[k](h, w, active)  # (B, C, H', W'), H' = H / 2 in a reduction cell
                total = y if total is None else total + y
                k += 1
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)  # (B, 4C, H', W')

    def unit_call(self, s0: torch.Tensor, s1: torch.Tensor, mixing: Mixing) -> UnitCall:
        """The search-unit protocol: the two preprocessed inputs (nodes 0, 1) and the group's rows."""
        active = None if mixing.active is None else mixing.active[self.group]
        return UnitCall([self.preprocess0(s0), self.preprocess1(s1)], mixing.weights[self.group], active, mixing)

    def unit_output(self, nodes: list[torch.Tensor], call: UnitCall) -> torch.Tensor:
        return torch.cat([nodes[i] for i in self.concat], dim=1)  # (B, 4C, H', W')

    def extra_repr(self) -> str:
        return f"group={self.group!r}, channels={self.channels}, reduction_prev={self.reduction_prev}"


class DartsSupernet(nn.Module):
    """The DARTS search network (``model_search.Network``); ``forward(x, mixing)`` returns logits.

    ``stem`` (conv 3x3 ``in_channels -> 3C`` + BN), ``cells`` (:class:`DartsSearchCell`; each
    reads the two previous states: ``s0, s1 = s1, cell(s0, s1, mixing)``), ``classifier`` on the
    global average of the last cell's output.
    """

    def __init__(self, channels: int = 16, layers: int = 8, num_classes: int = 10,
                 in_channels: int = 3, steps: int = STEPS) -> None:
        super().__init__()
        c_curr = STEM_MULTIPLIER * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_pp, c_prev, c_curr = c_curr, c_curr, channels
        cells = []
        reduction_prev = False
        for reduction in cell_plan(layers):
            if reduction:
                c_curr *= 2
            cells.append(DartsSearchCell(c_pp, c_prev, c_curr, reduction, reduction_prev, steps))
            reduction_prev = reduction
            c_pp, c_prev = c_prev, steps * c_curr
        self.cells = nn.ModuleList(cells)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        s0 = s1 = self.stem(x)  # (B, 3C, H, W)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, mixing)
        return self.classifier(s1.mean(dim=(2, 3)))  # (B, num_classes)


# -- the discrete network --------------------------------------------------------------------------
def drop_path(x: torch.Tensor, prob: float) -> torch.Tensor:
    """Zero whole samples with probability ``prob`` and rescale the rest (DARTS ``drop_path``)."""
    keep = 1.0 - prob
    mask = torch.empty(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device).bernoulli_(keep)
    return x * mask / keep


class DartsCell(nn.Module):
    """A discrete DARTS cell (``model.Cell``): each intermediate node sums two operations.

    ``ops[k]`` is the module chain of ``genes[k] = (op, src)`` of the genotype's cell, node
    ``2 + k // 2``; ``indices[k] = src``; ``skip[k]`` marks identities (no drop-path on them).
    """

    def __init__(self, edges: Sequence[tuple[str, int]], concat: Sequence[int], c_prev_prev: int,
                 c_prev: int, channels: int, reduction: bool, reduction_prev: bool, bn: BN,
                 search_form: bool) -> None:
        super().__init__()
        self.reduction = reduction
        self.reduction_prev = reduction_prev
        self.concat = tuple(concat)
        self.channels = channels
        self.genes = tuple(edges)
        self.indices = [j for _, j in edges]
        self.preprocess0, self.preprocess1 = preprocessing(c_prev_prev, c_prev, channels, reduction_prev, bn)
        catalog = darts_candidates if search_form else darts_operations
        by_stride = {s: {spec.name: spec for spec in catalog(s)} for s in (1, 2)}
        specs = [by_stride[2 if reduction and j < 2 else 1][op] for op, j in edges]
        self.skip = [spec.chain == (Identity(),) for spec in specs]
        self.ops = nn.ModuleList(build_chain(with_bn(spec, bn), channels) for spec in specs)

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, drop_prob: float = 0.0) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]  # 2 x (B, C, H, W)
        for i in range(len(self.ops) // INPUTS_PER_NODE):
            total = None
            for k in range(INPUTS_PER_NODE * i, INPUTS_PER_NODE * (i + 1)):
                h = self.ops[k](states[self.indices[k]])
                if self.training and drop_prob > 0 and not self.skip[k]:
                    h = drop_path(h, drop_prob)
                total = h if total is None else total + h
            states.append(total)
        return torch.cat([states[i] for i in self.concat], dim=1)  # (B, len(concat) * C, H', W')


class AuxiliaryHead(nn.Module):
    """DARTS ``AuxiliaryHeadCIFAR``: relu, avgpool 5 / 3, conv 1x1 128, bn, relu, conv 2x2 768, bn, relu, linear.

    Made for 8x8 inputs (32x32 images after two reductions), where it is the reference exactly.
    Smaller maps are average-pooled to 2x2 instead of the 5x5 pooling, and larger ones give a
    larger map after the 2x2 conv, averaged before the classifier (1x1 on 8x8 inputs).
    """

    def __init__(self, c_in: int, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(c_in, 128, 1, bias=False), nn.BatchNorm2d(128), nn.ReLU(inplace=False),
            nn.Conv2d(128, 768, 2, bias=False), nn.BatchNorm2d(768), nn.ReLU(inplace=False),
        )
        self.classifier = nn.Linear(768, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(x)  # (B, C, 8, 8) on CIFAR
        if min(x.shape[-2:]) >= 5:
            x = F.avg_pool2d(x, 5, stride=3, padding=0, count_include_pad=False)  # (B, C, 2, 2)
        else:
            x = F.adaptive_avg_pool2d(x, 2)
        x = self.features(x)  # (B, 768, 1, 1) on CIFAR
        return self.classifier(x.mean(dim=(2, 3)))


class DartsNetwork(nn.Module):
    """A discrete DARTS network (``model.NetworkCIFAR``); ``forward(x)`` returns logits.

    In training mode with ``auxiliary=True`` it returns ``(logits, aux_logits)``, the auxiliary head
    reading the output of cell ``2 * layers // 3``. ``drop_path_prob`` (0 by default; the training
    loop ramps it) drops each non-identity operation's output per sample in training.
    """

    def __init__(self, genotype: Genotype, channels: int = 36, layers: int = 20, num_classes: int = 10,
                 in_channels: int = 3, auxiliary: bool = False, bn: BN = TRAIN_BN,
                 search_form: bool = False) -> None:
        super().__init__()
        self.genotype = genotype
        self.layers = layers
        self.auxiliary = auxiliary
        self.drop_path_prob = 0.0
        c_curr = STEM_MULTIPLIER * channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c_curr))
        c_pp, c_prev, c_curr = c_curr, c_curr, channels
        cells = []
        reduction_prev = False
        self.aux_index = 2 * layers // 3
        c_aux = None
        for i, reduction in enumerate(cell_plan(layers)):
            if reduction:
                c_curr *= 2
            edges, concat = ((genotype.reduce, genotype.reduce_concat) if reduction
                             else (genotype.normal, genotype.normal_concat))
            cells.append(DartsCell(edges, concat, c_pp, c_prev, c_curr, reduction, reduction_prev, bn,
                                   search_form))
            reduction_prev = reduction
            c_pp, c_prev = c_prev, len(concat) * c_curr
            if i == self.aux_index:
                c_aux = c_prev
        self.cells = nn.ModuleList(cells)
        self.auxiliary_head = AuxiliaryHead(c_aux, num_classes) if auxiliary else None
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        aux = None
        s0 = s1 = self.stem(x)  # (B, 3C, H, W)
        for i, cell in enumerate(self.cells):
            s0, s1 = s1, cell(s0, s1, self.drop_path_prob)
            if i == self.aux_index and self.auxiliary_head is not None and self.training:
                aux = self.auxiliary_head(s1)
        logits = self.classifier(s1.mean(dim=(2, 3)))  # (B, num_classes)
        if aux is not None:
            return logits, aux
        return logits


def copy_weights_from_supernet(net: DartsNetwork, supernet: nn.Module, genotype: Genotype | None = None) -> None:
    """Copy the supernet's weights of the genotype's operations into ``net`` (same C, layers, classes).

    Mapping: ``stem``, ``classifier`` and every cell's ``preprocess0``/``preprocess1`` copy as they
    are; in cell ``c``, ``net.cells[c].ops[k]`` (genotype edge ``k = (op, src)`` of node
    ``i = 2 + k // 2``) takes the tensors of ``supernet.cells[c].edges[r].ops[op_index]`` with
    ``r = edge_index(i, src)`` (``"i<-src"``), by state-dict key (module indices within a chain are
    the same in both; keys the target lacks, e.g. affine BN parameters of a search BN, are skipped
    and so are target-only ones, which keep their initial values). The supernet may be simplified
    as long as its cells keep ``edges[r].ops`` (``toponas.topo`` keeps the original modules).
    """
    genotype = net.genotype if genotype is None else genotype
    sup_cells = list(supernet.cells)
    if len(sup_cells) != len(net.cells):
        raise ValueError(f"the supernet has {len(sup_cells)} cells, the network {len(net.cells)}")
    _copy_state(net.stem, supernet.stem, "stem")
    _copy_state(net.classifier, supernet.classifier, "classifier")
    for c, (cell, sup) in enumerate(zip(net.cells, sup_cells)):
        if cell.reduction != sup.reduction:
            raise ValueError(f"cell {c}: reduction cells differ between network and supernet")
        if tuple(cell.concat) != tuple(sup.concat):
            raise ValueError(f"cell {c}: concat {list(cell.concat)} differs from the supernet's "
                             f"{list(sup.concat)}; weights cannot be copied")
        _copy_state(cell.preprocess0, sup.preprocess0, f"cells.{c}.preprocess0")
        _copy_state(cell.preprocess1, sup.preprocess1, f"cells.{c}.preprocess1")
        for k, (op, src) in enumerate(cell.genes):
            edge = sup.edges[edge_index(2 + k // INPUTS_PER_NODE, src)]
            names = [s.name for s in edge.specs]
            _copy_state(cell.ops[k], edge.ops[names.index(op)], f"cells.{c}.ops.{k}")


def _copy_state(dst: nn.Module, src: nn.Module, where: str) -> None:
    target = dst.state_dict()
    with torch.no_grad():
        for key, value in src.state_dict().items():
            if key in target:
                if target[key].shape != value.shape:
                    raise ValueError(f"{where}.{key}: shape {tuple(value.shape)} in the supernet, "
                                     f"{tuple(target[key].shape)} in the network")
                target[key].copy_(value)


# -- the space ---------------------------------------------------------------------------------------
class DartsSpace:
    """The DARTS search space (``--space darts``): see the module docstring.

    ``specs``/``op_names``: the 8 candidates at stride 1 (the stride-2 forms: ``reduce_specs``);
    ``arch_shapes``: ``{"normal": (14, 8), "reduce": (14, 8)}``; ``default_cells``: 8 layers.
    """

    name = "darts"
    family = "darts"
    #: The derivation keeps this many inputs per node (strategies that work per node read it).
    inputs_per_node = INPUTS_PER_NODE
    groups = ("normal", "reduce")
    steps = STEPS
    default_cells = 8  # layers (cells in total), reductions at 1/3 and 2/3
    verify_cells = 3  # a normal cell and two reduction cells: every group and both preprocessings

    def __init__(self) -> None:
        self.specs: tuple[OpSpec, ...] = darts_candidates(1)
        self.reduce_specs: tuple[OpSpec, ...] = darts_candidates(2)
        self.op_names: tuple[str, ...] = tuple(s.name for s in self.specs)

    @property
    def num_edges(self) -> int:
        return len(edge_pairs(self.steps))

    @property
    def edge_keys(self) -> dict[str, list[str]]:
        """Edge names (``"2<-0"``, ..., ``"5<-4"``) of each group, in row order."""
        return {g: edge_keys(self.steps) for g in self.groups}

    @property
    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        return {g: (self.num_edges, len(self.specs)) for g in self.groups}

    @property
    def group_ops(self) -> dict[str, tuple[str, ...]]:
        """Candidate names of each group (the same 8 in both)."""
        return {g: self.op_names for g in self.groups}

    def build_supernet(self, channels: int = 16, cells: int = 8, num_classes: int = 10,
                       in_channels: int = 3) -> DartsSupernet:
        """The search supernet; ``cells`` is the number of layers (DARTS ``--layers``)."""
        return DartsSupernet(channels, cells, num_classes, in_channels, self.steps)

    def parse(self, text: str | Genotype) -> Genotype:
        """Parse and validate a genotype (its text, or a :class:`Genotype`)."""
        return Genotype.parse(text, ops=self.op_names)

    def validate(self, genotype: Genotype) -> Genotype:
        return genotype.validate(self.op_names)

    def derive(self, arch: Mapping[str, torch.Tensor]) -> Genotype:
        """The DARTS rule, per group: for each node the two inputs whose strongest non-``none``
        candidate is strongest, each with that candidate (``model_search.Network.genotype``).

        Strengths are ``softmax(row)`` values as in the reference: rows normalize separately, so the
        comparison across edges depends on it (raw logits would rank differently). Ties go to the
        lower index (input, then candidate). ``-inf`` entries (dropped candidates) have weight 0.
        """
        none = self.op_names.index("none")
        genes = {}
        for g in self.groups:
            if g not in arch:
                raise ValueError(f"derive: no architecture parameters for group {g!r}")
            w = F.softmax(arch[g].detach().float().cpu(), dim=-1)
            if tuple(w.shape) != self.arch_shapes[g]:
                raise ValueError(f"derive: {g} parameters have shape {tuple(w.shape)}, "
                                 f"expected {self.arch_shapes[g]}")
            w[:, none] = float("-inf")
            gene = []
            for node in range(2, self.steps + 2):
                rows = w[[edge_index(node, j) for j in range(node)]]  # (node, 8)
                best, op = rows.max(dim=-1)  # first maximum on ties
                order = sorted(range(node), key=lambda j: -float(best[j]))[:INPUTS_PER_NODE]
                gene.extend((self.op_names[int(op[j])], j) for j in order)
            genes[g] = gene
        concat = default_concat(self.steps)
        return Genotype.of(genes["normal"], concat, genes["reduce"], concat)

    def one_hot(self, genotype: Genotype | str, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Mixing weights of ``genotype``: one-hot rows, ``none`` on the edges it does not use.

        A supernet at these weights computes the discrete network of the genotype in its search
        form (``build_network(..., bn=SEARCH_BN)`` after :func:`copy_weights_from_supernet`).
        """
        genotype = self.parse(genotype)
        none = self.op_names.index("none")
        out = {}
        for g in self.groups:
            rows = torch.full((self.num_edges,), none, dtype=torch.long)
            for k, (op, j) in enumerate(getattr(genotype, g)):
                rows[edge_index(2 + k // INPUTS_PER_NODE, j)] = self.op_names.index(op)
            out[g] = F.one_hot(rows, len(self.op_names)).to(dtype)
        return out

    def largest_genotype(self) -> Genotype:
        """The genotype with the most expensive candidate (most multiply-adds) on every edge.

        Every node reads inputs 0 and 1 (any choice costs the same: every edge works at its node's
        resolution). For the DARTS candidates this is ``sep_conv_5x5`` everywhere.
        """
        best = max(self.specs, key=chain_cost)
        gene = [(best.name, j) for _ in range(2, self.steps + 2) for j in range(INPUTS_PER_NODE)]
        concat = default_concat(self.steps)
        return Genotype.of(gene, concat, gene, concat)

    def build_network(self, genotype: Genotype | str, channels: int = 36, cells: int = 20,
                      num_classes: int = 10, in_channels: int = 3, auxiliary: bool = False,
                      bn: BN | None = None) -> DartsNetwork:
        """The discrete network of ``genotype`` from the original operations; ``cells``: layers.

        ``bn=None`` (retraining): DARTS' ``NetworkCIFAR`` operations, affine BN with running
        statistics, pools without BN. Given a ``bn`` (e.g. ``SEARCH_BN``): the search forms of the
        operations (pools followed by BN) and of the preprocessing, with every BN set to ``bn``;
        with :func:`copy_weights_from_supernet` it then equals the supernet at
        :meth:`one_hot` weights.
        """
        genotype = self.parse(genotype)
        search_form = bn is not None
        return DartsNetwork(genotype, channels, cells, num_classes, in_channels, auxiliary,
                            TRAIN_BN if bn is None else bn, search_form)

    # -- the space protocol: what verify, explain and FLOPs need ---------------------------------------

    def verify_vertices(self, trials: int, gen: torch.Generator) -> list[tuple[str, Genotype]]:
        """Genotypes: every non-``none`` candidate on two random inputs per node, then ``trials`` random ones."""
        n_ops = len(self.op_names)
        out = []
        for t, name in enumerate([o for o in self.op_names if o != "none"] + [None] * trials):
            genes = {}
            for g in self.groups:
                gene = []
                for node in range(2, self.steps + 2):
                    inputs = torch.randperm(node, generator=gen)[:2].tolist()
                    for j in inputs:
                        op = name or self.op_names[int(torch.randint(1, n_ops, (1,), generator=gen))]
                        gene.append((op, j))
                genes[g] = gene
            concat = list(range(2, self.steps + 2))
            genotype = Genotype.of(genes["normal"], concat, genes["reduce"], concat)
            out.append((f"all {name}" if name else f"random genotype #{t - n_ops + 1}", genotype))
        return out

    def load_vertex_weights(self, net: nn.Module, supernet: nn.Module, genotype: Genotype | str) -> None:
        """:func:`copy_weights_from_supernet` (the genotype's operations, preprocessing, stem, classifier)."""
        copy_weights_from_supernet(net, supernet, self.parse(genotype))

    def example_unit(self, channels: int) -> ExampleUnit:
        """A normal search cell with both inputs at ``channels`` (explain shows its plans)."""
        cell = DartsSearchCell(channels, channels, channels, False, False, self.steps)
        return ExampleUnit(cell, 2, {"normal": self.arch_shapes["normal"]})

    def cost_table(self, *args, **kwargs):
        """Not tabulated (FP-NAS' FLOPs term is refused with a clear error)."""
        raise NotImplementedError("FLOPs are computed for NAS-Bench-201 style spaces only (and spaces with "
                                  "their own cost table), not DartsSpace")

    def arch_flops(self, *args, **kwargs) -> int:
        return self.cost_table()


__all__ = ["DARTS_OPS", "DartsSpace", "DartsSupernet", "DartsSearchCell", "DartsNetwork", "DartsCell",
           "Genotype", "GenotypeError", "SEARCH_BN", "TRAIN_BN", "darts_candidates", "darts_operations",
           "copy_weights_from_supernet", "edge_index"]
