"""NAS-Bench-201: candidates as primitive chains, the search supernet and the discrete network.

Macro network (as in the reference): 3x3 stem, N cells at C, a residual reduction block, N cells at
2C, a reduction block, N cells at 4C, BN + ReLU, global pooling, linear classifier. One architecture
matrix (edges x candidates) is shared by all cells: its group is called ``"cell"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from .cell import Cell, CellError, edge_names
from .mixed import MixedEdge, Mixing
from .primitives import (
    BN,
    SEARCH_BN,
    TRAIN_BN,
    AvgPool,
    Conv,
    Identity,
    OpSpec,
    ReLU,
    Zero,
    build_chain,
    with_bn,
)
from .protocol import ExampleUnit, UnitCall


def nor_conv(kernel: int, dilation: int = 1) -> tuple:
    """``relu -> conv(k, dilation) -> bn``: NAS-Bench-201's ReLU-Conv-BN."""
    return (ReLU(), Conv(kernel, dilation), SEARCH_BN)


#: Every candidate NAS-Bench-201 style spaces may use, declared as primitive chains.
CANDIDATES: dict[str, OpSpec] = {
    spec.name: spec
    for spec in (
        OpSpec("none", (Zero(),)),
        OpSpec("skip_connect", (Identity(),)),
        OpSpec("nor_conv_1x1", nor_conv(1)),
        OpSpec("nor_conv_3x3", nor_conv(3)),
        OpSpec("nor_conv_5x5", nor_conv(5)),
        OpSpec("nor_conv_7x7", nor_conv(7)),
        OpSpec("dil_conv_3x3", nor_conv(3, dilation=2)),
        OpSpec("dil_conv_5x5", nor_conv(5, dilation=2)),
        OpSpec("avg_pool_3x3", (AvgPool(3),)),
    )
}

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")

#: Wider NAS-Bench-201 spaces for the scaling study: the same cell with 3, 4 and 6 convolutions.
WIDE_OPS = {
    "nb201-wide3": NB201_OPS + ("nor_conv_5x5",),
    "nb201-wide4": NB201_OPS + ("nor_conv_5x5", "nor_conv_7x7"),
    "nb201-wide6": NB201_OPS + ("nor_conv_5x5", "nor_conv_7x7", "dil_conv_3x3", "dil_conv_5x5"),
}


class ResNetBlock(nn.Module):
    """The reduction block between stages: ReLU-Conv3x3-BN twice (stride 2), avgpool+1x1 shortcut."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()

        def rcb(ci: int, stride: int) -> nn.Sequential:
            return nn.Sequential(
                nn.ReLU(inplace=False),
                nn.Conv2d(ci, c_out, 3, stride=stride, padding=1, bias=False),
                nn.BatchNorm2d(c_out),
            )

        self.conv_a = rcb(c_in, 2)
        self.conv_b = rcb(c_out, 1)
        self.downsample = nn.Sequential(
            nn.AvgPool2d(kernel_size=2, stride=2), nn.Conv2d(c_in, c_out, 1, bias=False)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


class SearchCell(nn.Module):
    """A cell of mixed edges: node i is the sum over j < i of edge ``i<-j`` applied to node j.

    ``edge_io[k] = (i, j)`` names the nodes of edge k, so a rewrite (``toponas.topo``) can group
    the edges that read the same node. Modules with ``takes_mixing = True`` are called as
    ``module(x, mixing)`` by the supernet. A :class:`~toponas.spaces.protocol.SearchUnit`.
    """

    takes_mixing = True

    def __init__(self, specs: Sequence[OpSpec], channels: int, num_nodes: int = 4) -> None:
        super().__init__()
        self.num_nodes = num_nodes
        self.channels = channels
        self.edge_keys = edge_names(num_nodes)
        self.edge_io = [(i, j) for i in range(1, num_nodes) for j in range(i)]
        self.edges = nn.ModuleList(MixedEdge(specs, channels) for _ in self.edge_keys)

    def forward(self, x: torch.Tensor, mixing: Mixing, group: str = "cell") -> torch.Tensor:
        nodes = [x]
        k = 0
        for i in range(1, self.num_nodes):
            total = None
            for j in range(i):
                w, active = mixing.edge(group, k)
                y = self.edges[k](nodes[j], w, active)
                total = y if total is None else total + y
                k += 1
            nodes.append(total)
        return nodes[-1]

    def unit_call(self, x: torch.Tensor, mixing: Mixing, group: str = "cell") -> UnitCall:
        """The search-unit protocol: one input node, the group's rows (shared by every cell)."""
        active = None if mixing.active is None else mixing.active[group]
        return UnitCall([x], mixing.weights[group], active, mixing)

    def unit_output(self, nodes: list[torch.Tensor], call: UnitCall) -> torch.Tensor:
        return nodes[-1]


class DiscreteCell(nn.Module):
    """A cell with one fixed operation per edge, built from the original operation modules."""

    def __init__(self, cell: Cell, specs: Mapping[str, OpSpec], channels: int, bn: BN) -> None:
        super().__init__()
        self.cell = cell
        self.edge_list = cell.edges()
        self.ops = nn.ModuleList(
            build_chain(with_bn(specs[op], bn), channels) for _, _, op in self.edge_list
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        k = 0
        for i in range(1, len(self.cell.nodes) + 1):
            total = None
            for j in range(i):
                y = self.ops[k](nodes[j])
                total = y if total is None else total + y
                k += 1
            nodes.append(total)
        return nodes[-1]


class MacroNet(nn.Module):
    """Stem, three stages of cells joined by reduction blocks, and the classifier head.

    ``make_cell(channels)`` builds one cell; the same macro structure serves the supernet (mixed
    cells, ``forward(x, mixing)``) and the discrete network (fixed cells, ``forward(x)``).
    """

    def __init__(self, make_cell, channels: int, cells: int, num_classes: int, in_channels: int = 3):
        super().__init__()
        c = channels
        self.stem = nn.Sequential(nn.Conv2d(in_channels, c, 3, padding=1, bias=False), nn.BatchNorm2d(c))
        layers: list[nn.Module] = []
        for stage, width in enumerate((c, 2 * c, 4 * c)):
            if stage > 0:
                layers.append(ResNetBlock(width // 2, width))
            layers.extend(make_cell(width) for _ in range(cells))
        self.cells = nn.ModuleList(layers)
        self.lastact = nn.Sequential(nn.BatchNorm2d(4 * c), nn.ReLU(inplace=False))
        self.classifier = nn.Linear(4 * c, num_classes)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lastact(x)  # (B, 4C, H/4, W/4)
        return self.classifier(x.mean(dim=(2, 3)))


class Supernet(MacroNet):
    """The NAS-Bench-201 search supernet; ``forward(x, mixing)`` returns logits."""

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x, mixing) if getattr(layer, "takes_mixing", False) else layer(x)
        return self.head(x)


class Network(MacroNet):
    """A discrete NAS-Bench-201 network; ``forward(x)`` returns logits."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for layer in self.cells:
            x = layer(x)
        return self.head(x)


class NB201Space:
    """A NAS-Bench-201 style space: the NB201 cell and macro network with a list of candidates.

    ``candidates`` names entries of :data:`CANDIDATES` or gives ``OpSpec`` objects (user spaces).
    """

    group = "cell"
    num_nodes = 4
    default_cells = 5  # cells per stage (N)
    family = "nb201"  # every NB201-style space shares the cell and macro network
    verify_cells = 1  # one architecture group: one cell per stage exercises it

    def __init__(self, name: str = "nb201", candidates: Sequence[str | OpSpec] = NB201_OPS) -> None:
        specs = []
        for c in candidates:
            if isinstance(c, OpSpec):
                specs.append(c)
            elif c in CANDIDATES:
                specs.append(CANDIDATES[c])
            else:
                raise ValueError(f"unknown candidate {c!r}; known: {', '.join(CANDIDATES)}")
        if len({s.name for s in specs}) != len(specs):
            raise ValueError("candidate names must be unique")
        self.name = name
        self.specs: tuple[OpSpec, ...] = tuple(specs)
        self.op_names: tuple[str, ...] = tuple(s.name for s in specs)

    @property
    def num_edges(self) -> int:
        return self.num_nodes * (self.num_nodes - 1) // 2

    @property
    def edge_keys(self) -> dict[str, list[str]]:
        """Edge names (``"1<-0"``, ...) of each architecture group, in row order."""
        return {self.group: edge_names(self.num_nodes)}

    @property
    def arch_shapes(self) -> dict[str, tuple[int, int]]:
        """Shape of each architecture-parameter matrix, by group."""
        return {self.group: (self.num_edges, len(self.specs))}

    @property
    def group_ops(self) -> dict[str, tuple[str, ...]]:
        """Candidate names of each group."""
        return {self.group: self.op_names}

    def build_supernet(self, channels: int = 16, cells: int = 5, num_classes: int = 10,
                       in_channels: int = 3) -> Supernet:
        """The search supernet, every edge a :class:`MixedEdge` over all candidates."""
        return Supernet(lambda c: SearchCell(self.specs, c, self.num_nodes), channels, cells,
                        num_classes, in_channels)

    def largest_genotype(self) -> Cell:
        """The cell with the most expensive candidate (most multiply-adds) on every edge."""

        def cost(spec: OpSpec) -> int:  # multiply-adds per output pixel, per input channel
            return sum(p.kernel**2 * (1 if p.depthwise else 16) for p in spec.chain if isinstance(p, Conv))

        return Cell.from_ops([max(self.specs, key=cost).name] * self.num_edges)

    def parse(self, text: str) -> Cell:
        """Parse and validate a cell string of this space."""
        return Cell.parse(text, ops=self.op_names, num_nodes=self.num_nodes)

    def validate(self, cell: Cell) -> Cell:
        return self.parse(str(cell))

    def derive(self, arch: Mapping[str, torch.Tensor]) -> Cell:
        """Argmax per edge over all candidates, ``none`` included (the reference derivation)."""
        scores = arch[self.group]
        return Cell.from_ops([self.op_names[int(i)] for i in scores.argmax(dim=-1).tolist()])

    def build_network(self, cell: Cell | str, channels: int = 16, cells: int = 5,
                      num_classes: int = 10, in_channels: int = 3,
                      bn: BN | None = None) -> Network:
        """The discrete network of ``cell`` from the original operations.

        ``bn`` defaults to affine BN with running statistics (retraining); pass the search BN to
        compare with a supernet at a one-hot architecture.
        """
        if isinstance(cell, str):
            cell = self.parse(cell)
        else:
            self.validate(cell)
        specs = {s.name: s for s in self.specs}
        bn = TRAIN_BN if bn is None else bn
        return Network(lambda c: DiscreteCell(cell, specs, c, bn), channels, cells, num_classes,
                       in_channels)

    # -- the space protocol: what verify, explain and FLOPs need ---------------------------------------

    def _indices(self, cell: Cell | str) -> list[int]:
        cell = self.parse(cell) if isinstance(cell, str) else self.validate(cell)
        return [self.op_names.index(op) for op in cell.ops]

    def one_hot(self, cell: Cell | str, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Mixing weights of ``cell``: one one-hot row per edge (every cell shares them)."""
        return {self.group: F.one_hot(torch.tensor(self._indices(cell)), len(self.op_names)).to(dtype)}

    def verify_vertices(self, trials: int, gen: torch.Generator) -> list[tuple[str, Cell]]:
        """Every candidate on every edge, then ``trials`` random picks per edge."""
        out = [(f"all {name}", Cell.from_ops([name] * self.num_edges)) for name in self.op_names]
        for t in range(trials):
            pick = torch.randint(0, len(self.op_names), (self.num_edges,), generator=gen).tolist()
            out.append((f"random one-hot #{t}", Cell.from_ops([self.op_names[i] for i in pick])))
        return out

    def load_vertex_weights(self, net: nn.Module, supernet: nn.Module, cell: Cell | str) -> None:
        """Cell op ``k`` of ``net`` takes edge ``k``'s chosen candidate's tensors; the rest copy by key."""
        pick = self._indices(cell)
        net.load_state_dict(_discrete_state(supernet.state_dict(), net.state_dict(), pick))

    def example_unit(self, channels: int) -> ExampleUnit:
        """One search cell at ``channels`` (explain shows its plans)."""
        return ExampleUnit(SearchCell(self.specs, channels, self.num_nodes), 1, self.arch_shapes)

    def cost_table(self, channels: int = 16, cells: int = 5, image_size: int = 32, num_classes: int = 10,
                   in_channels: int = 3):
        """Per-edge-per-candidate FLOPs (``toponas.flops.nb201_cost_table``)."""
        from ..flops import nb201_cost_table  # flops reads the declarations; it imports the spaces

        return nb201_cost_table(self, channels, cells, image_size, num_classes, in_channels)

    def arch_flops(self, cell, channels: int = 16, cells: int = 5, image_size: int = 32, num_classes: int = 10,
                   in_channels: int = 3) -> int:
        """FLOPs of the discrete network of ``cell`` (a cell, its string or a list of op names)."""
        if isinstance(cell, str):
            cell = self.parse(cell)
        ops = cell.ops if isinstance(cell, Cell) else list(cell)
        index = {name: i for i, name in enumerate(self.op_names)}
        try:
            choices = torch.tensor([index[op] for op in ops], dtype=torch.int64)
        except KeyError as e:
            raise ValueError(f"operation {e.args[0]!r} is not a candidate of {self.name}") from None
        return int(self.cost_table(channels, cells, image_size, num_classes, in_channels)(choices))


_CELL_OP = re.compile(r"^(cells\.\d+)\.ops\.(\d+)\.(.+)$")


def _discrete_state(super_state: dict, net_state: dict, pick: Sequence[int]) -> dict:
    """The discrete network's state taken from the supernet's: cell op ``k`` <- edge ``k``'s chosen op."""
    out = {}
    for key in net_state:
        m = _CELL_OP.match(key)
        src = f"{m[1]}.edges.{m[2]}.ops.{pick[int(m[2])]}.{m[3]}" if m else key
        out[key] = super_state[src].clone()
    return out


__all__ = ["CANDIDATES", "NB201_OPS", "NB201Space", "Supernet", "Network", "SearchCell",
           "CellError", "Cell"]
