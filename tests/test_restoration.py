"""The restoration task: degradations, PSNR/SSIM, data checks, the two spaces' exactness, bad input via the CLI."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from toponas import topo
from toponas.cli import main
from toponas.restoration.degrade import add_noise, bicubic_down, bicubic_up, modcrop
from toponas.restoration.images import folder_images, skimage_images
from toponas.restoration.metrics import psnr, rgb_to_y, ssim
from toponas.restoration.task import RestorationTask
from toponas.spaces import Mixing, create_space
from toponas.spaces.primitives import SEARCH_BN
from toponas.spaces.protocol import search_units

pytestmark = pytest.mark.usefixtures("one_thread")


def test_noise_has_the_asked_standard_deviation_and_zero_mean() -> None:
    clean = torch.full((3, 128, 128), 0.5)
    for sigma in (15, 25, 50):
        noise = add_noise(clean, sigma, torch.Generator().manual_seed(sigma)) - clean
        assert abs(float(noise.std()) * 255 - sigma) < 0.02 * sigma
        assert abs(float(noise.mean())) * 255 < 0.5
    a = add_noise(clean, 25, torch.Generator().manual_seed(1))
    assert torch.equal(a, add_noise(clean, 25, torch.Generator().manual_seed(1)))  # seeded


def test_bicubic_shapes_and_modcrop() -> None:
    image = torch.rand(3, 50, 37)
    for scale in (2, 3, 4):
        hr = modcrop(image, scale)
        assert hr.shape[-2] % scale == 0 and hr.shape[-1] % scale == 0
        lr = bicubic_down(hr, scale)
        assert lr.shape == (3, hr.shape[-2] // scale, hr.shape[-1] // scale)
        assert bicubic_up(lr, scale).shape == hr.shape
    with pytest.raises(ValueError, match="multiple of the scale"):
        bicubic_down(image, 2)
    flat = torch.full((1, 1, 12, 12), 0.3)  # bicubic keeps a constant image
    assert torch.allclose(bicubic_down(flat, 3), torch.full((1, 1, 4, 4), 0.3), atol=1e-6)


def test_psnr_and_ssim_known_values() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 32, 32, generator=g, dtype=torch.float64) * 0.8 + 0.1
    assert psnr(x, x) == math.inf and ssim(x, x) == pytest.approx(1.0, abs=1e-12)
    # a constant offset d: MSE = d^2, PSNR = 20 log10(1 / d)
    assert psnr(x + 0.05, x) == pytest.approx(20 * math.log10(1 / 0.05), abs=1e-9)
    # SSIM of a constant offset: only the luminance term changes, (2 mu (mu + d) + C1) / (mu^2 + (mu + d)^2 + C1)
    flat = torch.full((1, 16, 16), 0.4, dtype=torch.float64)
    c1 = 0.01**2
    expected = (2 * 0.4 * 0.5 + c1) / (0.4**2 + 0.5**2 + c1)
    assert ssim(flat + 0.1, flat) == pytest.approx(expected, abs=1e-9)
    # Y channel: white is 235/255, black 16/255; PSNR on Y with the border shaved
    assert float(rgb_to_y(torch.ones(3, 2, 2)).max()) == pytest.approx(235 / 255)
    big = torch.rand(3, 40, 40, generator=g)
    off = big.clone()
    off[:, :2] = 1 - off[:, :2]  # damage only the border rows
    assert psnr(off, big, y_channel=True, border=2) == math.inf


def test_skimage_split_and_patches() -> None:
    colour, grey = skimage_images(False), skimage_images(True)
    assert colour.channels == 3 and len(colour.train) == 6 and colour.test_names == ["chelsea", "coffee"]
    assert grey.channels == 1 and len(grey.train) == 12 and len(grey.test) == 4
    task = RestorationTask("sr", scale=2, patch_size=16)
    task.check(colour)
    p = task.patches(colour.train, 5, torch.Generator().manual_seed(0))
    assert p.shape == (5, 3, 16, 16) and 0 <= float(p.min()) and float(p.max()) <= 1
    lr, hr = task.pair(p, torch.Generator())
    assert lr.shape == (5, 3, 8, 8) and hr is p


def test_folder_split_and_data_errors(tmp_path) -> None:
    for i in range(5):
        Image.fromarray((np.random.default_rng(i).random((20, 24, 3)) * 255).astype(np.uint8)).save(
            tmp_path / f"im{i}.png")
    images = folder_images(tmp_path, grey=False)
    assert len(images.train) == 4 and images.test_names == ["im4"]  # every fifth image is a test image
    from toponas.data import DataError

    with pytest.raises(DataError, match="smaller than --patch-size 48"):
        RestorationTask("denoise", patch_size=48).check(images)
    with pytest.raises(DataError, match="grey but the network is colour"):
        RestorationTask("denoise", patch_size=16).check(folder_images(tmp_path, grey=True))
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(tmp_path / "grey.png")
    with pytest.raises(DataError, match="greyscale image but the task is colour"):
        folder_images(tmp_path, grey=False)


@pytest.mark.parametrize("name", ["mod-nas", "trilevel"])
def test_exact_mode_equals_the_plain_supernet_outputs_and_gradients(name) -> None:
    space = create_space(name)
    torch.manual_seed(0)
    plain = space.build_supernet(4, space.default_cells).double()
    simple = topo.simplify(copy.deepcopy(plain), "exact")
    units = search_units(simple)
    assert units and all(isinstance(u, topo.SimplifiedUnit) for _, u in units)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 12, 12, generator=g, dtype=torch.float64)
    alphas = {k: torch.randn(*s, generator=g, dtype=torch.float64).requires_grad_()
              for k, s in space.arch_shapes.items()}
    outs, grads = [], []
    for model in (plain, simple):
        mixing = Mixing({k: torch.softmax(a, -1) for k, a in alphas.items()})
        out = model(x, mixing)
        params = list(model.parameters())
        gs = torch.autograd.grad((out * out).sum(), [*params, *alphas.values()])
        outs.append(out.detach())
        grads.append(gs)
    assert outs[0].shape == space.output_shape(2, 12)
    assert torch.allclose(outs[0], outs[1], rtol=1e-10, atol=1e-12)
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("name", ["mod-nas", "trilevel"])
def test_supernet_at_a_vertex_is_the_discrete_network(name) -> None:
    space = create_space(name)
    torch.manual_seed(0)
    supernet = space.build_supernet(6, space.default_cells).double()
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64)
    for _, arch in space.verify_vertices(2, torch.Generator().manual_seed(3))[::2]:
        net = space.build_network(arch, 6, bn=SEARCH_BN).double()
        space.load_vertex_weights(net, supernet, arch)
        with torch.no_grad():
            assert torch.allclose(net(x), supernet(x, Mixing(space.one_hot(arch, torch.float64))), atol=1e-10)
    narrow = space.parse(str(space.largest_genotype()))
    assert space.parse(str(narrow)) == narrow


def test_trilevel_has_no_zero_candidate_and_restoration_defaults_to_l2() -> None:
    """``none`` won most edges of every short SR search (docs/restoration.md), so the SR cell has none; l1 stalls."""
    from toponas.config import SearchConfig
    from toponas.restoration.train import RestoreTrainConfig
    from toponas.spaces.trilevel import CANDIDATES, TrilevelArchError

    space = create_space("trilevel")
    assert "none" not in CANDIDATES and "none" not in space.group_ops["cell"]
    assert space.arch_shapes["cell"] == (6, 3)
    with pytest.raises(TrilevelArchError, match="each one of"):
        space.parse("x2;path=prev,prev,prev;cell=none,conv_3x3,conv_3x3,conv_3x3,conv_3x3,conv_3x3")
    assert SearchConfig().loss == RestoreTrainConfig(arch="a", space="trilevel").loss == "l2"
    assert RestorationTask("sr").loss_name == "l2"


def test_restoration_cpu_preset_under_the_flags() -> None:
    from toponas.config import ConfigError
    from toponas.restoration.runs import RESTORE_PRESETS, restoration_config

    config = restoration_config("baseline:espcn", None, {"task": "sr", "epochs": 2}, "cpu")
    assert config.epochs == 2 and config.patches == RESTORE_PRESETS["cpu"]["patches"] and config.loss == "l2"
    assert restoration_config("baseline:espcn", None, {"task": "sr"}, None).epochs == 10  # no preset: the defaults
    with pytest.raises(ConfigError, match="unknown restoration preset"):
        restoration_config("baseline:espcn", None, {"task": "sr"}, "gpu")


def invoke(*args: str):
    return CliRunner().invoke(main, list(args))


def one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1, result.output
    assert lines and lines[-1].startswith("error: ") and "Traceback" not in result.output
    return lines[-1]


TINY = ["--epochs", "1", "--patches", "8", "--batch-size", "4", "--channels", "4", "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("args, fragment", [
    (["--task", "segment", "--space", "mod-nas"], "unknown task 'segment'"),
    (["--task", "sr", "--space", "trilevel", "--scale", "5"], "--scale must be one of 2, 3, 4"),
    (["--task", "sr", "--space", "trilevel", "--patch-size", "33", "--scale", "2"], "not a multiple of --scale"),
    (["--task", "denoise", "--space", "trilevel"], "searches --task sr, not denoise"),
    (["--task", "denoise", "--space", "nb201"], "searches a restoration space (mod-nas)"),
    (["--space", "mod-nas"], "pass --task denoise"),
    (["--task", "denoise", "--space", "mod-nas", "--strategy", "spos"], "classification loss of its own"),
    (["--task", "denoise", "--space", "mod-nas", "--patch-size", "600"], "smaller than --patch-size 600"),
])
def test_bad_input_is_one_error_line(tmp_path, args, fragment) -> None:
    line = one_error_line(invoke("search", *args, *TINY, "--out", str(tmp_path / "run")))
    assert fragment in line, line
    assert not (tmp_path / "run" / "result.json").exists()


def test_grey_images_in_a_colour_run_are_one_error_line(tmp_path) -> None:
    for i in range(3):
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / f"g{i}.png")
    line = one_error_line(invoke("search", "--task", "denoise", "--space", "mod-nas", "--data", str(tmp_path),
                                 "--patch-size", "16", *TINY, "--out", str(tmp_path / "run")))
    assert "pass --grey" in line


@pytest.fixture
def photos(tmp_path):
    """Five small smooth colour pictures (a folder: four training images, one test image)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    yy, xx = np.mgrid[0:40, 0:40] / 40.0
    for i in range(5):
        rgb = np.stack([np.sin(3 * xx + i), np.cos(2 * yy - i), xx * yy], -1) * 0.4 + 0.5
        Image.fromarray((rgb * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


STEP = ["--epochs", "1", "--patches", "4", "--batch-size", "2", "--patch-size", "16", "--channels", "2",
        "--device", "cpu", "--no-progress"]


@pytest.mark.parametrize("args", [
    ["--task", "denoise", "--space", "mod-nas", "--strategy", "darts-v1", "--sigma", "25", "--cells", "1"],
    ["--task", "sr", "--space", "trilevel", "--strategy", "gdas", "--scale", "2", "--cells", "2", "--topo", "exact"],
])
def test_one_step_search_retrain_export_report(tmp_path, photos, args) -> None:
    import json

    run = tmp_path / "search"
    r = invoke("search", *args, "--data", str(photos), *STEP, "--out", str(run))
    assert r.exit_code == 0, r.output
    result = json.loads((run / "result.json").read_text())
    assert math.isfinite(result["psnr"]) and 0 < result["ssim"] <= 1 and result["task"] == args[1]
    assert (run / "examples" / "p4.png").is_file()
    space = create_space(args[3])
    assert space.parse(result["genotype"])  # a genotype of the space
    r = invoke("train", str(run), "--epochs", "1", "--patches", "4", "--batch-size", "2", "--device", "cpu",
               "--no-progress", "--out", str(tmp_path / "train"))
    assert r.exit_code == 0, r.output
    trained = json.loads((tmp_path / "train" / "train.json").read_text())
    assert trained["arch"] == result["genotype"] and math.isfinite(trained["psnr"]) and trained["ssim"] > 0
    assert ("input_psnr" if args[1] == "denoise" else "bicubic_psnr") in trained
    r = invoke("export", str(tmp_path / "train"), "--out", str(tmp_path / "net.pt"))
    assert r.exit_code == 0 and "outputs equal" in r.output, r.output
    r = invoke("report", str(tmp_path / "train"))
    page = (tmp_path / "train" / "report" / "report.md").read_text()
    assert r.exit_code == 0 and "## Restoration" in page and "examples/p4.png" in page
    assert (tmp_path / "train" / "report" / "examples" / "p4.png").is_file()


def test_retraining_at_another_scale_or_colour_is_one_error_line(tmp_path, photos) -> None:
    run = tmp_path / "search"
    assert invoke("search", "--task", "sr", "--space", "trilevel", "--cells", "1", "--data", str(photos), *STEP,
                  "--out", str(run)).exit_code == 0
    line = one_error_line(invoke("train", str(run), "--scale", "4", "--out", str(tmp_path / "t")))
    assert "searched for x2, not --scale 4" in line
    line = one_error_line(invoke("train", str(run), "--grey", "--out", str(tmp_path / "t")))
    assert "searched a colour network" in line
    line = one_error_line(invoke("train", "baseline:dncnn", "--task", "sr", "--out", str(tmp_path / "t")))
    assert "denoise baseline" in line
    assert not (tmp_path / "t" / "train.json").exists()


def test_baselines_train_with_the_same_loop(tmp_path, photos) -> None:
    import json

    for arch, task in (("baseline:dncnn:3", "denoise"), ("baseline:fsrcnn:8,4,1", "sr"), ("baseline:espcn:8,4", "sr")):
        out = tmp_path / arch.split(":")[1]
        r = invoke("train", arch, "--task", task, "--data", str(photos), "--epochs", "1", "--patches", "2",
                   "--batch-size", "2", "--patch-size", "16", "--channels", "4", "--device", "cpu", "--no-progress",
                   "--out", str(out))
        assert r.exit_code == 0, r.output
        assert math.isfinite(json.loads((out / "train.json").read_text())["psnr"])


@pytest.mark.parametrize("name", ["mod-nas", "trilevel"])
def test_profile_runs_restoration_spaces_and_full_keeps_less_for_backward(name) -> None:
    from toponas.profiling import profile

    rows = {r.name: r for r in profile(name, "darts-v1", ("off", "full"), channels=4, batch_size=2, image_size=8,
                                       steps=1, warmup=0)}
    assert set(rows) == {"topo=off", "topo=full", "largest single network"}
    assert rows["topo=full"].saved_activation_bytes < rows["topo=off"].saved_activation_bytes


def test_bad_task_through_a_config_file_and_the_python_api(tmp_path) -> None:
    import json

    import toponas
    from toponas.config import ConfigError

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"task": "sr", "space": "trilevel", "scale": 7}))
    line = one_error_line(invoke("search", "--config", str(config), "--out", str(tmp_path / "run")))
    assert "--scale must be one of 2, 3, 4" in line
    with pytest.raises(ConfigError, match="unknown task 'segment'"):
        toponas.search(task="segment", space="mod-nas", out=str(tmp_path / "api"))
    with pytest.raises(ConfigError, match="--sigma must lie in"):
        toponas.search(task="denoise", space="mod-nas", sigma=-1.0, out=str(tmp_path / "api"))
    assert not (tmp_path / "run").exists() and not (tmp_path / "api").exists()
