"""The FP-NAS-against-PARSEC script (benchmarks/fpnas_vs_parsec.py): its command lines and its report, no runs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest

from toponas.sweep import run_command

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "fpnas_vs_parsec.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("fpnas_vs_parsec", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commands(script, argv: list[str]) -> tuple[int, list[tuple[str, int, list[str]]]]:
    args = script.parse_args(argv)
    k, options, runs, extra = script.plan(args)
    return k, [(r.strategy, r.seed, run_command(r, Path(args.out), options, extra[r.strategy])) for r in runs]


def value(cmd: list[str], flag: str) -> str:
    return cmd[cmd.index(flag) + 1]


def test_mobile_parsec_gets_fpnas_starting_k_and_no_flops_target(script, tmp_path):
    k, cmds = commands(
        script,
        [
            "--out",
            str(tmp_path),
            "--space",
            "mobile",
            "--flops-target",
            "20",
            "--dataset",
            "digits",
            "--seeds",
            "0,1,2",
            "--set",
            "subset=512",
            "--hp",
            "a_lr=0.1",
        ],
    )
    # 5 first blocks of 6 MBConv choices, 7 other blocks of 7 (with skip), 5 widths of 3
    assert k == math.ceil(1.5 * (5 * math.log(6) + 7 * math.log(7) + 5 * math.log(3))) == 43
    assert [(s, seed) for s, seed, _ in cmds] == [
        ("fp-nas", 0),
        ("parsec", 0),
        ("parsec", 1),
        ("fp-nas", 1),
        ("fp-nas", 2),
        ("parsec", 2),
    ]
    for strategy, _, cmd in cmds:
        assert value(cmd, "--space") == "mobile" and value(cmd, "--dataset") == "digits"
        assert value(cmd, "--subset") == "512" and value(cmd, "--hp") == "a_lr=0.1"
        assert "--cells" not in cmd  # the mobile space's depth is its stage table
        if strategy == "parsec":
            assert value(cmd, "--samples") == str(k) and "--flops-target" not in cmd
        else:
            assert value(cmd, "--flops-target") == "20" and "--samples" not in cmd


def test_mobile_k_follows_sample_scale(script, tmp_path):
    k, cmds = commands(script, ["--out", str(tmp_path), "--space", "mobile", "--hp", "sample_scale=0.5"])
    assert k == math.ceil(0.5 * (5 * math.log(6) + 7 * math.log(7) + 5 * math.log(3))) == 15
    assert all("--flops-target" not in cmd for _, _, cmd in cmds)  # no target given: none for FP-NAS either
    for strategy, _, cmd in cmds:  # PARSEC has no sample_scale: FP-NAS alone gets it
        assert ("sample_scale=0.5" in cmd) == (strategy == "fp-nas")


def test_nb201_commands_are_unchanged(script, tmp_path):
    k, cmds = commands(script, ["--out", str(tmp_path), "--seeds", "0"])
    assert k == 15
    for strategy, _, cmd in cmds:
        assert "--space" not in cmd and value(cmd, "--cells") == "1" and value(cmd, "--dataset") == "cifar10"
        assert ("--samples" in cmd) == (strategy == "parsec") and "--flops-target" not in cmd


def test_report_without_benchmark_gives_mflops_and_per_seed_ratios(script, tmp_path):
    args = script.parse_args(["--out", str(tmp_path), "--space", "mobile", "--flops-target", "20", "--seeds", "0,1"])
    k, _, runs, _ = script.plan(args)
    arch = "s1:w0.5:k3e3,k7e3|s2:w0.75:k3e6,k3e6,skip|s3:w1:k3e3,k5e6,k7e6|s4:w0.75:k7e3,k5e3|s5:w0.5:k7e3,k3e6"
    for run in runs:
        samples = 430 if run.strategy == "parsec" else 300 + 10 * run.seed
        seconds = 100.0 if run.strategy == "parsec" else 80.0
        result = {
            "seed": run.seed,
            "samples_total": samples,
            "search_seconds": seconds,
            "ms_per_step": seconds * 100,
            "steps": 10,
            "epochs": 2,
            "genotype": arch,
            "benchmark": None,
            "history": [{"samples": samples // 2, "entropy": 28.0}, {"samples": samples // 2, "entropy": 20.0}],
        }
        (tmp_path / run.name).mkdir()
        (tmp_path / run.name / "result.json").write_text(json.dumps(result))
    report = script.compare(tmp_path, runs, k, "digits", "mobile", 20.0)
    assert report["parsec_samples"] == 43 and report["fpnas_flops_target"] == 20.0
    assert report["fewer_samples"] == pytest.approx(1 - 305 / 430)
    assert report["speedup"] == pytest.approx(1.25)
    assert [r["seed"] for r in report["per_seed"]] == [0, 1]
    assert report["per_seed"][1]["fewer_samples"] == pytest.approx(1 - 310 / 430)
    assert "accuracy_difference" not in report
    fp = report["strategies"]["fp-nas"]
    assert fp["accuracy_mean"] is None and fp["mflops_mean"] == pytest.approx(33.310464)
    text = script.markdown(report)
    assert "parsec (K=43)" in text and "fp-nas (target 20 MFLOPs)" in text and "29.1% fewer samples" in text
