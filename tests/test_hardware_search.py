"""HURRICANE and FOX-NAS: one step, a search under a latency budget, and a resume to the same network."""

import json

import pytest
import torch
from test_hardware import synthetic_table

from toponas.config import SearchConfig
from toponas.loop import Search, SearchInterrupted
from toponas.spaces import create_space
from toponas.strategies import create_strategy

pytestmark = pytest.mark.usefixtures("one_thread")
FAST = dict(space="mobile", dataset="digits", subset=16, batch_size=8, channels=4, topo="off", device="cpu")
HYPER = {"epochs": 2, "evo_population": 4, "evo_cycles": 4, "eval_batches": 1, "fox_samples": 12, "sa_steps": 200}


def hyper_for(name):
    return {k: v for k, v in HYPER.items() if not (k.startswith(("fox_", "sa_")) and name != "fox-nas")}


def test_hurricane_samples_the_later_rows_first_then_the_earlier():
    space = create_space("mobile")
    s = create_strategy("hurricane", space, {"epochs": 2})
    s.new_epoch(0, 2)
    default = s.smallest_choices()
    for _ in range(5):
        c = s.sample_choices()
        flat = [int(i) for g in c.values() for i in g]
        assert all(flat[p] == [int(i) for g in default.values() for i in g][p] for p in s.earlier)
    s._stage1 = tuple(0 for _ in s.later)
    s.new_epoch(1, 2)
    c = [int(i) for g in s.sample_choices().values() for i in g]
    assert all(c[p] == 0 for p in s.later)
    assert [space.spec.stages[i].name for i in range(s.split)] == ["s1", "s2"]
    with pytest.raises(ValueError, match="stage1_epochs"):
        create_strategy("hurricane", space, {"epochs": 2, "stage1_epochs": 2})


@pytest.mark.parametrize("name", ["hurricane", "fox-nas"])
def test_search_under_a_latency_budget_and_resume(tmp_path, name):
    table = synthetic_table(image_size=16)
    table.save(tmp_path / "lut.json")
    from toponas.hardware.model import LatencyModel

    (lo, _), (hi, _) = LatencyModel(table, create_space("mobile")).extremes()
    target = lo + 0.25 * (hi - lo)
    cfg = SearchConfig(strategy=name, out=str(tmp_path / "a"), hyper=hyper_for(name), lut=str(tmp_path / "lut.json"),
                       latency_target=target, **FAST)
    whole = Search(cfg, progress=False, log=lambda m: None).run()
    data = json.loads((tmp_path / "a" / "result.json").read_text())
    assert data["predicted_latency_ms"] <= target and data["latency_target_ms"] == target
    assert data["measured_latency_ms"] > 0 and data["mflops"] > 0
    assert data["measured_latency_drift"] is None  # the synthetic table has no fit networks to measure again
    assert data["predicted_latency_ms"] == pytest.approx(table.predict(create_space("mobile"), whole.genotype))
    cut = cfg.replace(out=str(tmp_path / "b"))
    with pytest.raises(SearchInterrupted):
        Search(cut, progress=False, log=lambda m: None, interrupt_after=1).run()
    resumed = Search(cut, resume=True, progress=False, log=lambda m: None).run()
    assert resumed.genotype == whole.genotype
    space = create_space("mobile")
    net = space.build_network(whole.genotype, 4)  # retrainable / exportable as any mobile architecture
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_hurricane_search_meets_a_tight_budget_in_both_stages(tmp_path):
    """Stage 1 may spend the whole budget on the later rows; stage 2's draws are repaired to fit."""
    from toponas.hardware.budget import Budget, ExpectedFlops
    from toponas.hardware.model import LatencyModel

    space = create_space("mobile")
    table = synthetic_table()
    model = LatencyModel(table, space)
    (lo, _), (hi, _) = model.extremes()
    s = create_strategy("hurricane", space, {"epochs": 2, "evo_population": 4, "evo_cycles": 4})
    s.budget = Budget(table, model, lo + 0.1 * (hi - lo), flops=ExpectedFlops(space))
    s.fitness = lambda a: float(sum(a))  # no supernet: prefer large choices, which the budget forbids
    s._epochs = 2
    s.after_epoch(None, 0, None)
    s.search()
    assert s.within_budget(s._found) and s.within_budget(s.compose(s._stage1, s.later, s.default))
