"""The DARTS space: genotype value object, derivation, supernet, discrete network, every strategy."""

import json

import pytest
import torch
from torch.nn import functional as F

from toponas.config import SearchConfig
from toponas.loop import Search
from toponas.spaces import CellError, Mixing, create_space
from toponas.spaces.darts import (
    DARTS_OPS,
    SEARCH_BN,
    DartsSearchCell,
    copy_weights_from_supernet,
    darts_candidates,
)
from toponas.spaces.genotype import Genotype, GenotypeError, edge_index
from toponas.spaces.mixed import MixedEdge
from toponas.spaces.primitives import Reduce, ReduceOp
from toponas.strategies import STRATEGIES, create_strategy

DARTS_V2 = (
    "Genotype(normal=[('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ('sep_conv_3x3', 0), ('sep_conv_3x3', 1), "
    "('sep_conv_3x3', 1), ('skip_connect', 0), ('skip_connect', 0), ('dil_conv_3x3', 2)], "
    "normal_concat=[2, 3, 4, 5], reduce=[('max_pool_3x3', 0), ('max_pool_3x3', 1), ('skip_connect', 2), "
    "('max_pool_3x3', 1), ('max_pool_3x3', 0), ('skip_connect', 2), ('skip_connect', 2), "
    "('max_pool_3x3', 1)], reduce_concat=[2, 3, 4, 5])"
)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def space():
    return create_space("darts")


# -- genotype ----------------------------------------------------------------------------------------
def test_genotype_round_trip_and_value_semantics(space):
    g = space.parse(DARTS_V2)
    assert str(g) == DARTS_V2
    assert space.parse(str(g)) == g and hash(space.parse(str(g))) == hash(g)
    assert g.node_edges("normal", 5) == (("skip_connect", 0), ("dil_conv_3x3", 2))
    # the reference prints range(2, 6); white space and newlines are free
    ref = DARTS_V2.replace("[2, 3, 4, 5]", "range(2, 6)").replace(", ", ",\n  ")
    assert space.parse(ref) == g
    assert space.parse(g) is g and space.validate(g) is g


def _bad(text: str, old: str, new: str) -> str:
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("text, fragment", [
    (_bad(DARTS_V2, "'sep_conv_3x3', 0", "'conv_7x7', 0"), "normal node 2: unknown operation 'conv_7x7'"),
    (_bad(DARTS_V2, "('dil_conv_3x3', 2)", "('dil_conv_3x3', 5)"), "normal node 5: input 5 must be in 0..4"),
    (_bad(DARTS_V2, "('sep_conv_3x3', 0), ('sep_conv_3x3', 1), ", ""), "normal: expected 8 edges"),
    (_bad(DARTS_V2, "normal_concat=[2, 3, 4, 5]", "normal_concat=[1, 2]"),
     "normal_concat: node 1 is not an intermediate node 2..5"),
    (_bad(DARTS_V2, "reduce_concat=[2, 3, 4, 5]", "reduce_concat=[]"), "reduce_concat: lists no node"),
    (_bad(DARTS_V2, "reduce_concat=[2, 3, 4, 5]", "reduce_concat=[2, 2]"), "lists a node twice"),
    (_bad(DARTS_V2, "reduce_concat=[2, 3, 4, 5]", "reduce_concat='2345'"), "expected a list of node indices"),
    (_bad(DARTS_V2, "('sep_conv_3x3', 1), ('sep_conv_3x3', 0)", "('sep_conv_3x3', 1), ('sep_conv_3x3', 1)"),
     "normal node 3: input 1 is used twice"),
    (_bad(DARTS_V2, "('max_pool_3x3', 0)", "('max_pool_3x3', '0')"), "reduce node 2: expected an \\(op, input\\)"),
    (_bad(DARTS_V2, ", reduce_concat=[2, 3, 4, 5]", ""), "missing field\\(s\\) reduce_concat"),
    (_bad(DARTS_V2, "normal_concat", "concat"), "unknown field 'concat'"),
    (_bad(DARTS_V2, "normal_concat=[2, 3, 4, 5]", "normal_concat=__import__('os').getcwd()"),
     "normal_concat: not a literal value"),
    ("Genotype(normal=[", "not a genotype"),
    ("|nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "not a genotype"),
    ("Cell(normal=[])", "expected 'Genotype\\(normal="),
])
def test_bad_genotypes_are_clear_errors(space, text, fragment):
    with pytest.raises(GenotypeError, match=fragment):
        space.parse(text)
    assert issubclass(GenotypeError, CellError)  # the CLI reports CellError as one line


def test_retraining_resolves_a_darts_genotype_and_nb201_still_parses():
    from toponas.training.arch import parse_genotype

    assert parse_genotype(DARTS_V2) == ("darts", DARTS_V2)
    nb = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
    assert parse_genotype(nb)[0] == "nb201"


# -- derivation --------------------------------------------------------------------------------------
def test_derive_takes_the_two_strongest_non_none_inputs_by_softmax(space):
    none, skip, sep3, dil5 = (DARTS_OPS.index(n) for n in ("none", "skip_connect", "sep_conv_3x3", "dil_conv_5x5"))
    a = torch.zeros(14, 8)
    a[:, none] = 20.0  # 'none' dominates every edge and is never chosen
    a[edge_index(2, 0), skip] = 1.0
    a[edge_index(2, 1), sep3] = 2.0
    a[edge_index(3, 2), dil5] = 3.0
    a[edge_index(3, 0), sep3] = 1.0
    # node 4: input 1 has raw logit 4 once, input 3 has 5 twice: softmax prefers input 1's
    # (e^4 / (e^4 + 7) > e^5 / (2 e^5 + 6)), raw logits would prefer input 3
    b = torch.zeros(14, 8)
    b[edge_index(4, 1), sep3] = 4.0
    b[edge_index(4, 3), [skip, dil5]] = 5.0
    b[edge_index(4, 2), dil5] = 0.5
    g = space.derive({"normal": a, "reduce": b})
    assert g.node_edges("normal", 2) == (("sep_conv_3x3", 1), ("skip_connect", 0))  # strongest first
    assert g.node_edges("normal", 3) == (("dil_conv_5x5", 2), ("sep_conv_3x3", 0))
    assert g.node_edges("reduce", 4) == (("sep_conv_3x3", 1), ("skip_connect", 3))  # tie: first op
    assert all(op != "none" for op, _ in g.normal + g.reduce)
    assert g.normal_concat == (2, 3, 4, 5) and space.parse(str(g)) == g
    with pytest.raises(ValueError, match="group 'reduce'"):
        space.derive({"normal": a})


def test_largest_genotype_and_one_hot(space):
    g = space.largest_genotype()
    assert {op for op, _ in g.normal + g.reduce} == {"sep_conv_5x5"}
    w = space.one_hot(DARTS_V2)
    assert w["normal"].shape == (14, 8) and torch.equal(w["normal"].sum(-1), torch.ones(14))
    assert w["normal"][edge_index(5, 2), DARTS_OPS.index("dil_conv_3x3")] == 1
    assert w["normal"][edge_index(5, 1), DARTS_OPS.index("none")] == 1


# -- modules -----------------------------------------------------------------------------------------
def test_parameter_counts_match_the_reference_code(space):
    """DARTS logs: search model (C=16, 8 layers) 1.930618 M, DARTS_V2 (C=36, 20 layers) 3.349342 M."""
    assert sum(p.numel() for p in space.build_supernet(16, 8, 10).parameters()) == 1_930_618
    net = space.build_network(DARTS_V2, 36, 20, 10, auxiliary=True)
    assert sum(p.numel() for n, p in net.named_parameters() if "auxiliary" not in n) == 3_349_342


def test_factorized_reduction_is_a_sparse_3x3_stride_2_conv():
    torch.manual_seed(0)
    op = ReduceOp(4, 6)
    for size in (8, 7):
        x = torch.randn(2, 4, size, size)
        k = torch.zeros(6, 4, 3, 3)
        k[:3, :, 1, 1] = op.conv_1.weight[:, :, 0, 0]
        k[3:, :, 2, 2] = op.conv_2.weight[:, :, 0, 0]
        torch.testing.assert_close(op(x), F.conv2d(x, k, stride=2, padding=1))
    x = torch.randn(2, 4, 8, 8)  # the reference formula on even sizes
    ref = torch.cat([op.conv_1(x), op.conv_2(x[:, :, 1:, 1:])], dim=1)
    assert torch.equal(op(x), ref)


def test_supernet_structure_forward_and_backward(space):
    torch.manual_seed(0)
    net = space.build_supernet(channels=4, cells=3, num_classes=5)
    cells = list(net.cells)
    assert [c.reduction for c in cells] == [False, True, True]
    assert [c.group for c in cells] == ["normal", "reduce", "reduce"]
    cell = cells[1]
    assert isinstance(cell, DartsSearchCell) and len(cell.edges) == 14
    assert all(isinstance(e, MixedEdge) for e in cell.edges)
    assert cell.edge_io[:3] == [(2, 0), (2, 1), (3, 0)] and cell.edge_keys[-1] == "5<-4"
    assert cell.edge_strides == [2 if j < 2 else 1 for _, j in cell.edge_io]
    assert cell.edges[0].specs == darts_candidates(2) and cell.edges[2 + 0].specs[3].chain[1] == Reduce(2)
    assert cells[0].edge_strides == [1] * 14
    assert space.edge_keys["normal"] == cell.edge_keys and space.arch_shapes == {"normal": (14, 8),
                                                                                 "reduce": (14, 8)}
    alphas = {g: torch.randn(*s, requires_grad=True) for g, s in space.arch_shapes.items()}
    x = torch.randn(2, 3, 16, 16)
    out = net(x, Mixing({g: F.softmax(a, -1) for g, a in alphas.items()}))
    assert out.shape == (2, 5)
    out.square().sum().backward()
    assert all(a.grad is not None and a.grad.abs().sum() > 0 for a in alphas.values())
    assert net.stem[0].weight.grad is not None


@pytest.mark.parametrize("train", [True, False])
def test_supernet_at_one_hot_weights_equals_the_discrete_network(space, train):
    torch.manual_seed(1)
    net = space.build_supernet(channels=4, cells=3, num_classes=5)
    g = space.derive({k: torch.randn(*s) for k, s in space.arch_shapes.items()})
    discrete = space.build_network(g, channels=4, cells=3, num_classes=5, bn=SEARCH_BN)
    x = torch.randn(3, 3, 8, 8)
    net.train(train)
    discrete.train(train)
    with torch.no_grad():
        before = (net(x, Mixing(space.one_hot(g))) - discrete(x)).abs().max()
        copy_weights_from_supernet(discrete, net)
        torch.testing.assert_close(discrete(x), net(x, Mixing(space.one_hot(g))))
    assert before > 1e-3  # the comparison is not vacuous


def test_discrete_network_with_auxiliary_head_and_drop_path(space):
    torch.manual_seed(0)
    net = space.build_network(DARTS_V2, channels=4, cells=3, num_classes=5, auxiliary=True)
    x = torch.randn(4, 3, 16, 16)
    logits, aux = net.train()(x)
    assert logits.shape == aux.shape == (4, 5)
    (logits.sum() + aux.sum()).backward()
    assert net.auxiliary_head.classifier.weight.grad is not None
    assert net.eval()(x).shape == (4, 5)  # eval: logits only
    assert space.build_network(DARTS_V2, 4, 3, 5).train()(x).shape == (4, 5)  # no head: logits only
    net.train()
    assert net.drop_path_prob == 0.0
    net.drop_path_prob = 0.5
    torch.manual_seed(1)
    a = net(x)[0]
    torch.manual_seed(2)
    assert not torch.allclose(a, net(x)[0])  # different paths dropped
    # the retraining code's entry point, as used by `toponas train`
    from toponas.training.network import build_network

    assert isinstance(build_network("darts", DARTS_V2, 4, 3, 5, auxiliary=True).eval()(x), torch.Tensor)


# -- strategies and the search loop ------------------------------------------------------------------
# Small sample counts keep the sampling strategies fast; FP-NAS starts joint over the 5 edges into node 5.
FAST = {"parsec": {"samples": 2}, "fp-nas": {"sample_scale": 0.01, "joint_after": 0},
        "advantage": {"drop_none": True}}


ONE_SHOT = ("spos", "bn-nas", "pi-nas", "nasi", "hurricane", "fox-nas")


@pytest.mark.parametrize("name", [n for n in STRATEGIES.names()
                                  if n not in ONE_SHOT and "darts" in (STRATEGIES.get(n).families or ("darts",))])
def test_one_step_of_every_strategy(space, name):
    """Every bilevel strategy that searches DARTS spaces (one-shot and training-free ones are for NB201 style
    spaces; a strategy that declares other families, e.g. da-nas, is left out)."""
    torch.manual_seed(0)
    model = space.build_supernet(channels=4, cells=3, num_classes=5).train()
    strategy = create_strategy(name, space, FAST.get(name, {}))
    ctx = strategy.make_context(model)
    h = ctx.hyper
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g),
             torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g))
    a0 = {k: a.detach().clone() for k, a in strategy.alphas.items()}
    strategy.new_epoch(0, h.epochs)
    stats = strategy.step(ctx, *batch)
    assert torch.isfinite(stats.w_loss) and torch.isfinite(stats.a_loss)
    assert any(not torch.equal(a.detach(), a0[k]) for k, a in strategy.alphas.items())
    genotype = strategy.derive()
    assert isinstance(genotype, Genotype) and space.parse(str(genotype)) == genotype
    if name == "fp-nas":
        assert strategy.is_joint and strategy.joint_rows == {g: list(range(9, 14)) for g in space.groups}


def test_fp_nas_flops_target_is_a_clear_error_on_darts(space):
    with pytest.raises(NotImplementedError, match="NAS-Bench-201 style spaces only"):
        create_strategy("fp-nas", space, {"flops_target": 100.0})


def test_search_on_digits_writes_a_parseable_genotype(tmp_path, space):
    cfg = SearchConfig(space="darts", strategy="darts-v1", dataset="digits", subset=64, batch_size=16,
                       channels=4, cells=3, seed=0, out=str(tmp_path / "run"),
                       cache_dir=str(tmp_path / "cache"), device="cpu", hyper={"epochs": 1})
    result = Search(cfg, progress=False, log=lambda _: None).run()
    data = json.loads((tmp_path / "run" / "result.json").read_text())
    assert data["space"] == "darts" and data["genotype"] == result.genotype
    assert space.parse(data["genotype"]) == space.parse(result.genotype)
    assert set(data["alphas"]) == {"normal", "reduce"}
    assert list(data["alphas"]["reduce"]) == space.edge_keys["reduce"]
    assert set(data["alphas"]["normal"]["2<-0"]) == set(DARTS_OPS)


@pytest.mark.parametrize("name", ["darts-v1", "darts-v2", "advantage"])
def test_a_supernet_without_normal_cells_steps(space, name):
    """One layer is a reduction cell only: the normal group takes no part in the loss (zero gradient)."""
    torch.manual_seed(0)
    model = space.build_supernet(channels=4, cells=1, num_classes=5).train()
    strategy = create_strategy(name, space, FAST.get(name, {}))
    ctx = strategy.make_context(model)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g),
             torch.randn(4, 3, 8, 8, generator=g), torch.randint(0, 5, (4,), generator=g))
    a0 = {k: a.detach().clone() for k, a in strategy.alphas.items()}
    strategy.new_epoch(0, ctx.hyper.epochs)
    stats = strategy.step(ctx, *batch)
    assert torch.isfinite(stats.a_loss)
    assert not torch.equal(strategy.alphas["reduce"].detach(), a0["reduce"])
