"""Reports: figures and report.md from a real tiny search, a training run and a sweep directory."""

import sys

import click
import pytest
from click.testing import CliRunner

import toponas
from toponas.cli.report import report as report_command
from toponas.loop.checkpoint import write_json
from toponas.report import ReportError, detect_kind, draw_cell, report
from toponas.training import TrainConfig, Trainer

pytest.importorskip("matplotlib")

CELL = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "search"
    toponas.search(strategy="darts-v1", dataset="digits", subset=64, batch_size=16, channels=4, cells=1, epochs=2,
                   out=str(out), device="cpu", log=lambda _: None)
    return out


def test_search_report_has_heat_maps_curves_cell_and_page(search_run):
    page = report(search_run)
    files = {p.name for p in (search_run / "report").iterdir()}
    assert {"report.md", "cell.png", "curves.png", "separation.png", "alphas_cell.png"} <= files
    for name in files - {"report.md"}:
        assert (search_run / "report" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    for name in ("cell.png", "curves.png", "separation.png", "alphas_cell.png"):
        assert f"]({name})" in text
    assert "darts-v1" in text and "| 2 |" in text  # the per-epoch cell table
    assert "| decided | **no**: the architecture parameters did not separate" in text  # 2 tiny epochs


def test_train_report_has_curves_and_cell(tmp_path):
    out = tmp_path / "train"
    cfg = TrainConfig.resolve(CELL, "nb201", dataset="digits", subset=64, batch_size=32, channels=4, cells=1,
                              epochs=2, out=str(out), device="cpu")
    Trainer(cfg, progress=False, log=lambda _: None).run()
    assert detect_kind(out) == "train"
    text = report(out, tmp_path / "elsewhere").read_text()
    assert {"cell.png", "curves.png"} <= {p.name for p in (tmp_path / "elsewhere").iterdir()}
    assert "test accuracy" in text and "](curves.png)" in text


def _fake_result(strategy, topo, seed, acc, seconds):
    return {"genotype": CELL, "space": "nb201", "strategy": strategy, "dataset": "cifar10", "seed": seed,
            "epochs": 1, "topo": topo, "search_seconds": seconds, "ms_per_step": seconds / 10, "steps": 10,
            "peak_memory_bytes": 1, "alphas": {}, "history": [], "benchmark": {"cifar10": acc}}


def test_sweep_report_draws_accuracy_against_cost(tmp_path):
    write_json(tmp_path / "darts-v1-topo_off-seed0" / "result.json", _fake_result("darts-v1", "off", 0, 54.3, 100))
    write_json(tmp_path / "gdas-topo_full-seed0" / "result.json", _fake_result("gdas", "full", 0, 93.6, 40))
    (tmp_path / "summary.md").write_text("| strategy | topo |\n| --- | --- |\n| gdas | full |\n")
    assert detect_kind(tmp_path) == "sweep"
    text = report(tmp_path).read_text()
    assert (tmp_path / "report" / "accuracy_vs_cost.png").exists()
    assert "](accuracy_vs_cost.png)" in text and "93.60" in text and "gdas-topo_full-seed0" in text
    assert "benchmark cifar10 accuracy" in text


def test_cell_drawing_handles_none_edges_and_repeated_pairs():
    from matplotlib.figure import Figure

    ax = Figure().add_subplot()
    draw_cell(ax, [(1, 0, "none"), (2, 0, "conv"), (2, 1, "skip"), (2, 1, "pool")])
    assert len(ax.patches) == 4 + 3 and len(ax.texts) >= 4


def test_missing_runs_and_missing_matplotlib_are_clear_errors(tmp_path, search_run, monkeypatch):
    with pytest.raises(ReportError, match="holds no finished run"):
        report(tmp_path)
    res = CliRunner().invoke(click.Group(commands=[report_command]), ["report", str(tmp_path)])
    assert res.exit_code == 1 and res.output.startswith("error: ") and "Traceback" not in res.output
    monkeypatch.setitem(sys.modules, "matplotlib.backends.backend_agg", None)
    with pytest.raises(ReportError, match="pip install matplotlib"):
        report(search_run, tmp_path / "r")
