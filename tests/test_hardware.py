"""The latency look-up table: build on a tiny space, predict = sum + overhead, resume, bad tables (CLI)."""

import json

import pytest
import torch

from toponas.hardware import LatencyError, LatencyTable, all_parts, arch_parts, build, lut, random_archs
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
    loaded = LatencyTable.load(tmp_path / "lut.json")
    assert loaded.entries == table.entries and loaded.overhead == table.overhead
    model = LatencyModel(loaded, space)
    for arch in random_archs(space, 6, seed=3):
        parts = arch_parts(space, arch, TINY.base)
        expected = sum(loaded.entries[k] for k in parts) + loaded.overhead["ms"]
        assert loaded.predict(space, arch) == pytest.approx(expected, rel=1e-12)
        assert model.arch(arch) == pytest.approx(expected, rel=1e-9)
        one_hot = {g: w.double().requires_grad_() for g, w in space.one_hot(arch).items()}
        e = model.expected(one_hot)
        assert float(e.detach()) == pytest.approx(expected, rel=1e-9)
        e.backward()
        assert all(w.grad is not None and w.grad.abs().sum() > 0 for w in one_hot.values())
    (lo, lo_arch), (hi, hi_arch) = model.extremes()
    assert lo == pytest.approx(loaded.predict(space, lo_arch)) and hi == pytest.approx(loaded.predict(space, hi_arch))
    assert all(lo <= loaded.predict(space, a) <= hi for a in random_archs(space, 20, seed=4))
    assert "skip" in str(lo_arch) and "k7e6" in str(hi_arch)


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
