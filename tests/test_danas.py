"""DA-NAS: the simplifier's plan of the alive candidates equals the plain pruned supernet; search, resume, bad input."""

import copy
import json

import pytest
import torch
from click.testing import CliRunner

from toponas import topo
from toponas.cli import main
from toponas.config import ConfigError, SearchConfig
from toponas.loop import Search, SearchInterrupted
from toponas.spaces import create_space
from toponas.spaces.protocol import search_units
from toponas.strategies import create_strategy
from toponas.topo.items import item_paths

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("name, size", [("nb201", 8), ("mobile", 16)])
def test_the_planned_alive_set_equals_the_plain_pruned_supernet(name, size):
    """Float64: outputs and gradients (weights and alphas) of the exact plan of the alive candidates equal the
    plain supernet running only them; the plan holds no pruned candidate and is made once per alive set."""
    torch.manual_seed(0)
    space = create_space(name)
    kwargs = {"cells": 1} if name == "nb201" else {}
    plain = space.build_supernet(4, num_classes=5, **kwargs).double().train()
    planned = topo.simplify(copy.deepcopy(plain), "exact").train()
    strategy = create_strategy("da-nas", space, {"epochs": 3}).double()
    with torch.no_grad():
        for a in strategy.alphas.values():
            a.normal_()
    strategy.prune()
    mixing = strategy.mixing()
    assert mixing.pruned and mixing.active is not None
    x = torch.randn(4, 3, size, size, dtype=torch.float64)
    outs, grads = [], []
    for model in (plain, planned):
        out = model(x, strategy.mixing())  # a fresh mixing each (deterministic: a masked softmax)
        loss = (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)).sum()
        params = [*model.parameters(), *strategy.alphas.values()]
        outs.append(out.detach())
        grads.append(torch.autograd.grad(loss, params, allow_unused=True))
    torch.testing.assert_close(outs[1], outs[0], rtol=0, atol=1e-10)
    for g_plan, g_plain in zip(*grads):
        if g_plain is None:
            assert g_plan is None or not g_plan.abs().any()
        else:
            torch.testing.assert_close(g_plan, g_plain, rtol=0, atol=1e-9)
    units = [u for _, u in search_units(planned)]
    assert units and all(len(u._alive_programs) == 1 for u in units)
    for u in units:  # the plan holds exactly the alive candidates (the cache key), fewer than all
        ((key, alive),) = u._alive_programs.items()
        paths = {(ks[p.slot], p.cand) for ks, plan in alive.groups for it in plan.items for p in item_paths(it)}
        assert paths == {(k, c) for k, cands in enumerate(key) for c in cands}
        assert len(paths) < sum(len(e.specs) for e in u.edges)
    planned(x, strategy.mixing())  # the same alive set again: no new plan
    assert all(len(u._alive_programs) == 1 for u in units)


def tiny(tmp_path, name, **hyper):
    return SearchConfig(strategy="da-nas", dataset="digits", subset=32, batch_size=8, channels=4, cells=1, seed=2,
                        device="cpu", out=str(tmp_path / name), cache_dir=str(tmp_path / "cache"),
                        hyper={"epochs": 3, **hyper})


def test_search_prunes_by_stage_grows_the_classes_and_resumes_exactly(tmp_path):
    full = Search(tiny(tmp_path, "full"), progress=False, log=lambda m: None)
    full.run()
    data = json.loads((tmp_path / "full" / "result.json").read_text())
    assert [h["alive"]["cell"] for h in data["history"]] == [30, 18, 12]  # 5 -> 3 -> 2 candidates per edge
    assert [h["data_share"] for h in data["history"]] == pytest.approx([0.4, 0.7, 1.0])
    assert data["da_nas"]["alive"]["cell"] == [2] * 6 and sorted(data["da_nas"]["class_order"]) == list(range(10))
    for edge in data["alphas"]["cell"].values():  # the derived candidate is alive
        assert edge
    cut = tiny(tmp_path, "cut")
    with pytest.raises(SearchInterrupted):
        Search(cut, progress=False, log=lambda m: None, interrupt_after=3).run()  # epoch 2, after a pruning
    resumed = Search(cut, resume=True, progress=False, log=lambda m: None)
    result = resumed.run()
    assert result.genotype == data["genotype"]
    assert torch.equal(full.strategy.alphas["cell"], resumed.strategy.alphas["cell"])
    assert torch.equal(full.strategy.class_order, resumed.strategy.class_order)


def test_bad_hyperparameters_are_one_error_line(tmp_path):
    with pytest.raises(ConfigError, match="stages"):
        Search(tiny(tmp_path, "a", stages=0), progress=False, log=lambda m: None)
    out = CliRunner().invoke(main, ["search", "--strategy", "da-nas", "--dataset", "digits", "--hp", "keep_frac=0",
                                    "--out", str(tmp_path / "b")])
    assert out.exit_code == 1 and out.output.strip().startswith("error:") and "keep_frac" in out.output
    assert "Traceback" not in out.output and not (tmp_path / "b").exists()
    with pytest.raises(ConfigError, match="da-nas searches nb201/mobile"):
        Search(tiny(tmp_path, "c").replace(space="darts"), progress=False, log=lambda m: None)
