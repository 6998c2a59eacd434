"""Tests of the NAS-Bench-201 look-up table: loading, normalization, errors, env var, stats."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from toponas.benchmark import BENCHMARK_ENV, BenchmarkError, BenchmarkTable, resolve_benchmark
from toponas.spaces.cell import Cell, CellError

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
ALL_SKIP = "|skip_connect~0|+|skip_connect~0|skip_connect~1|+|skip_connect~0|skip_connect~1|skip_connect~2|"
ALL_CONV = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
#: Absent from the small table below, yet a valid cell.
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
#: BEST with the edges of nodes 2 and 3 listed out of order.
SHUFFLED = "|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|nor_conv_1x1~2|nor_conv_3x3~1|skip_connect~0|"

ROWS = {
    BEST: (94.37, 73.51, 47.31),
    ALL_SKIP: (54.30, 15.61, 16.32),
    ALL_CONV: (94.00, 72.00, 45.00),
}


def write_table(path: Path, text: str) -> Path:
    """Write a CSV fixture and return its path."""
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def table_path(tmp_path: Path) -> Path:
    """A three-row table with three dataset columns, ``arch`` not first (column order must not matter)."""
    lines = ["cifar10,arch,cifar100,imagenet16-120"]
    lines += [f"{a},{arch},{b},{c}" for arch, (a, b, c) in ROWS.items()]
    return write_table(tmp_path / "bench.csv", "\n".join(lines) + "\n")


def test_load_and_lookup(table_path: Path) -> None:
    """Every row is found with all its datasets."""
    table = BenchmarkTable.load(table_path)
    assert table.path == table_path
    assert table.datasets == ("cifar10", "cifar100", "imagenet16-120")
    assert len(table) == 3
    assert table.lookup(BEST) == {"cifar10": 94.37, "cifar100": 73.51, "imagenet16-120": 47.31}
    assert table.lookup(Cell.parse(ALL_SKIP))["cifar10"] == 54.30
    assert BEST in table and Cell.parse(ALL_CONV) in table
    assert ALL_NONE not in table
    assert "not a cell" not in table and 42 not in table


def test_lookup_normalizes_edge_order_and_whitespace(table_path: Path) -> None:
    """Edges out of order within a node, plus spaces and newlines, find the same row."""
    table = BenchmarkTable.load(table_path)
    messy = (
        "  |nor_conv_3x3~0| +\n |nor_conv_3x3~1|nor_conv_3x3~0|+"
        "|nor_conv_1x1~2|skip_connect~0| nor_conv_3x3~1| "
    )
    assert messy in table
    assert table.lookup(messy) == table.lookup(BEST)


def test_table_rows_are_normalized_on_load(tmp_path: Path) -> None:
    """A table written with another edge order within a node still matches canonical look-ups."""
    table = BenchmarkTable.load(write_table(tmp_path / "t.csv", f"arch,cifar10\n{SHUFFLED},94.37\n"))
    assert table.lookup(BEST) == {"cifar10": 94.37}


def test_duplicate_cell_after_normalization(tmp_path: Path) -> None:
    """Two spellings of one cell are a broken table, named with both lines."""
    path = write_table(tmp_path / "t.csv", f"arch,cifar10\n{BEST},94.37\n{SHUFFLED},90\n")
    with pytest.raises(BenchmarkError, match=r"line 3: .*already listed on line 2"):
        BenchmarkTable.load(path)


def test_valid_but_unknown_cell(table_path: Path) -> None:
    """A well-formed cell missing from the table is a BenchmarkError that says it is valid."""
    table = BenchmarkTable.load(table_path)
    with pytest.raises(BenchmarkError, match=r"valid cell but is not in the benchmark table"):
        table.lookup(ALL_NONE)


@pytest.mark.parametrize(
    "arch",
    [
        "",
        "|nor_conv_3x3~0|",
        "|conv_9x9~0|+|none~0|none~1|+|none~0|none~1|none~2|",
        "|none~0|+|none~0|none~0|+|none~0|none~1|none~2|",
    ],
)
def test_malformed_cell_is_cell_error(table_path: Path, arch: str) -> None:
    """Malformed strings raise CellError (for the CLI to report), not BenchmarkError."""
    table = BenchmarkTable.load(table_path)
    with pytest.raises(CellError):
        table.lookup(arch)
    assert arch not in table


def test_missing_file(tmp_path: Path) -> None:
    """A path that does not exist is named in the error."""
    with pytest.raises(BenchmarkError, match=r"nope\.csv does not exist"):
        BenchmarkTable.load(tmp_path / "nope.csv")
    with pytest.raises(BenchmarkError, match=r"is a directory"):
        BenchmarkTable.load(tmp_path)


def test_missing_arch_column(tmp_path: Path) -> None:
    """A header without ``arch`` is reported with the header found."""
    path = write_table(tmp_path / "t.csv", f"cell,cifar10\n{BEST},94.37\n")
    with pytest.raises(BenchmarkError, match=r"no 'arch' column \(header: cell,cifar10\)"):
        BenchmarkTable.load(path)


def test_no_dataset_columns(tmp_path: Path) -> None:
    """A table of cell strings only has nothing to look up."""
    with pytest.raises(BenchmarkError, match=r"no dataset columns"):
        BenchmarkTable.load(write_table(tmp_path / "t.csv", f"arch\n{BEST}\n"))


@pytest.mark.parametrize("value", ["n/a", "", "nan"])
def test_non_numeric_value(tmp_path: Path, value: str) -> None:
    """A value that is not a finite number names its line and column."""
    text = f"arch,cifar10,cifar100\n{ALL_SKIP},54.3,15.6\n{BEST},94.37,{value}\n"
    path = write_table(tmp_path / "t.csv", text)
    with pytest.raises(BenchmarkError, match=r"line 3, column 'cifar100': expected a number"):
        BenchmarkTable.load(path)


def test_invalid_cell_in_table(tmp_path: Path) -> None:
    """A malformed cell inside the table is a BenchmarkError naming the line (the table is at fault)."""
    path = write_table(tmp_path / "t.csv", "arch,cifar10\n|nor_conv_3x3~0|,90\n")
    with pytest.raises(BenchmarkError, match=r"line 2: invalid cell"):
        BenchmarkTable.load(path)


def test_not_a_csv(tmp_path: Path) -> None:
    """Binary content, an empty file and ragged rows are reported as unusable tables."""
    binary = tmp_path / "t.bin"
    binary.write_bytes(bytes(range(128, 256)) * 4)
    with pytest.raises(BenchmarkError, match=r"not a CSV"):
        BenchmarkTable.load(binary)
    with pytest.raises(BenchmarkError, match=r"is empty"):
        BenchmarkTable.load(write_table(tmp_path / "empty.csv", ""))
    with pytest.raises(BenchmarkError, match=r"line 2: expected 2 fields, got 3"):
        BenchmarkTable.load(write_table(tmp_path / "ragged.csv", f"arch,cifar10\n{BEST},94.37,1\n"))
    with pytest.raises(BenchmarkError, match=r"no rows"):
        BenchmarkTable.load(write_table(tmp_path / "header.csv", "arch,cifar10\n"))


def test_env_var_resolution(table_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No path: the env var is used; neither: load() explains both ways and resolve_benchmark() gives None."""
    monkeypatch.delenv(BENCHMARK_ENV, raising=False)
    assert resolve_benchmark(None) is None
    with pytest.raises(BenchmarkError, match=rf"--benchmark CSV or set {BENCHMARK_ENV}"):
        BenchmarkTable.load()
    assert len(resolve_benchmark(table_path)) == 3

    monkeypatch.setenv(BENCHMARK_ENV, str(table_path))
    assert resolve_benchmark(None).path == table_path
    assert BenchmarkTable.load().lookup(BEST)["cifar10"] == 94.37
    other = write_table(tmp_path / "other.csv", f"arch,cifar10\n{ALL_NONE},10\n")
    assert resolve_benchmark(other).datasets == ("cifar10",)  # an explicit path wins over the env var

    monkeypatch.setenv(BENCHMARK_ENV, "")
    assert resolve_benchmark(None) is None


def test_stats(table_path: Path) -> None:
    """Mean, extremes, best cell and count per dataset; an unknown dataset lists those available."""
    table = BenchmarkTable.load(table_path)
    stats = table.stats("cifar10")
    assert stats["count"] == 3
    assert stats["mean"] == pytest.approx((94.37 + 54.30 + 94.00) / 3)
    assert stats["max"] == 94.37 and stats["min"] == 54.30
    assert stats["best"] == BEST and stats["num_best"] == 1
    assert table.stats("imagenet16-120")["best"] == BEST
    with pytest.raises(BenchmarkError, match=r"'svhn' is not in .*cifar10, cifar100, imagenet16-120"):
        table.stats("svhn")


def test_stats_ties_pick_first_listed(tmp_path: Path) -> None:
    """Equal best scores: the first cell in the file is reported, with the number of ties."""
    path = write_table(tmp_path / "t.csv", f"arch,cifar10\n{ALL_CONV},94\n{BEST},94\n{ALL_SKIP},50\n")
    stats = BenchmarkTable.load(path).stats("cifar10")
    assert stats["best"] == ALL_CONV and stats["num_best"] == 2


def shared_dir() -> Path:
    """The shared material beside the checkout (or ``$TOPONAS_SHARED``)."""
    env = os.environ.get("TOPONAS_SHARED")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared"


def test_shared_nb201_cifar10_table() -> None:
    """The real table: all 15,625 cells, the published best and collapse scores, mean of a random pick."""
    path = shared_dir() / "benchmarks" / "nb201-cifar10.csv"
    if not path.is_file():
        pytest.skip(f"shared NAS-Bench-201 table not found at {path} (set TOPONAS_SHARED to shared/)")
    table = BenchmarkTable.load(path)
    assert len(table) == 15_625
    assert table.datasets == ("cifar10",)
    assert table.lookup(BEST)["cifar10"] == pytest.approx(94.37, abs=0.005)
    assert table.lookup(ALL_SKIP)["cifar10"] == pytest.approx(54.30, abs=0.005)
    stats = table.stats("cifar10")
    assert stats["count"] == 15_625
    assert stats["mean"] == pytest.approx(87.06, abs=0.01)
    assert stats["max"] == pytest.approx(94.37, abs=0.005)
    assert table.lookup(stats["best"])["cifar10"] == stats["max"]
