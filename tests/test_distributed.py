"""One search over two processes (torch.distributed, gloo) equals one process over the same global batches.

Batch norm is per process, so in general a 2-process run with global batch B normalizes over B/2
images and is *not* the one-process run over B. The equality test therefore uses black images: every
crop and flip of a black image (zero padding) is the same black image, so every image of a batch is
the same input, each layer's batch statistics are the same function of the weights whether taken over
B or B/2 images, and the global mean loss is exactly the mean of the processes' mean losses. The labels
are random, so the two processes' losses and gradients differ and only their average gives the
one-process update: the all-reduce is exercised (without it the processes drift apart, which the loop's
end-of-epoch check refuses). Both runs compute in float64 (tolerance 1e-9): in float32, batch norm's
backward leaves ~1e-5 relative round-off in a gradient, which Adam's normalized steps carry into
differences of up to 5e-4 in the architecture parameters after four steps.
"""

from __future__ import annotations

import json
import os
import runpy
import socket
import sys

import pytest
import torch
from click.testing import CliRunner

from toponas.cli import main
from toponas.config import SearchConfig
from toponas.data import ImageDataset
from toponas.loop import Search

pytestmark = pytest.mark.usefixtures("one_thread")

ARGS = dict(strategy="darts-v1", dataset="digits", subset=64, batch_size=16, channels=4, cells=1, device="cpu",
            hyper={"epochs": 2, "a_lr": 0.01})


def black_dataset() -> ImageDataset:
    """64 black 8x8 images with random labels; mean/std of some other data, so inputs are a nonzero constant."""
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(64, 3, 8, 8, dtype=torch.uint8)
    y = torch.randint(0, 4, (64,), generator=gen)
    return ImageDataset("black", x, y, x[:8], y[:8], ["a", "b", "c", "d"], (0.4, 0.5, 0.6), (0.2, 0.25, 0.3))


def _use_black_data_in_float64(patch=setattr) -> None:
    """Black images, and everything in float64: the comparison is then not at the mercy of float32 round-off,
    which batch norm's backward (a mean over the batch of terms of both signs) amplifies to ~1e-5."""
    batches = sys.modules["toponas.data.batches"]
    normalize = batches.normalize
    patch(sys.modules["toponas.loop.task"], "load_dataset", lambda *a, **k: black_dataset())
    patch(batches, "normalize", lambda *a: normalize(*a).double())
    torch.set_default_dtype(torch.float64)


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    _use_black_data_in_float64()
    Search(SearchConfig(**ARGS, out=out), progress=False, log=lambda line: None).run()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_over_the_same_global_batches(tmp_path, monkeypatch):
    two = tmp_path / "two"
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), str(two)), nprocs=2, join=True)
    _use_black_data_in_float64(monkeypatch.setattr)
    try:
        one = Search(SearchConfig(**ARGS, out=str(tmp_path / "one")), progress=False, log=lambda line: None).run()
    finally:
        torch.set_default_dtype(torch.float32)

    result = json.loads((two / "result.json").read_text())
    assert result["steps"] == one.steps == 4
    moved = 0.0
    for group, edges in one.alphas.items():
        for edge, row in edges.items():
            for op, value in row.items():
                assert result["alphas"][group][edge][op] == pytest.approx(value, abs=1e-9), (group, edge, op)
                moved = max(moved, abs(value))
    assert moved > 0.01  # the architecture moved far beyond its 1e-3 initialization: the comparison can fail
    for mine, ref in zip(result["history"], one.history):
        assert mine["w_loss"] == pytest.approx(ref["w_loss"], rel=1e-5)
        assert mine["a_loss"] == pytest.approx(ref["a_loss"], rel=1e-5)
    # rank 0 alone wrote the run: one log, whose header names the processes
    assert "rank 0 of 2 processes, 8 images each" in (two / "log.txt").read_text()
    saved = torch.load(two / "checkpoint.pt", weights_only=True)
    assert saved["world_size"] == 2


def _cli(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    result = CliRunner().invoke(main, args, env=env)
    return result.exit_code, result.stderr if hasattr(result, "stderr") else result.output


TINY = ["search", "--dataset", "digits", "--subset", "32", "--channels", "2", "--cells", "1", "--epochs", "1",
        "--device", "cpu", "--no-progress"]


def test_batch_not_divisible_by_the_processes_is_refused(tmp_path):
    env = {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}
    code, err = _cli([*TINY, "--batch-size", "15", "--out", str(tmp_path / "r")], env)
    assert code == 1
    assert err.strip().splitlines() == ["error: --batch-size 15 is not divisible by the 2 processes (WORLD_SIZE); "
                                        "pass a multiple of 2"]
    assert not (tmp_path / "r").exists()


def test_resume_with_another_number_of_processes_is_refused(tmp_path):
    out = tmp_path / "r"
    code, _ = _cli([*TINY, "--batch-size", "16", "--out", str(out)], {})
    assert code == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    code, err = _cli([*TINY, "--batch-size", "16", "--out", str(out), "--resume", "--epochs", "2"],
                     {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert code == 1
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: the run was started in one process and cannot resume "
                                                   "with 2")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_python_dash_m_toponas_runs_the_command_line(monkeypatch, capsys):
    """``torchrun -m toponas`` needs ``python -m toponas`` (run here in-process, as runpy runs it)."""
    monkeypatch.setattr(sys, "argv", ["toponas", "--help"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("toponas", run_name="__main__")
    assert done.value.code == 0 and "search" in capsys.readouterr().out


def test_a_strategy_that_is_not_data_parallel_is_refused(tmp_path):
    code, err = _cli([*TINY, "--strategy", "spos", "--batch-size", "16", "--out", str(tmp_path / "r")],
                     {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert code == 1
    assert err.strip().splitlines()[0].startswith("error: spos does not run over several processes")
    assert not (tmp_path / "r").exists()


def test_train_under_torchrun_is_refused(tmp_path):
    cell = "|nor_conv_3x3~0|+|skip_connect~0|nor_conv_3x3~1|+|skip_connect~0|skip_connect~1|nor_conv_3x3~2|"
    code, err = _cli(["train", cell, "--dataset", "digits", "--epochs", "1", "--device", "cpu", "--no-progress",
                      "--out", str(tmp_path / "t")], {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"})
    assert code == 1
    assert err.strip().splitlines() == ["error: toponas train runs in one process (torchrun spreads toponas search "
                                        "only); run it without torchrun"]
