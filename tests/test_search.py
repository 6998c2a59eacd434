"""The search loop on the embedded digits data: outputs, resume equivalence, NaN stop, guards."""

import json

import pytest
import torch

from toponas.config import ConfigError, SearchConfig
from toponas.loop import Search, SearchDiverged, SearchInterrupted, SearchResult
from toponas.loop.checkpoint import load_checkpoint
from toponas.strategies.darts import DartsV1


def tiny(tmp_path, name="run", **changes):
    base = dict(strategy="darts-v1", dataset="digits", subset=96, batch_size=16, channels=4, cells=1,
                seed=3, out=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), device="cpu",
                hyper={"epochs": 2})
    base.update(changes)
    return SearchConfig(**base)


def quiet(_msg):
    pass


def test_search_writes_result_and_config(tmp_path):
    result = Search(tiny(tmp_path), progress=False, log=quiet).run()
    data = json.loads((tmp_path / "run" / "result.json").read_text())
    for key in ("genotype", "space", "strategy", "dataset", "seed", "epochs", "search_seconds",
                "ms_per_step", "peak_memory_bytes", "alphas", "history"):
        assert key in data
    assert data["genotype"] == result.genotype and data["epochs"] == 2
    assert len(data["history"]) == 2 and data["history"][-1]["genotype"] == result.genotype
    assert set(data["alphas"]["cell"]) == {"1<-0", "2<-0", "2<-1", "3<-0", "3<-1", "3<-2"}
    assert set(data["alphas"]["cell"]["1<-0"]) == {"none", "skip_connect", "nor_conv_1x1",
                                                   "nor_conv_3x3", "avg_pool_3x3"}
    assert data["ms_per_step"] > 0 and data["peak_memory_bytes"] > 0
    assert data["steps"] == 2 * 3  # 48 weight images / batch 16, two epochs
    # the saved configuration repeats the run from its directory alone
    saved = SearchConfig.load(tmp_path / "run")
    assert saved == tiny(tmp_path)
    resolved = json.loads((tmp_path / "run" / "config.json").read_text())["resolved_hyper"]
    assert resolved["epochs"] == 2 and resolved["w_lr"] == 0.025
    assert SearchResult.load(tmp_path / "run").genotype == result.genotype


@pytest.mark.parametrize("strategy, stop_after", [("darts-v1", 2), ("gdas", 4)])
def test_resume_reaches_the_same_state_as_an_uninterrupted_run(tmp_path, strategy, stop_after):
    full = Search(tiny(tmp_path, "full", strategy=strategy), progress=False, log=quiet)
    full.run()
    cut = tiny(tmp_path, "cut", strategy=strategy)
    with pytest.raises(SearchInterrupted, match="--resume"):
        Search(cut, progress=False, log=quiet, interrupt_after=stop_after).run()
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == divmod(stop_after, 3)
    resumed = Search(cut, resume=True, progress=False, log=quiet)
    resumed.run()
    assert torch.equal(full.strategy.alphas["cell"], resumed.strategy.alphas["cell"])
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    hist_full = json.loads((tmp_path / "full" / "result.json").read_text())["history"]
    hist_cut = json.loads((tmp_path / "cut" / "result.json").read_text())["history"]
    for a, b in zip(hist_full, hist_cut):
        assert a["w_loss"] == pytest.approx(b["w_loss"]) and a["genotype"] == b["genotype"]


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = DartsV1.weight_step

    def poisoned(self, ctx, x, y):
        if ctx.epoch == 1:
            with torch.no_grad():
                next(iter(ctx.model.parameters())).fill_(float("nan"))
        return original(self, ctx, x, y)

    monkeypatch.setattr(DartsV1, "weight_step", poisoned)
    with pytest.raises(SearchDiverged, match="last good checkpoint"):
        Search(tiny(tmp_path), progress=False, log=quiet).run()
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (1, 0)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "result.json").exists()


def test_existing_run_is_not_overwritten_and_resume_checks_the_config(tmp_path):
    Search(tiny(tmp_path, hyper={"epochs": 1}), progress=False, log=quiet).run()
    with pytest.raises(ConfigError, match="already holds a run"):
        Search(tiny(tmp_path, hyper={"epochs": 1}), progress=False, log=quiet).run()
    with pytest.raises(ConfigError, match="different configuration: channels"):
        Search(tiny(tmp_path, channels=8, hyper={"epochs": 1}), resume=True, progress=False, log=quiet).run()


def test_bad_options_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown strategy 'darts-v9'"):
        Search(tiny(tmp_path, strategy="darts-v9"), progress=False, log=quiet).run()
    with pytest.raises(ConfigError, match="unknown hyperparameter"):
        Search(tiny(tmp_path, hyper={"epochz": 1}), progress=False, log=quiet).run()
    with pytest.raises(ConfigError, match="subset must be at least 2"):
        tiny(tmp_path, subset=1)
    with pytest.raises(ConfigError, match="unknown config key"):
        SearchConfig.from_dict({"stratgy": "gdas"})


def test_python_api_routes_hyperparameters(tmp_path):
    import toponas

    result = toponas.search(dataset="digits", subset=64, batch_size=16, channels=4, cells=1, epochs=1,
                            out=str(tmp_path / "api"), cache_dir=str(tmp_path / "cache"), device="cpu",
                            log=quiet)
    assert result.epochs == 1 and result.steps == 2


def test_ctrl_c_saves_and_resume_finishes(tmp_path):
    """A real SIGINT to ``toponas search``: exit 130, state saved, ``--resume`` completes the run."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "toponas.cli", "search", "--dataset", "digits", "--subset", "96", "--batch-size",
           "16", "--channels", "4", "--cells", "1", "--epochs", "8", "--out", str(out), "--cache-dir",
           str(tmp_path / "c"), "--device", "cpu", "--no-progress"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 300
    while not (out / "checkpoint.pt").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.2)  # the first epoch's checkpoint: the run is under way
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 130, output
    assert "--resume" in output and "Traceback" not in output
    state = load_checkpoint(out / "checkpoint.pt")
    assert 1 <= state["epoch"] < 8 and not (out / "result.json").exists()
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads((out / "result.json").read_text())["epochs"] == 8
