"""The batched kernel builds equal the per-edge (per-member) builds they replace: outputs and gradients.

Separable stages (DARTS): every like stage of a cell builds its mixed kernels in one stacked build
(``program.BATCHED_STAGE_BUILD``); merged blocks (mobile): one normalization per primitive over all members
(``program.BATCHED_BLOCK_BUILD``). Float64, the whole simplified supernet, random soft weights.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
import torch.nn.functional as F

from toponas import topo
from toponas.spaces import create_space
from toponas.spaces.mixed import Mixing
from toponas.topo import program
from toponas.topo.measure import aten_ops


def _run(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, alphas: dict[str, torch.Tensor]):
    """Loss, weight gradients and mixing-weight gradients of one forward and backward (float64)."""
    model.zero_grad(set_to_none=True)
    weights = {g: F.softmax(a, -1).detach().requires_grad_(True) for g, a in alphas.items()}
    loss = F.cross_entropy(model(x, Mixing(weights)), y)
    loss.backward()
    return loss.detach(), [p.grad for p in model.parameters()], [w.grad for w in weights.values()]


@pytest.mark.parametrize(
    "space_name, flag, size", [("darts", "BATCHED_STAGE_BUILD", 8), ("mobile", "BATCHED_BLOCK_BUILD", 32)]
)
def test_batched_build_equals_the_unbatched_build(monkeypatch, space_name: str, flag: str, size: int) -> None:
    space = create_space(space_name)
    torch.manual_seed(0)
    cells = 3 if space_name == "darts" else None
    plain = space.build_supernet(4, cells or space.default_cells, 5).double().train()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 3, size, size, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 5, (4,), generator=gen)
    alphas = {g: torch.randn(*a, generator=gen, dtype=torch.float64) for g, a in space.arch_shapes.items()}
    results, ops = {}, {}
    for batched in (True, False):  # the flag is read when the model is built and when it runs
        monkeypatch.setattr(program, flag, batched)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the DARTS reduction's skip runs unplanned (a known warning)
            model = topo.simplify(copy.deepcopy(plain), "full").train()
        ops[batched] = sum(aten_ops(lambda m=model: _run(m, x, y, alphas)).values())
        results[batched] = _run(model, x, y, alphas)
    (loss_b, gp_b, gw_b), (loss_u, gp_u, gw_u) = results[True], results[False]
    torch.testing.assert_close(loss_b, loss_u, rtol=1e-9, atol=1e-12)  # rounding, amplified by bn on a batch of 4
    assert sum(g is not None for g in gp_b) > 0
    for a, b in zip(gp_b + gw_b, gp_u + gw_u):
        assert (a is None) == (b is None)
        if a is not None:
            # float64 rounding of other summation orders, relative to the tensor's scale (tiny bn batches
            # give large, ill-conditioned gradients); a wrong weight or kernel differs by order 1
            assert (a - b).abs().max() <= 1e-9 * b.abs().max().clamp_min(1.0)
    assert ops[True] < ops[False]  # the batched build runs, and runs fewer operations
