"""The command line: clear errors and exit codes, a search on digits, look-ups, and the shared CIFAR-10.

The CIFAR-10 test is the integration test of the search: a 1-epoch search on 512 shared images with
``--channels 8 --cells 1``, whose cell must look up in the shared table (two strategies here to keep
the suite short; ``scripts/cifar_smoke.sh`` runs every strategy the same way).
"""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from toponas.cli import main

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
SHARED = Path(os.environ.get("TOPONAS_SHARED", Path(__file__).resolve().parents[2] / "shared"))
TABLE = SHARED / "benchmarks" / "nb201-cifar10.csv"
CIFAR = SHARED / "data" / "cifar10-jpeg.tar.gz"


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "table.csv"
    path.write_text(f"arch,cifar10,cifar100\n{BEST},94.37,73.51\n")
    return path


def test_lookup_prints_two_decimals_and_json(table):
    r = invoke("lookup", BEST, "--benchmark", str(table))
    assert r.exit_code == 0 and r.output.splitlines() == ["cifar10: 94.37", "cifar100: 73.51"]
    r = invoke("lookup", " " + BEST.replace("|+|", "| + |"), "--benchmark", str(table), "--json")
    assert json.loads(r.output)["cifar100"] == 73.51


def test_lookup_reads_the_environment_variable(table, monkeypatch):
    monkeypatch.setenv("TOPONAS_BENCHMARK", str(table))
    assert invoke("lookup", BEST).output.startswith("cifar10: 94.37")


@pytest.mark.parametrize("arch, fragment", [
    (BEST.replace("nor_conv_1x1", "conv_9x9"), "unknown operation"),
    ("|skip_connect~0|", "expected 3 nodes"),
    (BEST.replace("nor_conv_1x1", "none"), "not in the benchmark table"),
])
def test_lookup_errors_exit_nonzero_without_traceback(table, arch, fragment):
    r = invoke("lookup", arch, "--benchmark", str(table))
    assert r.exit_code == 1
    assert fragment in r.output and "Traceback" not in r.output


def test_lookup_without_a_table_says_what_to_pass(monkeypatch):
    monkeypatch.delenv("TOPONAS_BENCHMARK", raising=False)
    r = invoke("lookup", BEST)
    assert r.exit_code == 1 and "--benchmark" in r.output


def test_search_on_digits_then_guards(tmp_path, table):
    out = tmp_path / "run"
    args = ["search", "--dataset", "digits", "--subset", "64", "--batch-size", "16", "--channels", "4",
            "--cells", "1", "--epochs", "1", "--out", str(out), "--cache-dir", str(tmp_path / "c"),
            "--device", "cpu", "--no-progress", "--strategy", "gdas", "--hp", "tau_max=5"]
    r = invoke(*args)
    assert r.exit_code == 0, r.output
    assert "epoch 1/1" in r.output and "cell " in r.output
    result = json.loads((out / "result.json").read_text())
    assert result["strategy"] == "gdas" and result["epochs"] == 1
    config = json.loads((out / "config.json").read_text())
    assert config["hyper"] == {"tau_max": "5", "epochs": 1}
    assert config["resolved_hyper"]["tau_max"] == 5.0

    r = invoke(*args)
    assert r.exit_code == 1 and "already holds a run" in r.output
    # --config repeats the run from its directory alone, into another --out
    r = invoke("search", "--config", str(out / "config.json"), "--out", str(tmp_path / "again"),
               "--no-progress")
    assert r.exit_code == 0, r.output
    again = json.loads((tmp_path / "again" / "result.json").read_text())
    assert again["genotype"] == result["genotype"] and again["alphas"] == result["alphas"]


@pytest.mark.parametrize("args, fragment", [
    (["--hp", "nonsense"], "KEY=VALUE"),
    (["--hp", "w_lr=fast"], "not a valid float"),
    (["--data", "/nonexistent/cifar.tar.gz", "--dataset", "cifar10"], "/nonexistent/cifar.tar.gz"),
])
def test_search_errors_are_one_line(tmp_path, args, fragment):
    r = invoke("search", "--dataset", "digits", "--out", str(tmp_path / "x"), "--cache-dir", str(tmp_path / "c"),
               "--no-progress", "--epochs", "1", *args)
    assert r.exit_code == 1, r.output
    assert fragment in r.output and "Traceback" not in r.output


def test_unknown_option_and_choice_are_rejected():
    assert invoke("search", "--strategy", "darts-v9").exit_code == 2
    assert invoke("search", "--colour", "red").exit_code == 2


@pytest.mark.skipif(not (CIFAR.exists() and TABLE.exists()),
                    reason=f"shared CIFAR-10 or NAS-Bench-201 table not found under {SHARED} (set TOPONAS_SHARED)")
@pytest.mark.parametrize("strategy", ["darts-v1", "gdas"])  # every strategy: scripts/cifar_smoke.sh
def test_one_epoch_search_on_shared_cifar10_looks_up(tmp_path_factory, strategy):
    cache = tmp_path_factory.getbasetemp() / "cifar-cache"  # shared by the parametrized runs
    out = tmp_path_factory.mktemp(strategy)
    r = invoke("search", "--strategy", strategy, "--dataset", "cifar10", "--data", str(CIFAR), "--subset", "512",
               "--epochs", "1", "--channels", "8", "--cells", "1", "--out", str(out), "--cache-dir", str(cache),
               "--benchmark", str(TABLE), "--device", "cpu", "--no-progress")
    assert r.exit_code == 0, r.output
    result = json.loads((out / "result.json").read_text())
    assert 10.0 <= result["benchmark"]["cifar10"] <= 94.38
    assert result["history"][0]["benchmark"] == result["benchmark"]
    looked_up = invoke("lookup", result["genotype"], "--benchmark", str(TABLE), "--json")
    assert json.loads(looked_up.output)["cifar10"] == result["benchmark"]["cifar10"]


def test_sampling_options_reach_the_strategy(tmp_path):
    common = ["search", "--dataset", "digits", "--subset", "64", "--batch-size", "16", "--channels", "4", "--cells",
              "1", "--epochs", "1", "--cache-dir", str(tmp_path / "c"), "--device", "cpu", "--no-progress"]
    r = invoke(*common, "--strategy", "parsec", "--samples", "2", "--out", str(tmp_path / "p"))
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert config["resolved_hyper"]["samples"] == 2
    assert json.loads((tmp_path / "p" / "result.json").read_text())["samples_total"] == 2 * 2  # 2 steps
    r = invoke(*common, "--strategy", "darts-v1", "--samples", "2", "--out", str(tmp_path / "d"))
    assert r.exit_code == 1 and "unknown hyperparameter(s) samples" in r.output
