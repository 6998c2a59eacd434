"""The scaling study (`toponas profile --scaling`): convolution counts, and the command end to end, tiny."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from toponas.cli import main
from toponas.profiling import conv_candidates, scaling_fits, scaling_markdown, scaling_summary
from toponas.spaces import NB201Space, OpSpec, create_space
from toponas.spaces.primitives import BN, Conv, ReLU

pytest.importorskip("matplotlib")


@pytest.mark.parametrize("name, expected", [("nb201", 2), ("nb201-wide3", 3), ("nb201-wide4", 4),
                                            ("nb201-wide6", 6), ("darts", 4)])
def test_conv_candidates_of_registered_spaces(name, expected):
    assert conv_candidates(create_space(name)) == expected


def test_conv_candidates_reads_the_declarations():
    separable = OpSpec("sep", (ReLU(), Conv(3, depthwise=True), Conv(1), BN()))
    depthwise_only = OpSpec("dw", (Conv(5, depthwise=True), BN()))
    space = NB201Space("mine", ["none", "skip_connect", "avg_pool_3x3", separable, depthwise_only])
    assert conv_candidates(space) == 2


def _fake_study() -> dict:
    def rows(off, full, single):
        return [{"name": n, "ms_per_step": ms, "ms_spread": [ms, ms], "saved_activation_bytes": b}
                for n, (ms, b) in (("topo=off", off), ("topo=full", full), ("largest single network", single))]

    return {"spaces": [
        {"space": "a", "family": "nb201", "conv_candidates": 2, "rows": rows((100, 1000), (50, 400), (40, 300))},
        {"space": "b", "family": "nb201", "conv_candidates": 6, "rows": rows((300, 3000), (60, 500), (50, 350))},
        {"space": "d", "family": "darts", "conv_candidates": 4, "rows": rows((800, 8000), (200, 2000), (90, 900))},
    ]}


def test_summary_ratios_and_growth():
    study = _fake_study()
    a, b, d = scaling_summary(study)
    assert a["off_over_full_time"] == 2.0 and a["off_over_full_bytes"] == 2.5
    assert b["full_growth_ms"] == 60 / 50 and b["off_growth_ms"] == 3.0 and b["full_growth_bytes"] == 500 / 400
    assert a["full_growth_ms"] == 1.0 and b["reference"] == "a"
    assert d["reference"] is None and d["full_growth_ms"] is None and d["off_over_full_time"] == 4.0
    study["summary"] = [a, b, d]
    table = scaling_markdown(study).splitlines()
    assert len(table) == 2 + 3 and all(line.count("|") == table[0].count("|") for line in table)
    assert "| d | 4 |" in table[-1] and table[-1].endswith("| - | - | - | - |")


def test_fits_are_least_squares_lines():
    study = _fake_study()
    study["spaces"].insert(1, dict(study["spaces"][0], space="m", conv_candidates=4))
    study["spaces"][1]["rows"] = [dict(r) for r in study["spaces"][1]["rows"]]
    study["spaces"][1]["rows"][0].update(ms_per_step=200, saved_activation_bytes=2000)  # off: on a line
    study["summary"] = scaling_summary(study)
    fits = {(f["config"], f["unit"]): f for f in scaling_fits(study)}
    assert {f["family"] for f in fits.values()} == {"nb201"}  # darts has one space: no line
    off = fits["off", "ms"]
    assert off["slope"] == pytest.approx(50) and off["intercept"] == pytest.approx(0) and off["r2"] == pytest.approx(1)
    assert off["growth"] == pytest.approx(3.0) and (off["from"], off["to"]) == ("a", "b")
    assert fits["full", "ms"]["r2"] < 1


@pytest.fixture
def one_thread():
    """One torch thread: a tiny network's step is all overhead, and two threads on a shared, busy
    machine can make it many times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_scaling_command_end_to_end(tmp_path, one_thread):
    spaces = ["nb201", "nb201-wide6", "darts"]
    # darts needs 3 layers (a normal and a reduction cell) for darts-v1 to use both of its matrices
    result = CliRunner().invoke(main, [
        "profile", "--scaling", "--spaces", ",".join(spaces), "--channels", "2", "--batch-size", "2",
        "--image-size", "8", "--cells", "3", "--steps", "1", "--warmup", "0", "--device", "cpu",
        "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    study = json.loads((tmp_path / "scaling-cpu.json").read_text())
    assert [e["space"] for e in study["spaces"]] == spaces
    assert [e["conv_candidates"] for e in study["spaces"]] == [2, 6, 4]
    assert study["channels"] == 2 and study["batch_size"] == 2 and study["steps"] == 1
    for entry in study["spaces"]:
        assert [r["name"] for r in entry["rows"]] == ["topo=off", "topo=full", "largest single network"]
        for r in entry["rows"]:
            assert r["ms_per_step"] > 0 and r["saved_activation_bytes"] > 0 and r["parameters"] > 0
            assert isinstance(r["minor_faults_per_step"], int) and r["minor_faults_per_step"] >= 0
    by = {s["space"]: s for s in study["summary"]}
    for s in by.values():
        assert s["off_over_full_time"] == pytest.approx(s["off_ms"] / s["full_ms"])
        assert s["off_over_full_bytes"] == pytest.approx(s["off_bytes"] / s["full_bytes"])
        assert s["off_minor_faults"] == next(r["minor_faults_per_step"] for e in study["spaces"] if e["space"] ==
                                             s["space"] for r in e["rows"] if r["name"] == "topo=off")
    assert by["nb201"]["full_growth_ms"] == 1.0 and by["nb201"]["off_growth_bytes"] == 1.0
    assert by["nb201-wide6"]["reference"] == "nb201"
    assert by["nb201-wide6"]["off_growth_bytes"] == pytest.approx(by["nb201-wide6"]["off_bytes"]
                                                                  / by["nb201"]["off_bytes"])
    assert by["nb201-wide6"]["off_bytes"] > by["nb201"]["off_bytes"]  # more candidates, more saved tensors
    assert by["darts"]["full_growth_ms"] is None

    table = (tmp_path / "scaling-cpu.md").read_text()
    for name in spaces:
        assert f"| {name} |" in table
    assert scaling_markdown(study) in result.output

    png = tmp_path / "scaling-cpu.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from matplotlib.image import imread

    height, width = imread(png).shape[:2]
    assert height > 100 and width > 100


def test_a_rerun_keeps_the_spaces_measured_before(tmp_path, one_thread, monkeypatch):
    """A killed study continues: spaces in the earlier JSON (same settings) are not profiled again."""
    import toponas.profiling as profiling

    args = ["profile", "--scaling", "--channels", "2", "--batch-size", "2", "--image-size", "8", "--cells", "1",
            "--steps", "1", "--warmup", "0", "--device", "cpu", "--out", str(tmp_path)]
    assert CliRunner().invoke(main, args + ["--spaces", "nb201"]).exit_code == 0
    first = json.loads((tmp_path / "scaling-cpu.json").read_text())["spaces"][0]
    profiled = []
    real = profiling.profile
    monkeypatch.setattr(profiling, "profile", lambda name, *a, **k: profiled.append(name) or real(name, *a, **k))
    result = CliRunner().invoke(main, args + ["--spaces", "nb201,nb201-wide3"])
    assert result.exit_code == 0, result.output
    assert profiled == ["nb201-wide3"] and "kept from the earlier run: nb201" in result.output
    study = json.loads((tmp_path / "scaling-cpu.json").read_text())
    assert [e["space"] for e in study["spaces"]] == ["nb201", "nb201-wide3"]
    assert study["spaces"][0] == first
    # other settings: nothing is kept
    profiled.clear()
    assert CliRunner().invoke(main, args[:-2] + ["--out", str(tmp_path), "--spaces", "nb201", "--steps", "2"]
                              ).exit_code == 0
    assert profiled == ["nb201"]


def test_scaling_option_clashes(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["profile", "--scaling", "--space", "nb201", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "--space" in r.output
    r = runner.invoke(main, ["profile", "--spaces", "nb201"])
    assert r.exit_code == 2 and "--scaling" in r.output
    r = runner.invoke(main, ["profile", "--scaling", "--spaces", "nb201,nope", "--out", str(tmp_path)])
    assert r.exit_code == 1 and "nope" in r.output
    assert not list(tmp_path.iterdir())
