"""Query-based search (GA-NAS, REA, random): result.json, the query log as checkpoint, bad input."""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from toponas.cli import main
from toponas.query import QUERY_STRATEGIES, CellEncoding, QueryConfig, QueryInterrupted, QuerySearch, best_so_far
from toponas.query.ganas import GANASHyper, Generator
from toponas.spaces import NB201_OPS, create_space

TINY_GANAS = ["--hp", "init_queries=8", "--hp", "per_iteration=4", "--hp", "top_k=4", "--hp", "fit_steps=2",
              "--hp", "rounds=1", "--hp", "d_steps=1", "--hp", "batch=8", "--hp", "candidates=16", "--hp", "hidden=8"]
HP = {"ga-nas": TINY_GANAS, "rea": [], "random": []}


def score(cell: str) -> float:
    """A synthetic accuracy: convolutions help, plus a deterministic per-cell jitter."""
    jitter = int(hashlib.sha1(cell.encode()).hexdigest()[:6], 16) / 0xFFFFFF
    return round(80 + 2 * cell.count("nor_conv_3x3") + cell.count("nor_conv_1x1") + jitter, 4)


@pytest.fixture(scope="module")
def table(tmp_path_factory) -> Path:
    """A complete synthetic NAS-Bench-201 table (all 15,625 cells)."""
    path = tmp_path_factory.mktemp("bench") / "nb201.csv"
    rows = ["arch,cifar10"]
    for a, b, c, d, e, f in itertools.product(NB201_OPS, repeat=6):
        cell = f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|"
        rows.append(f"{cell},{score(cell)}")
    path.write_text("\n".join(rows) + "\n")
    return path


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def search_args(strategy: str, table: Path, out: Path, queries: int = 24, *extra: str) -> list[str]:
    return ["search", "--strategy", strategy, "--space", "nb201", "--oracle", "benchmark", "--benchmark", str(table),
            "--queries", str(queries), "--out", str(out), *HP[strategy], *extra]


@pytest.mark.parametrize("strategy", ["ga-nas", "rea", "random"])
def test_result_records_queries_in_order_and_the_best_so_far(strategy, table, tmp_path):
    res = invoke(*search_args(strategy, table, tmp_path / "run"))
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    queries = result["queries"]
    assert [q["query"] for q in queries] == list(range(1, 25))
    assert len({q["arch"] for q in queries}) == 24  # each cell counts once
    assert all(q["accuracy"] == score(q["arch"]) for q in queries)  # answered by the table
    accs = [q["accuracy"] for q in queries]
    assert result["best_so_far"] == best_so_far(accs) and result["best_so_far"][-1] == max(accs)
    assert result["best"]["accuracy"] == max(accs) and result["genotype"] == result["best"]["arch"]
    assert queries[result["best"]["query"] - 1]["arch"] == result["best"]["arch"]
    assert result["benchmark"] == {"cifar10": max(accs)}
    logged = [json.loads(line) for line in (tmp_path / "run" / "queries.jsonl").read_text().splitlines()]
    assert logged[0]["run"]["strategy"] == strategy and [e["arch"] for e in logged[1:]] == [q["arch"] for q in queries]


@pytest.mark.parametrize("strategy", ["ga-nas", "rea", "random"])
def test_resume_replays_the_log_and_queries_nothing_again(strategy, table, tmp_path):
    whole = invoke(*search_args(strategy, table, tmp_path / "whole"))
    assert whole.exit_code == 0, whole.output
    hyper = dict(h.split("=") for h in HP[strategy][1::2])
    config = QueryConfig(strategy=strategy, benchmark=str(table), queries=24, out=str(tmp_path / "cut"), hyper=hyper)
    with pytest.raises(QueryInterrupted):
        QuerySearch(config, log=lambda m: None, stop_after=10).run()  # killed after ten answers
    log = tmp_path / "cut" / "queries.jsonl"
    with log.open("a") as f:
        f.write('{"query": 11, "arch": "|none~0|+')  # and torn while writing the eleventh
    res = invoke(*search_args(strategy, table, tmp_path / "cut", 24, "--resume"))
    assert res.exit_code == 0, res.output
    cut = json.loads((tmp_path / "cut" / "result.json").read_text())
    ref = json.loads((tmp_path / "whole" / "result.json").read_text())
    assert cut["oracle_calls_this_session"] == 14  # the ten logged answers were not asked again
    assert cut["queries"] == ref["queries"] and cut["best_so_far"] == ref["best_so_far"]
    again = invoke(*search_args(strategy, table, tmp_path / "cut", 30, "--resume"))  # a larger budget continues
    assert again.exit_code == 0, again.output
    longer = json.loads((tmp_path / "cut" / "result.json").read_text())
    assert longer["oracle_calls_this_session"] == 6 and longer["queries"][:24] == ref["queries"]


def test_ganas_generator_is_a_distribution_over_all_cells():
    enc = CellEncoding(create_space("nb201"))
    gen = Generator(enc.num_edges, enc.num_ops, 8)
    cells = torch.tensor(list(itertools.product(range(enc.num_ops), repeat=enc.num_edges)))
    logp, entropy = gen.log_prob(cells)
    assert math.isclose(float(logp.detach().double().exp().sum()), 1.0, rel_tol=1e-4)
    assert (entropy > 0).all()


def test_ganas_fits_its_truth_set(table):
    """The generator's fit to the truth set raises the truth set's likelihood (the first step of an iteration)."""
    cls = QUERY_STRATEGIES.get("ga-nas")
    enc = CellEncoding(create_space("nb201"))
    strategy = cls(enc, GANASHyper(init_queries=8, top_k=4, fit_steps=40, rounds=0, per_iteration=4), seed=1)
    while len(strategy.history) < 8:
        for arch in strategy.ask():
            strategy.tell(arch, score(enc.to_str(arch)))
    truth = torch.tensor(strategy.truth_set())
    before = float(strategy.generator.log_prob(truth)[0].mean())
    proposals = strategy.ask()
    after = float(strategy.generator.log_prob(truth)[0].mean())
    assert after > before + 1.0
    assert len(proposals) == 4 and not {tuple(p) for p in proposals} & {a for a, _ in strategy.history}


@pytest.mark.parametrize(("args", "fragment"), [
    (["--queries", "0"], "--queries must be a positive number"),
    (["--benchmark", ""], "needs a benchmark table"),
    (["--space", "darts"], "one operation per edge"),
    (["--space", "nb201-wide3"], "has other candidates"),
    (["--epochs", "3"], "--epochs do(es) not apply"),
    (["--supernet", "x"], "--supernet do(es) not apply"),
    (["--hp", "population=0"], "REA needs population"),
    (["--hp", "nope=1"], "unknown hyperparameter"),
])
def test_bad_input_is_one_error_line(args, fragment, table, tmp_path, monkeypatch):
    monkeypatch.delenv("TOPONAS_BENCHMARK", raising=False)
    base = search_args("rea", table, tmp_path / "run")
    if args[0] == "--benchmark":
        base = [a for i, a in enumerate(base) if a != str(table) and base[i - 1 if i else 0] != "--benchmark"]
        base.remove("--benchmark")
        args = []
    res = invoke(*base, *args)
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], res.output
    assert not (tmp_path / "run" / "result.json").exists()


def test_query_options_with_a_supernet_strategy_are_an_error(tmp_path):
    res = invoke("search", "--strategy", "darts-v1", "--queries", "5", "--out", str(tmp_path / "r"))
    assert res.exit_code == 1 and res.output.startswith("error: --queries go(es) with a query-based strategy")


def test_a_query_log_from_another_run_is_refused_and_kept(table, tmp_path):
    assert invoke(*search_args("rea", table, tmp_path / "run", 12)).exit_code == 0
    log = tmp_path / "run" / "queries.jsonl"
    before = log.read_text()
    for extra in (["--seed", "1", "--resume"], ["--resume", "--hp", "sample_size=2"], []):
        res = invoke(*search_args("rea", table, tmp_path / "run", 12, *extra))
        assert res.exit_code == 1 and len(res.output.strip().splitlines()) == 1, res.output
        assert res.output.startswith("error:") and ("another run" in res.output or "already holds" in res.output)
    lines = before.splitlines()  # a log of the same header whose cells this run does not ask
    first = json.loads(lines[1])
    first["arch"] = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    log.write_text("\n".join([lines[0], json.dumps(first), *lines[2:]]) + "\n")
    edited = log.read_text()
    res = invoke(*search_args("rea", table, tmp_path / "run", 12, "--resume"))
    assert res.exit_code == 1 and "does not match this run at query 1" in res.output
    assert log.read_text() == edited
    log.write_text("not a log\n")
    res = invoke(*search_args("rea", table, tmp_path / "run", 12, "--resume"))
    assert res.exit_code == 1 and res.output.startswith("error:") and "query log" in res.output


def test_supernet_oracle_scores_cells_with_one_shot_weights(tmp_path):
    import toponas

    toponas.search(strategy="darts-v1", dataset="digits", subset=32, batch_size=16, channels=4, cells=1, epochs=1,
                   out=str(tmp_path / "search"), topo="full")
    res = invoke("search", "--strategy", "random", "--oracle", "supernet", "--supernet", str(tmp_path / "search"),
                 "--queries", "2", "--dataset", "digits", "--out", str(tmp_path / "q"))
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "q" / "result.json").read_text())
    assert len(result["queries"]) == 2 and all(0 <= q["accuracy"] <= 100 for q in result["queries"])
    res = invoke("search", "--strategy", "random", "--oracle", "supernet", "--queries", "3", "--out",
                 str(tmp_path / "q2"))
    assert res.exit_code == 1 and res.output.startswith("error: --oracle supernet needs --supernet RUN")


def test_train_oracle_trains_each_queried_cell(tmp_path):
    res = invoke("search", "--strategy", "random", "--oracle", "train", "--dataset", "digits", "--queries", "1",
                 "--epochs", "1", "--subset", "64", "--channels", "4", "--cells", "1", "--batch-size", "32",
                 "--device", "cpu", "--out", str(tmp_path / "q"))
    assert res.exit_code == 0, res.output
    result = json.loads((tmp_path / "q" / "result.json").read_text())
    trained = sorted(p.name for p in (tmp_path / "q" / "trained").iterdir())
    assert trained == ["q0001"]
    for q, name in zip(result["queries"], trained):
        train = json.loads((tmp_path / "q" / "trained" / name / "train.json").read_text())
        assert train["arch"] == q["arch"] and math.isclose(q["accuracy"], 100 * train["test_accuracy"])
        assert train["epochs"] == 1 and train["train_images"] == 64
