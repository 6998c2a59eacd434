"""Retraining on the embedded digits data: outputs, resume equivalence, NaN stop, protocol, ARCH, CLI."""

import json
import math

import click
import pytest
import torch
from click.testing import CliRunner

from toponas.cli.report import report
from toponas.cli.train import export, train
from toponas.config import ConfigError
from toponas.loop.checkpoint import load_checkpoint, write_json
from toponas.spaces.cell import CellError
from toponas.training import (
    PRESETS,
    PROTOCOLS,
    SOURCES,
    TrainConfig,
    TrainDiverged,
    Trainer,
    TrainInterrupted,
    build_network,
    count_mult_adds,
    count_parameters,
    load_trained,
    resolve_arch,
)
from toponas.training.batches import cutout, training_indices
from toponas.training.loop import scheduled_lr

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
CELL = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"


def tiny(tmp_path, name="run", **changes):
    base = dict(dataset="digits", subset=96, batch_size=16, channels=4, cells=1, epochs=2, seed=3,
                out=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), device="cpu")
    base.update(changes)
    return TrainConfig.resolve(CELL, "nb201", **base)


def quiet(_msg):
    pass


def cli():
    return click.Group(commands=[train, export, report])


def test_training_writes_train_json_model_and_log(tmp_path):
    trainer = Trainer(tiny(tmp_path), progress=False, log=quiet)
    result = trainer.run()
    data = json.loads((tmp_path / "run" / "train.json").read_text())
    for key in ("arch", "space", "dataset", "epochs", "history", "test_accuracy", "parameters", "mult_adds",
                "seconds", "config", "network"):
        assert key in data
    assert data == json.loads(json.dumps(result))
    assert data["arch"] == CELL and data["epochs"] == 2 and data["train_images"] == 96
    assert [h["epoch"] for h in data["history"]] == [1, 2]
    for h in data["history"]:
        assert {"lr", "loss", "train_acc", "test_acc", "test_loss", "seconds"} <= set(h)
    assert 0.0 <= data["test_accuracy"] <= 1.0 and data["test_accuracy"] == data["history"][-1]["test_acc"]
    assert data["parameters"] == count_parameters(trainer.model) > 0 and data["mult_adds"] > 0
    assert data["config"]["lr"] == 0.1 and data["config"]["nesterov"] is True
    # the saved weights rebuild the trained network
    model, meta = load_trained(tmp_path / "run" / "model.pt")
    x = torch.randn(3, 3, 16, 16)
    trainer.model.eval()
    assert torch.equal(model(x), trainer.model(x)) and meta["arch"] == CELL and meta["image_size"] == 16
    log = (tmp_path / "run" / "log.txt").read_text()
    assert "epoch 1/2" in log and "epoch 2/2" in log and "test-acc" in log


@pytest.mark.parametrize("stop_after", [2, 6, 8])  # mid-epoch, at the epoch boundary, in the second epoch
def test_resume_ends_bitwise_equal_to_an_uninterrupted_run(tmp_path, stop_after):
    full = Trainer(tiny(tmp_path, "full"), progress=False, log=quiet)
    full.run()
    cut = tiny(tmp_path, "cut")
    with pytest.raises(TrainInterrupted, match="--resume"):
        Trainer(cut, progress=False, log=quiet, interrupt_after=stop_after).run()
    state = load_checkpoint(tmp_path / "cut" / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == divmod(stop_after, 6)  # 96 images / batch 16
    resumed = Trainer(cut, resume=True, progress=False, log=quiet)
    resumed.run()
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    for x, y in zip(full.optimizer.state_dict()["state"].values(), resumed.optimizer.state_dict()["state"].values()):
        assert torch.equal(x["momentum_buffer"], y["momentum_buffer"])
    hist_full = json.loads((tmp_path / "full" / "train.json").read_text())["history"]
    hist_cut = json.loads((tmp_path / "cut" / "train.json").read_text())["history"]
    for x, y in zip(hist_full, hist_cut):
        assert (x["loss"], x["train_acc"], x["test_acc"]) == (y["loss"], y["train_acc"], y["test_acc"])


def test_a_finished_or_started_run_is_not_overwritten_and_resume_checks_the_config(tmp_path):
    with pytest.raises(TrainInterrupted):
        Trainer(tiny(tmp_path), progress=False, log=quiet, interrupt_after=1).run()
    with pytest.raises(ConfigError, match="already holds a run"):
        Trainer(tiny(tmp_path), progress=False, log=quiet).run()
    with pytest.raises(ConfigError, match="lr: saved 0.1, given 0.05"):
        Trainer(tiny(tmp_path, lr=0.05), resume=True, progress=False, log=quiet).run()


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    original = Trainer._train_step

    def poisoned(self, x, y, lr):
        if len(self.history) == 1:
            x = x * float("nan")
        return original(self, x, y, lr)

    monkeypatch.setattr(Trainer, "_train_step", poisoned)
    with pytest.raises(TrainDiverged, match="last good"):
        Trainer(tiny(tmp_path), progress=False, log=quiet).run()
    state = load_checkpoint(tmp_path / "run" / "checkpoint.pt")
    assert (state["epoch"], state["step"]) == (1, 0)


def test_protocol_defaults_presets_and_explicit_values():
    cfg = TrainConfig.resolve(BEST, "nb201")
    nb201 = PROTOCOLS["nb201"]
    for key, value in nb201.items():
        assert getattr(cfg, key) == value, key
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.weight_decay, cfg.nesterov) == (200, 256, 0.1, 5e-4, True)
    assert (cfg.channels, cfg.cells, cfg.lr_min) == (16, 5, 0.0)
    assert set(SOURCES["nb201"]) == set(nb201) and set(SOURCES["darts"]) == set(PROTOCOLS["darts"])
    quick = TrainConfig.resolve(BEST, "nb201", preset="cpu", epochs=3)
    assert quick.subset == PRESETS["cpu"]["subset"] and quick.channels == PRESETS["cpu"]["channels"]
    assert quick.epochs == 3 and quick.lr == 0.1 and quick.preset == "cpu"
    with pytest.raises(ConfigError, match="unknown preset"):
        TrainConfig.resolve(BEST, "nb201", preset="gpu")
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_dict({"arch": BEST, "learning_rate": 1})


def test_cosine_schedule_per_step_and_per_epoch():
    cfg = TrainConfig.resolve(BEST, "nb201", epochs=4)
    assert scheduled_lr(cfg, 0, 0, 10) == 0.1
    assert scheduled_lr(cfg, 2, 0, 10) == pytest.approx(0.05)
    assert scheduled_lr(cfg, 1, 5, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * 1.5 / 4)))
    per_epoch = cfg.replace(schedule="cosine-epoch")
    assert scheduled_lr(per_epoch, 1, 5, 10) == scheduled_lr(per_epoch, 1, 0, 10)


def test_parameters_and_mult_adds_match_nas_bench_201():
    # NAS-Bench-201 lists the best CIFAR-10 cell at 1.073 M parameters and 153.27 M FLOPs (multiply-adds).
    model = build_network("nb201", BEST, 16, 5, 10)
    assert count_parameters(model) == 1_073_466
    assert count_mult_adds(model, (3, 32, 32)) == 153_272_960


def test_training_subset_is_stratified_and_caps_at_the_training_set():
    from toponas.data import load_dataset

    ds = load_dataset("digits")
    idx = training_indices(ds, 200, seed=0)
    assert len(idx) == 200 and len(set(idx.tolist())) == 200
    counts = torch.bincount(ds.train_y[idx], minlength=10)
    assert int(counts.max() - counts.min()) <= 2
    assert torch.equal(training_indices(ds, 10**6, 0), torch.arange(len(ds.train_y)))


def test_cutout_zeroes_one_square_per_image():
    x = torch.ones(4, 3, 16, 16)
    out = cutout(x, 4, torch.Generator().manual_seed(0))
    zeros = (out[:, 0] == 0).sum(dim=(1, 2))
    assert bool((zeros > 0).all()) and bool((zeros <= 16).all())
    assert torch.equal(out[:, 0] == 0, out[:, 2] == 0)


def test_resolve_arch_from_strings_results_and_runs(tmp_path):
    src = resolve_arch(" " + BEST.replace("|+|", "| + |") + " ")
    assert (src.space, src.genotype, src.kind) == ("nb201", BEST, "string")
    write_json(tmp_path / "s" / "result.json", {"genotype": CELL, "space": "nb201"})
    for arg in (tmp_path / "s", tmp_path / "s" / "result.json"):
        src = resolve_arch(str(arg))
        assert (src.genotype, src.kind) == (CELL, "search")
    with pytest.raises(CellError, match="not a cell of any space"):
        resolve_arch("|conv~0|")
    with pytest.raises(ConfigError, match="no such file"):
        resolve_arch(str(tmp_path / "missing" / "result.json"))
    write_json(tmp_path / "other.json", {"strategy": "gdas"})
    with pytest.raises(ConfigError, match="neither"):
        resolve_arch(str(tmp_path / "other.json"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no run"):
        resolve_arch(str(tmp_path / "empty"))


def test_cli_train_reports_results_and_bad_arch_is_one_error_line(tmp_path):
    runner = CliRunner()
    args = ["train", CELL, "--dataset", "digits", "--subset", "64", "--epochs", "1", "--batch-size", "32",
            "--channels", "4", "--cells", "1", "--out", str(tmp_path / "run"), "--cache-dir", str(tmp_path / "c"),
            "--device", "cpu", "--no-progress"]
    res = runner.invoke(cli(), args)
    assert res.exit_code == 0, res.output
    assert "test        accuracy" in res.output and "multiply-adds" in res.output
    assert json.loads((tmp_path / "run" / "train.json").read_text())["config"]["subset"] == 64
    again = runner.invoke(cli(), args)
    assert again.exit_code == 1 and "already holds a run" in again.output
    resumed = runner.invoke(cli(), ["train", CELL, "--out", str(tmp_path / "run"), "--resume", "--no-progress",
                                    "--cache-dir", str(tmp_path / "c")])
    assert resumed.exit_code == 0, resumed.output  # a finished run: the saved configuration is reused
    bad = runner.invoke(cli(), ["train", "|nor_conv_3x3~0|+|bogus~0|"])
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and "Traceback" not in bad.output
    assert len(bad.output.strip().splitlines()) == 1


class _TinyAuxNet(torch.nn.Module):
    """A stand-in for a DARTS-like network: drop-path probability and an auxiliary head in training."""

    def __init__(self, num_classes):
        super().__init__()
        self.drop_path_prob = 0.0
        self.body = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                                        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
        self.head = torch.nn.Linear(4, num_classes)
        self.aux = torch.nn.Linear(4, num_classes)
        self.seen_drop_path = []

    def forward(self, x):
        h = self.body(x)
        if self.training:
            self.seen_drop_path.append(self.drop_path_prob)
            return self.head(h), self.aux(h)
        return self.head(h)


class _FakeSpace:
    name = "fake"

    def parse(self, text):
        return text

    def build_network(self, genotype, channels, cells, num_classes, in_channels=3, auxiliary=False):
        assert auxiliary
        return _TinyAuxNet(num_classes)


def test_space_hooks_for_auxiliary_heads_drop_path_cutout_and_clipping(tmp_path):
    cfg = TrainConfig.resolve("genotype", "fake", dataset="digits", subset=64, batch_size=32, epochs=2,
                              aux_weight=0.4, drop_path=0.2, cutout=4, grad_clip=5.0, out=str(tmp_path / "run"),
                              device="cpu")
    assert cfg.lr == 0.1  # a space without its own protocol falls back to NAS-Bench-201's
    trainer = Trainer(cfg, progress=False, log=quiet, space=_FakeSpace())
    result = trainer.run()
    assert result["network"]["auxiliary"] is True and math.isfinite(result["history"][-1]["loss"])
    assert trainer.model.seen_drop_path == [0.0, 0.0, 0.1, 0.1]  # DARTS' linear ramp, per epoch


def test_nb201_has_no_auxiliary_head_or_drop_path(tmp_path):
    with pytest.raises(ConfigError, match="no auxiliary head"):
        Trainer(tiny(tmp_path, "a", aux_weight=0.4), progress=False, log=quiet).run()
    with pytest.raises(ConfigError, match="no drop-path"):
        Trainer(tiny(tmp_path, "b", drop_path=0.2), progress=False, log=quiet).run()
