"""The simplifier (toponas.topo): exactness, vertex equality, sharing, ablation, cost and checks."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import toponas.topo.modules as topo_modules
import toponas.topo.program as topo_program
from toponas.spaces import create_space
from toponas.spaces.cell import Cell
from toponas.spaces.mixed import MixedEdge, Mixing
from toponas.spaces.nb201 import CANDIDATES, SEARCH_BN, NB201Space
from toponas.spaces.primitives import BN, Conv, OpSpec, ReLU
from toponas.topo import (
    MODES,
    RULES,
    SimplifiedEdge,
    SimplifiedUnit,
    explain,
    resolve_rules,
    saved_activation_bytes,
    simplify,
    verify,
)
from toponas.topo.kernels import avg_pool_same
from toponas.topo.measure import aten_ops
from toponas.topo.plan import Stack, plan_group

DT = torch.float64
C, N, B, S = 4, 1, 3, 8  # channels, cells per stage, batch, image size: tiny and fast


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def space() -> NB201Space:
    return NB201Space()


def supernet(space: NB201Space, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = space.build_supernet(C, N, num_classes=10).to(DT)
    with torch.no_grad():  # generic affine BN parameters, so every gradient is non-trivial
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                m.weight.normal_(1.0, 0.3)
                m.bias.normal_(0.0, 0.3)
    return net


def run(model: nn.Module, x: torch.Tensor, alpha: torch.Tensor, probe: torch.Tensor, active=None):
    """Output, named parameter gradients and alpha gradient of ``<model(x, softmax(alpha)), probe>``."""
    w = F.softmax(alpha, dim=-1)
    if active is not None:  # GDAS-style hard one-hot with a straight-through gradient
        w = F.one_hot(torch.tensor([a[0] for a in active]), w.shape[-1]).to(DT) - w.detach() + w
    out = model(x, Mixing({"cell": w}, None if active is None else {"cell": active}))
    names, params = zip(*model.named_parameters())
    grads = torch.autograd.grad((out * probe).sum(), [*params, alpha], allow_unused=True)
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip([*params, alpha], grads)]
    return out.detach(), dict(zip(names, grads[:-1])), grads[-1]


def assert_same(a, b, rtol: float = 1e-10) -> None:
    """Outputs, every parameter gradient and the alpha gradient agree (float64, tight)."""
    (out_a, g_a, al_a), (out_b, g_b, al_b) = a, b
    assert set(g_a) == set(g_b)
    torch.testing.assert_close(out_a, out_b, rtol=rtol, atol=rtol * out_b.abs().max().item())
    floor = 1e-4 * max(g.abs().max().item() for g in g_b.values())  # gradients that are exactly 0
    for name in g_b:
        scale = max(g_b[name].abs().max().item(), floor)
        torch.testing.assert_close(g_a[name], g_b[name], rtol=rtol, atol=rtol * scale, msg=name)
    torch.testing.assert_close(al_a, al_b, rtol=rtol, atol=rtol * al_b.abs().max().item())


def inputs(seed: int, shape=(6, 5)):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 3, S, S, generator=g, dtype=DT)
    alpha = torch.randn(*shape, generator=g, dtype=DT).requires_grad_()
    probe = torch.randn(B, 10, generator=g, dtype=DT)
    return x, alpha, probe


# -- rules and modes -----------------------------------------------------------------------------


def test_resolve_rules() -> None:
    assert MODES == ("off", "exact", "full")
    assert RULES == ("prefix", "float_norm", "shared_pointwise", "block_merge", "fusion", "block_stack")
    assert resolve_rules("off") == frozenset()
    assert resolve_rules("exact") == {"prefix", "fusion", "block_stack"}
    assert resolve_rules("full") == set(RULES)
    assert resolve_rules("full", disable=["float_norm"]) == set(RULES) - {"float_norm"}
    assert resolve_rules("full", rules=["float_norm"]) == {"float_norm"}
    assert resolve_rules("full", rules="prefix,fusion") == {"prefix", "fusion"}


@pytest.mark.parametrize(
    "args, message",
    [
        (("fast",), "valid modes: off, exact, full"),
        (("full", ["prefix", "bogus"]), "valid rules: prefix, float_norm, shared_pointwise"),
        (("full", None, ["nope"]), "valid rules"),
        (("exact", ["float_norm"]), "not exact"),
        (("off", ["prefix"]), "applies no rules"),
    ],
)
def test_resolve_rules_errors(args, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        resolve_rules(*args)


def test_simplify_rejects_unknown_mode_and_rule(space) -> None:
    with pytest.raises(ValueError, match="valid modes"):
        simplify(supernet(space), "turbo")
    with pytest.raises(ValueError, match="valid rules"):
        simplify(supernet(space), "full", disable=["prefixx"])


# -- exact mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("train", [True, False])
def test_exact_equals_plain(space, seed: int, train: bool) -> None:
    plain = supernet(space, seed)
    simple = simplify(copy.deepcopy(plain), "exact")
    plain.train(train)
    simple.train(train)
    x, alpha, probe = inputs(seed)
    assert_same(run(simple, x, alpha, probe), run(plain, x, alpha, probe))


@pytest.mark.parametrize("mode", ["exact", "full"])
def test_sampled_step_runs_plain_computation(space, mode: str) -> None:
    """With ``active`` candidates only those run, exactly as in the base (values and gradients)."""
    plain = supernet(space, 3)
    simple = simplify(copy.deepcopy(plain), mode)
    x, alpha, probe = inputs(3)
    active = [[int(i)] for i in torch.randint(0, 5, (6,), generator=torch.Generator().manual_seed(3))]
    assert_same(run(simple, x, alpha, probe, active), run(plain, x, alpha, probe, active), rtol=0)


@pytest.mark.parametrize("disable", [(), ("prefix",), ("fusion",), ("prefix", "fusion")])
def test_exact_each_rule_off_still_exact(space, disable) -> None:
    plain = supernet(space, 4)
    simple = simplify(copy.deepcopy(plain), "exact", disable=disable)
    x, alpha, probe = inputs(4)
    assert_same(run(simple, x, alpha, probe), run(plain, x, alpha, probe))


def test_full_without_float_norm_is_exact(space) -> None:
    plain = supernet(space, 5)
    simple = simplify(copy.deepcopy(plain), "full", disable=["float_norm"])
    x, alpha, probe = inputs(5)
    assert_same(run(simple, x, alpha, probe), run(plain, x, alpha, probe))


def test_exact_other_candidates(space) -> None:
    """Dilated, larger and affine-free convolutions stack exactly too (1x1, 3x3, 5x5, dilated 3x3)."""
    names = ["none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "nor_conv_5x5", "dil_conv_3x3",
             "avg_pool_3x3"]
    wide = NB201Space("wide", names)
    plain = supernet(wide, 6)
    simple = simplify(copy.deepcopy(plain), "exact")
    x, alpha, probe = inputs(6, (6, len(names)))
    assert_same(run(simple, x, alpha, probe), run(plain, x, alpha, probe))


def test_exact_affine_bn_candidates() -> None:
    """Candidates whose bn has affine parameters stack exactly too (scale and shift carry the weight)."""
    affine = OpSpec("aff_conv_3x3", (ReLU(), Conv(3), BN(affine=True)))
    aff1 = OpSpec("aff_conv_1x1", (ReLU(), Conv(1), BN(affine=True)))
    space = NB201Space("affine", [CANDIDATES["none"], CANDIDATES["nor_conv_3x3"], affine, aff1])
    plain = supernet(space, 2)
    with torch.no_grad():
        for m in plain.modules():
            if isinstance(m, nn.BatchNorm2d) and m.affine:
                m.bias.normal_(0.0, 0.3)
    x, alpha, probe = inputs(2, (6, 4))
    for mode in ("exact", "full"):  # full: only one non-affine conv per edge, nothing floats: exact
        simple = simplify(copy.deepcopy(plain), mode)
        assert_same(run(simple, x, alpha, probe), run(plain, x, alpha, probe))


# -- full mode -----------------------------------------------------------------------------------


def discrete_copy(space, simple: nn.Module, pick: list[int]) -> nn.Module:
    """The discrete network of ``pick`` (search BN) with the supernet's weights of those candidates."""
    net = space.build_network(Cell.from_ops([space.op_names[i] for i in pick]), C, N, 10, bn=SEARCH_BN)
    net = net.to(DT)
    state = simple.state_dict()
    new = {}
    for key in net.state_dict():
        parts = key.split(".")
        if parts[0] == "cells" and parts[2] == "ops":
            k = int(parts[3])
            key_src = ".".join([*parts[:2], "edges", str(k), "ops", str(pick[k]), *parts[4:]])
        else:
            key_src = key
        new[key] = state[key_src]
    net.load_state_dict(new)
    return net


@pytest.mark.parametrize("pick", [[i] * 6 for i in range(5)] + [[3, 2, 1, 4, 0, 3], [2, 3, 3, 1, 2, 4]])
@pytest.mark.parametrize("train", [True, False])
def test_full_vertex_equals_discrete_network(space, pick: list[int], train: bool) -> None:
    simple = simplify(supernet(space, 7), "full")
    net = discrete_copy(space, simple, pick)
    simple.train(train)
    net.train(train)
    x, _, _ = inputs(7)
    w = F.one_hot(torch.tensor(pick), 5).to(DT)
    with torch.no_grad():
        out, ref = simple(x, Mixing({"cell": w})), net(x)
    # only BN's eps acts differently on the rescaled kernels: ~1e-4 of the output scale
    assert (out - ref).abs().max() <= 1e-2 * ref.abs().max()


def test_full_between_vertices_differs_from_plain(space) -> None:
    """The rewrite is active: off the vertices full mode is not the plain supernet, yet finite."""
    plain = supernet(space, 8)
    simple = simplify(copy.deepcopy(plain), "full")
    x, alpha, probe = inputs(8)
    out, grads, g_alpha = run(simple, x, alpha, probe)
    ref, _, ref_alpha = run(plain, x, alpha, probe)
    assert torch.isfinite(out).all() and torch.isfinite(g_alpha).all()
    assert all(torch.isfinite(g).all() for g in grads.values())
    assert (out - ref).abs().max() > 1e-3 * ref.abs().max()
    assert (g_alpha - ref_alpha).abs().max() > 1e-3 * ref_alpha.abs().max()


@pytest.mark.parametrize("disable", [("prefix",), ("fusion",), ("prefix", "fusion")])
def test_full_rules_prefix_and_fusion_do_not_change_full(space, disable) -> None:
    """Sharing and stacking are exact, so full mode without them computes the same thing."""
    plain = supernet(space, 9)
    ref = simplify(copy.deepcopy(plain), "full")
    simple = simplify(copy.deepcopy(plain), "full", disable=disable)
    x, alpha, probe = inputs(9)
    assert_same(run(simple, x, alpha, probe), run(ref, x, alpha, probe))


@pytest.mark.parametrize("mode", ["exact", "full"])
def test_pooled_taps_compute_what_the_recomputed_taps_did(space, mode: str, monkeypatch) -> None:
    """Pooling taps summed by linearity at the node (``program.POOLED_TAPS``) against the per-source recomputed
    taps they replaced: the same outputs and gradients on the whole supernet (float64)."""
    simple = simplify(supernet(space, 4), mode)
    x, alpha, probe = inputs(4)
    pooled = run(simple, x, alpha, probe)
    ops_pooled = sum(aten_ops(lambda: run(simple, x, alpha, probe)).values())
    monkeypatch.setattr(topo_program, "POOLED_TAPS", False)
    assert_same(pooled, run(simple, x, alpha, probe))
    assert sum(aten_ops(lambda: run(simple, x, alpha, probe)).values()) > ops_pooled  # the switch took effect


def test_plans_show_each_rule(space) -> None:
    specs = (space.specs,) * 3
    exact = plan_group(specs, 16, frozenset({"prefix", "fusion"}))
    stacks = [it for it in exact.items if isinstance(it, Stack)]
    assert len(stacks) == 1 and [c.kernel for c in stacks[0].calls] == [1, 3]  # 1x1 is not padded
    full = plan_group(specs, 16, frozenset(RULES))
    (stack,) = [it for it in full.items if isinstance(it, Stack)]
    assert len(stack.calls) == 1 and all(it.floated for it in stack.items) and len(stack.items) == 3
    no_fusion = plan_group(specs, 16, frozenset({"prefix", "float_norm"}))
    assert not any(isinstance(it, Stack) for it in no_fusion.items)


# -- structure -----------------------------------------------------------------------------------


def test_simplify_shares_parameters_in_place(space) -> None:
    net = supernet(space)
    params = list(net.parameters())
    keys = list(net.state_dict())
    out = simplify(net, "full")
    assert out is net
    assert [id(p) for p in net.parameters()] == [id(p) for p in params]
    assert list(net.state_dict()) == keys
    cells = [m for m in net.modules() if isinstance(m, SimplifiedUnit)]
    assert len(cells) == 3 * N
    assert simplify(supernet(space), "off").cells[0].__class__.__name__ == "SearchCell"
    with pytest.raises(ValueError, match="already simplified"):
        simplify(net, "exact")


def test_simplify_without_mixed_edges_is_an_error() -> None:
    with pytest.raises(ValueError, match="no search unit or MixedEdge"):
        simplify(nn.Sequential(nn.Linear(2, 2)), "exact")


class _UnknownCell(nn.Module):
    """A cell the simplifier does not know as a whole: two edges, outputs concatenated."""

    def __init__(self, specs) -> None:
        super().__init__()
        self.a = MixedEdge(specs, C)
        self.b = MixedEdge(specs, C)

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        wa, wb = mixing.weights["cell"]
        return torch.cat([self.a(x, wa), self.b(x, wb)], dim=1).mean(dim=(1, 2, 3))


@pytest.mark.parametrize("mode", ["exact", "full"])
def test_unknown_cell_gets_edge_level_rewrite(space, mode: str) -> None:
    torch.manual_seed(0)
    plain = _UnknownCell(space.specs).to(DT)
    simple = simplify(copy.deepcopy(plain), mode)
    assert isinstance(simple.a, SimplifiedEdge) and isinstance(simple.b, SimplifiedEdge)
    x = torch.randn(B, C, S, S, dtype=DT)
    alpha = torch.randn(2, 5, dtype=DT, requires_grad=True)
    probe = torch.randn(B, dtype=DT)
    if mode == "exact":
        assert_same(run(simple, x, alpha, probe), run(plain, x, alpha, probe))
    else:  # at one-hot weights the edge equals its single candidate
        w = F.one_hot(torch.tensor([3, 2]), 5).to(DT)
        with torch.no_grad():
            out, ref = simple(x, Mixing({"cell": w})), plain(x, Mixing({"cell": w}))
        assert (out - ref).abs().max() <= 1e-2 * ref.abs().max()


def test_unplannable_candidate_warns_and_stays_exact() -> None:
    """A candidate without a planner runs its own modules, with a warning naming it."""
    odd = OpSpec("dw_conv_3x3", (ReLU(), Conv(3, depthwise=True), BN()))
    space = NB201Space("odd", [CANDIDATES["skip_connect"], CANDIDATES["nor_conv_3x3"], odd])
    plain = supernet(space, 1)
    with pytest.warns(UserWarning, match="dw_conv_3x3"):
        simple = simplify(copy.deepcopy(plain), "exact")
    x, alpha, probe = inputs(1, (6, 3))
    assert_same(run(simple, x, alpha, probe), run(plain, x, alpha, probe))


@pytest.mark.parametrize("name, layers", [("nb201", 1), ("darts", 4)])
def test_exact_second_order_gradient_equals_plain(name: str, layers: int) -> None:
    """NASI's proxy, the squared norm of the weights' gradient differentiated in the architecture (a backward with
    ``create_graph``), is the plain supernet's in exact mode: every custom backward of the executor records a
    differentiable computation there (the pooling taps' did not: 14.7 of 21.6 off on nb201, 425 of 426 on darts)."""
    space = create_space(name)
    torch.manual_seed(0)
    plain = space.build_supernet(4, layers, 10).to(DT).train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4, 3, 8, 8, generator=g, dtype=DT)
    y = torch.randint(0, 10, (4,), generator=g)
    alphas = {k: torch.randn(*s, generator=g, dtype=DT).requires_grad_() for k, s in space.arch_shapes.items()}

    def proxy(model):
        loss = F.cross_entropy(model(x, Mixing({k: F.softmax(a, -1) for k, a in alphas.items()})), y)
        grads = torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad], create_graph=True,
                                    allow_unused=True)
        r = sum((gr * gr).sum() for gr in grads if gr is not None)
        got = torch.autograd.grad(r, list(alphas.values()), allow_unused=True)
        return [torch.zeros_like(a) if d is None else d for a, d in zip(alphas.values(), got)]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # darts: candidates the planner leaves to their modules
        simple = simplify(copy.deepcopy(plain), "exact")
    for a, b in zip(proxy(simple), proxy(plain)):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9 * b.abs().max().item())


def test_darts_space_runs_exact_cell_by_cell() -> None:
    """DARTS cells are rewritten as a whole; only the factorized-reduction skip warns; exact equals plain."""
    space = create_space("darts")
    torch.manual_seed(0)
    plain = space.build_supernet(4, 3, 10).to(DT)
    with pytest.warns(UserWarning) as record:
        simple = simplify(copy.deepcopy(plain), "exact")
    assert {str(w.message).split("'")[1] for w in record} == {"skip_connect"}  # relu -> reduce -> bn, stride 2
    assert sum(isinstance(m, SimplifiedUnit) for m in simple.modules()) == 3
    x = torch.randn(2, 3, 16, 16, dtype=DT)
    alphas = {g: torch.randn(*shape, dtype=DT, requires_grad=True) for g, shape in space.arch_shapes.items()}

    def grads(model: nn.Module):
        out = model(x, Mixing({g: F.softmax(a, -1) for g, a in alphas.items()}))
        return out, torch.autograd.grad(out.sum(), [*model.parameters(), *alphas.values()])

    (out_a, g_a), (out_b, g_b) = grads(simple), grads(plain)
    torch.testing.assert_close(out_a, out_b, rtol=1e-10, atol=1e-12)
    for a, b in zip(g_a, g_b):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_avg_pool_same_matches_torch() -> None:
    x = torch.randn(2, 3, 5, 7, dtype=DT, requires_grad=True)
    ref = nn.AvgPool2d(3, 1, 1, count_include_pad=False)(x)
    torch.testing.assert_close(avg_pool_same(x, 3), ref)
    assert torch.autograd.gradcheck(lambda t: avg_pool_same(t, 3), (x,))
    x5 = torch.randn(1, 2, 6, 6, dtype=DT, requires_grad=True)
    torch.testing.assert_close(avg_pool_same(x5, 5), nn.AvgPool2d(5, 1, 2, count_include_pad=False)(x5))


# -- cost, explain, verify -----------------------------------------------------------------------


def test_saved_activations_fewer_in_full_than_off(space) -> None:
    torch.manual_seed(0)
    plain = space.build_supernet(4, 1, 10)
    full = simplify(copy.deepcopy(plain), "full")
    exact = simplify(copy.deepcopy(plain), "exact")
    x = torch.randn(8, 3, 32, 32)  # activations, not the (tiny) kernels, dominate as in real use
    alpha = torch.zeros(6, 5, requires_grad=True)

    def saved(model: nn.Module) -> int:
        return saved_activation_bytes(lambda: model(x, Mixing({"cell": F.softmax(alpha, -1)})))

    off_b, exact_b, full_b = saved(plain), saved(exact), saved(full)
    assert full_b < exact_b < off_b
    assert off_b >= 2.5 * full_b


def test_explain_mentions_candidates_and_cost(space) -> None:
    text = explain(space, "full", channels=4, height=8, width=8, batch=2)
    for name in space.op_names:
        assert name in text
    assert "W_G * bn(conv(sum_i w_i Khat_i)) over nor_conv_1x1 + nor_conv_3x3" in text
    assert "saved for backward" in text and "convolution calls" in text
    exact = explain(space, "exact", channels=16, height=8, width=8, batch=2)
    assert "conv 1x1" in exact and "cost:" in exact and "Khat" not in exact


@pytest.mark.parametrize("mode", ["exact", "full"])
def test_verify_passes(space, mode: str) -> None:
    report = verify(space, mode, channels=4, size=8, batch=3, trials=1)
    assert report.ok, str(report)
    assert "max |diff|" in str(report)


def test_verify_off_is_not_ok(space) -> None:
    assert not verify(space, "off").ok  # nothing was checked


def test_verify_catches_unnormalized_kernels(space, monkeypatch) -> None:
    """Dropping rule 3's kernel normalization is invisible at vertices, not between them."""
    monkeypatch.setattr(topo_program, "normalize_kernel", lambda w: w)
    report = verify(space, "full", channels=4, size=8, batch=3, trials=1)
    assert not report.ok
    assert any("rule formula" in c.name for c in report.failures)


def test_verify_catches_a_wrong_weight(space, monkeypatch) -> None:
    """An exact rewrite that scales the conv weights' mixing weights is caught."""
    real = topo_program._rows
    monkeypatch.setattr(topo_program, "_rows", lambda *a: real(*a) * 1.01)
    report = verify(space, "exact", channels=4, size=8, batch=3, trials=1)
    assert not report.ok
    assert {"output", "grad alpha"} <= {c.name.rsplit(": ", 1)[-1] for c in report.failures}


def test_verify_catches_a_dropped_tap(space, monkeypatch) -> None:
    real = topo_modules.combine
    monkeypatch.setattr(topo_modules, "combine", lambda terms, like: real(terms[:-1] or terms, like))
    assert not verify(space, "full", channels=4, size=8, batch=3, trials=1).ok
