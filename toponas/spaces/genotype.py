"""The DARTS genotype as a value object: parse, validate, print, compare.

The usual DARTS form lists, for each intermediate node 2..5 of a cell, its two ``(op, input)``
pairs (inputs numbered as in DARTS: 0 and 1 are the cell's inputs, 2..5 its intermediate nodes)::

    Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ...], normal_concat=[2, 3, 4, 5],
             reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ...], reduce_concat=[2, 3, 4, 5])

Parsing never evaluates the text: it is read with :func:`ast.parse` and the values with
:func:`ast.literal_eval` (``range(2, 6)``, as printed by the reference code, is recognized by
shape). Errors are :class:`~toponas.spaces.cell.CellError` with a message naming the faulty part.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .cell import CellError

#: Intermediate nodes per cell and inputs per intermediate node (the DARTS cell).
STEPS = 4
INPUTS_PER_NODE = 2
FIELDS = ("normal", "normal_concat", "reduce", "reduce_concat")

Edges = tuple[tuple[str, int], ...]


class GenotypeError(CellError):
    """A malformed or invalid DARTS genotype (the message says what and where)."""


@dataclass(frozen=True)
class Genotype:
    """A DARTS architecture: two cells of ``2 * STEPS`` edges, and which nodes each concatenates.

    ``normal[2 * (i - 2) + e]`` is the ``e``-th ``(op, input)`` pair of intermediate node ``i``
    (``i`` in 2..5; the order within a node is kept as given, strongest first when derived).
    Immutable and hashable; ``str()`` prints the usual DARTS form and :meth:`parse` reads it back.
    """

    normal: Edges
    normal_concat: tuple[int, ...]
    reduce: Edges
    reduce_concat: tuple[int, ...]

    @classmethod
    def of(cls, normal: Iterable[tuple[str, int]], normal_concat: Iterable[int],
           reduce: Iterable[tuple[str, int]], reduce_concat: Iterable[int]) -> Genotype:
        """Build from lists (tuples are made here so the value stays hashable)."""
        return cls(tuple((str(op), int(j)) for op, j in normal), tuple(int(i) for i in normal_concat),
                   tuple((str(op), int(j)) for op, j in reduce), tuple(int(i) for i in reduce_concat))

    @classmethod
    def parse(cls, text: str, ops: Iterable[str] | None = None) -> Genotype:
        """Parse and validate the usual DARTS form; ``ops`` restricts the operation names."""
        if isinstance(text, Genotype):
            return text.validate(ops)
        if not isinstance(text, str):
            raise GenotypeError(f"a genotype is text, got {type(text).__name__}")
        source = text.strip()
        try:
            tree = ast.parse(source, mode="eval")
        except (SyntaxError, ValueError, MemoryError, RecursionError) as e:
            why = e.msg if isinstance(e, SyntaxError) else type(e).__name__
            raise GenotypeError(f"not a genotype (expected 'Genotype(normal=[...], ...)'): {why} "
                                f"in {_short(source)}") from None
        call = tree.body
        if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
                and call.func.id == "Genotype"):
            raise GenotypeError(f"expected 'Genotype(normal=[...], normal_concat=[...], reduce=[...], "
                                f"reduce_concat=[...])', got {_short(source)}")
        if len(call.args) > len(FIELDS):
            raise GenotypeError(f"Genotype takes {len(FIELDS)} fields, got {len(call.args)} positional values")
        values: dict[str, Any] = {}
        for name, node in zip(FIELDS, call.args):
            values[name] = _literal(node, name)
        for kw in call.keywords:
            if kw.arg is None:
                raise GenotypeError("'**' is not allowed in a genotype")
            if kw.arg not in FIELDS:
                raise GenotypeError(f"unknown field {kw.arg!r}; expected {', '.join(FIELDS)}")
            if kw.arg in values:
                raise GenotypeError(f"field {kw.arg!r} is given twice")
            values[kw.arg] = _literal(kw.value, kw.arg)
        missing = [f for f in FIELDS if f not in values]
        if missing:
            raise GenotypeError(f"missing field(s) {', '.join(missing)}")
        cells = {}
        for cell in ("normal", "reduce"):
            cells[cell] = _edges(values[cell], cell)
            cells[cell + "_concat"] = _concat(values[cell + "_concat"], cell + "_concat")
        return cls(**cells).validate(ops)

    def validate(self, ops: Iterable[str] | None = None) -> Genotype:
        """Check edge counts, inputs, operation names and concatenations; returns ``self``."""
        allowed = None if ops is None else tuple(ops)
        for cell in ("normal", "reduce"):
            edges = getattr(self, cell)
            if len(edges) != STEPS * INPUTS_PER_NODE:
                raise GenotypeError(
                    f"{cell}: expected {STEPS * INPUTS_PER_NODE} edges ({INPUTS_PER_NODE} per node for "
                    f"nodes 2..{STEPS + 1}), got {len(edges)}")
            for k, (op, j) in enumerate(edges):
                node = 2 + k // INPUTS_PER_NODE
                if allowed is not None and op not in allowed:
                    raise GenotypeError(
                        f"{cell} node {node}: unknown operation {op!r}; expected one of {', '.join(allowed)}")
                if not 0 <= j < node:
                    raise GenotypeError(f"{cell} node {node}: input {j} must be in 0..{node - 1}")
            for node in range(2, STEPS + 2):
                inputs = [j for _, j in self.node_edges(cell, node)]
                if len(set(inputs)) != len(inputs):
                    raise GenotypeError(
                        f"{cell} node {node}: input {inputs[0]} is used twice; each node takes "
                        f"{INPUTS_PER_NODE} different inputs")
            concat = getattr(self, cell + "_concat")
            name = cell + "_concat"
            if not concat:
                raise GenotypeError(f"{name}: lists no node; expected e.g. [2, 3, 4, 5]")
            bad = [i for i in concat if not 2 <= i <= STEPS + 1]
            if bad:
                raise GenotypeError(f"{name}: node {bad[0]} is not an intermediate node 2..{STEPS + 1}")
            if len(set(concat)) != len(concat):
                raise GenotypeError(f"{name}: lists a node twice: {list(concat)}")
        return self

    def node_edges(self, cell: str, node: int) -> Edges:
        """The ``(op, input)`` pairs of intermediate ``node`` (2..5) of ``cell`` (``normal``/``reduce``)."""
        start = (node - 2) * INPUTS_PER_NODE
        return getattr(self, cell)[start:start + INPUTS_PER_NODE]

    def __str__(self) -> str:
        def edges(e: Edges) -> str:
            return "[" + ", ".join(f"({op!r}, {j})" for op, j in e) + "]"

        return (f"Genotype(normal={edges(self.normal)}, normal_concat={list(self.normal_concat)}, "
                f"reduce={edges(self.reduce)}, reduce_concat={list(self.reduce_concat)})")


def _short(text: str, limit: int = 80) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def _literal(node: ast.expr, name: str) -> Any:
    """A field's value: a Python literal, or ``range(a[, b])`` with integer literals."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
        args = [_literal(a, name) for a in node.args]
        if node.keywords or not 1 <= len(args) <= 2 or not all(type(a) is int for a in args):
            raise GenotypeError(f"{name}: range(...) takes one or two integers")
        return list(range(*args))
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        raise GenotypeError(f"{name}: not a literal value: {_short(ast.unparse(node))}") from None


def _edges(value: Any, cell: str) -> Edges:
    if not isinstance(value, (list, tuple)):
        raise GenotypeError(f"{cell}: expected a list of (op, input) pairs, got {type(value).__name__}")
    out = []
    for k, item in enumerate(value):
        node = 2 + k // INPUTS_PER_NODE
        if not (isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[0], str)
                and type(item[1]) is int):
            raise GenotypeError(f"{cell} node {node}: expected an (op, input) pair such as "
                                f"('sep_conv_3x3', 0), got {item!r}")
        out.append((item[0], item[1]))
    return tuple(out)


def _concat(value: Any, name: str) -> tuple[int, ...]:
    if not isinstance(value, (list, tuple)) or not all(type(i) is int for i in value):
        raise GenotypeError(f"{name}: expected a list of node indices such as [2, 3, 4, 5], got {value!r}")
    return tuple(value)


def edge_index(node: int, src: int) -> int:
    """Row of the mixed edge ``node <- src`` in a cell's architecture matrix (DARTS order).

    Rows run node by node, inputs in order: ``2<-0, 2<-1, 3<-0, 3<-1, 3<-2, 4<-0, ...``.
    """
    return sum(n for n in range(2, node)) + src


def edge_keys(steps: int = STEPS) -> list[str]:
    """Edge names in row order: ``2<-0, 2<-1, 3<-0, ..., 5<-4`` (14 for 4 steps)."""
    return [f"{i}<-{j}" for i in range(2, steps + 2) for j in range(i)]


def edge_pairs(steps: int = STEPS) -> list[tuple[int, int]]:
    """``(node, input)`` of each row, as :func:`edge_keys`."""
    return [(i, j) for i in range(2, steps + 2) for j in range(i)]


def default_concat(steps: int = STEPS) -> Sequence[int]:
    return list(range(2, steps + 2))


__all__ = ["Genotype", "GenotypeError", "edge_index", "edge_keys", "edge_pairs", "STEPS"]
