"""Wider NAS-Bench-201 spaces and user-declared candidate lists."""

import json

import pytest
import torch

from toponas.profiling import largest_cell
from toponas.spaces import SpaceFileError, create_space, space_from_dict
from toponas.spaces.primitives import Conv


@pytest.mark.parametrize("name, convs", [("nb201", 2), ("nb201-wide3", 3), ("nb201-wide4", 4), ("nb201-wide6", 6)])
def test_wide_spaces_have_the_named_number_of_convolutions(name, convs):
    space = create_space(name)
    assert sum(any(isinstance(p, Conv) for p in s.chain) for s in space.specs) == convs
    net = space.build_supernet(channels=4, cells=1, num_classes=3)
    k = len(space.specs)
    w = torch.softmax(torch.randn(6, k), -1)
    from toponas.spaces import Mixing

    assert net(torch.randn(2, 3, 8, 8), Mixing({"cell": w})).shape == (2, 3)
    cell = space.derive({"cell": w})
    assert space.parse(str(cell)) == cell
    assert space.build_network(cell, channels=4, cells=1, num_classes=3)(torch.randn(2, 3, 8, 8)).shape == (2, 3)


def test_largest_cell_uses_the_most_expensive_convolution():
    assert "nor_conv_3x3~0" in largest_cell(create_space("nb201"))
    assert "nor_conv_7x7~2" in largest_cell(create_space("nb201-wide6"))


def test_user_space_from_a_json_file(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({"name": "mine", "candidates": [
        "none", "skip_connect", {"name": "wide", "chain": ["relu", "conv5x5_d2", "bn"]},
        {"name": "dw", "chain": ["relu", "dwconv3x3", "bn"]}, {"name": "mp", "chain": ["maxpool3"]}]}))
    space = create_space(str(path))
    assert space.name == "mine" and space.op_names == ("none", "skip_connect", "wide", "dw", "mp")
    assert space.specs[2].chain[1] == Conv(5, 2, False)
    net = space.build_supernet(channels=4, cells=1, num_classes=2)
    from toponas.spaces import Mixing

    assert net(torch.randn(2, 3, 8, 8), Mixing({"cell": torch.softmax(torch.randn(6, 5), -1)})).shape == (2, 2)


@pytest.mark.parametrize("data, fragment", [
    ({"candidates": ["none", "conv_9x9"]}, "unknown candidate 'conv_9x9'"),
    ({"candidates": ["none", {"name": "x", "chain": ["relu", "conv4x4"]}]}, "square and odd"),
    ({"candidates": ["none", {"name": "x", "chain": ["gelu"]}]}, "unknown primitive 'gelu'"),
    ({"candidates": ["none", {"name": "a b", "chain": ["relu"]}]}, "use letters, digits"),
    ({"candidates": ["none"]}, "at least two candidates"),
    ({"candidates": ["none", "none"]}, "unique"),
    ({"cands": []}, "'candidates'"),
])
def test_bad_space_declarations_are_clear_errors(data, fragment):
    with pytest.raises(SpaceFileError, match=fragment.replace("(", r"\(")):
        space_from_dict(data)


def test_missing_or_broken_space_file(tmp_path):
    with pytest.raises(SpaceFileError, match="not found"):
        create_space(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SpaceFileError, match="not valid JSON"):
        create_space(str(bad))
