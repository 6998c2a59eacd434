"""The saved-bytes counter frees what it measured: no graph outlives the counted forward."""

import gc

import torch
from torch import nn

from toponas.topo.measure import saved_activation_bytes


def _graph_tensors() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor) and o.grad_fn is not None)


def test_saved_activation_bytes_leaves_no_graph_alive():
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
    x = torch.randn(2, 3, 12, 12)
    before = _graph_tensors()
    nbytes = saved_activation_bytes(lambda: net(x).square().sum())
    # the first conv's output (saved by bn) and the relu's (saved by it and the second conv): 2*8*10*10 floats each
    assert nbytes >= 2 * 2 * 8 * 10 * 10 * 4
    assert _graph_tensors() == before  # a pack hook returning the tensor itself kept the whole graph alive
