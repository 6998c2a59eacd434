"""DrNAS's progressive variant: partial-channel edges, pruning and widening between the stages,
warm-up epochs, every --topo mode, and resume across the stage switch."""

import json

import pytest
import torch

from toponas import topo
from toponas.config import SearchConfig
from toponas.loop import Search, SearchInterrupted
from toponas.loop.checkpoint import load_checkpoint
from toponas.spaces import create_space
from toponas.spaces.darts import darts_candidates
from toponas.spaces.mixed import MixedEdge
from toponas.spaces.nb201 import CANDIDATES, NB201_OPS
from toponas.spaces.partial import PartialCell, PartialEdge, channel_shuffle, fit_shape
from toponas.strategies import create_strategy
from toponas.topo.modules import SimplifiedEdge

SPECS = tuple(CANDIDATES[n] for n in NB201_OPS)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is faster than two, and far faster on a shared, loaded machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make(topo_mode="off", dtype=torch.float32, **hyper):
    """A progressive DrNAS on a tiny NB201 supernet: stages of 2 epochs, the first of each a warm-up."""
    torch.manual_seed(0)
    space = create_space("nb201")
    strategy = create_strategy("drnas", space, {"progressive": True, "epochs": 4, "warmup_frac": 0.5, **hyper})
    model = strategy.prepare_supernet(space.build_supernet(channels=8, cells=1, num_classes=5), 0)
    model = topo.simplify(model, topo_mode).to(dtype).train()
    strategy = strategy.to(dtype)
    ctx = strategy.make_context(model)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(6, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 5, (6,), generator=g),
             torch.randn(6, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 5, (6,), generator=g))
    return space, model, strategy, ctx, batch


def simplifier(mode):
    return lambda m: topo.simplify(m, mode).train()


def run_epoch(strategy, ctx, batch, epoch, mode):
    ctx.epoch = epoch
    strategy.new_epoch(epoch, strategy.hyper.epochs)
    stats = strategy.step(ctx, *batch)
    return stats, strategy.after_epoch(ctx, epoch, simplifier(mode))  # the context of the next epoch


def test_channel_shuffle_and_partial_edge_shapes():
    x = torch.arange(8.0).view(1, 8, 1, 1)
    assert channel_shuffle(x, 4).flatten().tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 4, 1, 5, 2, 6, 3, 7]
    edge = PartialEdge(SPECS, 8, 4)
    assert isinstance(edge.edge, MixedEdge) and edge.edge.channels == 2
    x = torch.randn(3, 8, 5, 5)
    skip, none = torch.eye(5)[1], torch.eye(5)[0]
    torch.testing.assert_close(edge(x, skip), channel_shuffle(x, 4))  # skip: only the shuffle is left
    y = edge(x, none)  # the candidates' channels (0, 4 after the shuffle) are zero, the bypass is x
    assert y.shape == x.shape and y[:, [0, 4]].abs().sum() == 0
    torch.testing.assert_close(y[:, [1, 2, 3, 5, 6, 7]], x[:, [2, 4, 6, 3, 5, 7]])
    reduce = PartialEdge(darts_candidates(2), 8, 4)  # a DARTS reduction edge: the bypass is max-pooled
    assert reduce(x[..., :4, :4], torch.full((8,), 1 / 8)).shape == (3, 8, 2, 2)
    with pytest.raises(ValueError, match="do not split"):
        PartialEdge(SPECS, 6, 4)
    t = torch.arange(3.0)
    assert fit_shape(t, (5,)).tolist() == [0, 1, 2, 0, 1] and fit_shape(t, (2,)).tolist() == [0, 1]


@pytest.mark.parametrize("mode", ["exact", "full"])
def test_the_simplifier_rewrites_the_inner_edges_in_both_stages(mode):
    space, model, strategy, ctx, batch = make(mode)
    cells = [m for m in model.modules() if isinstance(m, PartialCell)]
    partial = [m for m in model.modules() if isinstance(m, PartialEdge)]
    assert len(cells) == 3 and len(partial) == 18  # 3 stages x 1 cell x 6 edges
    assert all(type(p.edge) is SimplifiedEdge and p.edge.channels == p.channels // 4 for p in partial)
    for epoch in range(2):
        _, ctx = run_epoch(strategy, ctx, batch, epoch, mode)
    assert all(type(p.edge) is SimplifiedEdge and p.edge.channels == p.channels // 2 and p.k == 2 for p in partial)


@pytest.mark.parametrize("mode", topo.MODES)
def test_one_step_per_stage_under_every_topo_mode(mode):
    space, model, strategy, ctx, batch = make(mode)
    for epoch in range(4):
        a0 = strategy.alphas["cell"].detach().clone()
        w0 = [p.detach().clone() for p in model.parameters()]
        stats, ctx = run_epoch(strategy, ctx, batch, epoch, mode)
        assert torch.isfinite(stats.w_loss) and torch.isfinite(stats.a_loss)
        warm = epoch in (0, 2)  # the first epoch of each stage is a warm-up: no architecture step
        assert torch.equal(strategy.alphas["cell"].detach(), a0) == warm
        if epoch != 1:  # (after epoch 1 the supernet was widened: new parameters)
            assert sum(not torch.equal(p.detach(), w) for p, w in zip(model.parameters(), w0)) > len(w0) // 2
    assert int(strategy.kept_cell.sum()) == 6 * 3
    cell = strategy.derive()
    assert space.parse(str(cell)) == cell


def test_exact_mode_equals_plain_across_the_switch():
    """Float64, same samples: the exact rewrite changes nothing in either stage of the progressive variant."""
    results = []
    for mode in ("off", "exact"):
        space, model, strategy, ctx, batch = make(mode, dtype=torch.float64)
        for epoch in range(4):
            torch.manual_seed(5 + epoch)
            _, ctx = run_epoch(strategy, ctx, batch, epoch, mode)
        results.append((strategy.alphas["cell"].detach().clone(), [p.detach().clone() for p in model.parameters()]))
    (a_off, w_off), (a_exact, w_exact) = results
    torch.testing.assert_close(a_exact, a_off, rtol=0, atol=1e-9)
    assert len(w_off) == len(w_exact)
    for a, b in zip(w_exact, w_off):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_pruning_keeps_the_top_three_and_derivation_never_picks_a_pruned_candidate():
    space, model, strategy, ctx, batch = make()
    order = torch.tensor([[0.5, 0.1, 0.4, 0.3, 0.2]] * 6)  # top 3: none, nor_conv_1x1, nor_conv_3x3
    order[5] = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])  # top 3: nor_conv_1x1, nor_conv_3x3, avg_pool_3x3
    with torch.no_grad():
        strategy.alphas["cell"].copy_(order)
    strategy.prune()
    expected = order.topk(3, dim=-1).indices.sort(-1).values
    assert torch.equal(strategy.kept("cell"), expected)
    mix = strategy.mixing()
    w = mix.weights["cell"]
    assert mix.active["cell"] == expected.tolist()
    pruned = ~strategy.kept_cell
    assert (w[pruned] == 0).all() and (w[~pruned] > 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(6))
    (grad,) = torch.autograd.grad((w * torch.arange(5.0)).sum(), [strategy.alphas["cell"]])
    assert grad[~pruned].abs().sum() > 0 and (grad[pruned] == 0).all()
    assert (strategy.probabilities()["cell"][pruned] == 0).all()
    with torch.no_grad():  # a pruned candidate grows largest: it is still never derived
        strategy.alphas["cell"][:, 1] = 10.0
    assert "skip_connect" not in strategy.derive().ops
    assert strategy.derive().ops[5] == "avg_pool_3x3"
    with torch.no_grad():
        strategy.alphas["cell"][0, 2] = 5.0  # a second pruning only chooses among the kept ones
    strategy.hyper.keep = 1
    strategy.prune()
    assert strategy.kept("cell")[0].tolist() == [2] and strategy.kept("cell")[5].tolist() == [4]


def test_widening_copies_the_weights_and_the_momentum():
    space, model, strategy, ctx, batch = make()
    ctx.epoch = 1  # two steps of stage 1 after its warm-up
    for _ in range(2):
        strategy.step(ctx, *batch)
    conv = model.cells[0].edges[3].edge.ops[3][1]  # nor_conv_3x3 of edge 3<-0, first cell
    old_w = conv.weight.detach().clone()
    old_m = ctx.w_optimizer.state[conv.weight]["momentum_buffer"].clone()
    assert old_w.shape == (2, 2, 3, 3)
    ctx.w_optimizer.param_groups[0]["lr"] = 0.0123
    old_ctx = ctx
    ctx = strategy.after_epoch(ctx, 1, simplifier("off"))  # the end of stage 1: a new context
    assert ctx.a_optimizer is old_ctx.a_optimizer and ctx.w_optimizer is not old_ctx.w_optimizer
    conv = model.cells[0].edges[3].edge.ops[3][1]
    assert conv.weight.shape == (4, 4, 3, 3)
    torch.testing.assert_close(conv.weight.detach(), old_w.repeat(2, 2, 1, 1))
    mom = ctx.w_optimizer.state[conv.weight]["momentum_buffer"]
    torch.testing.assert_close(mom, old_m.repeat(2, 2, 1, 1))
    assert ctx.w_optimizer.param_groups[0]["lr"] == 0.0123
    assert {id(p) for p in ctx.weights} == {id(p) for p in model.parameters()}
    assert {id(p) for p in ctx.w_optimizer.param_groups[0]["params"]} == {id(p) for p in model.parameters()}
    assert int(strategy.kept_cell.sum()) == 18
    assert model(batch[0], strategy.mixing()).shape == (6, 5)


def test_hyperparameter_checks_and_defaults():
    space = create_space("nb201")
    plain = create_strategy("drnas", space)
    assert not plain.hyper.progressive and not hasattr(plain, "kept_cell")
    h = create_strategy("drnas", space, {"progressive": "true"}).hyper
    assert (h.epochs, h.switch, h.stage1_k, h.stage2_k, h.keep) == (100, 50, 4, 2, 3)
    assert [e for e in range(100) if h.warming_up(e)] == list(range(10)) + list(range(50, 60))
    with pytest.raises(ValueError, match="at least 2 epochs"):
        create_strategy("drnas", space, {"progressive": True, "epochs": 1})
    with pytest.raises(ValueError, match="exceeds"):
        create_strategy("drnas", space, {"progressive": True, "keep": 6})
    with pytest.raises(ValueError, match="stage2_k"):
        create_strategy("drnas", space, {"progressive": True, "stage1_k": 2, "stage2_k": 4})


def tiny(tmp_path, name):
    return SearchConfig(strategy="drnas", dataset="digits", subset=96, batch_size=16, channels=8, cells=1,
                        seed=3, out=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), device="cpu",
                        topo="full", hyper={"epochs": 4, "progressive": True, "warmup_frac": 0.5})


def quiet(_msg):
    pass


def test_resume_across_the_stage_switch_is_exact(tmp_path):
    full = Search(tiny(tmp_path, "full"), progress=False, log=quiet)
    full.run()
    assert int(full.strategy.kept_cell.sum()) == 18
    for stop_after in (6, 7):  # 3 steps per epoch: at the switch (end of epoch 2), then inside stage 2
        cut = tiny(tmp_path, f"cut{stop_after}")
        with pytest.raises(SearchInterrupted):
            Search(cut, progress=False, log=quiet, interrupt_after=stop_after).run()
        state = load_checkpoint(tmp_path / f"cut{stop_after}" / "checkpoint.pt")
        assert (state["epoch"], state["step"]) == divmod(stop_after, 3)
        resumed = Search(cut, resume=True, progress=False, log=quiet)
        resumed.run()
        assert torch.equal(full.strategy.alphas["cell"], resumed.strategy.alphas["cell"])
        assert torch.equal(full.strategy.kept_cell, resumed.strategy.kept_cell)
        a, b = full.model.state_dict(), resumed.model.state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        hist_full = json.loads((tmp_path / "full" / "result.json").read_text())["history"]
        hist_cut = json.loads((tmp_path / f"cut{stop_after}" / "result.json").read_text())["history"]
        assert [h["genotype"] for h in hist_full] == [h["genotype"] for h in hist_cut]
        assert [h["w_loss"] for h in hist_full] == pytest.approx([h["w_loss"] for h in hist_cut])
