"""The mobile (MBConv) space: architecture strings, supernet = discrete network at vertices, FLOPs, CLI."""

import json
import math

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from toponas.cli import main
from toponas.spaces import SPACES, Mixing, create_space
from toponas.spaces.mbconv import MixedBlock, block_candidates
from toponas.spaces.mobile import SEARCH_BN, copy_weights_from_supernet
from toponas.spaces.mobile_arch import MobileArchError, MobileSpaceError, MobileSpec, Stage
from toponas.spaces.mobile_cost import arch_flops, arch_params
from toponas.spaces.primitives import Conv
from toponas.strategies import STRATEGIES
from toponas.training.cost import count_parameters

ARCH = "s1:w0.5:k3e6,skip|s2:w0.75:k7e3,k5e6,skip|s3:w1:k3e3,skip,k7e6|s4:w0.5:k5e3,k3e6|s5:w0.75:k7e6,k3e3"
#: A quick search: tiny widths (--channels 2) on 8x8 digits.
QUICK = ["--dataset", "digits", "--epochs", "1", "--channels", "2", "--image-size", "8", "--subset", "32",
         "--batch-size", "16", "--no-progress"]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def space():
    return create_space("mobile")


#: An architecture of mobile-sa using radix-2 split attention in several blocks.
SA_ARCH = "s1:w0.5:k3e6s2,skip|s2:w0.75:k7e3,k5e6s2,skip|s3:w1:k3e3,skip,k7e6|s4:w0.5:k5e3s2,k3e6|s5:w0.75:k7e6,k3e3s2"


@pytest.fixture(scope="module", params=["mobile", "mobile-sa"])
def either(request):
    """Both registered mobile spaces, with an architecture of each."""
    return create_space(request.param), (ARCH if request.param == "mobile" else SA_ARCH)


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def assert_user_error(result, *words: str) -> None:
    err = result.stderr if hasattr(result, "stderr") else result.output
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for w in words:
        assert w in lines[0], lines[0]


# -- the architecture value object ---------------------------------------------------------------------
def test_arch_round_trip_and_value_semantics(space):
    arch = space.parse(ARCH)
    assert str(arch) == ARCH
    assert space.parse(" " + ARCH.replace("|", " | ") + "\n") == arch
    assert hash(space.parse(ARCH)) == hash(arch)
    assert space.parse(ARCH.replace("w1:", "w1.0:")) == arch  # widths compare as numbers
    assert space.parse(arch) is arch
    assert arch.stages[1].blocks == ("k7e3", "k5e6", "skip")
    assert space.derive(space.one_hot(arch)) == arch


@pytest.mark.parametrize("text, words", [
    ("", ["empty"]),
    ("s1:w1", ["stage 1", "NAME:wRATIO"]),
    (ARCH.replace("s5:", "s7:"), ["unknown stage 's7'"]),
    (ARCH.replace("k7e3", "k9e6"), ["stage s2 block 1", "unknown choice 'k9e6'"]),
    (ARCH.replace("s2:w0.75:k7e3", "s2:w0.75:skip"), ["'skip' is not allowed on the first block"]),
    (ARCH.replace("w0.75", "w0.6", 1), ["unknown width 'w0.6'"]),
    (ARCH.replace("w0.75", "x0.75", 1), ["wRATIO"]),
    (ARCH.replace("k3e3,skip,k7e6", "k3e3,skip,k7e6,k3e3"), ["4 blocks", "at most 3"]),
    ("|".join(ARCH.split("|")[:4]), ["expected 5 stages"]),
])
def test_arch_errors_name_the_part(space, text, words):
    with pytest.raises(MobileArchError) as e:
        space.parse(text)
    for w in words:
        assert w in str(e.value)


def test_groups_and_size_of_the_space(space):
    assert space.arch_shapes == {"first": (5, 6), "block": (7, 7), "width": (5, 3)}
    assert space.num_architectures == 6 ** 5 * 7 ** 7 * 3 ** 5
    assert space.edge_keys["block"][:3] == ["s1.b2", "s2.b2", "s2.b3"]
    assert "mobile" in SPACES.names() and "mobile-sa" in SPACES.names()
    sa = create_space("mobile-sa")
    assert sa.arch_shapes == {"first": (5, 12), "block": (7, 13), "width": (5, 3)}
    assert sa.group_ops["first"][:2] == ("k3e3", "k3e3s2") and sa.largest_genotype().stages[0].blocks[0] == "k7e6s2"
    assert str(sa.parse(SA_ARCH)) == SA_ARCH
    with pytest.raises(MobileArchError, match="unknown choice 'k3e6s2'"):
        space.parse(SA_ARCH)


# -- supernet and discrete network ----------------------------------------------------------------------
def test_supernet_at_a_vertex_is_the_discrete_network_outputs_and_gradients(either):
    """One-hot weights (blocks and widths): the masked supernet equals the narrower network, float64."""
    space, text = either
    torch.manual_seed(0)
    sup = space.build_supernet(4).double()
    arch = space.parse(text)
    net = space.build_network(arch, 4, bn=SEARCH_BN).double()
    copy_weights_from_supernet(net, sup, arch)
    x = torch.randn(3, 3, 16, 16, dtype=torch.float64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    y_sup = sup(x, Mixing(space.one_hot(arch, torch.float64)))
    y_net = net(x2)
    torch.testing.assert_close(y_sup, y_net, rtol=0, atol=1e-10)
    g = torch.randn_like(y_net)
    y_sup.backward(g)
    y_net.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, rtol=0, atol=1e-10)
    # a sliced weight's gradient: stage s2's second block (k5e6), its projection conv
    mixed = [m for m in sup.blocks if m.stage == 1][1]
    name = arch.stages[1].blocks[1]
    project_sup = mixed.edges[0].ops[[s.name for s in mixed.specs].index(name)][-2].weight.grad
    project_net = net.blocks[3].op[-2].weight.grad
    torch.testing.assert_close(project_sup[: project_net.shape[0], : project_net.shape[1]], project_net,
                               rtol=0, atol=1e-10)
    assert project_sup[project_net.shape[0]:].abs().max() == 0  # masked channels get no gradient


def test_soft_weights_reach_every_group(space):
    torch.manual_seed(0)
    sup = space.build_supernet(2)
    weights = {g: torch.softmax(torch.randn(*s), -1).requires_grad_() for g, s in space.arch_shapes.items()}
    sup(torch.randn(2, 3, 8, 8), Mixing(weights)).square().sum().backward()
    assert sup.blocks[0].out_masks.shape == (3, 3)  # stage s1 at --channels 2: widths 1, 2, 3 of 3
    for g, w in weights.items():
        assert w.grad is not None and w.grad.abs().sum() > 0, g


def test_mixed_block_is_a_search_unit_of_primitive_chains():
    from toponas.spaces.protocol import SearchUnit, search_units

    specs = block_candidates((3, 5), (3, 6), 4, 4, 1, residual=True)
    block = MixedBlock(specs, 4, 4, 1, True, "block", 0, 0, (2, 3, 4))
    assert isinstance(block, SearchUnit) and block.edge_io == [(1, 0)]
    assert [s.name for s in block.specs] == ["k3e3", "k3e6", "k5e3", "k5e6", "skip"]
    assert specs[1].chain[0] == Conv(1, out=24) and specs[1].chain[6] == Conv(1, out=4)
    for spec, ops in zip(block.specs, block.edges[0].ops):
        assert len(ops) == len(spec.chain)  # one module per primitive
    assert block.edges[0].ops[1][0].weight.shape == (24, 4, 1, 1)
    with pytest.raises(ValueError):
        MixedBlock(specs, 4, 8, 1, True, "block", 0, 0, (4, 6, 8))
    space = create_space("mobile")
    units = search_units(space.build_supernet(2))
    assert len(units) == 12 and all(name.startswith("blocks.") for name, _ in units)


def test_protocol_vertices_equal_the_discrete_networks(space):
    """What ``verify`` will check, here on the plain supernet: every vertex it lists, in float64."""
    torch.manual_seed(1)
    sup = space.build_supernet(2, space.verify_cells).double()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    vertices = space.verify_vertices(2, torch.Generator().manual_seed(0))
    assert len(vertices) == 6 + 2 + 1 + 2
    for name, arch in vertices:
        net = space.build_network(arch, 2, space.verify_cells, bn=SEARCH_BN).double()
        space.load_vertex_weights(net, sup, arch)
        torch.testing.assert_close(sup(x, Mixing(space.one_hot(arch, torch.float64))), net(x), rtol=0, atol=1e-10,
                                   msg=name)
    example = space.example_unit(4)
    assert example.inputs == 1 and example.unit.c_in == 4


# -- FLOPs and parameters ----------------------------------------------------------------------------------
def hook_counts(model: nn.Module, image_size: int) -> int:
    """Multiply-accumulates of convolutions and linear layers, counted with forward hooks."""
    total = 0

    def count(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output[0].numel() * k * module.in_channels // module.groups
        else:
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, image_size, image_size))
    for h in handles:
        h.remove()
    return total


@pytest.mark.parametrize("image_size", [32, 16])
def test_analytic_flops_and_parameters_match_the_built_network(either, image_size):
    space, text = either
    archs = [space.largest_genotype(), space.parse(text),
             space.derive({g: torch.randn(*s) for g, s in space.arch_shapes.items()})]
    for arch in archs:
        net = space.build_network(arch)
        assert arch_flops(space, arch, image_size=image_size) == hook_counts(net, image_size), str(arch)
        assert arch_params(space, arch) == count_parameters(net)
    largest = arch_flops(space, space.largest_genotype(), image_size=32) / 1e6
    if image_size == 32:
        assert 50 <= largest <= 150  # the documented default size


def test_cost_table_batches_architectures(space):
    cost = space.cost_table(16, None, 16)
    archs = [space.parse(ARCH), space.largest_genotype()]
    choices = {g: torch.stack([space.choices(a)[g] for a in archs]) for g in space.arch_shapes}
    assert cost(choices).tolist() == [arch_flops(space, a, image_size=16) for a in archs]


def test_width_rounding_to_zero_and_small_images_are_errors():
    spec = MobileSpec(stem=4, stages=(Stage("a", 4, 2, 2), Stage("b", 8, 1, 2)), head=8, base=4)
    with pytest.raises(MobileSpaceError, match="rounds to 0 channels"):
        spec.sized(1)
    with pytest.raises(MobileSpaceError, match="at least 4x4"):
        spec.check_image(3, 8)
    assert [s.widths for s in spec.sized(4)] == [(2, 3, 4), (4, 6, 8)]


def test_a_declared_table_builds_its_own_space():
    from toponas.spaces.mobile import MobileSpace

    spec = MobileSpec(stem=4, stages=(Stage("a", 4, 2, 1), Stage("b", 8, 1, 2)), head=8, kernels=(3,),
                      expansions=(2,), widths=(0.5, 1.0), base=4)
    small = MobileSpace("tiny", spec)
    assert small.arch_shapes == {"first": (2, 1), "block": (1, 2), "width": (2, 2)}
    arch = small.parse("a:w0.5:k3e2,skip|b:w1:k3e2")
    sup = small.build_supernet(4)
    net = small.build_network(arch, 4, bn=SEARCH_BN)
    copy_weights_from_supernet(net, sup, arch)
    x = torch.randn(2, 3, 8, 8)
    torch.testing.assert_close(sup(x, Mixing(small.one_hot(arch))), net(x))


# -- strategies and the command line ------------------------------------------------------------------------
@pytest.mark.parametrize("name, strategy", [("mobile", s) for s in STRATEGIES.names()]
                         + [("mobile-sa", "darts-v1"), ("mobile-sa", "gdas")])
def test_every_strategy_searches_the_mobile_space(tmp_path, name, strategy):
    space = create_space(name)
    extra = ["--hp", "sample_scale=0.1"] if strategy == "fp-nas" else []
    res = cli("search", "--space", name, "--strategy", strategy, "--topo", "off", "--out", str(tmp_path),
              *QUICK, *extra)
    families = STRATEGIES.get(strategy).families
    if families is not None and space.family not in families:  # declared: one error line, nothing written
        assert res.exit_code == 1 and f"{strategy} searches" in res.output and "Traceback" not in res.output
        assert not (tmp_path / "result.json").exists()
        return
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "result.json").read_text())
    arch = space.parse(result["genotype"])
    assert set(result["alphas"]) == {"first", "block", "width"}
    assert list(result["alphas"]["width"]["s1"]) == ["w0.5", "w0.75", "w1"]
    assert list(result["alphas"]["block"]["s1.b2"])[-1] == "skip"
    assert str(arch) == result["genotype"]


def test_fp_nas_flops_term_uses_the_space_flops(tmp_path, space):
    res = cli("search", "--space", "mobile", "--strategy", "fp-nas", "--topo", "off", "--flops-target", "10",
              "--hp", "sample_scale=0.1", "--out", str(tmp_path), *QUICK)
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "result.json").read_text())
    expected = arch_flops(space, result["genotype"], channels=16, image_size=32) / 1e6
    assert math.isclose(result["history"][-1]["mflops"], expected)


def test_topo_full_runs_the_simplified_supernet(tmp_path):
    res = cli("search", "--space", "mobile", "--strategy", "darts-v1", "--topo", "full", "--out", str(tmp_path),
              *QUICK)
    assert res.exit_code == 0, res.output
    assert "no --topo full rules" not in res.output


@pytest.mark.parametrize("args, words", [
    (["export", ARCH.replace("k7e3", "k9e6"), "--space", "mobile"], ["unknown choice 'k9e6'"]),
    (["export", ARCH.replace("s5:", "s7:"), "--space", "mobile"], ["unknown stage 's7'"]),
    (["export", "s1:w1:k3e3|s2", "--space", "mobile"], ["stage 2", "NAME:wRATIO"]),
    (["export", ARCH, "--space", "mobile", "--image-size", "4"], ["image size 4x4", "at least 8x8"]),
    (["search", "--space", "mobile", "--strategy", "drnas", "--hp", "progressive=true", "--topo", "off", *QUICK,
      "--epochs", "2"],
     ["progressive DrNAS", "leave progressive off"]),
    (["search", "--space", "mobile", "--topo", "off", *QUICK, "--channels", "1"], ["rounds to 0 channels"]),
    (["search", "--space", "mobile", "--image-size", "4", "--channels", "2", "--topo", "off", "--dataset", "digits",
      "--epochs", "1", "--subset", "32", "--batch-size", "16", "--no-progress"], ["image size 4x4"]),
    (["search", "--space", "mobile", "--cells", "2", "--topo", "off", *QUICK], ["cells=2 is not supported"]),
])
def test_bad_input_is_one_error_line(tmp_path, args, words):
    out = ["--out", str(tmp_path / "out.pt" if args[0] == "export" else tmp_path / "run")]
    if args[0] in ("verify", "explain", "profile"):
        out = []
    res = cli(*args, *out)
    assert_user_error(res, *words)
    assert not (tmp_path / "out.pt").exists()


def test_train_export_and_report_take_a_mobile_architecture(tmp_path, space):
    pytest.importorskip("matplotlib")
    run = tmp_path / "train"
    res = cli("train", ARCH, "--dataset", "digits", "--epochs", "1", "--subset", "32", "--batch-size", "16",
              "--channels", "2", "--out", str(run), "--no-progress")
    assert res.exit_code == 0, res.output
    info = json.loads((run / "train.json").read_text())
    assert info["space"] == "mobile" and info["arch"] == ARCH  # found by parsing, no --space needed
    res = cli("export", str(run), "--out", str(tmp_path / "net.pt"))
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "net.pt.json").read_text())
    net = space.build_network(ARCH, 2)
    assert meta["trained"] and meta["parameters"] == count_parameters(net) == arch_params(space, ARCH, channels=2)
    assert meta["mult_adds"] == arch_flops(space, ARCH, channels=2, image_size=16)
    res = cli("report", str(run))
    assert res.exit_code == 0, res.output
    assert (run / "report" / "cell.png").is_file()
    assert "cell.png" in (run / "report" / "report.md").read_text()
