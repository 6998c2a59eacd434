"""Has a search decided: margins, entropy, the verdict, disconnected cells, and the warning in a real run."""

import json
import math

import pytest
import torch
from click.testing import CliRunner

from toponas import separation
from toponas.cli import main
from toponas.config import ConfigError, SearchConfig
from toponas.loop import Search
from toponas.spaces.cell import Cell


def test_margins_and_entropy_by_hand():
    probs = {"cell": torch.tensor([[0.5, 0.3, 0.2], [1 / 3, 1 / 3, 1 / 3], [1.0, 0.0, 0.0]])}
    assert separation.edge_margins(probs)["cell"] == pytest.approx([0.2, 0.0, 1.0], abs=1e-6)
    h0 = -(0.5 * math.log(0.5) + 0.3 * math.log(0.3) + 0.2 * math.log(0.2)) / math.log(3)
    assert separation.mean_entropy(probs) == pytest.approx((h0 + 1.0 + 0.0) / 3)
    record = separation.epoch_record(probs, "b", previous="a")
    assert record["min_margin"] == pytest.approx(0.0, abs=1e-6)
    assert record["median_margin"] == pytest.approx(0.2, abs=1e-6)
    assert record["cell_changed"] is True
    assert separation.epoch_record(probs, "a", previous=None)["cell_changed"] is False


def _line(epoch, median, changed=False):
    return {"epoch": epoch, "median_margin": median, "cell_changed": changed}


def test_verdict_margin_and_stability():
    assert separation.verdict([_line(1, 0.5), _line(2, 0.5)]).decided
    flat = separation.verdict([_line(1, 0.001)], threshold=0.02)
    assert not flat.decided and "did not separate" in flat.reason and "a_lr" in flat.reason
    moving = separation.verdict([_line(1, 0.3), _line(2, 0.3), _line(3, 0.3, changed=True)])
    assert not moving.decided and "epoch 3 of 3" in moving.reason
    # a change before the last STABLE_EPOCHS epochs does not count
    old = [_line(1, 0.3), _line(2, 0.3, changed=True)] + [_line(e, 0.3) for e in range(3, 3 + separation.STABLE_EPOCHS)]
    assert separation.verdict(old).decided
    assert separation.verdict([]).decided  # nothing recorded: nothing to warn about


def test_disconnected_cells():
    dead = Cell.parse("|none~0|+|none~0|nor_conv_1x1~1|+|none~0|nor_conv_1x1~1|nor_conv_1x1~2|")
    assert not dead.connected() and separation.disconnected(dead)
    alive = Cell.parse("|none~0|+|skip_connect~0|none~1|+|none~0|none~1|nor_conv_3x3~2|")
    assert alive.connected() and not separation.disconnected(alive)
    assert not separation.disconnected("a genotype without a connected() method")


def _tiny(tmp_path, name, **hyper):
    return SearchConfig(strategy="darts-v1", dataset="digits", subset=96, batch_size=16, channels=4, cells=1,
                        seed=3, out=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), device="cpu",
                        image_size=8, hyper=hyper)


def test_undecided_run_warns_and_records(tmp_path):
    logs = []
    result = Search(_tiny(tmp_path, "flat", epochs=1), progress=False, log=logs.append).run()
    assert result.decided is False and "did not separate" in result.decided_reason
    assert any(m.startswith("warning: not decided") for m in logs)
    data = json.loads((tmp_path / "flat" / "result.json").read_text())
    assert data["decided"] is False and data["decided_reason"] == result.decided_reason
    line = data["history"][-1]
    assert set(line["margins"]) == {"cell"} and len(line["margins"]["cell"]) == 6
    assert 0.99 < line["mean_entropy"] <= 1.0 and line["median_margin"] < separation.DEFAULT_MARGIN


def test_forced_separation_is_decided(tmp_path):
    # a huge architecture learning rate on a tiny problem drives the softmax to a vertex
    logs = []
    result = Search(_tiny(tmp_path, "sharp", epochs=4, a_lr=1.0, a_wd=0.0), progress=False,
                    log=logs.append).run()
    last = result.history[-1]
    assert last["median_margin"] > 0.5 and last["mean_entropy"] < 0.5
    assert result.decided is True and result.decided_reason is None
    assert not any("not decided" in m for m in logs)


def test_threshold_out_of_range_is_one_error_line(tmp_path):
    with pytest.raises(ConfigError, match="decided_margin"):
        SearchConfig(decided_margin=1.5)
    run = CliRunner().invoke(main, ["search", "--dataset", "digits", "--decided-margin", "-0.1",
                                    "--out", str(tmp_path / "x")])
    assert run.exit_code != 0 and "decided-margin" in run.output and "Traceback" not in run.output
    assert not (tmp_path / "x").exists()
