"""``toponas sweep --backend ray``: a tiny grid as Ray tasks on a local instance, and the backend's bad input."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from toponas.cli import main
from toponas.config import SearchConfig
from toponas.loop import Search, SearchInterrupted
from toponas.sweep import Run, sweep

TINY = ["--budget", "none", "--dataset", "digits", "--set", "subset=64", "--set", "batch-size=16",
        "--set", "channels=4", "--set", "cells=1", "--set", "epochs=1", "--set", "device=cpu",
        "--strategies", "darts-v1", "--topo", "full", "--seeds", "0"]


def test_ray_runs_the_grid_skips_finished_runs_and_resumes_killed_ones(tmp_path):
    ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'toponas[ray]')")
    out, cache = tmp_path / "sweep", str(tmp_path / "cache")
    options = {"dataset": "digits", "subset": "64", "batch-size": "16", "channels": "4", "cells": "1",
               "epochs": "2", "device": "cpu", "cache-dir": cache}
    killed = Run("darts-v1", "full", 0)
    cfg = SearchConfig(strategy="darts-v1", topo="full", seed=0, dataset="digits", subset=64, batch_size=16,
                       channels=4, cells=1, device="cpu", out=str(out / killed.name), hyper={"epochs": 2},
                       cache_dir=cache)
    with pytest.raises(SearchInterrupted):
        Search(cfg, progress=False, log=lambda m: None, interrupt_after=1).run()

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        lines: list[str] = []
        rows = sweep(out, ["darts-v1"], ["off", "full"], [0], options, log=lines.append, backend="ray")
        assert "2 runs, 0 already finished, 2 to run as Ray tasks (1 CPU, 0 GPU each)" in lines[0]
        assert sorted(lines[1:]) == ["darts-v1-topo_full-seed0: done", "darts-v1-topo_off-seed0: done"]
        assert "resuming" in (out / killed.name / "log.txt").read_text()
        assert {(r["strategy"], r["topo"], r["runs"]) for r in rows} == {("darts-v1", "off", 1),
                                                                         ("darts-v1", "full", 1)}
        assert "| darts-v1 | full | 1 |" in (out / "summary.md").read_text()
        lines.clear()
        sweep(out, ["darts-v1"], ["off", "full"], [0], options, log=lines.append, backend="ray")
        assert lines == ["2 runs, 2 already finished, 0 to run, 1 at a time"]
    finally:
        ray.shutdown()


def test_ray_missing_is_one_error_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError
    r = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "s"), *TINY, "--backend", "ray"])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == ["error: --backend ray needs Ray: pip install 'toponas[ray]'"]
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("address, message", [
    ("127.0.0.1:1", "error: cannot reach the Ray cluster at 127.0.0.1:1: Connection refused"),
    ("no-port", "error: --address 'no-port' is not host:port (or ray://host:port, or auto)"),
])
def test_unreachable_ray_address_is_one_error_line(tmp_path, address, message):
    pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'toponas[ray]')")
    r = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "s"), *TINY, "--backend", "ray",
                                  "--address", address])
    assert r.exit_code == 1
    assert r.output.strip().splitlines() == [message]
    assert not (tmp_path / "s").exists()
