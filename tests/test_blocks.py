"""The simplifier on inverted-residual (MBConv) blocks, on a small block unit defined here.

The unit follows the space protocol (``toponas.spaces.protocol.SearchUnit``) the way a macro space's
mixed block does: one mixed edge ``1<-0`` whose candidates are MBConv bodies (and ``skip`` in a residual
block), the residual added in ``unit_output``. Exact mode must equal the plain block (outputs and
gradients, float64); full mode equals the plain block at every vertex and the literal merged-block
formula between vertices.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from toponas.spaces.mixed import MixedEdge, Mixing
from toponas.spaces.primitives import SEARCH_BN, Conv, OpSpec, ReLU, Zero
from toponas.spaces.protocol import SearchUnit, UnitCall
from toponas.topo import conv_cost, simplify
from toponas.topo.plan import Block
from toponas.topo.verify import _literal_reference

DT = torch.float64


def mbconv(c_in: int, c_out: int, kernel: int, expansion: int, stride: int) -> tuple:
    e = c_in * expansion
    return (Conv(1, out=e), SEARCH_BN, ReLU(), Conv(kernel, depthwise=True, stride=stride), SEARCH_BN, ReLU(),
            Conv(1, out=c_out), SEARCH_BN)


class TinyBlock(nn.Module):
    """A mixed MBConv block reading row 0 of its own group (a residual one has ``skip`` too)."""

    takes_mixing = True

    def __init__(self, c_in: int, c_out: int, stride: int, group: str, kernels=(3, 5, 7), expansions=(3, 6)):
        super().__init__()
        self.residual = stride == 1 and c_in == c_out
        specs = [OpSpec(f"k{k}e{e}", mbconv(c_in, c_out, k, e, stride)) for k in kernels for e in expansions]
        if self.residual:
            specs.append(OpSpec("skip", (Zero(),)))
        self.group = group
        self.edges = nn.ModuleList([MixedEdge(specs, c_in)])
        self.edge_io = [(1, 0)]
        self.edge_keys = ["1<-0"]

    def unit_call(self, x: torch.Tensor, mixing: Mixing) -> UnitCall:
        active = None if mixing.active is None else mixing.active[self.group]
        return UnitCall([x], mixing.weights[self.group], active, mixing)

    def unit_output(self, nodes, call) -> torch.Tensor:
        return nodes[1] + nodes[0] if self.residual else nodes[1]

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        call = self.unit_call(x, mixing)
        y = self.edges[0](x, call.weights[0], None if call.active is None else call.active[0])
        return self.unit_output([x, y], call)


class TinyNet(nn.Module):
    """Two mixed blocks: a residual one (4 -> 4) and a strided one (4 -> 6, stride 2)."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([TinyBlock(4, 4, 1, "b0"), TinyBlock(4, 6, 2, "b1")])

    def forward(self, x: torch.Tensor, mixing: Mixing) -> torch.Tensor:
        for b in self.blocks:
            x = b(x, mixing)
        return x

    shapes = {"b0": (1, 7), "b1": (1, 6)}


def run(model: nn.Module, x, alpha, probe):
    out = model(x, Mixing({g: F.softmax(a, -1) for g, a in alpha.items()}))
    params = list(model.parameters())
    grads = torch.autograd.grad((out * probe).sum(), params + list(alpha.values()))
    return out.detach(), grads


def inputs(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 4, 8, 8, generator=g, dtype=DT)
    alpha = {k: torch.randn(*s, generator=g, dtype=DT).requires_grad_() for k, s in TinyNet.shapes.items()}
    probe = torch.randn(3, 6, 4, 4, generator=g, dtype=DT)
    return x, alpha, probe


def close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    return float((a - b).abs().max()) <= rtol * max(float(b.abs().max()), 1e-12)


@pytest.fixture(scope="module")
def plain() -> TinyNet:
    torch.manual_seed(0)
    return TinyNet().to(DT).train()


def test_block_is_a_search_unit(plain) -> None:
    assert all(isinstance(b, SearchUnit) for b in plain.blocks)


@pytest.mark.parametrize("seed", [0, 1])
def test_exact_stacked_blocks_equal_the_plain_block(plain, seed) -> None:
    simple = simplify(copy.deepcopy(plain), "exact")
    plans = [p for b in simple.blocks for _, _, p in b.groups]
    blocks = [it for p in plans for it in p.items if isinstance(it, Block)]
    assert [len(b.paths) for b in blocks] == [6, 6] and not any(b.merged for b in blocks)
    x, alpha, probe = inputs(seed)
    ref_out, ref_g = run(plain, x, alpha, probe)
    out, grads = run(simple, x, alpha, probe)
    assert close(out, ref_out, 1e-10)
    assert len(grads) == len(ref_g)
    for g, r in zip(grads, ref_g):
        assert close(g, r, 1e-9)


def test_exact_block_runs_few_convolution_calls(plain) -> None:
    simple = simplify(copy.deepcopy(plain), "exact")
    x, alpha, _ = inputs()
    mixing = Mixing({g: F.softmax(a, -1) for g, a in alpha.items()})
    before = conv_cost(lambda: plain(x, mixing))
    after = conv_cost(lambda: simple(x, mixing))
    assert before.calls + before.depthwise_calls == 2 * 6 * 3
    # per block: one expand, one depthwise, one grouped project call per expansion width (2)
    assert after.calls + after.depthwise_calls == 2 * (1 + 1 + 2)


@pytest.mark.parametrize("pick", [0, 3, 5, 6])
def test_full_merged_block_equals_each_vertex(plain, pick) -> None:
    simple = simplify(copy.deepcopy(plain), "full")
    blocks = [it for b in simple.blocks for _, _, p in b.groups for it in p.items if isinstance(it, Block)]
    assert all(b.merged and len(b.paths) == 6 for b in blocks)
    x, _, _ = inputs()
    weights = {"b0": F.one_hot(torch.tensor([pick]), 7).to(DT), "b1": F.one_hot(torch.tensor([pick % 6]), 6).to(DT)}
    with torch.no_grad():
        ref = plain(x, Mixing(weights))  # at a vertex the plain block is the chosen candidate's own block
        out = simple(x, Mixing(weights))
    assert close(out, ref, 1e-2)  # bn's eps acting on the normalized kernels; a wrong term is order 1
    assert not close(out, ref, 1e-12) or pick == 6  # normalized kernels: equal up to eps, not bit-exact


@pytest.mark.parametrize("seed", [0, 1])
def test_full_merged_block_equals_the_literal_formula(plain, seed) -> None:
    simple = simplify(copy.deepcopy(plain), "full")
    literal = _literal_reference(plain, frozenset({"block_merge"}))
    x, alpha, probe = inputs(seed)
    ref_out, ref_g = run(literal, x, alpha, probe)
    out, grads = run(simple, x, alpha, probe)
    assert close(out, ref_out, 1e-10)
    for g, r in zip(grads, ref_g):
        assert close(g, r, 1e-9)
    plain_out, _ = run(plain, x, alpha, probe)
    assert not close(out, plain_out, 1e-3)  # between vertices the merged block is not the plain mixture


def test_full_merged_block_runs_one_block(plain) -> None:
    simple = simplify(copy.deepcopy(plain), "full")
    x, alpha, _ = inputs()
    mixing = Mixing({g: F.softmax(a, -1) for g, a in alpha.items()})
    after = conv_cost(lambda: simple(x, mixing))
    assert after.calls + after.depthwise_calls == 2 * 3  # expand, depthwise, project per block


def test_sampled_step_runs_the_plain_block(plain) -> None:
    simple = simplify(copy.deepcopy(plain), "full")
    x, alpha, _ = inputs()
    weights = {g: F.softmax(a, -1) for g, a in alpha.items()}
    mixing = Mixing(weights, {"b0": [[2]], "b1": [[4]]})
    with torch.no_grad():
        assert torch.equal(simple(x, mixing), plain(x, mixing))


def test_bad_block_modules_are_refused(plain) -> None:
    broken = copy.deepcopy(plain)
    broken.blocks[0].edges[0].ops[0][3] = nn.Conv2d(12, 12, 5, padding=2, groups=12, bias=False).to(DT)
    with pytest.raises(ValueError, match="do not match"):
        simplify(broken, "exact")


@pytest.mark.parametrize("mode, words", [("exact", "stacked blocks"), ("full", "merged block")])
def test_explain_shows_the_mobile_block(mode, words) -> None:
    from toponas.spaces import create_space
    from toponas.topo import explain

    text = explain(create_space("mobile"), mode, channels=4, height=8, width=8, batch=2)
    assert words in text and "One MixedBlock after" in text
