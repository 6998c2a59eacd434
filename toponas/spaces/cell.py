"""The NAS-Bench-201 cell as a value object: parse, validate, format, compare.

A cell string lists, for each node 1..3, the operation on the edge from every earlier node:
``|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


class CellError(ValueError):
    """A malformed or invalid cell string (the message says what and where)."""


@dataclass(frozen=True)
class Cell:
    """A cell of ``len(nodes) + 1`` nodes; ``nodes[i - 1]`` holds ``(op, j)`` for each edge ``i <- j``.

    Instances are immutable and hashable; ``str(cell)`` is the canonical string (inputs in order).
    """

    nodes: tuple[tuple[tuple[str, int], ...], ...]

    @classmethod
    def parse(cls, text: str, ops: Iterable[str] | None = None, num_nodes: int = 4) -> Cell:
        """Parse a cell string, with errors that name the faulty part.

        ``ops`` restricts the operation names (``None``: any name); ``num_nodes`` counts node 0.
        Surrounding white space is ignored and edges within a node may come in any order.
        """
        if not isinstance(text, str):
            raise CellError(f"a cell string is text, got {type(text).__name__}")
        text = "".join(text.split())
        allowed = None if ops is None else tuple(ops)
        parts = text.split("+")
        if not text or len(parts) != num_nodes - 1:
            raise CellError(
                f"expected {num_nodes - 1} nodes separated by '+', got {len(parts) if text else 0}"
                f" in {text!r}"
            )
        nodes = []
        for i, part in enumerate(parts, start=1):
            if len(part) < 2 or not part.startswith("|") or not part.endswith("|"):
                raise CellError(f"node {i}: expected '|op~input|...|', got {part!r}")
            edges = []
            for item in part[1:-1].split("|"):
                op, sep, src = item.partition("~")
                if not sep or not op or not src:
                    raise CellError(f"node {i}: expected 'op~input', got {item!r}")
                try:
                    j = int(src)
                except ValueError:
                    raise CellError(f"node {i}: input {src!r} is not a node index") from None
                if not 0 <= j < i:
                    raise CellError(f"node {i}: input node {j} must be in 0..{i - 1}")
                if allowed is not None and op not in allowed:
                    raise CellError(
                        f"node {i}: unknown operation {op!r}; expected one of {', '.join(allowed)}"
                    )
                edges.append((op, j))
            sources = sorted(j for _, j in edges)
            if sources != list(range(i)):
                raise CellError(
                    f"node {i}: needs exactly one edge from each of nodes 0..{i - 1}, got inputs {sources}"
                )
            nodes.append(tuple(sorted(edges, key=lambda e: e[1])))
        return cls(tuple(nodes))

    @classmethod
    def from_ops(cls, ops: Sequence[str]) -> Cell:
        """Build a cell from one operation per edge, in edge order ``1<-0, 2<-0, 2<-1, 3<-0, ...``."""
        nodes, k, i = [], 0, 1
        while k < len(ops):
            if k + i > len(ops):
                raise CellError(f"{len(ops)} operations do not fill a complete cell")
            nodes.append(tuple((ops[k + j], j) for j in range(i)))
            k, i = k + i, i + 1
        return cls(tuple(nodes))

    @property
    def ops(self) -> list[str]:
        """Operation per edge, in edge order."""
        return [op for node in self.nodes for op, _ in node]

    def edges(self) -> list[tuple[int, int, str]]:
        """``(to, from, op)`` per edge, in edge order."""
        return [(i, j, op) for i, node in enumerate(self.nodes, start=1) for op, j in node]

    def connected(self, dead: Iterable[str] = ("none",)) -> bool:
        """Whether some path leads from the input (node 0) to the output through edges whose operation
        is not in ``dead``: a cell without one outputs zeros whatever its input (it scores chance)."""
        dead = set(dead)
        reached = {0}
        for i, node in enumerate(self.nodes, start=1):
            if any(j in reached and op not in dead for op, j in node):
                reached.add(i)
        return len(self.nodes) in reached

    def __str__(self) -> str:
        return "+".join("|" + "|".join(f"{op}~{j}" for op, j in node) + "|" for node in self.nodes)


def edge_names(num_nodes: int = 4) -> list[str]:
    """Edge keys in the reference order: ``1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2``."""
    return [f"{i}<-{j}" for i in range(1, num_nodes) for j in range(i)]
