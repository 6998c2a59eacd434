"""The NAS-Bench-201 cell string: parse, format, validate, derive and build."""

import pytest
import torch

from toponas.spaces import Cell, CellError, create_space

BEST = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"


def test_round_trip_and_value_semantics():
    space = create_space("nb201")
    cell = space.parse(BEST)
    assert str(cell) == BEST
    assert cell == space.parse(" " + BEST.replace("|+|", "| + |") + "\n")
    assert hash(cell) == hash(space.parse(BEST))
    assert cell.ops == ["nor_conv_3x3"] * 3 + ["skip_connect", "nor_conv_3x3", "nor_conv_1x1"]
    assert cell.edges()[2] == (2, 1, "nor_conv_3x3")
    assert Cell.from_ops(cell.ops) == cell


def test_edges_within_a_node_may_come_in_any_order():
    space = create_space("nb201")
    shuffled = "|nor_conv_3x3~0|+|nor_conv_3x3~1|nor_conv_3x3~0|+|nor_conv_1x1~2|skip_connect~0|nor_conv_3x3~1|"
    assert str(space.parse(shuffled)) == BEST


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "expected 3 nodes"),
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|", "expected 3 nodes"),
        (BEST.replace("nor_conv_1x1", "conv_9x9"), "unknown operation 'conv_9x9'"),
        (BEST.replace("nor_conv_1x1~2", "nor_conv_1x1~3"), "input node 3 must be in 0..2"),
        (BEST.replace("skip_connect~0", "skip_connect~x"), "is not a node index"),
        (BEST.replace("skip_connect~0", "skip_connect~1"), "exactly one edge from each"),
        (BEST.replace("|skip_connect~0", ""), "exactly one edge from each"),
        (BEST.replace("skip_connect~0", "skip_connect"), "expected 'op~input'"),
        ("nor_conv_3x3~0+|a~0|b~1|+|c~0|d~1|e~2|", "expected '|op~input|...|'"),
    ],
)
def test_malformed_cells_name_the_problem(text, fragment):
    with pytest.raises(CellError, match=fragment.replace("(", r"\(").replace("|", r"\|")):
        create_space("nb201").parse(text)


def test_derive_is_argmax_over_all_candidates_including_none():
    space = create_space("nb201")
    alpha = torch.zeros(6, 5)
    alpha[:, 0] = 1.0  # none wins everywhere
    alpha[5, 3] = 2.0
    cell = space.derive({"cell": alpha})
    assert cell.ops == ["none"] * 5 + ["nor_conv_3x3"]


def test_discrete_network_runs_the_cell_with_original_operations():
    space = create_space("nb201")
    net = space.build_network(BEST, channels=4, cells=1, num_classes=3)
    out = net(torch.randn(2, 3, 8, 8))
    assert out.shape == (2, 3)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 3 * 4 + 1 + 2 * 2  # 4 conv3x3 edges per cell, stem, two per reduction block
    bns = [m for m in net.cells[0].modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(b.affine and b.track_running_stats for b in bns)
