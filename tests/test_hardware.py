"""The latency look-up table: build on a tiny space, predict = sum + overhead, resume, bad tables (CLI)."""

import json

import pytest
import torch

from toponas.hardware import LatencyError, LatencyTable, all_parts, arch_parts, build, lut, random_archs
from toponas.hardware.fit import corrected, fit_correction, group_of
from toponas.hardware.model import LatencyModel
from toponas.hardware.timing import device_record
from toponas.spaces import create_space
from toponas.spaces.mobile import MobileSpace
from toponas.spaces.mobile_arch import MobileSpec, Stage

pytestmark = pytest.mark.usefixtures("one_thread")
TINY = MobileSpec(stem=4, stages=(Stage("a", 4, 2, 1), Stage("b", 8, 2, 2)), head=16)


def tiny_space() -> MobileSpace:
    return MobileSpace("tiny", TINY)


def quick_build(space, out, **kw):
    args = dict(image_size=8, device=torch.device("cpu"), channels=TINY.base, warmup=0, repeats=1,
                fit_networks=2, rounds=1, log=lambda m: None)
    args.update(kw)
    return build(space, out, **args)


class Ran:
    def __init__(self, result) -> None:
        self.returncode, self.stdout, self.stderr = result.exit_code, result.stdout, result.stderr


def cli(*args: str) -> Ran:
    """The command line in this process (click's runner: the same error path, no interpreter start-up)."""
    from click.testing import CliRunner

    from toponas.cli import main

    return Ran(CliRunner().invoke(main, list(args)))


def synthetic_table(space_name="mobile", image_size=8, channels=4, value=0.25) -> LatencyTable:
    """A complete table with made-up entries (no timing), valid on this machine."""
    space = create_space(space_name)
    entries = {p.key: value + 0.001 * i for i, p in enumerate(all_parts(space, channels, image_size))}
    return LatencyTable(space_name, image_size, channels, 10, 1, device_record(torch.device("cpu"), 1),
                        {"warmup": 0, "repeats": 1, "statistic": "median", "mode": "eval, no_grad"}, entries,
                        {"ms": 0.5, "seed": lut.FIT_SEED, "networks": []})


def test_build_tiny_space_and_predict_is_sum_plus_overhead(tmp_path):
    space = tiny_space()
    table = quick_build(space, tmp_path / "lut.json")
    keys = [p.key for p in all_parts(space, TINY.base, 8)]
    assert sorted(table.entries) == sorted(keys) and table.missing(space) == []
    assert all(v > 0 for v in table.entries.values())
    assert len(table.overhead["networks"]) == 2 and table.device["threads"] == 1
    assert table.correction == "stages" and set(table.overhead["groups"]) == {"a", "b", "head"}
    assert table.rounds == 1  # the fit networks' passes: a check and a search measure with the same
    checked = lut.check(table, space, 2, seed=0, device=torch.device("cpu"))
    assert checked["drift_networks"] == 2 and checked["drift"] > 0 and checked["correction"] == "stages"
    assert not {n["arch"] for n in checked["networks"]} & {n["arch"] for n in table.overhead["networks"]}
    from toponas.hardware.budget import Budget

    found = checked["networks"][0]["arch"]  # a search's result records the same drift beside its measurement
    record = Budget(table, LatencyModel(table, space)).record(space, space.parse(found))
    assert record["measured_latency_ms"] > 0 and record["measured_latency_drift"] > 0
    loaded = LatencyTable.load(tmp_path / "lut.json")
    assert loaded.entries == table.entries and loaded.overhead == table.overhead
    model = LatencyModel(loaded, space)
    for arch in random_archs(space, 6, seed=3):
        parts = arch_parts(space, arch, TINY.base)
        fit = loaded.overhead["groups"]
        entry = {k: loaded.entries[k] if k == "stem" else
                 fit[group_of(k)]["scale"] * loaded.entries[k] + fit[group_of(k)]["offset_ms"] for k in parts}
        expected = sum(entry.values()) + loaded.overhead["ms"]
        assert loaded.predict(space, arch) == pytest.approx(expected, rel=1e-12)
        assert model.arch(arch) == pytest.approx(expected, rel=1e-9)
        one_hot = {g: w.double().requires_grad_() for g, w in space.one_hot(arch).items()}
        e = model.expected(one_hot)
        assert float(e.detach()) == pytest.approx(expected, rel=1e-9)
        e.backward()
        assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in one_hot.values())
    (lo, lo_arch), (hi, hi_arch) = model.extremes()
    assert lo == pytest.approx(loaded.predict(space, lo_arch)) and hi == pytest.approx(loaded.predict(space, hi_arch))
    grids = torch.meshgrid(*[torch.arange(k) for g, (r, k) in space.arch_shapes.items() for _ in range(r)],
                           indexing="ij")
    flat = torch.stack([t.reshape(-1) for t in grids], dim=-1)  # every architecture string of the tiny space
    choices, i = {}, 0
    for g, (r, _) in space.arch_shapes.items():
        choices[g], i = flat[:, i:i + r], i + r
    every = model(choices)
    assert float(every.min()) == pytest.approx(lo) and float(every.max()) == pytest.approx(hi)


def test_killed_build_keeps_entries_and_resume_measures_only_the_rest(tmp_path, monkeypatch):
    space = tiny_space()
    out = tmp_path / "lut.json"
    calls = {"n": 0}
    real = lut.median_ms

    def dying(*args, **kw):
        calls["n"] += 1
        if calls["n"] > 5:
            raise KeyboardInterrupt
        return real(*args, **kw)

    monkeypatch.setattr(lut, "median_ms", dying)
    with pytest.raises(KeyboardInterrupt):
        quick_build(space, out, save_every=0.0)
    kept = LatencyTable.load(out).entries
    assert len(kept) >= 4  # saved after each entry (save_every=0): at most the one in flight is lost
    calls["n"] = -10_000
    table = quick_build(space, out)
    assert {k: table.entries[k] for k in kept} == kept  # kept entries are not re-measured
    total = len(list(all_parts(space, TINY.base, 8)))
    assert calls["n"] + 10_000 == total - len(kept) + 2  # the rest, then the two fit networks
    with pytest.raises(LatencyError, match="cannot be continued"):
        quick_build(space, out, image_size=16)
    calls["n"] = -10_000
    refit = quick_build(space, out, correction="overhead", fit_networks=3)
    assert calls["n"] + 10_000 == 3 and refit.entries == table.entries  # another fit: its networks alone
    assert refit.correction == "overhead" and "groups" not in refit.overhead


def test_stage_fit_recovers_a_known_correction_and_keeps_predict_a_sum():
    """Networks that run at scale[g] * entry + offset[g] per part plus an overhead: the fit finds them."""
    space = create_space("mobile")
    table = synthetic_table()
    gen = torch.Generator().manual_seed(1)
    table.entries = {k: 0.05 + float(torch.rand((), generator=gen)) for k in table.entries}
    truth = {"head": (1.3, 0.0), "s1": (0.8, 0.02), "s2": (1.1, -0.01), "s3": (0.9, 0.0), "s4": (1.2, 0.01),
             "s5": (1.0, 0.03)}
    def runs(arch):
        return 0.4 + sum(table.entries[k] if k == "stem" else truth[group_of(k)][0] * table.entries[k]
                         + truth[group_of(k)][1] for k in arch_parts(space, arch, 4))
    archs = random_archs(space, 60, lut.FIT_SEED)
    fit = fit_correction(table.entries, [arch_parts(space, a, 4) for a in archs], [runs(a) for a in archs])
    assert fit["correction"] == "stages" and fit["loo_mape"] < 0.5 and fit["ms"] == pytest.approx(0.4, abs=0.05)
    for g, (scale, _) in truth.items():
        assert fit["groups"][g]["scale"] == pytest.approx(scale, abs=0.03), g
    table.overhead = {**fit, "seed": lut.FIT_SEED, "networks": []}
    for arch in random_archs(space, 10, seed=5):
        assert table.predict(space, arch) == pytest.approx(runs(arch), rel=0.01)  # unseen networks
        keys = arch_parts(space, arch, 4)
        assert table.predict(space, arch) == pytest.approx(
            sum(corrected(table.entries[k], k, fit) for k in keys) + fit["ms"], rel=1e-12)
    parts = fit_correction(table.entries, [arch_parts(space, a, 4) for a in archs], [runs(a) for a in archs],
                           "parts")
    assert parts["parts"] and parts["loo_mape"] < 2.0


def test_version_1_tables_load_as_before_and_newer_ones_are_refused(tmp_path):
    space = create_space("mobile")
    table = synthetic_table()
    v1 = {**table.to_dict(), "version": 1}
    v1["overhead"] = {"ms": 0.5, "method": "median of measured - sum over the fit networks", "seed": lut.FIT_SEED,
                      "networks": []}
    (tmp_path / "v1.json").write_text(json.dumps(v1))
    old = LatencyTable.load(tmp_path / "v1.json")
    arch = random_archs(space, 1, seed=0)[0]
    assert old.correction == "overhead"
    assert old.predict(space, arch) == pytest.approx(sum(old.entries[k] for k in arch_parts(space, arch, 4)) + 0.5)
    (tmp_path / "v9.json").write_text(json.dumps({**v1, "version": 9}))
    r = cli("latency", "predict", arch, "--lut", str(tmp_path / "v9.json"))
    assert r.returncode == 1 and "format version 9" in r.stderr and len(r.stderr.splitlines()) == 1


def test_model_refuses_incomplete_table():
    table = synthetic_table()
    table.entries.pop(next(iter(k for k in table.entries if k.startswith("s2."))))
    with pytest.raises(LatencyError, match="no entry for 's2.b1"):
        LatencyModel(table, create_space("mobile"))


def test_cli_predict_and_bad_tables(tmp_path):
    space = create_space("mobile")
    table = synthetic_table()
    table.save(tmp_path / "lut.json")
    arch = random_archs(space, 1, seed=0)[0]
    r = cli("latency", "predict", arch, "--lut", str(tmp_path / "lut.json"), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["predicted_ms"] == pytest.approx(table.predict(space, arch))
    from toponas.hardware import predict_latency

    assert predict_latency(arch, str(tmp_path / "lut.json")) == pytest.approx(table.predict(space, arch))

    bad = {"garbage.json": "{not json", "other.json": json.dumps({"format": "something"}),
           "negative.json": json.dumps({**table.to_dict(), "entries": {"stem": -1.0}})}
    missing = table.to_dict()
    missing["entries"] = dict(list(missing["entries"].items())[:-3])
    bad["missing.json"] = json.dumps(missing)
    for name, text in bad.items():
        (tmp_path / name).write_text(text)
        r = cli("latency", "predict", arch, "--lut", str(tmp_path / name))
        assert r.returncode == 1 and r.stderr.startswith("error: ") and len(r.stderr.splitlines()) == 1, (name, r)
    assert "missing" in cli("latency", "predict", arch, "--lut", str(tmp_path / "missing.json")).stderr
    r = cli("latency", "build", "--space", "nb201", "--out", str(tmp_path / "x.json"))
    assert r.returncode == 1 and "mobile spaces" in r.stderr and not (tmp_path / "x.json").exists()
    before = (tmp_path / "lut.json").read_bytes()
    r = cli("latency", "build", "--image-size", "16", "--channels", "4", "--out", str(tmp_path / "lut.json"))
    assert r.returncode == 1 and "made for" not in r.stdout and "cannot be continued" in r.stderr
    assert (tmp_path / "lut.json").read_bytes() == before


def test_cli_check_writes_the_fields_scripts_read(tmp_path):
    table = synthetic_table()
    table.save(tmp_path / "lut.json")
    r = cli("latency", "check", "--lut", str(tmp_path / "lut.json"), "--networks", "2", "--rounds", "1",
            "--json", str(tmp_path / "check.json"))
    assert r.returncode == 0, r.stderr
    data = json.loads((tmp_path / "check.json").read_text())
    assert len(data["networks"]) == 2 and {"arch", "predicted_ms", "measured_ms"} <= set(data["networks"][0])
    errors = [abs(n["predicted_ms"] - n["measured_ms"]) / n["measured_ms"] for n in data["networks"]]
    assert data["mape"] == pytest.approx(100 * sum(errors) / 2)
    other = table.to_dict()
    other["device"] = {**other["device"], "name": "some other processor"}
    (tmp_path / "other.json").write_text(json.dumps(other))
    r = cli("latency", "check", "--lut", str(tmp_path / "other.json"), "--networks", "2", "--json",
            str(tmp_path / "c2.json"))
    assert r.returncode == 1 and "some other processor" in r.stderr and not (tmp_path / "c2.json").exists()


def test_latency_term_pushes_the_expected_latency_down_and_flops_term_too():
    from toponas.hardware.budget import Budget, ExpectedFlops
    from toponas.strategies import create_strategy

    space = create_space("mobile")
    table = synthetic_table()
    model = LatencyModel(table, space)
    flops = ExpectedFlops(space)
    (lo, _), (hi, _) = model.extremes()
    for kind in ("latency", "flops"):
        torch.manual_seed(0)
        strategy = create_strategy("darts-v1", space, {"a_lr": 0.05})
        budget = Budget(table, model, lo + 0.1 * (hi - lo), flops=flops) if kind == "latency" else \
            Budget(flops=flops, flops_target=8.0)
        strategy.budget = budget
        measure = model if kind == "latency" else flops

        def cost(strategy=strategy, measure=measure):
            return measure.expected(strategy.mixing().weights)

        before = float(cost().detach())
        opt = torch.optim.Adam(list(strategy.alphas.values()), lr=0.05)
        for _ in range(5):
            opt.zero_grad()
            strategy.arch_objective(torch.tensor(1.0), 0).backward()
            opt.step()
        assert float(cost().detach()) < 0.97 * before, kind
    one_hot = {g: w.double() for g, w in space.one_hot(space.largest_genotype()).items()}
    assert float(flops.expected(one_hot)) == space.arch_flops(space.largest_genotype())
    no_target = Budget(table, model, None, flops=flops)
    assert no_target.kinds == () and no_target.factor(one_hot) == 1.0


def test_search_refuses_bad_budgets(tmp_path):
    synthetic_table(image_size=8).save(tmp_path / "lut8.json")
    synthetic_table(image_size=16).save(tmp_path / "lut16.json")
    base = ["search", "--space", "mobile", "--dataset", "digits", "--subset", "16", "--epochs", "1",
            "--channels", "4", "--no-progress", "--out", str(tmp_path / "run")]
    cases = [(["--strategy", "gdas", "--lut", str(tmp_path / "lut8.json"), "--latency-target", "9"], "8x8 images"),
             (["--strategy", "gdas", "--lut", str(tmp_path / "lut16.json"), "--latency-target", "0.1"],
              "below the smallest network"),
             (["--strategy", "spos", "--lut", str(tmp_path / "lut16.json"), "--latency-target", "9"],
              "does not take a latency target"),
             (["--strategy", "gdas", "--latency-target", "9"], "needs --lut"),
             (["--strategy", "darts-v1", "--flops-target", "1"], "below the smallest network's 7.47 MFLOPs")]
    for args, message in cases:
        r = cli(*base, *args)
        assert r.returncode == 1 and message in r.stderr and len(r.stderr.splitlines()) == 1, (args, r.stderr)
    assert not (tmp_path / "run" / "result.json").exists()
    nb201 = cli("search", "--strategy", "gdas", "--dataset", "digits", "--subset", "16", "--epochs", "1",
                "--lut", str(tmp_path / "lut16.json"), "--out", str(tmp_path / "nb"))
    assert nb201.returncode == 1 and "mobile spaces" in nb201.stderr


def test_derived_architecture_is_projected_into_the_budget():
    from toponas.hardware.budget import Budget, ExpectedFlops
    from toponas.strategies import create_strategy

    space = create_space("mobile")
    table = synthetic_table()
    model = LatencyModel(table, space)
    (lo, _), (hi, _) = model.extremes()
    torch.manual_seed(3)
    strategy = create_strategy("gdas", space)
    with torch.no_grad():
        for a in strategy.alphas.values():
            a.normal_()
    free = strategy.derive()
    target = lo + 0.25 * (hi - lo)
    assert model.arch(free) > target  # the argmax of random logits is over a tight budget
    strategy.budget = Budget(table, model, target, flops=ExpectedFlops(space))
    fitted = strategy.derive()
    assert model.arch(fitted) <= target
    a, b = space.choices(free), space.choices(fitted)
    changed = sum(int((a[g] != b[g]).sum()) for g in a)
    assert 0 < changed < sum(r for r, _ in space.arch_shapes.values())  # some rows changed, not all


def test_archs_near_draws_distinct_networks_within_the_band_and_refuses_an_empty_one():
    from toponas.hardware.sample import archs_near

    space = create_space("mobile")
    table = synthetic_table()
    model = LatencyModel(table, space)
    (lo, _), (hi, _) = model.extremes()
    target = lo + 0.3 * (hi - lo)
    found = random_archs(space, 1, seed=1)[0]
    picked = archs_near(model, target, 8, band=0.05, seed=4, exclude={found})
    assert len(set(picked)) == 8 and found not in picked
    assert all(abs(table.predict(space, a) - target) <= 0.05 * target + 1e-9 for a in picked)
    assert picked == archs_near(model, target, 8, band=0.05, seed=4, exclude={found})  # deterministic
    assert picked != archs_near(model, target, 8, band=0.05, seed=5, exclude={found})
    with pytest.raises(LatencyError, match="only 0 of"):
        archs_near(model, lo * 0.5, 1, band=0.05, max_draws=1000, batch=500)
    # near the smallest network uniform draws are too rare: the in-band walk from a network there fills in
    (_, lo_arch) = model.extremes()[0]
    near = archs_near(model, lo * 1.04, 5, band=0.05, seed=2, max_draws=1000, batch=500, start=str(lo_arch),
                      burn_in=50, thin=5)
    assert len(set(near)) == 5 and all(abs(table.predict(space, a) - lo * 1.04) <= 0.05 * lo * 1.04 + 1e-9
                                       for a in near)
    with pytest.raises(LatencyError, match="not within"):
        archs_near(model, lo * 0.5, 1, band=0.05, max_draws=1000, batch=500, start=str(lo_arch))
