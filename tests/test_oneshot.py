"""SPOS, BN-NAS, Pi-NAS and NASI: one step each, the evolution, a resumed search, and the rank of their supernets."""

import json
import random

import pytest
import torch
from click.testing import CliRunner

import toponas
from toponas import topo
from toponas.cli import main
from toponas.config import SearchConfig
from toponas.loop import Search, SearchInterrupted
from toponas.spaces import create_space
from toponas.strategies import create_strategy
from toponas.strategies.evolution import evolve
from toponas.strategies.oneshot import candidate_bns


def make(name, **hyper):
    torch.manual_seed(0)
    space = create_space("nb201")
    model = space.build_supernet(channels=4, cells=1, num_classes=5).train()
    strategy = create_strategy(name, space, hyper)
    model = strategy.prepare_supernet(model, 0)
    ctx = strategy.make_context(model)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g),
             torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g))
    strategy.new_epoch(0, strategy.hyper.epochs)
    return space, model, strategy, ctx, batch


def snapshot(model):
    return {k: p.detach().clone() for k, p in model.named_parameters()}


@pytest.mark.parametrize("name", ["spos", "pi-nas"])
def test_one_shot_step_trains_one_path_and_leaves_alphas(name):
    space, model, strategy, ctx, batch = make(name)
    w0, a0 = snapshot(model), strategy.alphas["cell"].detach().clone()
    torch.manual_seed(3)  # a draw with convolutions on several edges
    stats = strategy.step(ctx, *batch)
    assert torch.isfinite(stats.w_loss) and torch.isfinite(stats.a_loss)
    changed = {k for k, p in model.named_parameters() if not torch.equal(p.detach(), w0[k])}
    assert "stem.0.weight" in changed and "classifier.weight" in changed
    # single path: of every edge's five candidates at most two (Pi-NAS: two paths) were trained
    convs = {k.split(".ops.")[0] for k in changed if ".ops." in k}
    per_edge = {e: len({k for k in changed if k.startswith(e + ".ops.")}) for e in convs}
    assert per_edge and max(per_edge.values()) <= (2 if name == "pi-nas" else 1)
    assert torch.equal(strategy.alphas["cell"].detach(), a0)
    if name == "pi-nas":  # the mean teacher moved towards the student
        assert not torch.equal(strategy.teacher.stem[0].weight, w0["stem.0.weight"])


def test_pi_nas_supervised_step_trains_the_backbone_with_labels():
    space, model, strategy, ctx, batch = make("pi-nas", supervised=True)
    w0 = snapshot(model)
    torch.manual_seed(3)
    stats = strategy.step(ctx, *batch)
    assert torch.isfinite(stats.w_loss)
    assert not torch.equal(model.stem[0].weight.detach(), w0["stem.0.weight"])


def test_flops_cap_below_every_cell_is_one_error_line(tmp_path):
    r = CliRunner().invoke(main, ["search", "--strategy", "spos", "--dataset", "digits", "--subset", "32",
                                  "--channels", "2", "--cells", "1", "--epochs", "1", "--hp", "flops_cap=1",
                                  "--out", str(tmp_path / "run"), "--no-progress"])
    assert r.exit_code == 1 and r.output.strip().startswith("error: flops_cap 1 MFLOPs is below"), r.output
    assert "Traceback" not in r.output


def test_bn_nas_step_trains_only_bn_parameters_and_the_classifier():
    space, model, strategy, ctx, batch = make("bn-nas")
    w0 = snapshot(model)
    strategy.step(ctx, *batch)
    changed = {k for k, p in model.named_parameters() if not torch.equal(p.detach(), w0[k])}
    frozen = {k for k, p in model.named_parameters() if not p.requires_grad}
    assert changed and not changed & frozen
    assert all(k.startswith("classifier.") or isinstance(model.get_submodule(k.rsplit(".", 1)[0]),
                                                         torch.nn.BatchNorm2d) for k in changed)
    bns = candidate_bns(model)
    assert bns[(0, 0)] == [None] * 3  # none has no BN, in each of the three cells
    assert all(bn is not None and bn.affine for (e, c), layers in bns.items() if c > 0 for bn in layers)
    scores = strategy.candidate_scores()
    assert scores.shape == (6, 5) and scores[:, 0].eq(0).all() and scores[:, 1:].gt(0).all()


@pytest.mark.filterwarnings("ignore:toponas.topo")
def test_bn_nas_trains_the_bn_of_a_simplified_supernet():
    """The candidates' declarations are updated with their affine BNs, so the simplifier runs them."""
    torch.manual_seed(0)
    space = create_space("nb201")
    strategy = create_strategy("bn-nas", space, {})
    model = strategy.prepare_supernet(space.build_supernet(channels=4, cells=1, num_classes=5), 0)
    model = topo.simplify(model, "full").train()
    ctx = strategy.make_context(model)
    strategy.new_epoch(0, 1)
    x, y = torch.randn(4, 3, 8, 8), torch.randint(0, 5, (4,))
    strategy.step(ctx, x, y, x, y)
    assert any(bn.weight.grad is not None for layers in candidate_bns(model).values() for bn in layers if bn)


def test_nasi_step_moves_alphas_and_no_weight():
    space, model, strategy, ctx, batch = make("nasi", samples=1)
    w0, a0 = snapshot(model), strategy.alphas["cell"].detach().clone()
    stats = strategy.step(ctx, *batch)
    assert torch.isfinite(stats.a_loss) and float(stats.a_loss) < 0  # -R, R = G > 0
    assert not torch.equal(strategy.alphas["cell"].detach(), a0)
    assert all(torch.equal(p.detach(), w0[k]) for k, p in model.named_parameters())
    a1 = strategy.alphas["cell"].detach().clone()
    strategy.step(ctx, *batch)  # after T samples: report only
    assert torch.equal(strategy.alphas["cell"].detach(), a1) and int(strategy.samples_done) == 1


def test_evolution_finds_the_optimum_under_a_constraint():
    def fitness(a):
        return sum(a)

    res = evolve(fitness, [5] * 6, population=8, sample=3, cycles=200, rng=random.Random(0))
    assert res.best == (4,) * 6 and res.fitness == 24
    capped = evolve(fitness, [5] * 6, population=8, sample=3, cycles=200, rng=random.Random(0),
                    allowed=lambda a: sum(a) <= 10)
    assert capped.fitness == 10 and all(sum(a) <= 10 for a, _ in capped.history)
    assert len({a for a, _ in res.history}) == len(res.history)  # each scored once
    with pytest.raises(ValueError, match="FLOPs cap"):
        evolve(fitness, [5] * 6, allowed=lambda a: False, max_tries=10)


FAST = dict(dataset="digits", subset=64, batch_size=16, channels=4, cells=1, topo="off", device="cpu")
EVO = {"evo_population": 4, "evo_cycles": 4, "eval_batches": 1}


def test_spos_search_resumes_to_the_same_cell(tmp_path):
    cfg = SearchConfig(strategy="spos", out=str(tmp_path / "a"), hyper={"epochs": 2, **EVO}, **FAST)
    whole = Search(cfg, progress=False, log=lambda m: None).run()
    cut = cfg.replace(out=str(tmp_path / "b"))
    with pytest.raises(SearchInterrupted):
        Search(cut, progress=False, log=lambda m: None, interrupt_after=3).run()
    resumed = Search(cut, resume=True, progress=False, log=lambda m: None).run()
    assert resumed.genotype == whole.genotype
    data = json.loads((tmp_path / "a" / "result.json").read_text())
    assert data["strategy"] == "spos" and data["evolution"]["evaluations"] == 8
    assert data["history"][-1]["searched"] and not data["history"][0]["searched"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    out = {}
    for name in ("spos", "bn-nas"):
        toponas.search(strategy=name, out=str(root / name), epochs=1, log=lambda m: None, **FAST, **EVO)
        out[name] = root / name
    table = root / "digits.csv"
    from toponas.ranking.runner import all_cells

    rng = random.Random(0)
    table.write_text("arch,digits\n" + "".join(f"{c},{rng.uniform(10, 90):.2f}\n"
                                               for c in all_cells(create_space("nb201"))))
    return out, table


@pytest.mark.parametrize("indicator,run", [("supernet", "spos"), ("bn-gamma", "bn-nas")])
def test_rank_reads_a_trained_supernet(tmp_path, runs, indicator, run):
    paths, table = runs
    out = tmp_path / "r.json"
    r = CliRunner().invoke(main, ["rank", "--indicator", indicator, "--supernet", str(paths[run]), "--cells", "6",
                                  "--dataset", "digits", "--benchmark", str(table), "--json", str(out),
                                  "--no-progress"])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert len(data["cells"]) == 6 and all(c["score"] is not None for c in data["cells"])
    assert data["about"][indicator]["strategy"] == run
    if indicator == "bn-gamma":  # the sum over six edges of mean |gamma| (1 at the start, near 1 after a step)
        assert all(0 < c["score"] < 12 for c in data["cells"])
