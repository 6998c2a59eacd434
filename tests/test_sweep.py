"""The sweep harness on a tiny grid: summary, no re-running finished runs, resuming killed ones."""

import csv
import json

from click.testing import CliRunner

from toponas.cli import main
from toponas.config import SearchConfig
from toponas.loop import Search, SearchInterrupted
from toponas.sweep import Run, markdown, summarize

TINY = ["--budget", "none", "--dataset", "digits", "--set", "subset=64", "--set", "batch-size=16",
        "--set", "channels=4", "--set", "cells=1", "--set", "epochs=2", "--set", "device=cpu",
        "--strategies", "darts-v1", "--topo", "off,full", "--seeds", "0", "--jobs", "2"]


def test_sweep_resumes_killed_runs_and_skips_finished_ones(tmp_path):
    out = tmp_path / "sweep"
    cache = str(tmp_path / "cache")
    # A run killed mid-way: a checkpoint, no result.json.
    killed = Run("darts-v1", "full", 0)
    cfg = SearchConfig(strategy="darts-v1", topo="full", seed=0, dataset="digits", subset=64, batch_size=16,
                       channels=4, cells=1, device="cpu", out=str(out / killed.name), hyper={"epochs": 2},
                       cache_dir=cache)
    try:
        Search(cfg, progress=False, log=lambda m: None, interrupt_after=1).run()
    except SearchInterrupted:
        pass
    assert not (out / killed.name / "result.json").exists()

    env = {"TOPONAS_CACHE": cache}
    r = CliRunner().invoke(main, ["sweep", "--out", str(out), *TINY, "--set", f"cache-dir={cache}"], env=env)
    assert r.exit_code == 0, r.output
    assert "2 runs, 0 already finished, 2 to run" in r.output
    assert "resuming" in (out / killed.name / "log.txt").read_text()
    for name in ("darts-v1-topo_off-seed0", killed.name):
        assert json.loads((out / name / "result.json").read_text())["epochs"] == 2

    rows = list(csv.DictReader(open(out / "summary.csv")))
    assert {(row["strategy"], row["topo"]) for row in rows} == {("darts-v1", "off"), ("darts-v1", "full")}
    assert "| darts-v1 | full | 1 |" in (out / "summary.md").read_text()

    before = (out / killed.name / "result.json").stat().st_mtime_ns
    r = CliRunner().invoke(main, ["sweep", "--out", str(out), *TINY, "--set", f"cache-dir={cache}"], env=env)
    assert r.exit_code == 0 and "2 already finished, 0 to run" in r.output
    assert (out / killed.name / "result.json").stat().st_mtime_ns == before


def test_summary_statistics_over_seeds(tmp_path):
    for seed, acc in ((0, 90.0), (1, 94.0)):
        run = tmp_path / f"gdas-topo_full-seed{seed}"
        run.mkdir()
        (run / "result.json").write_text(json.dumps({
            "strategy": "gdas", "topo": "full", "genotype": "g", "benchmark": {"cifar10": acc},
            "search_seconds": 10.0 * (seed + 1), "ms_per_step": 5.0, "peak_memory_bytes": 2**20}))
    (row,) = summarize(tmp_path)
    assert row["cifar10_mean"] == 92.0 and round(row["cifar10_std"], 4) == 2.8284
    assert row["search_seconds"] == 15.0 and row["runs"] == 2
    assert "92.00 ± 2.83" in markdown([row])
