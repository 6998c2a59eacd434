"""`toponas rank`: rank correlations against hand-computed values, each indicator on a tiny net, resume, CLI errors."""

import itertools
import json
import math
import random

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from toponas.cli import main
from toponas.ranking import RankSettings, average_ranks, kendall, rank, sample_cells, spearman
from toponas.ranking import runner as rank_runner
from toponas.ranking.indicators import grad_norm, nasi, naswot, parameter_count, snip, synflow
from toponas.spaces import NB201Space, create_space
from toponas.spaces.cell import Cell
from toponas.spaces.nb201 import NB201_OPS

CELL = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


# -- correlations, by hand ---------------------------------------------------------------------
def test_average_ranks_share_ties():
    assert average_ranks([3, 1, 3, 2]).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_kendall_and_spearman_match_hand_computed_values():
    # x = 1..4, y = 1,3,2,4: five concordant pairs, one discordant: tau = 4/6; sum d^2 = 2: rho = 1 - 12/60
    assert kendall([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(2 / 3, abs=1e-12)
    assert spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8, abs=1e-12)
    # a tie in x: C = 5, D = 0, one tied pair of six: tau_b = 5 / sqrt(5 * 6); rho from average ranks
    assert kendall([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(5 / math.sqrt(30), abs=1e-12)
    assert spearman([1, 2, 2, 3], [1, 2, 3, 4]) == pytest.approx(4.5 / math.sqrt(4.5 * 5), abs=1e-12)
    assert kendall([1, 2, 3], [3, 2, 1]) == pytest.approx(-1) and spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1)
    assert math.isnan(spearman([1, 1, 1], [1, 2, 3])) and math.isnan(kendall([1, 1, 1], [1, 2, 3]))


def test_kendall_blocks_agree_with_one_block():
    rng = random.Random(0)
    a = [rng.randrange(20) for _ in range(300)]
    b = [x + rng.random() * 10 for x in a]
    assert kendall(a, b, block=7) == pytest.approx(kendall(a, b, block=1000), abs=1e-12)


def test_correlation_rejects_bad_input():
    with pytest.raises(ValueError):
        kendall([1], [1])
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2, 3])


# -- indicators on tiny nets ---------------------------------------------------------------------
def tiny_net(cell=CELL):
    torch.manual_seed(0)
    return create_space("nb201").build_network(cell, channels=4, cells=1, num_classes=5)


def tiny_batch():
    g = torch.Generator().manual_seed(1)
    return torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g)


def test_synflow_by_hand_and_zero_for_a_zeroed_layer():
    net = nn.Sequential(nn.Linear(2, 2, bias=False), nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, -2.0], [3.0, 4.0]]))
        net[1].weight.copy_(torch.tensor([[1.0, -1.0]]))
    # R = 1^T |W2| |W1| 1 = 10; each layer's sum of w * dR/dw is R (R is linear in each layer): 2R
    assert synflow(net, torch.zeros(3, 2)) == pytest.approx(20.0)
    assert net[0].weight[0, 1].item() == -2.0  # the caller's network is untouched
    x, y = tiny_batch()
    assert synflow(tiny_net(), x) > 0
    zeroed = tiny_net()
    with torch.no_grad():
        zeroed.stem[0].weight.zero_()
    assert synflow(zeroed, x) == 0.0
    assert synflow(tiny_net("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"), x) == 0.0


def test_gradient_indicators_by_hand_on_a_linear_layer():
    net = nn.Sequential(nn.Linear(2, 2, bias=False))
    x, y = torch.tensor([[1.0, 2.0]]), torch.tensor([0])
    with torch.no_grad():
        net[0].weight.zero_()
    # p = (1/2, 1/2): dL/dW = (p - e_0) x^T = [[-.5, -1], [.5, 1]]
    assert grad_norm(net, x, y) == pytest.approx(math.sqrt(2.5))
    assert snip(net, x, y) == 0.0
    assert nasi(net, x, y) == pytest.approx(2.5)
    assert nasi(net, x, y, mu=0.5, nu=1.0) == pytest.approx(2.5 - 0.5 * 1.5)
    with torch.no_grad():
        net[0].weight.copy_(torch.eye(2))
    p1 = math.exp(2) / (math.exp(1) + math.exp(2))  # logits (1, 2): |p - e_0| = p1 in both rows
    assert snip(net, x, y) == pytest.approx(p1 * 1 + 2 * p1 * 1)  # |W * g| on the diagonal


def test_naswot_by_hand_and_on_a_tiny_net():
    net = nn.Sequential(nn.ReLU())
    # codes (1, 0) and (1, 1): K = [[2, 1], [1, 2]], log det = log 3
    assert naswot(net, torch.tensor([[1.0, -1.0], [1.0, 1.0]])) == pytest.approx(math.log(3))
    x, _ = tiny_batch()
    assert math.isfinite(naswot(tiny_net(), x))


def test_every_indicator_scores_a_tiny_net():
    x, y = tiny_batch()
    for fn in (grad_norm, snip, nasi):
        assert fn(tiny_net(), x, y) > 0
    assert parameter_count(tiny_net()) > parameter_count(tiny_net("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"))


# -- the runner ---------------------------------------------------------------------------------
SMALL_OPS = ("skip_connect", "nor_conv_1x1")


@pytest.fixture
def small(tmp_path, monkeypatch):
    """A 64-cell NB201 space and a made-up table whose accuracy grows with the number of convolutions."""
    space = NB201Space("small", SMALL_OPS)
    monkeypatch.setattr(rank_runner, "create_space", lambda name: space)
    rows = ["arch,cifar10"]
    for ops in itertools.product(NB201_OPS, repeat=6):
        rows.append(f"{Cell.from_ops(ops)},{80 + ops.count('nor_conv_1x1') + 0.01 * ops.count('skip_connect')}")
    table = tmp_path / "table.csv"
    table.write_text("\n".join(rows) + "\n")
    return space, table


def test_sample_is_seeded_and_without_repeats():
    space = create_space("nb201")
    cells = sample_cells(space, 50, seed=3)
    assert len(set(cells)) == 50 and cells == sample_cells(space, 50, seed=3) and cells != sample_cells(space, 50, 4)
    assert len(sample_cells(space, None, 0)) == 15625


def test_rank_all_resumes_keeping_scores(small, tmp_path):
    space, table = small
    settings = RankSettings(indicator="flops+params", space="small", cells=None, channels=2, layers=1)
    out = tmp_path / "rank.json"
    with pytest.raises(KeyboardInterrupt):
        rank(settings, out, benchmark=str(table), progress=False, stop_after=10, log=lambda m: None)
    partial = out.with_name("rank.json.partial")
    saved = json.loads(partial.read_text())
    assert len(saved["scores"]) == 10 and not out.exists()
    first = next(iter(saved["scores"]))
    saved["scores"][first]["params"] = 1e9  # a kept score is not recomputed
    partial.write_text(json.dumps(saved))
    lines = []
    result = rank(settings, out, benchmark=str(table), progress=False, log=lines.append)
    assert "10 of 64" in lines[0] and not partial.exists()
    data = json.loads(out.read_text())
    assert set(data) >= {"indicator", "space", "seed", "cells", "kendall", "spearman", "seconds"}
    assert len(data["cells"]) == 64 and set(data["cells"][0]) == {"arch", "score"}
    assert data["scores"][first]["params"] == 1e9
    assert result.spearman["cifar10"] > 0.9  # flops and params count the convolutions, as the table does
    rank(settings, tmp_path / "fresh.json", benchmark=str(table), progress=False)
    fresh = json.loads((tmp_path / "fresh.json").read_text())["scores"]
    assert fresh[first]["params"] != 1e9
    assert {k: v for k, v in fresh.items() if k != first} == {k: v for k, v in data["scores"].items() if k != first}


def test_rank_in_two_processes_gives_the_same_scores(small, tmp_path):
    space, table = small
    settings = RankSettings(indicator="params", space="small", cells=40, channels=2, layers=1)
    one = rank(settings, tmp_path / "one.json", benchmark=str(table), progress=False)
    two = rank(settings, tmp_path / "two.json", benchmark=str(table), progress=False, jobs=2)
    assert one.cells == two.cells and len({c["score"] for c in one.cells}) > 1


def test_rank_flops_is_perfect_on_a_table_that_counts_convolutions(small, tmp_path):
    space, table = small
    res = rank(RankSettings(indicator="flops", space="small", cells=20, channels=2, layers=1),
               tmp_path / "f.json", benchmark=str(table), progress=False)
    assert res.spearman["cifar10"] > 0.95 and len(res.top) == 5
    assert res.top[0]["cifar10"] == max(c["cifar10"] for c in res.top)


# -- the command line -------------------------------------------------------------------------------
def invoke(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def digits_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "digits.csv"
    rng = random.Random(0)
    rows = ["arch,digits"] + [f"{Cell.from_ops(ops)},{rng.uniform(10, 90):.2f}"
                              for ops in itertools.product(NB201_OPS, repeat=6)]
    path.write_text("\n".join(rows) + "\n")
    return path


def assert_one_error_line(result, *words):
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_cli_rank_runs_on_digits_and_prints_correlations(tmp_path, digits_table):
    out = tmp_path / "r.json"
    r = invoke("rank", "--indicator", "synflow", "--cells", "4", "--dataset", "digits", "--benchmark",
               str(digits_table), "--json", str(out), "--channels", "2", "--layers", "1", "--batch-size", "4",
               "--no-progress")
    assert r.exit_code == 0, r.output
    assert "Kendall tau" in r.output and "Spearman rho" in r.output and "top-5" in r.output
    assert json.loads(out.read_text())["indicator"] == "synflow"


@pytest.mark.parametrize("args,words", [
    (("--indicator", "jacob"), ("unknown indicator", "synflow")),
    (("--indicator", "synflow", "--cells", "1"), ("--cells 1", "out of range")),
    (("--indicator", "synflow", "--cells", "15626"), ("15625",)),
    (("--indicator", "synflow", "--cells", "many"), ("--cells",)),
    (("--indicator", "flops", "--dataset", "cifar100"), ("no column 'cifar100'",)),
    (("--indicator", "flops", "--space", "nb201-wide3"), ("no row",)),
    (("--indicator", "flops", "--space", "darts"), ("NAS-Bench-201 style",)),
    (("--indicator", "supernet"), ("--supernet RUN",)),
])
def test_cli_rank_bad_input_is_one_error_line(tmp_path, digits_table, args, words):
    out = tmp_path / "r.json"
    table = tmp_path / "c10.csv"
    table.write_text(digits_table.read_text().replace("arch,digits", "arch,cifar10"))
    r = invoke("rank", "--benchmark", str(table), "--json", str(out), "--no-progress", *args)
    assert_one_error_line(r, *words)
    assert not out.exists()


def test_cli_rank_bad_supernet_runs(tmp_path, digits_table):
    base = ("rank", "--dataset", "digits", "--benchmark", str(digits_table), "--json", str(tmp_path / "r.json"),
            "--cells", "3", "--no-progress")
    assert_one_error_line(invoke(*base, "--indicator", "supernet", "--supernet", str(tmp_path)), "not a supernet run")
    run = tmp_path / "darts"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"strategy": "darts-v1", "space": "nb201"}))
    (run / "checkpoint.pt").write_bytes(b"")
    assert_one_error_line(invoke(*base, "--indicator", "supernet", "--supernet", str(run)), "darts-v1 run")
    (run / "config.json").write_text(json.dumps({"strategy": "spos", "space": "nb201-wide3"}))
    assert_one_error_line(invoke(*base, "--indicator", "supernet", "--supernet", str(run)), "space 'nb201-wide3'")
    (run / "config.json").write_text(json.dumps({"strategy": "spos", "space": "nb201"}))
    assert_one_error_line(invoke(*base, "--indicator", "bn-gamma", "--supernet", str(run)), "spos run")
    assert_one_error_line(invoke(*base, "--indicator", "supernet", "--supernet", str(run)), "cannot be read")
    torch.save({"network": {}}, run / "checkpoint.pt")  # e.g. a `toponas train` checkpoint
    assert_one_error_line(invoke(*base, "--indicator", "supernet", "--supernet", str(run)), "not a checkpoint")
    assert not (tmp_path / "r.json").exists()


def test_cli_rank_refuses_a_json_of_other_settings(tmp_path, digits_table):
    out = tmp_path / "r.json"
    out.write_text(json.dumps({"settings": {"indicator": "snip"}, "scores": {}}))
    r = invoke("rank", "--indicator", "flops", "--dataset", "digits", "--benchmark", str(digits_table),
               "--json", str(out), "--cells", "3")
    assert_one_error_line(r, "other settings")
    assert json.loads(out.read_text())["settings"] == {"indicator": "snip"}
