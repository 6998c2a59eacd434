"""Rule 4 (shared pointwise stage) on the DARTS space: plans, kernel algebra, exactness, one-hot equality, cost."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

import toponas.topo.program as topo_program
from toponas.spaces.darts import DartsSearchCell, DartsSpace, darts_candidates
from toponas.spaces.mixed import MixedEdge, Mixing
from toponas.topo import SimplifiedUnit, explain, saved_activation_bytes, simplify, verify
from toponas.topo.kernels import embed_kernel
from toponas.topo.plan import SepStage, partition_depthwise, plan_group
from toponas.topo.verify import _literal_reference

DT = torch.float64


def quiet_simplify(model, mode: str, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the stride-2 skip (factorized reduction) is not planned
        return simplify(model, mode, **kw)


@pytest.mark.parametrize("stride", [1, 2])
def test_plan_shares_one_stage_then_the_second_stage(stride: int) -> None:
    plan = plan_group((darts_candidates(stride),), 8, frozenset({"prefix", "fusion", "float_norm",
                                                                 "shared_pointwise"}))
    stages = [it for it in plan.items if isinstance(it, SepStage)]
    assert len(stages) == 1
    top = stages[0]
    assert [p.name for p in top.paths] == ["sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5"]
    assert top.stride == stride and top.floated
    assert [top.paths[i].name for i in top.ending] == ["dil_conv_3x3", "dil_conv_5x5"]
    (second,) = top.next
    assert [p.name for p in second.paths] == ["sep_conv_3x3", "sep_conv_5x5"] and second.stride == 1
    assert "shared stage" in "\n".join(plan.describe(["e"]))


def test_without_rule_4_each_separable_candidate_is_its_own_exact_stage() -> None:
    plan = plan_group((darts_candidates(1),), 8, frozenset({"prefix", "fusion", "float_norm"}))
    stages = [it for it in plan.items if isinstance(it, SepStage)]
    assert len(stages) == 4 and not any(s.floated for s in stages)
    assert len({s.source for s in stages}) == 1  # rule 1: one relu for all four


def test_depthwise_calls_are_chosen_by_cost() -> None:
    geos = [(3, 1), (5, 1), (3, 2), (5, 2)]
    # small channel counts: call overhead dominates, one dense 9x9 call holds all four
    assert partition_depthwise(geos, 8) == ((9, 1, (0, 1, 2, 3)),)
    # many channels: a 9x9 kernel (81 taps) costs more than two 5x5 ones (25 each, one dilated) plus a call;
    # 3x3 and 3x3 dilation 2 both fit in a dense 5x5 at no extra cost
    wide = partition_depthwise(geos, 64)
    assert sorted((k, d, m) for k, d, m in wide) == [(5, 1, (0, 1, 2)), (5, 2, (3,))]


@pytest.mark.parametrize("geo, target", [((3, 2), (5, 2)), ((3, 2), (9, 1)), ((5, 2), (9, 1)), ((3, 1), (5, 1))])
def test_embedded_depthwise_kernel_computes_the_same(geo, target) -> None:
    (k, d), (tk, td) = geo, target
    x = torch.randn(2, 3, 11, 11, dtype=DT)
    w = torch.randn(3, 1, k, k, dtype=DT)
    ref = F.conv2d(x, w, None, 2, d * (k - 1) // 2, d, 3)
    out = F.conv2d(x, embed_kernel(w, d, k, tk, td), None, 2, td * (tk - 1) // 2, td, 3)
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError):
        embed_kernel(w, 1, 3, 5, 2)  # a dense kernel is not on a dilation-2 grid


def edge_inputs(stride: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    edge = MixedEdge(darts_candidates(stride), 4).to(DT)
    x = torch.randn(3, 4, 8, 8, generator=g, dtype=DT)
    alpha = torch.randn(8, generator=g, dtype=DT).requires_grad_()
    return edge, x, alpha


def out_and_grads(edge, x, alpha):
    out = edge(x, F.softmax(alpha, -1))
    probe = torch.linspace(-1, 1, out.numel(), dtype=DT).view_as(out)
    params = list(edge.parameters())
    return out, torch.autograd.grad((out * probe).sum(), [*params, alpha], allow_unused=True)


@pytest.mark.parametrize("stride", [1, 2])
def test_full_edge_equals_the_literal_rule_formula(stride: int) -> None:
    edge, x, alpha = edge_inputs(stride)
    simple = quiet_simplify(copy.deepcopy(edge), "full")
    literal = _literal_reference(edge, frozenset({"prefix", "fusion", "float_norm", "shared_pointwise"}))
    (o1, g1), (o2, g2) = out_and_grads(simple, x, alpha), out_and_grads(literal, x, alpha)
    torch.testing.assert_close(o1, o2)
    for a, b in zip(g1, g2):
        if a is None or b is None:
            assert a is None and b is None
        else:
            torch.testing.assert_close(a, b)


def test_a_wrong_rule_4_is_caught(monkeypatch) -> None:
    """Without the kernel normalization the edge no longer equals the rule formula (by order 1)."""
    edge, x, alpha = edge_inputs(1)
    monkeypatch.setattr(topo_program, "unit_rms_kernel", lambda w: w)  # no normalization
    simple = quiet_simplify(copy.deepcopy(edge), "full")
    literal = _literal_reference(edge, frozenset({"prefix", "fusion", "float_norm", "shared_pointwise"}))
    diff = (out_and_grads(simple, x, alpha)[0] - out_and_grads(literal, x, alpha)[0]).abs().max()
    assert diff > 1e-2


@pytest.mark.parametrize("stride", [1, 2])
def test_full_edge_at_every_vertex_is_that_candidate(stride: int) -> None:
    edge, x, _ = edge_inputs(stride)
    simple = quiet_simplify(copy.deepcopy(edge), "full")
    for i in range(8):
        w = F.one_hot(torch.tensor(i), 8).to(DT)
        with torch.no_grad():
            ref, out = edge(x, w), simple(x, w)
        assert (out - ref).abs().max() <= 1e-2 * max(float(ref.abs().max()), 1e-12), edge.specs[i].name


def test_verify_darts_full_passes() -> None:
    """Soft weights vs the literal formula, sampled steps vs plain, genotype vertices vs the discrete network."""
    report = verify(DartsSpace(), "full", channels=4, size=8, batch=2, trials=1)
    assert report.ok, str(report)
    assert any("vertex all sep_conv_5x5" in c.name for c in report.checks)
    assert any("random genotype" in c.name for c in report.checks)


def test_simplified_darts_cell_saves_activation_memory() -> None:
    torch.manual_seed(0)
    cell = DartsSearchCell(8, 8, 8, False, False).train()
    simple = quiet_simplify(copy.deepcopy(cell), "full")
    assert isinstance(simple, SimplifiedUnit) and isinstance(simple, DartsSearchCell)
    s0, s1 = torch.randn(4, 8, 16, 16), torch.randn(4, 8, 16, 16)
    alpha = torch.randn(14, 8, requires_grad=True)
    params = list(cell.parameters())
    plain = saved_activation_bytes(lambda: cell(s0, s1, Mixing({"normal": F.softmax(alpha, -1)})), exclude=params)
    ours = saved_activation_bytes(lambda: simple(s0, s1, Mixing({"normal": F.softmax(alpha, -1)})), exclude=params)
    assert plain > 2.5 * ours


def test_sampled_step_runs_the_base_computation() -> None:
    torch.manual_seed(0)
    cell = DartsSearchCell(4, 4, 4, True, False).to(DT).train()
    simple = quiet_simplify(copy.deepcopy(cell), "full")
    s0, s1 = torch.randn(2, 4, 8, 8, dtype=DT), torch.randn(2, 4, 8, 8, dtype=DT)
    pick = torch.randint(0, 8, (14,))
    w = F.one_hot(pick, 8).to(DT)
    mixing = Mixing({"reduce": w}, {"reduce": [[int(i)] for i in pick]})
    torch.testing.assert_close(simple(s0, s1, mixing), cell(s0, s1, mixing), rtol=0, atol=0)


def test_explain_darts_shows_the_shared_stages_and_their_cost() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        text = explain(DartsSpace(), "full", channels=4, height=8, width=8, batch=2)
    assert "shared stage of sep_conv_3x3 + sep_conv_5x5 + dil_conv_3x3 + dil_conv_5x5" in text
    assert "rule 4 depthwise calls per shared stage" in text
    assert "fewer activation bytes kept for backward" in text
