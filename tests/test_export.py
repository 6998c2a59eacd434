"""Export to TorchScript and ONNX: the exported model's outputs equal the PyTorch model's."""

import importlib.util
import json

import click
import pytest
import torch
from click.testing import CliRunner

from toponas.cli.train import export as export_command
from toponas.export import ExportError, export, load_network
from toponas.training import TrainConfig, Trainer, load_trained

CELL = "|nor_conv_3x3~0|+|none~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_1x1~1|nor_conv_3x3~2|"
# torch >= 2.10 marks torch.jit deprecated; TorchScript is still what the issue asks to export
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
HAS_ONNXRUNTIME = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime"))


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny network trained for one epoch on digits (16x16 images)."""
    out = tmp_path_factory.mktemp("export") / "run"
    cfg = TrainConfig.resolve(CELL, "nb201", dataset="digits", subset=64, batch_size=32, channels=4, cells=1,
                              epochs=1, out=str(out), device="cpu")
    Trainer(cfg, progress=False, log=lambda _: None).run()
    return out


def test_torchscript_of_a_fresh_network_equals_the_eager_model(tmp_path):
    rep = export(CELL, "torchscript", tmp_path / "net.pt", channels=4, cells=1, image_size=16, seed=5)
    assert rep.max_abs_diff is not None and rep.max_abs_diff <= 1e-5 and not rep.trained
    model, _, _ = load_network(CELL, channels=4, cells=1, image_size=16, seed=5)
    loaded = torch.jit.load(str(tmp_path / "net.pt"))
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=0)
    info = json.loads((tmp_path / "net.pt.json").read_text())
    assert info["arch"] == CELL and info["parameters"] == rep.parameters > 0 and info["mult_adds"] > 0


def test_torchscript_of_a_trained_run_carries_its_weights(trained_run, tmp_path):
    rep = export(str(trained_run), "torchscript", tmp_path / "trained.pt")
    assert rep.trained and rep.meta["image_size"] == 16 and rep.meta["channels"] == 4
    model, _ = load_trained(trained_run / "model.pt")
    loaded = torch.jit.load(str(tmp_path / "trained.pt"))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=1e-5, rtol=0)
    # the checkpoint of the run gives the same weights
    ckpt_model, _, trained = load_network(str(trained_run / "checkpoint.pt"))
    assert trained and torch.equal(ckpt_model(x), model(x))


@pytest.mark.skipif(not HAS_ONNXRUNTIME, reason="ONNX export checks need onnx and onnxruntime (pip install onnx "
                                                "onnxruntime)")
def test_onnx_of_a_trained_run_equals_the_pytorch_model_in_onnxruntime(trained_run, tmp_path):
    import onnxruntime

    rep = export(str(trained_run), "onnx", tmp_path / "trained.onnx")
    assert rep.max_abs_diff is not None and rep.max_abs_diff < 1e-4
    model, _ = load_trained(trained_run / "model.pt")
    session = onnxruntime.InferenceSession(str(tmp_path / "trained.onnx"), providers=["CPUExecutionProvider"])
    x = torch.randn(7, 3, 16, 16)  # another batch size than the export's example
    got = torch.from_numpy(session.run(None, {"input": x.numpy()})[0])
    with torch.no_grad():
        torch.testing.assert_close(got, model(x), atol=1e-4, rtol=1e-4)


def test_onnx_without_the_onnx_package_is_a_clear_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnx" else real(name, *a))
    with pytest.raises(ExportError, match="pip install onnx"):
        export(CELL, "onnx", tmp_path / "net.onnx", channels=4, cells=1)


def test_cli_export_prints_size_and_check_and_rejects_bad_input(tmp_path):
    runner = CliRunner()
    group = click.Group(commands=[export_command])
    res = runner.invoke(group, ["export", CELL, "--out", str(tmp_path / "n.pt"), "--channels", "4", "--cells", "1"])
    assert res.exit_code == 0, res.output
    assert "parameters" in res.output and "multiply-adds" in res.output and "outputs equal" in res.output
    bad = runner.invoke(group, ["export", "|nope~0|", "--out", str(tmp_path / "x.pt")])
    assert bad.exit_code == 1 and bad.output.startswith("error: ") and len(bad.output.strip().splitlines()) == 1
    missing = runner.invoke(group, ["export", str(tmp_path / "nothing" / "model.pt"), "--out", str(tmp_path / "y")])
    assert missing.exit_code == 1 and "no such file" in missing.output
