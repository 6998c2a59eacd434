"""Faults as a user meets them, through the command line in a subprocess (``python -m toponas.cli``).

Every case asserts the exit status, one ``error:`` line on stderr (click's ``Error:`` for usage errors),
no traceback, and that the finished run it may touch is unchanged byte for byte. The cases run
concurrently (each is its own process, forked from a server that imported torch once: `cli_server.py`); the
signal cases and the full disk follow them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from cli_server import CliServer

from toponas.config import SearchConfig
from toponas.loop import Search

ROOT = Path(__file__).resolve().parents[1]
CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
TINY = ["--dataset", "digits", "--subset", "32", "--batch-size", "16", "--channels", "2", "--cells", "1",
        "--image-size", "8", "--device", "cpu", "--no-progress"]
TRAIN_TINY = ["--subset", "32", "--epochs", "1", "--batch-size", "16", "--channels", "2", "--cells", "1",
              "--device", "cpu", "--no-progress"]


ENV = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
_SERVER: list[CliServer] = []
_SERVER_LOCK = threading.Lock()


@pytest.fixture(scope="module", autouse=True)
def _cli_server():
    yield
    while _SERVER:
        _SERVER.pop().close()


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``python -m toponas.cli ARGS`` as its own process (forked from a server that imported torch once)."""
    with _SERVER_LOCK:
        if not _SERVER:
            _SERVER.append(CliServer(ENV))
    return _SERVER[0].run(*args, timeout=timeout)


def digest(path: Path) -> dict[str, str]:
    """Content hashes of every file under ``path`` (what "nothing was damaged" compares)."""
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file()}


class Evil:
    """A crafted pickle: loading it with plain pickle runs a shell command (creates a marker file)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A finished one-epoch search (one step) made through the Python API."""
    out = tmp_path_factory.mktemp("finished") / "run"
    cfg = SearchConfig(dataset="digits", subset=32, batch_size=16, channels=2, cells=1, image_size=8, device="cpu",
                       out=str(out), hyper={"epochs": 1})
    Search(cfg, progress=False, log=lambda m: None).run()
    return out


@dataclass
class Case:
    """One fault: ``args(tmp, run)`` builds the command line (and the files it needs) in its own folder."""

    name: str
    args: Callable[[Path, Path], list[str]]
    code: int = 1
    fragment: str = ""
    check: Callable[[Path], None] | None = None
    touches_run: bool = False  # runs on a copy of the finished run, compared before and after
    result: dict = field(default_factory=dict)


def copy_run(tmp: Path, run: Path) -> Path:
    dst = tmp / "run"
    if not dst.exists():
        shutil.copytree(run, dst)
    return dst


def write(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


def crafted_checkpoint(tmp: Path, where: Path) -> Path:
    torch.save({"config": Evil(tmp / "PWNED"), "epoch": 0}, where)
    return where


def space_file(tmp: Path, chain: str) -> str:
    return write(tmp / "space.json", json.dumps({"name": "mine", "candidates": ["none", "skip_connect",
                                                                               {"name": "c", "chain": [chain]}]}))


def resumed(tmp: Path, run: Path, *extra: str) -> list[str]:
    return ["search", *TINY, "--epochs", "1", "--out", str(copy_run(tmp, run)), "--resume", *extra]


def no_marker(tmp: Path) -> None:
    assert not (tmp / "PWNED").exists(), "the crafted pickle ran its command"


CASES = [
    # -- output paths, checked before any work --------------------------------------------------
    Case("out-is-a-file", lambda t, r: ["search", *TINY, "--out", write(t / "f", "x")], 1, "is a file"),
    Case("out-under-a-file", lambda t, r: ["search", *TINY, "--out", write(t / "f", "x") + "/run"], 1,
         "is a file"),
    Case("train-out-is-a-file", lambda t, r: ["train", CELL, *TRAIN_TINY, "--dataset", "digits", "--out",
                                              write(t / "f", "x")], 1, "is a file"),
    Case("report-out-under-a-file", lambda t, r: ["report", str(r), "--out", write(t / "f", "x") + "/rep"], 1,
         "is a file"),
    Case("profile-json-under-a-file", lambda t, r: ["profile", "--steps", "1", "--json",
                                                    write(t / "f", "x") + "/p.json"], 1, "--json"),
    Case("export-out-under-a-file", lambda t, r: ["export", CELL, "--out", write(t / "f", "x") + "/m.pt"], 1,
         "is a file"),
    Case("sweep-out-is-a-file", lambda t, r: ["sweep", "--out", write(t / "f", "x"), "--strategies", "gdas"], 1,
         "is a file"),
    Case("existing-run-without-resume", lambda t, r: ["search", *TINY, "--epochs", "1", "--out",
                                                      str(copy_run(t, r))], 1, "already holds a run",
         touches_run=True),
    # -- checkpoints from elsewhere ----------------------------------------------------------------
    Case("crafted-pickle-search-resume",
         lambda t, r: (crafted_checkpoint(t, copy_run(t, r) / "checkpoint.pt"), resumed(t, r))[1], 1, "refused",
         check=no_marker),
    Case("crafted-pickle-train-resume",
         lambda t, r: (crafted_checkpoint(t, (t / "tr").mkdir() or t / "tr" / "checkpoint.pt"),
                       ["train", CELL, *TRAIN_TINY, "--dataset", "digits", "--out", str(t / "tr"), "--resume"])[1],
         1, "refused", check=no_marker),
    Case("crafted-pickle-export", lambda t, r: ["export", str(crafted_checkpoint(t, t / "model.pt")), "--out",
                                                str(t / "m.pt")], 1, "refused", check=no_marker),
    Case("truncated-checkpoint",
         lambda t, r: (Path(copy_run(t, r) / "checkpoint.pt").write_bytes(
             (r / "checkpoint.pt").read_bytes()[:500]), resumed(t, r))[1], 1, "cannot be read"),
    Case("empty-checkpoint", lambda t, r: ((copy_run(t, r) / "checkpoint.pt").write_bytes(b""), resumed(t, r))[1],
         1, "cannot be read"),
    Case("foreign-checkpoint", lambda t, r: (torch.save({"weights": torch.zeros(2)}, copy_run(t, r) / "checkpoint.pt"),
                                             resumed(t, r))[1], 1, "not a checkpoint"),
    Case("train-checkpoint-in-search-run",
         lambda t, r: (torch.save({"config": {}, "epoch": 0, "step": 0, "model": {}, "history": [],
                                   "network": {}, "optimizer": {}}, copy_run(t, r) / "checkpoint.pt"),
                       resumed(t, r))[1], 1, "not a checkpoint of `toponas search`"),
    Case("resume-other-config", lambda t, r: resumed(t, r, "--channels", "3"), 1, "channels: saved 2",
         touches_run=True),
    Case("resume-fewer-epochs",
         lambda t, r: ["search", *TINY, "--hp", "epochs=1", "--out", str(copy_run(t, r)), "--resume"], 0,
         touches_run=True),
    # -- config files ----------------------------------------------------------------------------
    Case("config-is-a-list", lambda t, r: ["search", "--config", write(t / "c.json", "[1, 2]")], 1,
         "JSON object"),
    Case("config-wrong-type", lambda t, r: ["search", "--config", write(t / "c.json", '{"channels": "many"}')], 1,
         "channels must be of type int"),
    Case("config-not-json", lambda t, r: ["search", "--config", write(t / "c.json", "{nope")], 1,
         "not valid JSON"),
    Case("config-unknown-key", lambda t, r: ["search", "--config", write(t / "c.json", '{"stratgy": "gdas"}')], 1,
         "unknown config key"),
    Case("config-missing", lambda t, r: ["search", "--config", str(t / "none.json")], 1, "not found"),
    Case("config-epochs-zero", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--config",
                                             write(t / "c.json", '{"hyper": {"epochs": 0}}')], 1,
         "epochs must be a positive integer"),
    Case("config-huge-seed", lambda t, r: ["search", "--config", write(t / "c.json", '{"seed": 1e30}')], 1,
         "seed"),
    Case("config-unknown-strategy", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--config",
                                                  write(t / "c.json", '{"strategy": "darts-v9"}')], 1,
         "unknown strategy"),
    # -- hyperparameters, every route the same checks ---------------------------------------------
    Case("hp-epochs-zero", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--hp", "epochs=0"], 1,
         "epochs must be a positive integer"),
    Case("hp-epochs-negative", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--hp", "epochs=-3"], 1,
         "epochs must be a positive integer"),
    Case("hp-negative-lr", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--hp", "w_lr=-0.1"], 1,
         "w_lr must not be negative"),
    Case("hp-negative-wd", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--hp", "a_wd=-1"], 1,
         "a_wd must not be negative"),
    Case("hp-nan", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--hp", "w_lr=nan"], 1, "finite"),
    Case("hp-unknown", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--hp", "w_lrr=1"], 1,
         "unknown hyperparameter"),
    Case("hp-not-a-pair", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--hp", "w_lr"], 1,
         "KEY=VALUE"),
    Case("hp-wrong-type", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--hp", "epochs=many"], 1,
         "not a valid int"),
    Case("hp-unknown-a-lr-schedule", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--hp",
                                                   "a_lr_schedule=linear"], 1,
         "a_lr_schedule: 'linear' is not one of constant, cosine"),
    Case("config-unknown-a-lr-schedule", lambda t, r: ["search", *TINY, "--out", str(t / "o"), "--config",
                                                       write(t / "c.json", '{"hyper": {"a_lr_schedule": "step"}}')],
         1, "a_lr_schedule: 'step' is not one of constant, cosine"),
    # -- spaces, images, devices, data ---------------------------------------------------------------
    Case("space-dilation-zero", lambda t, r: ["search", *TINY, "--out", str(t / "o"),
                                              "--space", space_file(t, "conv3x3_d0")], 1, "dilation"),
    Case("space-file-missing", lambda t, r: ["search", *TINY, "--space", str(t / "nope.json")], 1, "not found"),
    Case("space-file-not-json", lambda t, r: ["search", *TINY, "--space", write(t / "s.json", "{")], 1,
         "not valid JSON"),
    Case("image-size-not-divisible", lambda t, r: ["search", *TINY[:-5], "--image-size", "10", "--device", "cpu",
                                                   "--out", str(t / "o")], 1, "multiple of 4"),
    Case("device-cuda-missing", lambda t, r: ["search", *TINY[:-3], "--device", "cuda", "--out", str(t / "o")], 1,
         "CUDA is not available"),
    Case("device-bogus", lambda t, r: ["search", *TINY[:-3], "--device", "tpu9", "--out", str(t / "o")], 1,
         "device"),
    Case("data-missing", lambda t, r: ["search", "--dataset", "cifar10", "--data", str(t / "nope"), "--out",
                                       str(t / "o")], 1, "does not exist"),
    Case("digits-with-data", lambda t, r: ["search", "--dataset", "digits", "--data", str(t), "--out",
                                           str(t / "o")], 1, "digits is built in"),
    Case("long-genotype-argument", lambda t, r: ["train", "x" * 400, "--out", str(t / "o")], 1, "not a cell"),
    Case("train-run-with-broken-result", lambda t, r: ["train", write(t / "s" / "result.json", "[1]"), "--out",
                                                       str(t / "o")], 1, "expected a JSON object"),
    Case("export-missing-run", lambda t, r: ["export", str(t / "nope.pt"), "--out", str(t / "m.pt")], 1,
         "no such file"),
    Case("report-empty-dir", lambda t, r: ["report", str((t / "e").mkdir() or t / "e")], 1, ""),
    # -- look-ups ----------------------------------------------------------------------------------
    Case("lookup-bad-cell", lambda t, r: ["lookup", "|bogus~0|", "--benchmark",
                                          write(t / "b.csv", f"arch,cifar10\n{CELL},94.0\n")], 1, ""),
    Case("lookup-table-missing", lambda t, r: ["lookup", CELL, "--benchmark", str(t / "none.csv")], 1, ""),
    Case("lookup-table-malformed", lambda t, r: ["lookup", CELL, "--benchmark", write(t / "b.csv", "a,b\n1\n")], 1,
         ""),
    # -- sweeps --------------------------------------------------------------------------------------
    Case("sweep-bad-seeds", lambda t, r: ["sweep", "--out", str(t / "s"), "--seeds", "a,b"], 1, "--seeds"),
    Case("sweep-bad-set", lambda t, r: ["sweep", "--out", str(t / "s"), "--strategies", "gdas", "--set", "nope=1",
                                        "--dataset", "digits"], 1, "not a search option"),
    Case("sweep-all-runs-fail", lambda t, r: ["sweep", "--out", str(t / "s"), "--strategies", "gdas", "--seeds",
                                              "0", "--topo", "full", "--budget", "none", "--dataset", "digits",
                                              "--set", "device=nosuch"], 1, "unknown device"),
    # -- many seeds in one pass (--seeds) --------------------------------------------------------------
    Case("seeds-with-seed", lambda t, r: ["search", *TINY, "--seeds", "0,1", "--seed", "2", "--out", str(t / "o")], 1,
         "--seeds and --seed do not go together"),
    Case("seeds-repeated", lambda t, r: ["search", *TINY, "--seeds", "0,1,0", "--out", str(t / "o")], 1,
         "repeats seed(s) 0"),
    Case("seeds-not-numbers", lambda t, r: ["search", *TINY, "--seeds", "0,x", "--out", str(t / "o")], 1,
         "comma-separated whole numbers"),
    Case("seeds-unbatched-strategy", lambda t, r: ["search", *TINY, "--strategy", "gdas", "--seeds", "0,1", "--out",
                                                   str(t / "o")], 1,
         "--seeds batches beta-darts, darts-v1, darts-v2, drnas, snas"),
    Case("seeds-progressive-drnas", lambda t, r: ["search", *TINY, "--strategy", "drnas", "--hp", "progressive=true",
                                                  "--seeds", "0,1", "--out", str(t / "o")], 1,
         "progressive DrNAS changes its supernet"),
    Case("seeds-unverified-space", lambda t, r: ["search", *TINY[:8], "--space", "mobile", "--image-size", "32",
                                                 *TINY[-3:], "--seeds", "0,1", "--out", str(t / "o")], 1,
         "--seeds batches the nb201, darts spaces exactly, not mobile"),
    Case("seeds-resume-other-seeds",
         lambda t, r: (write(t / "o" / "config.json", json.dumps(SearchConfig(seeds=[0, 1]).to_dict())),
                       ["search", *TINY, "--epochs", "1", "--seeds", "0,2", "--out", str(t / "o"), "--resume"])[1],
         1, "cannot resume with different seeds: saved [0, 1], given [0, 2]"),
    Case("seeds-resume-a-seed-without-checkpoint",
         lambda t, r: (shutil.copytree(r, t / "o" / "seed-0"),
                       ["search", *TINY, "--epochs", "1", "--seeds", "0,1", "--out", str(t / "o"), "--resume"])[1],
         1, "seed(s) 1 of"),
    # -- usage errors (exit 2, click's message) ---------------------------------------------------------
    Case("unknown-command", lambda t, r: ["serch"], 2, "No such command"),
    Case("unknown-option", lambda t, r: ["search", "--epoch", "1"], 2, "No such option"),
    Case("missing-argument", lambda t, r: ["train"], 2, "Missing argument"),
    Case("huge-seed-flag", lambda t, r: ["search", "--seed", str(2**70)], 2, "--seed"),
    Case("bad-choice", lambda t, r: ["search", "--topo", "half"], 2, "--topo"),
    Case("profile-spaces-without-scaling", lambda t, r: ["profile", "--spaces", "nb201"], 2, "--scaling"),
    Case("diverged", lambda t, r: ["search", *TINY[:2], "--subset", "64", *TINY[4:], "--epochs", "2", "--hp",
                                   "w_lr=1e30", "--hp", "grad_clip=0", "--out", str(t / "o")], 3,
         "no checkpoint was written yet"),
]
if importlib.util.find_spec("tensorboard") is None:
    CASES.append(Case("tensorboard-missing", lambda t, r: ["search", *TINY, "--epochs", "1", "--out", str(t / "o"),
                                                          "--tensorboard"], 1, "pip install"))


@pytest.fixture(scope="module")
def outcomes(finished, tmp_path_factory) -> dict[str, tuple[Case, Path, subprocess.CompletedProcess, dict, dict]]:
    """Run every case (four at a time); remember the finished run's copy before and after."""
    prepared = []
    for case in CASES:
        tmp = tmp_path_factory.mktemp(case.name)
        args = case.args(tmp, finished)
        run = tmp / "run"
        prepared.append((case, tmp, args, digest(run) if run.exists() else {}))

    def one(item):
        case, tmp, args, before = item
        proc = cli(*args)
        return case.name, (case, tmp, proc, before, digest(tmp / "run") if (tmp / "run").exists() else {})

    with ThreadPoolExecutor(max_workers=4) as pool:
        return dict(pool.map(one, prepared))


def assert_one_error_line(proc: subprocess.CompletedProcess, code: int, fragment: str) -> None:
    text = proc.stdout + proc.stderr
    assert proc.returncode == code, text
    assert "Traceback" not in text, text
    if code == 2:  # click's usage message ("Error: ...") or our own usage error line
        assert ("Error:" in proc.stderr or proc.stderr.startswith("error:")) and fragment in proc.stderr, proc.stderr
        return
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    if code == 0:
        assert not errors, proc.stderr
        return
    assert len(errors) == 1, proc.stderr
    assert fragment in errors[0], errors[0]


def test_at_least_forty_kinds_of_fault():
    assert len({c.name for c in CASES}) == len(CASES) >= 50


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_fault(outcomes, name):
    case, tmp, proc, before, after = outcomes[name]
    assert_one_error_line(proc, case.code, case.fragment)
    if case.touches_run:
        assert after == before, "the earlier run was changed"
    if case.check is not None:
        case.check(tmp)


def test_the_readme_exit_code_table_is_the_cli_s():
    from toponas.cli.errors import EXIT_CODES

    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("| exit code | meaning |"):].split("\n\n")[0]
    codes = {int(line.split("|")[1]) for line in table.splitlines()[2:]}
    assert codes == set(EXIT_CODES)


def test_a_failed_verify_exits_4(monkeypatch):
    from click.testing import CliRunner

    from toponas import topo
    from toponas.cli import main

    class Broken:
        ok = False

        def __str__(self) -> str:
            return "a promise table"

    monkeypatch.setattr(topo, "verify", lambda *a, **k: Broken())
    r = CliRunner().invoke(main, ["verify", "--trials", "1"])
    assert r.exit_code == 4 and "broke a promise" in r.output


def test_crafted_pickle_would_run_code_without_the_guard(tmp_path):
    """The crafted file really is a weapon: plain unpickling runs its command (so the refusals above mean it)."""
    path = crafted_checkpoint(tmp_path, tmp_path / "checkpoint.pt")
    torch.load(path, weights_only=False)
    assert (tmp_path / "PWNED").exists()


def test_a_no_op_resume_changes_no_file_and_a_larger_epochs_extends(finished, tmp_path):
    run = copy_run(tmp_path, finished)
    before = digest(run)
    proc = cli(*resumed(tmp_path, finished))
    assert proc.returncode == 0 and "nothing to do" in proc.stdout, proc.stdout + proc.stderr
    assert digest(run) == before
    proc = cli("search", *TINY, "--epochs", "2", "--out", str(run), "--resume")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads((run / "result.json").read_text(), parse_constant=pytest.fail)
    assert result["epochs"] == 2 and len(result["history"]) == 2 and result["extended_from_epochs"] == 1
    assert result["provenance"]["torch"] == torch.__version__ and result["provenance"]["command"][1] == "search"
    assert (run / "metrics.csv").read_text().count("\n") == 3  # header and two epochs
    assert "hyper  epochs=1" in (run / "log.txt").read_text()  # the header of the first run


def test_files_follow_the_umask(finished):
    mask = os.umask(0)
    os.umask(mask)
    for name in ("checkpoint.pt", "result.json", "config.json"):
        assert (finished / name).stat().st_mode & 0o777 == 0o666 & ~mask


# -- signals ------------------------------------------------------------------------------------------
LONG = ["search", *TINY[:2], "--subset", "64", *TINY[4:]]  # two steps an epoch


def start(out: Path, epochs: int = 40) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "toponas.cli", *LONG, "--epochs", str(epochs), "--out", str(out)],
                            env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(proc: subprocess.Popen, out: Path) -> None:
    deadline = time.time() + 240
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.1)
    assert proc.poll() is None, proc.communicate()


@pytest.mark.parametrize("signals,code", [((signal.SIGTERM,), 143), ((signal.SIGINT, signal.SIGINT), 130)],
                         ids=["sigterm", "sigint-twice"])
def test_signals_save_and_exit(tmp_path, signals, code):
    out = tmp_path / "run"
    proc = start(out)
    wait_for_checkpoint(proc, out)
    for sig in signals:
        proc.send_signal(sig)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == code, stdout + stderr
    assert "Traceback" not in stdout + stderr and "Aborted" not in stdout + stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--resume" in errors[0], stderr
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["epoch"] >= 1 and not (out / "result.json").exists()


def test_sigkill_then_resume_is_bit_identical(tmp_path):
    out = tmp_path / "killed"
    proc = start(out, epochs=6)
    wait_for_checkpoint(proc, out)
    proc.kill()
    proc.communicate(timeout=60)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert 1 <= state["epoch"] < 6, "the run ended before the kill"
    resumed_run = cli(*LONG, "--epochs", "6", "--out", str(out), "--resume")
    fresh = cli(*LONG, "--epochs", "6", "--out", str(tmp_path / "fresh"))
    assert resumed_run.returncode == 0 and fresh.returncode == 0, resumed_run.stderr + fresh.stderr
    a = json.loads((out / "result.json").read_text())
    b = json.loads((tmp_path / "fresh" / "result.json").read_text())
    assert a["alphas"] == b["alphas"] and a["genotype"] == b["genotype"]
    assert [h["w_loss"] for h in a["history"]] == [h["w_loss"] for h in b["history"]]


# -- full and read-only disks (a small tmpfs the test mounts; skipped where it cannot) -------------------
@pytest.fixture
def small_fs(tmp_path):
    """Mount a 1 MiB tmpfs (needs root and CAP_SYS_ADMIN); yields its mount point."""
    point = tmp_path / "fs"
    point.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small file system needs root (full-disk case not run)")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(point)], capture_output=True,
                          text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({made.stderr.strip()}); full-disk case not run")
    try:
        yield point
    finally:
        subprocess.run(["umount", "-l", str(point)], capture_output=True)


def test_a_full_disk_says_so_and_keeps_the_old_checkpoint(small_fs, finished):
    run = small_fs / "run"
    shutil.copytree(finished, run)
    before = digest(run)
    filler = small_fs / "filler"
    with open(filler, "wb", buffering=0) as f:  # fill the file system to the last block
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    proc = cli("search", *TINY, "--epochs", "2", "--out", str(run), "--resume")
    assert_one_error_line(proc, 1, "disk is full")
    assert str(run) in proc.stderr
    after = digest(run)
    for name in ("checkpoint.pt", "result.json", "config.json"):  # the old checkpoint and result survive
        assert after[name] == before[name], name
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]  # no half-written file left


def test_a_read_only_file_system_is_named_before_any_work(small_fs):
    subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True, capture_output=True)
    proc = cli("search", *TINY, "--epochs", "1", "--out", str(small_fs / "run"))
    assert_one_error_line(proc, 1, str(small_fs))
    proc = cli("profile", "--steps", "1", "--json", str(small_fs / "p.json"))
    assert_one_error_line(proc, 1, "--json")


# -- runs that must not be lost or misreported -------------------------------------------------------------
SWEEP_SAME = ["--strategies", "darts-v1", "--topo", "full", "--seeds", "0", "--budget", "none", "--dataset", "digits",
              "--set", "subset=32", "--set", "batch-size=16", "--set", "channels=2", "--set", "cells=1",
              "--set", "image-size=8", "--set", "device=cpu", "--jobs", "1"]


def test_a_sweep_run_of_other_settings_is_refused_not_reused(finished, tmp_path):
    sweep = tmp_path / "sweep"
    shutil.copytree(finished, sweep / "darts-v1-topo_full-seed0")
    before = digest(sweep)
    other = cli("sweep", "--out", str(sweep), *SWEEP_SAME, "--set", "epochs=2")
    assert_one_error_line(other, 1, "epochs=1 (now 2)")
    assert digest(sweep) == before
    same = cli("sweep", "--out", str(sweep), *SWEEP_SAME, "--set", "epochs=1")
    assert same.returncode == 0 and "1 already finished, 0 to run" in same.stdout, same.stdout + same.stderr


def test_search_help_lists_each_strategy_s_hyperparameters():
    from click.testing import CliRunner

    from toponas.cli import main

    text = CliRunner().invoke(main, ["search", "--help"]).output
    assert "gdas: epochs=250," in text and "tau_max=10.0" in text and "parsec:" in text and "samples=8" in text


def test_train_takes_a_search_run_s_dataset_and_a_custom_space_is_exported(tmp_path):
    space = write(tmp_path / "mine.json", json.dumps({"name": "mine", "candidates": ["none", "skip_connect",
                                                                                    "nor_conv_1x1"]}))
    run = tmp_path / "run"
    made = cli("search", *TINY, "--epochs", "1", "--space", space, "--out", str(run))
    assert made.returncode == 0, made.stderr
    assert json.loads((run / "result.json").read_text())["space_file"]["declaration"]["name"] == "mine"
    Path(space).unlink()  # the declaration recorded in result.json rebuilds the space
    exported = cli("export", str(run), "--out", str(tmp_path / "m.pt"), "--channels", "2", "--cells", "1")
    assert exported.returncode == 0, exported.stderr
    trained = cli("train", str(run), *TRAIN_TINY, "--out", str(tmp_path / "t"))
    assert trained.returncode == 0, trained.stderr
    assert json.loads((tmp_path / "t" / "train.json").read_text())["dataset"] == "digits"


def test_the_python_api_validates_like_the_command_line(tmp_path):
    import toponas
    from toponas.config import ConfigError

    for bad in ({"epochs": 0}, {"epochs": -2}, {"w_lr": -1.0}, {"a_wd": float("inf")}):
        with pytest.raises(ConfigError):
            toponas.search(dataset="digits", out=str(tmp_path / "x"), device="cpu", log=lambda m: None, **bad)
    assert not (tmp_path / "x").exists()


def test_json_files_are_strict(tmp_path):
    from toponas.runtime import write_json

    write_json(tmp_path / "r.json", {"ms_per_step": float("nan"), "rows": [float("inf"), 1.5]})
    data = json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    assert data == {"ms_per_step": None, "rows": [None, 1.5]}


def test_a_benchmark_table_of_other_data_is_refused(tmp_path):
    table = write(tmp_path / "b.csv", f"arch,cifar10\n{CELL},94.0\n")
    proc = cli("search", *TINY, "--epochs", "1", "--benchmark", table, "--out", str(tmp_path / "o"))
    assert_one_error_line(proc, 1, "has no digits column")


def test_a_long_darts_genotype_is_a_cell_not_a_file_name():
    from toponas.spaces import create_space
    from toponas.strategies import create_strategy
    from toponas.training.arch import resolve_arch

    genotype = str(create_strategy("darts-v1", create_space("darts")).derive())
    assert len(genotype) > 255  # longer than a file name may be (ENAMETOOLONG before)
    source = resolve_arch(genotype, "darts")
    assert source.kind == "string" and source.space == "darts"


def test_the_progress_bar_only_on_a_terminal(monkeypatch):
    from toponas.cli.common import show_progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    assert not show_progress(False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert show_progress(False) and not show_progress(True)
