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


def test_budget_names_are_listed_and_an_unknown_one_lists_them(tmp_path):
    from toponas.sweep import BUDGET_NAMES

    assert "cpu-long" in BUDGET_NAMES and "cpu" in BUDGET_NAMES and "reference" in BUDGET_NAMES
    r = CliRunner().invoke(main, ["sweep", "--help"])
    assert r.exit_code == 0 and "cpu-long" in r.output
    r = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "s"), "--budget", "cpu-longer"])
    assert r.exit_code == 2, r.output  # click's usage error, which names every choice
    assert "Traceback" not in r.output and "'cpu-longer' is not one of" in r.output
    for name in BUDGET_NAMES:
        assert f"'{name}'" in r.output
    assert not (tmp_path / "s").exists()


def test_a_lr_scale_multiplies_every_strategys_default_alike(tmp_path):
    """The budget's scaling rule: each run's a_lr is its strategy's default times the one factor."""
    from toponas.spaces import create_space
    from toponas.strategies import STRATEGIES, create_strategy
    from toponas.sweep import BUDGETS, expected_config, run_command

    options = dict(BUDGETS["cpu-long"])
    factor = float(options["a-lr-scale"])
    assert factor > 1  # the budget scales, and the check below would pass at 1 by accident otherwise
    scaled = 0
    for name in STRATEGIES.names():
        default = getattr(STRATEGIES.get(name).Hyper(), "a_lr", None)
        run = Run(name, "full", 0)
        cfg = expected_config(run, tmp_path, options)
        cmd = run_command(run, tmp_path, options, ())
        assert "--a-lr-scale" not in cmd
        if default is None:
            assert "a_lr" not in cfg.hyper and "--hp" not in cmd
            continue
        assert abs(float(cfg.hyper["a_lr"]) - default * factor) <= 1e-9 * default * factor, name
        assert f"a_lr={cfg.hyper['a_lr']}" in cmd
        assert int(cfg.hyper["epochs"]) == int(options["epochs"])  # the other budget options stay
        if name in ("darts-v1", "darts-v2", "gdas", "snas", "drnas", "beta-darts"):  # resolved as the run does
            hyper = create_strategy(name, create_space("nb201"), cfg.hyper).hyper
            assert abs(hyper.a_lr - default * factor) <= 1e-9 * default * factor
        scaled += 1
    assert scaled >= 6  # at least the six gradient strategies of the quality table


def test_a_bad_a_lr_scale_is_one_error_line(tmp_path):
    for value in ("-1", "0", "x", "nan"):
        r = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "s"), *TINY, "--set", f"a-lr-scale={value}"])
        assert r.exit_code == 1, r.output
        lines = [line for line in r.output.splitlines() if line.strip()]
        assert lines == [f"error: --set a-lr-scale={value}: expected a positive number"], r.output
    assert not (tmp_path / "s").exists()


def test_cpu_long_anneals_every_runs_a_lr_by_the_one_cosine_schedule(tmp_path):
    """The budget's a_lr schedule goes to every run as ``--hp a_lr_schedule=cosine`` and into its config."""
    from toponas.strategies import STRATEGIES
    from toponas.sweep import BUDGETS, expected_config, run_command

    options = dict(BUDGETS["cpu-long"])
    assert options["a-lr-schedule"] == "cosine" and int(options["epochs"]) == 12
    for name in STRATEGIES.names():
        run = Run(name, "off", 1)
        cmd = run_command(run, tmp_path, options, ())
        assert "--a-lr-schedule" not in cmd
        at = cmd.index("a_lr_schedule=cosine")
        assert cmd[at - 1] == "--hp", name
        assert expected_config(run, tmp_path, options).hyper["a_lr_schedule"] == "cosine"


def test_a_bad_a_lr_schedule_is_refused_before_any_run(tmp_path):
    r = CliRunner().invoke(main, ["sweep", "--out", str(tmp_path / "s"), *TINY, "--set", "a-lr-schedule=step"])
    assert r.exit_code == 1, r.output
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert lines == ["error: hyperparameter a_lr_schedule: 'step' is not one of constant, cosine"], r.output
    assert not (tmp_path / "s").exists()
