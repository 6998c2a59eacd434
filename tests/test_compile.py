"""``--compile``: a compiled search and profile equal eager ones and do not recompile every step.

Dynamo and AOTAutograd trace here as in a real run, with the ``aot_eager`` backend: Inductor's C++ code
generation took over five minutes for a C=4, N=1 supernet on this loaded 2-core machine. The Inductor
test runs only with ``TOPONAS_SLOW_TESTS=1``.
"""

from __future__ import annotations

import os

import pytest
import torch
from click.testing import CliRunner

import toponas.runtime.compiled as compiled
from toponas.cli import main
from toponas.config import SearchConfig
from toponas.loop import Search

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = dict(strategy="darts-v1", dataset="digits", subset=32, batch_size=16, channels=2, cells=1, device="cpu",
            image_size=8, hyper={"epochs": 1, "a_lr": 0.01})


def _search(tmp_path, name: str, compile: bool, **changes):
    cfg = SearchConfig(**{**TINY, **changes}, out=str(tmp_path / name))
    torch._dynamo.reset()
    before = compiled.compiled_frames()
    result = Search(cfg, progress=False, log=lambda m: None, compile=compile).run()
    return result, compiled.compiled_frames() - before


def _assert_equal(a, b, tol: float) -> None:
    assert a.genotype == b.genotype
    for group, edges in a.alphas.items():
        for edge, row in edges.items():
            for op, value in row.items():
                assert b.alphas[group][edge][op] == pytest.approx(value, abs=tol), (group, edge, op)
    for x, y in zip(a.history, b.history):
        assert x["w_loss"] == pytest.approx(y["w_loss"], rel=1e-5) and x["a_loss"] == pytest.approx(y["a_loss"],
                                                                                                     rel=1e-5)


def test_compiled_search_equals_eager_and_compiles_once(tmp_path, monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
    eager, none = _search(tmp_path, "eager", False, topo="full")
    comp, frames = _search(tmp_path, "compiled", True, topo="full")
    assert none == 0
    assert frames == 1  # two steps, two forwards each (new mixing weights every time): one graph, no recompile
    assert comp.extras["compiled"]["mode"] == "default"
    _assert_equal(eager, comp, 1e-6)


def test_profile_compile_reports_compile_time_and_recompilations(monkeypatch):
    monkeypatch.setattr(compiled, "BACKEND", "aot_eager")
    r = CliRunner().invoke(main, ["profile", "--topo", "full", "--channels", "2", "--cells", "1", "--batch-size", "4",
                                  "--image-size", "8", "--steps", "2", "--warmup", "1", "--device", "cpu",
                                  "--no-single", "--compile"])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    head = next(line for line in lines if line.startswith("configuration"))
    assert "compile s" in head and head.endswith("recompiles")
    row = next(line for line in lines if line.startswith("topo=full"))
    assert float(row.split()[-2]) > 0 and row.split()[-1] == "0"  # compile seconds; no recompilation when timed


def test_compile_on_a_torch_without_it_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.delattr(torch.nn.Module, "compile")
    r = CliRunner().invoke(main, ["search", "--dataset", "digits", "--subset", "32", "--channels", "2", "--cells", "1",
                                  "--epochs", "1", "--batch-size", "16", "--device", "cpu", "--no-progress",
                                  "--out", str(tmp_path / "r"), "--compile"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines()[-1].startswith("error: --compile needs torch >= 2.2")
    assert "Traceback" not in r.output


@pytest.mark.skipif(os.environ.get("TOPONAS_SLOW_TESTS") != "1", reason="Inductor compiles for minutes on a small "
                    "CPU; set TOPONAS_SLOW_TESTS=1")
def test_inductor_compiled_search_equals_eager(tmp_path):
    eager, _ = _search(tmp_path, "eager", False)
    comp, frames = _search(tmp_path, "compiled", True)
    assert frames == 1
    _assert_equal(eager, comp, 1e-5)
