"""NAS-Bench-201 look-up tables: the accuracy of a searched cell, read from a CSV the user points at.

A table is a CSV with an ``arch`` column of cell strings and one numeric column per dataset
(``cifar10``, ``cifar100``, ``imagenet16-120``, ...). Cell strings are normalized on load and on
look-up, so edge order within a node and white space do not matter. Loading the full 15,625-row
table takes a small fraction of a second: it is one pass of the ``csv`` module into a dict.
"""

from __future__ import annotations

import csv
import functools
import itertools
import math
import os
from pathlib import Path
from typing import TextIO

from .spaces.cell import Cell, CellError
from .spaces.nb201 import NB201_OPS

#: Environment variable naming the default benchmark CSV (used when no path is passed).
BENCHMARK_ENV = "TOPONAS_BENCHMARK"

ARCH_COLUMN = "arch"


class BenchmarkError(Exception):
    """A benchmark table that cannot be read or used, or a cell it does not hold."""


@functools.cache
def _canonical_cells() -> frozenset[str]:
    """All 5^6 canonical NB201 cell strings: a set look-up skips parsing rows that are already canonical."""
    return frozenset(
        f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"
        for a, b, c, d, e, f in itertools.product(NB201_OPS, repeat=6)
    )


def _normalize(arch: str | Cell) -> str:
    """Canonical NB201 cell string, so any edge order or spacing finds the same row (CellError: malformed)."""
    text = str(arch) if isinstance(arch, Cell) else arch
    if isinstance(text, str):
        compact = "".join(text.split())
        if compact in _canonical_cells():
            return compact
    return str(Cell.parse(text, ops=NB201_OPS))


class BenchmarkTable:
    """Accuracy per dataset for each cell of a NAS-Bench-201 table, keyed by canonical cell string."""

    def __init__(self, path: Path, datasets: tuple[str, ...], rows: dict[str, tuple[float, ...]]) -> None:
        """Wrap already-parsed rows; use :meth:`load` to read a CSV."""
        self.path = path
        self.datasets = datasets
        self._rows = rows

    @classmethod
    def load(cls, path: str | os.PathLike[str] | None = None) -> BenchmarkTable:
        """Read the CSV at ``path`` (else ``$TOPONAS_BENCHMARK``); all rows are checked up front."""
        if path is None:
            path = os.environ.get(BENCHMARK_ENV) or None
            if path is None:
                raise BenchmarkError(f"no benchmark table given: pass --benchmark CSV or set {BENCHMARK_ENV}")
        file = Path(path).expanduser()
        if not file.is_file():
            what = "is a directory, not a file" if file.is_dir() else "does not exist"
            raise BenchmarkError(f"benchmark table {file} {what}")
        try:
            with file.open(newline="", encoding="utf-8-sig") as handle:  # -sig: skip a spreadsheet BOM
                return cls._read(file, handle)
        except UnicodeDecodeError:
            raise BenchmarkError(f"{file} is not a CSV text file (it is not UTF-8 text)") from None
        except csv.Error as err:
            raise BenchmarkError(f"{file} is not a valid CSV file: {err}") from None
        except OSError as err:
            raise BenchmarkError(f"cannot read benchmark table {file}: {err}") from None

    @classmethod
    def _read(cls, file: Path, handle: TextIO) -> BenchmarkTable:
        """Parse header and rows of an open CSV, with errors that name the line and column."""
        reader = csv.reader(handle)
        header = next(reader, None)
        if not header:
            raise BenchmarkError(f"{file} is empty: expected a CSV header with an '{ARCH_COLUMN}' column")
        header = [name.strip() for name in header]
        if ARCH_COLUMN not in header:
            raise BenchmarkError(
                f"{file} has no '{ARCH_COLUMN}' column (header: {','.join(header)});"
                f" expected e.g. '{ARCH_COLUMN},cifar10'"
            )
        arch_at = header.index(ARCH_COLUMN)
        columns = [i for i, name in enumerate(header) if i != arch_at]
        datasets = tuple(header[i] for i in columns)
        if not datasets:
            raise BenchmarkError(f"{file} has no dataset columns beside '{ARCH_COLUMN}' (e.g. 'cifar10')")
        if "" in datasets or len(set(header)) != len(header):
            raise BenchmarkError(f"{file}: column names must be non-empty and distinct: {','.join(header)}")
        width = len(header)
        rows: dict[str, tuple[float, ...]] = {}
        seen_at: dict[str, int] = {}
        for row in reader:
            line = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                raise BenchmarkError(f"{file}, line {line}: expected {width} fields, got {len(row)}")
            raw = row[arch_at]
            try:
                arch = _normalize(raw)
            except CellError as err:
                raise BenchmarkError(f"{file}, line {line}: invalid cell {raw.strip()!r}: {err}") from None
            values = []
            for i in columns:
                try:
                    value = float(row[i])
                except ValueError:
                    value = math.nan
                if not math.isfinite(value):
                    raise BenchmarkError(
                        f"{file}, line {line}, column '{header[i]}': expected a number, got {row[i]!r}"
                    )
                values.append(value)
            if arch in rows:
                raise BenchmarkError(
                    f"{file}, line {line}: cell {arch} already listed on line {seen_at[arch]}"
                    " (edge order within a node does not make a different cell)"
                )
            rows[arch] = tuple(values)
            seen_at[arch] = line
        if not rows:
            raise BenchmarkError(f"{file} has a header but no rows")
        return cls(file, datasets, rows)

    def lookup(self, arch: str | Cell) -> dict[str, float]:
        """Accuracy per dataset of a cell; CellError if malformed, BenchmarkError if valid but not listed."""
        key = _normalize(arch)
        values = self._rows.get(key)
        if values is None:
            raise BenchmarkError(
                f"cell {key} is a valid cell but is not in the benchmark table {self.path}"
                f" ({len(self)} cells); is it the table for this search space?"
            )
        return dict(zip(self.datasets, values))

    def stats(self, dataset: str) -> dict[str, float | int | str]:
        """Mean, min, max, best cell (first listed of ``num_best`` ties), count: what a search must beat."""
        if dataset not in self.datasets:
            raise BenchmarkError(
                f"dataset {dataset!r} is not in {self.path}; it has {', '.join(self.datasets)}"
            )
        k = self.datasets.index(dataset)
        scores = [values[k] for values in self._rows.values()]
        top = max(scores)
        best = [arch for arch, values in self._rows.items() if values[k] == top]
        return {
            "dataset": dataset,
            "count": len(scores),
            "mean": math.fsum(scores) / len(scores),
            "min": min(scores),
            "max": top,
            "best": best[0],  # ties: the first listed in the file
            "num_best": len(best),
        }

    def __len__(self) -> int:
        """Number of cells in the table."""
        return len(self._rows)

    def __contains__(self, arch: object) -> bool:
        """Whether a cell is listed; a malformed string or another type is simply not contained."""
        if not isinstance(arch, (str, Cell)):
            return False
        try:
            return _normalize(arch) in self._rows
        except CellError:
            return False

    def __repr__(self) -> str:
        return f"BenchmarkTable({str(self.path)!r}, {len(self)} cells, datasets={self.datasets})"


def resolve_benchmark(path: str | os.PathLike[str] | None = None) -> BenchmarkTable | None:
    """Load the table at ``path``, else ``$TOPONAS_BENCHMARK``; ``None`` when neither is given (optional)."""
    if path is None and not os.environ.get(BENCHMARK_ENV):
        return None
    return BenchmarkTable.load(path)
