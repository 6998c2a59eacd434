"""ISTA-NAS: the LASSO recovery, sparse mixing (only the support runs), resume, both spaces."""

from __future__ import annotations

import pytest
import torch

from toponas import topo
from toponas.config import SearchConfig
from toponas.loop import Search, SearchInterrupted
from toponas.spaces import create_space
from toponas.strategies import create_strategy
from toponas.strategies.ista import lasso_fista


def tiny(tmp_path, name="run", **changes):
    base = dict(strategy="ista-nas", dataset="digits", subset=96, batch_size=16, channels=4, cells=1, seed=3,
                out=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), device="cpu", hyper={"epochs": 2})
    base.update(changes)
    return SearchConfig(**base)


def quiet(_msg):
    pass


def test_fista_meets_the_lasso_optimality_conditions():
    gen = torch.Generator().manual_seed(0)
    A = torch.rand(7, 21, generator=gen, dtype=torch.float64)
    b = torch.randn(7, generator=gen, dtype=torch.float64)
    lam = 1e-2
    x = lasso_fista(A, b, lam, 20000)
    grad = A.T @ (A @ x - b)
    on = x != 0
    assert on.any() and (~on).any()  # sparse, not empty
    assert torch.allclose(grad[on], -lam * torch.sign(x[on]), atol=1e-6)  # KKT on the support
    assert (grad[~on].abs() <= lam + 1e-6).all()  # and off it


@pytest.mark.parametrize("space_name, per_group", [("nb201", 6), ("darts", 8)])
def test_only_the_support_runs_and_topo_full_equals_the_plain_supernet(space_name, per_group):
    space = create_space(space_name)
    torch.manual_seed(0)
    strategy = create_strategy("ista-nas", space, {"lasso_iters": 200}).double()
    strategy.new_epoch(0, 1)
    mixing = strategy.mixing()
    for g, active in mixing.active.items():
        assert sum(len(c) for c in active) == per_group  # one per NB201 edge, two per DARTS node
        dense = (mixing.weights[g] != 0).nonzero().tolist()
        assert sorted(dense) == sorted([r, c] for r, cs in enumerate(active) for c in cs)
    plain = space.build_supernet(4, 1 if space_name == "nb201" else 3, 10).double()
    ran = set()  # (edge module, candidate index) of every candidate module that ran
    for name, module in plain.named_modules():
        head, sep, tail = name.rpartition(".ops.")
        if sep and tail.isdigit():
            module.register_forward_hook(lambda m, i, o, key=(head, int(tail)): ran.add(key))
    simple = topo.simplify(plain, "full")  # a copy: the hooks stay on the plain supernet
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    out_plain = plain(x, mixing)
    per_cell: dict[str, int] = {}
    for edge, _ in ran:
        cell = edge.rsplit(".edges.", 1)[0]
        per_cell[cell] = per_cell.get(cell, 0) + 1
    assert per_cell and set(per_cell.values()) == {per_group}  # exactly the support ran, in every cell
    if space_name == "nb201":
        assert {(int(e.rsplit(".", 1)[1]), c) for e, c in ran} == {
            (k, c) for k, cs in enumerate(mixing.active["cell"]) for c in cs}
    out_simple = simple(x, strategy.mixing())
    assert torch.allclose(out_plain, out_simple, atol=1e-10)
    codes = list(strategy.codes.values())
    g_plain = torch.autograd.grad(out_plain.square().sum(), codes)
    g_simple = torch.autograd.grad(out_simple.square().sum(), codes)
    for a, b in zip(g_plain, g_simple):
        assert torch.allclose(a, b, atol=1e-9) and a.abs().sum() > 0  # b learns through z


def test_mixing_is_linear_in_b_and_equals_the_code_at_its_own_image():
    space = create_space("nb201")
    torch.manual_seed(1)
    strategy = create_strategy("ista-nas", space, {"lasso_iters": 500}).double()
    strategy.new_epoch(0, 1)
    with torch.no_grad():  # b = A x for the recovered x: then z = x on the support
        for k in range(6):
            strategy.codes["cell"][k] = getattr(strategy, f"A_cell_{k}") @ getattr(strategy, f"x_cell_{k}")
    w = strategy.mixing().weights["cell"]
    for k in range(6):
        x, support = getattr(strategy, f"x_cell_{k}"), getattr(strategy, f"support_cell_{k}")
        assert torch.allclose(w[k][support], x[support]) and (w[k][~support] == 0).all()


@pytest.mark.parametrize("strategy, space, cells", [("ista-nas", "nb201", 1), ("ista-nas-one-stage", "nb201", 1),
                                                     ("ista-nas", "darts", 3)])
def test_resume_mid_epoch_reaches_the_same_state(tmp_path, strategy, space, cells):
    hyper = {"epochs": 2, "lasso_iters": 300}
    mode = "full" if space == "nb201" else "off"  # building the simplified DARTS supernet thrice is slow
    full = Search(tiny(tmp_path, "full", strategy=strategy, space=space, cells=cells, hyper=hyper, topo=mode),
                  progress=False, log=quiet)
    result = full.run()
    cut = tiny(tmp_path, "cut", strategy=strategy, space=space, cells=cells, hyper=hyper, topo=mode)
    with pytest.raises(SearchInterrupted):
        Search(cut, progress=False, log=quiet, interrupt_after=4).run()  # inside the second epoch
    resumed = Search(cut, resume=True, progress=False, log=quiet)
    again = resumed.run()
    assert again.genotype == result.genotype
    for a, b in zip(full.strategy.state_dict().values(), resumed.strategy.state_dict().values()):
        assert torch.equal(a, b)
    for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(a, b)
    assert all(sum(h["active_candidates"].values()) == (6 if space == "nb201" else 16) for h in result.history)


def test_one_stage_freezes_and_then_trains_the_final_cell_only(tmp_path):
    cfg = tiny(tmp_path, strategy="ista-nas-one-stage", hyper={"epochs": 3, "freeze_tol": 1e9, "lasso_iters": 200})
    search = Search(cfg, progress=False, log=quiet)
    search.setup(None)
    search._run_epoch(0)
    search._run_epoch(1)  # its recovery freezes every block (the tolerance is huge)
    codes = search.strategy.codes["cell"].detach().clone()
    assert search.strategy.all_frozen()
    search._run_epoch(2)
    assert torch.equal(codes, search.strategy.codes["cell"])  # no architecture step once frozen
    assert search.history[-1]["frozen_blocks"] == {"cell": 6}
