"""The space protocol: what a search space tells the simplifier (``toponas.topo``) and the tools around it.

``toponas.topo`` (``simplify``, ``verify``, ``explain``), ``toponas.profiling`` and ``toponas.flops``
name no concrete space. Everything they need comes through the two protocols of this module, so a new
space (a cell space, or a macro network of inverted-residual blocks) is simplified, verified, explained
and profiled without any change to them. ``docs/spaces.md`` ("How to add a space") walks through it.

Two levels:

:class:`SearchUnit`, a module of the supernet that the simplifier rewrites as a whole. A unit is a small
DAG of *nodes*: nodes ``0 .. n_inputs - 1`` are its inputs; every other node is the sum of the mixed
edges into it; the unit's result is a function of all nodes (:meth:`SearchUnit.unit_output`).

* its *searchable units* are its ``edges`` (an ``nn.ModuleList`` of
  :class:`~toponas.spaces.mixed.MixedEdge`): edge ``k`` reads node ``edge_io[k][1]``, adds into node
  ``edge_io[k][0]`` (``edge_keys[k]`` names it, e.g. ``"2<-0"``), and is weighted by row ``k`` of the
  weights :meth:`SearchUnit.unit_call` returns;
* each edge's *candidate declarations* are primitive chains (``edge.specs``: ``OpSpec`` of
  :mod:`toponas.spaces.primitives`); ``edge.ops[c]`` is the plain module chain of candidate ``c``, one
  module per primitive, as :func:`~toponas.spaces.primitives.build_chain` makes it. The simplifier
  reads only the declarations (and checks the modules match them);
* *which units share an input*: the edges with the same source node form one group and are planned
  together (one shared prefix, one stacked convolution, ...). Groups run in increasing source order,
  edges within a group in edge order, so every node must have a larger number than its sources.

Cells fit directly (NAS-Bench-201: 1 input node, nodes 1..3, 6 edges; DARTS: 2 preprocessed input nodes,
nodes 2..5, 14 edges, output the concatenation). A *macro* network's searchable block is a unit with one
input node, one output node and a single edge ``"1<-0"`` whose candidates are the block's choices: for an
inverted-residual (MBConv) block each candidate is the body chain

    ``Conv(1, out=e*C_in) -> BN -> ReLU -> Conv(k, depthwise=True, stride=s) -> BN -> ReLU -> Conv(1, out=C_out) -> BN``

(``SEARCH_BN`` during search: batch statistics, no affine parameters, like the cell spaces, so the
rules may stack and merge them), and :meth:`SearchUnit.unit_output` adds the residual ``nodes[0]`` when
the shapes match. A block that may be dropped (depth search) declares ``skip`` as
``OpSpec("skip", (Zero(),))`` in a residual block (``y = x + 0``) or ``(Identity(),)`` in one without
residual. Width choices (FBNetV2 channel masks) are applied by the space *outside* the edges (in
``unit_output`` or after the unit): ``sum_j w_j mask_j`` is already one mask, the simplifier leaves it.

The plain ``forward`` of a unit is the reference: it must compute exactly ``unit_output(nodes, call)``
with ``nodes[i] = sum over edges k into i of edges[k](nodes[src_k], call.weights[k], call.active[k])``.
The simplifier's generic unit (``toponas.topo.modules.SimplifiedUnit``) keeps the unit's attributes and
modules (so parameters, buffers and state-dict keys are unchanged), runs the same DAG with planned
edges, and falls back to the plain ``forward`` for sampled steps (``mixing.active`` given).

:class:`SearchSpace`, the object registered in ``toponas.spaces.SPACES``: its architecture groups, how
to build the supernet and the discrete network, and what ``verify``/``explain``/``profile``/FLOPs need
(the vertices to verify, an example unit, the largest network, FLOPs per candidate).

Both are ``typing.Protocol`` classes (structural: a space need not inherit from them); the
``runtime_checkable`` :class:`SearchUnit` is how ``simplify`` finds units in a model. Spaces that only
offer loose mixed edges (a user's module with ``MixedEdge`` children) are still simplified edge by edge.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from .mixed import Mixing
from .primitives import BN, OpSpec


@dataclass
class UnitCall:
    """What one call of a unit computes with: its input nodes, its edges' weights and active candidates.

    ``inputs``: the input node tensors, already preprocessed (DARTS: ``preprocess0(s0), preprocess1(s1)``).
    ``weights``: ``(edges, K)``, row ``k`` weights edge ``k`` (a slice of ``mixing.weights[group]``: all
    NB201 cells share their group's 6 rows; mobile block ``b`` reads row ``b`` of its group).
    ``active``: per edge the candidates that run (sampled step), or ``None`` (every candidate runs).
    ``mixing``: the whole mixing, for what the unit computes outside its edges (e.g. width masks).
    """

    inputs: list[torch.Tensor]
    weights: torch.Tensor
    active: list[list[int]] | None
    mixing: Mixing


@runtime_checkable
class SearchUnit(Protocol):
    """A supernet module the simplifier rewrites as a whole (a cell, or a macro network's mixed block).

    Called by the supernet as ``unit(*args, mixing)`` (``takes_mixing = True``), whatever its own
    argument list is; :meth:`unit_call` turns those arguments into a :class:`UnitCall`.
    """

    takes_mixing: bool
    #: ``nn.ModuleList`` of ``MixedEdge``: ``edges[k].specs`` (declarations), ``edges[k].ops[c]`` (modules),
    #: ``edges[k].channels`` (input channels).
    edges: nn.ModuleList
    #: ``(dst node, src node)`` per edge; the input nodes are ``0 .. len(call.inputs) - 1``.
    edge_io: Sequence[tuple[int, int]]
    #: A name per edge (``"dst<-src"``), for messages and ``explain``.
    edge_keys: Sequence[str]

    def unit_call(self, *args: Any, **kwargs: Any) -> UnitCall:
        """The input nodes, edge weights and active candidates of a call with ``forward``'s arguments."""
        ...

    def unit_output(self, nodes: list[torch.Tensor], call: UnitCall) -> torch.Tensor:
        """The unit's result from every node tensor (NB201: the last node; DARTS: the concatenation of
        nodes 2..5; an MBConv block: ``nodes[1]``, plus ``nodes[0]`` when residual, times the width mask)."""
        ...


@dataclass(frozen=True)
class ExampleUnit:
    """A plain unit for ``explain``: the module, how many ``(B, C, H, W)`` input tensors it takes before the
    mixing, and the architecture shapes of the mixing it reads (``{group: (rows, K)}``)."""

    unit: nn.Module
    inputs: int
    arch_shapes: Mapping[str, tuple[int, int]]


class CostModel(Protocol):
    """FLOPs (multiply-accumulates) of architectures given as choices, for FP-NAS' cost term.

    ``choices``: the int64 candidate index per row, ``(..., rows)`` for a single-group space (the group's
    rows), or ``{group: (..., rows)}``; returns ``(...)`` int64 FLOPs.
    """

    def __call__(self, choices: torch.Tensor | Mapping[str, torch.Tensor]) -> torch.Tensor: ...


class SearchSpace(Protocol):
    """A registered search space (``toponas.spaces.SPACES``): everything outside the units.

    *Architecture groups*: ``arch_shapes`` (``{group: (rows, candidates)}``, the strategies' parameters),
    ``edge_keys`` (row names per group) and ``group_ops`` (candidate names per group; ``op_names`` are the
    candidates of the first group, for tools that read one list). An architecture is a value object with
    a string form: ``str(arch)`` round-trips through :meth:`parse`.
    """

    name: str
    #: Cells (or blocks per stage, or layers: the space says) of the default supernet.
    default_cells: int
    #: The cells (blocks, layers) of the supernet ``verify`` checks: enough to exercise every architecture
    #: group (NB201: 1; DARTS: 3, a normal and two reduction cells; mobile: its table's depth).
    verify_cells: int
    #: Spaces that share a macro network compare along one line in ``profile --scaling``.
    family: str
    #: The candidates of a typical searchable edge (``profile --scaling`` counts its convolutions).
    specs: tuple[OpSpec, ...]
    op_names: tuple[str, ...]

    @property
    def arch_shapes(self) -> dict[str, tuple[int, int]]: ...

    @property
    def edge_keys(self) -> dict[str, list[str]]: ...

    @property
    def group_ops(self) -> dict[str, tuple[str, ...]]: ...

    def build_supernet(self, channels: int, cells: int, num_classes: int = 10, in_channels: int = 3
                       ) -> nn.Module:
        """The plain supernet, ``forward(x, mixing) -> logits``; its searchable parts are ``SearchUnit``s."""
        ...

    def build_network(self, arch: Any, channels: int, cells: int, num_classes: int = 10, in_channels: int = 3,
                      bn: BN | None = None) -> nn.Module:
        """The discrete network of ``arch`` from the original operations, ``forward(x) -> logits``.

        ``bn=None``: retraining BN; ``bn=SEARCH_BN``: the search form, which after
        :meth:`load_vertex_weights` equals the supernet at :meth:`one_hot` weights (``verify`` checks it).
        """
        ...

    def parse(self, text: Any) -> Any:
        """Parse and validate an architecture (its string, or the value object); errors name the fault."""
        ...

    def derive(self, arch: Mapping[str, torch.Tensor]) -> Any:
        """The architecture the space derives from architecture parameters ``{group: (rows, K)}``."""
        ...

    def largest_genotype(self) -> Any:
        """The most expensive architecture (``profile`` compares a search step with its training step)."""
        ...

    # -- what verify, explain and FLOPs need ---------------------------------------------------------------

    def one_hot(self, arch: Any, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        """Mixing weights ``{group: (rows, K)}`` of a vertex: the supernet at these weights is ``arch``'s network."""
        ...

    def verify_vertices(self, trials: int, gen: torch.Generator) -> list[tuple[str, Any]]:
        """``(name, arch)`` of the vertices ``verify`` checks: every candidate everywhere, then ``trials``
        random ones drawn with ``gen`` (a pick per row, or a genotype)."""
        ...

    def load_vertex_weights(self, net: nn.Module, supernet: nn.Module, arch: Any) -> None:
        """Copy the supernet's weights of ``arch``'s candidates into ``net`` (``build_network(arch, ...,
        bn=SEARCH_BN)`` with the supernet's channels and cells). The supernet may be simplified: the
        simplifier keeps every original module and state-dict key."""
        ...

    def example_unit(self, channels: int) -> ExampleUnit:
        """A plain unit at ``channels`` input channels for ``explain`` (NB201: a cell; mobile: a block)."""
        ...

    def cost_table(self, channels: int, cells: int, image_size: int = 32, num_classes: int = 10,
                   in_channels: int = 3) -> CostModel:
        """FLOPs per candidate: a :class:`CostModel` of the discrete networks of this space's shape."""
        ...

    def arch_flops(self, arch: Any, channels: int, cells: int, image_size: int = 32, num_classes: int = 10,
                   in_channels: int = 3) -> int:
        """FLOPs (multiply-accumulates) of the discrete network of ``arch``."""
        ...

    # Optional: a space whose supernet does not return ``(batch, num_classes)`` logits (the restoration
    # spaces return an image) says what it returns, ``output_shape(batch, size) -> shape`` on a
    # ``(batch, 3, size, size)`` input; ``verify`` draws its probe of that shape. Such a space declares
    # ``family = "restoration"`` and the ``tasks`` it serves (``docs/restoration.md``).


def random_vertices(arch_shapes: Mapping[str, tuple[int, int]], trials: int, gen: torch.Generator,
                    from_rows: Callable[[dict[str, list[int]]], Any]) -> list[tuple[str, Any]]:
    """``trials`` random vertices for ``verify_vertices``: one uniformly drawn candidate per row of every
    architecture group (row indices), made an architecture by ``from_rows``, named ``random one-hot #t``."""
    return [(f"random one-hot #{t}",
             from_rows({g: torch.randint(0, k, (r,), generator=gen).tolist() for g, (r, k) in arch_shapes.items()}))
            for t in range(trials)]


def search_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every :class:`SearchUnit` in ``model`` (outermost first, not nested)."""
    out: list[tuple[str, nn.Module]] = []

    def walk(parent: nn.Module, prefix: str) -> None:
        for name, child in parent.named_children():
            if isinstance(child, SearchUnit):
                out.append((prefix + name, child))
            else:
                walk(child, prefix + name + ".")

    if isinstance(model, SearchUnit):
        return [("", model)]
    walk(model, "")
    return out


__all__ = ["UnitCall", "SearchUnit", "ExampleUnit", "CostModel", "SearchSpace", "search_units"]
