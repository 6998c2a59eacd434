"""The pieces recomputed in backward (``toponas/topo/recompute.py``): the same values and gradients as the
saved computation (float64), and fewer bytes kept for backward."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toponas.topo.autograd import Pooled, combine
from toponas.topo.kernels import _native_pool_transposed, avg_pool_same, avg_pool_same_transposed
from toponas.topo.measure import saved_activation_bytes
from toponas.topo.recompute import recomputed_taps, scaled_bn, separable

pytestmark = pytest.mark.usefixtures("one_thread")


def _pool_bn(x: torch.Tensor) -> torch.Tensor:
    return F.batch_norm(F.max_pool2d(x, 3, 1, 1), None, None, None, None, True, 0.0, 1e-5)


FNS = (_pool_bn, lambda x: avg_pool_same(x, 3))
LAYOUT = ([(0, 0), (1, 1)], [(1, 2)], [(0, 3)])  # three edges: max+avg, avg, max


def _inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, 6, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    ws = [torch.rand((), generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(4)]
    return x, ws


def _plain_taps(x, ws):
    ps = [fn(x) for fn in FNS]
    return [sum(ws[k] * ps[s] for s, k in pairs) for pairs in LAYOUT]


def test_recomputed_taps_equal_the_plain_taps_outputs_and_gradients() -> None:
    x, ws = _inputs()
    gen = torch.Generator().manual_seed(1)
    grads = [torch.randn(3, 4, 6, 6, generator=gen, dtype=torch.float64) for _ in LAYOUT]
    ours = recomputed_taps(FNS, LAYOUT, x, ws)
    ref = _plain_taps(x, ws)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)
    g_ours = torch.autograd.grad(ours, [x, *ws], grads)
    g_ref = torch.autograd.grad(ref, [x, *ws], grads)
    for a, b in zip(g_ours, g_ref):
        torch.testing.assert_close(a, b)
    # one output unused: its weights get no gradient, the others the same as before
    g_part = torch.autograd.grad(recomputed_taps(FNS, LAYOUT, x, ws)[0], [x, ws[0], ws[1]], grads[0])
    g_ref0 = torch.autograd.grad(_plain_taps(x, ws)[0], [x, ws[0], ws[1]], grads[0])
    for a, b in zip(g_part, g_ref0):
        torch.testing.assert_close(a, b)


def test_recomputed_taps_double_backward() -> None:
    """A backward with ``create_graph`` (NASI's gradient norm) is differentiated again: the plain taps' second
    derivatives, in ``x`` and in the weights (before the fix the input gradient was not recorded)."""
    x, ws = _inputs()
    gen = torch.Generator().manual_seed(4)
    probes = [torch.randn(3, 4, 6, 6, generator=gen, dtype=torch.float64) for _ in LAYOUT]

    def gnorm(outs):
        loss = sum(((o * p).sum()) ** 2 for o, p in zip(outs, probes))
        grads = torch.autograd.grad(loss, [x, *ws], create_graph=True)
        return torch.autograd.grad(sum((gr * gr).sum() for gr in grads), [x, *ws])

    for a, b in zip(gnorm(recomputed_taps(FNS, LAYOUT, x, ws)), gnorm(_plain_taps(x, ws))):
        torch.testing.assert_close(a, b)


def test_recomputed_taps_keep_only_the_input() -> None:
    x, ws = _inputs()
    ours = saved_activation_bytes(lambda: recomputed_taps(FNS, LAYOUT, x, ws))
    plain = saved_activation_bytes(lambda: _plain_taps(x, ws))
    assert ours == (x.numel() + len(ws)) * x.element_size()  # x and the four 0-d weights
    assert plain >= 3 * ours  # pooling out and indices, bn out, avg pool out ...


def test_avg_pool_same_transposed_is_the_poolings_input_gradient() -> None:
    gen = torch.Generator().manual_seed(2)
    for kernel, shape in ((3, (2, 3, 5, 7)), (5, (1, 2, 6, 6))):
        x = torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
        g = torch.randn(*shape, generator=gen, dtype=torch.float64)
        ref, = torch.autograd.grad(avg_pool_same(x, kernel), x, g)
        torch.testing.assert_close(avg_pool_same_transposed(g, kernel, x), ref)
        torch.testing.assert_close(_native_pool_transposed(g, kernel, x), ref)  # the branch off the CPU


def _node_inputs():
    gen = torch.Generator().manual_seed(3)
    xs = [torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(3)]
    ws = [torch.rand((), generator=gen, dtype=torch.float64, requires_grad=True) for _ in range(6)]
    plain = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    return xs, ws, plain


def _node_terms(xs, ws, plain):
    """A node of three sources: a plain term, skips, 3x3 pools of every source and one 5x5 pool."""
    return [(plain, None), (xs[0], ws[0]), Pooled(xs[0], ws[1], 3), Pooled(xs[1], ws[2], 3), (xs[2], ws[3]),
            Pooled(xs[2], ws[4], 3), Pooled(xs[1], ws[5], 5)]


def _node_plain(xs, ws, plain):
    return (plain + ws[0] * xs[0] + ws[1] * avg_pool_same(xs[0], 3) + ws[2] * avg_pool_same(xs[1], 3)
            + ws[3] * xs[2] + ws[4] * avg_pool_same(xs[2], 3) + ws[5] * avg_pool_same(xs[1], 5))


def test_pooled_terms_sum_by_linearity_to_the_plain_node_outputs_and_gradients() -> None:
    xs, ws, plain = _node_inputs()
    ours = combine(_node_terms(xs, ws, plain), plain)
    ref = _node_plain(xs, ws, plain)
    torch.testing.assert_close(ours, ref)
    g = torch.randn_like(ref)
    leaves = [*xs, *ws, plain]
    for a, b in zip(torch.autograd.grad(ours, leaves, g), torch.autograd.grad(ref, leaves, g)):
        torch.testing.assert_close(a, b)
    # a weight step (gradients of the inputs only) and an architecture-only one: the same values
    for part in (xs, ws):
        got = torch.autograd.grad(combine(_node_terms(xs, ws, plain), plain), part, g)
        want = torch.autograd.grad(_node_plain(xs, ws, plain), part, g)
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b)
    # only pooled terms (a node whose other candidates are pruned)
    only = combine([Pooled(xs[0], ws[1], 3), Pooled(xs[1], ws[2], 3)], plain)
    torch.testing.assert_close(only, ws[1] * avg_pool_same(xs[0], 3) + ws[2] * avg_pool_same(xs[1], 3))


def test_pooled_terms_double_backward() -> None:
    xs, ws, plain = _node_inputs()
    probe = torch.randn_like(plain)
    leaves = [*xs, *ws, plain]

    def gnorm(node):
        grads = torch.autograd.grad(((node * probe).sum()) ** 2, leaves, create_graph=True)
        return torch.autograd.grad(sum((gr * gr).sum() for gr in grads), leaves)

    got = gnorm(combine(_node_terms(xs, ws, plain), plain))
    for a, b in zip(got, gnorm(_node_plain(xs, ws, plain))):
        torch.testing.assert_close(a, b)


def test_pooled_terms_keep_only_their_sources() -> None:
    xs, ws, plain = _node_inputs()
    ours = saved_activation_bytes(lambda: combine(_node_terms(xs, ws, plain), plain))
    assert ours == (3 * xs[0].numel() + len(ws)) * xs[0].element_size()  # the three sources and the weights
    assert saved_activation_bytes(lambda: _node_plain(xs, ws, plain)) > ours


def test_pooled_terms_under_vmap_run_the_plain_computation() -> None:
    xs, ws, plain = _node_inputs()
    batched = torch.stack([x.detach() for x in xs])  # (3, B, C, H, W): vmap over the first dim
    w = torch.stack([v.detach() for v in ws[:3]])

    def node(x, v):
        return combine([(x, v), Pooled(x, v, 3)], x)

    out = torch.vmap(node)(batched, w)
    for i in range(3):
        torch.testing.assert_close(out[i], w[i] * batched[i] + w[i] * avg_pool_same(batched[i], 3))


@pytest.mark.parametrize("use_h", [False, True])
def test_scaled_bn_equals_bn_times_w(use_h: bool) -> None:
    gen = torch.Generator().manual_seed(2)
    z = torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64, requires_grad=True)
    w = torch.rand((), generator=gen, dtype=torch.float64, requires_grad=True)
    g_y, g_h = (torch.randn(4, 3, 5, 5, generator=gen, dtype=torch.float64) for _ in range(2))
    h, y = scaled_bn(z, w, 1e-5)
    h_ref = F.batch_norm(z, None, None, None, None, True, 0.0, 1e-5)
    y_ref = w * h_ref
    torch.testing.assert_close(h, h_ref)
    torch.testing.assert_close(y, y_ref)
    outs, refs, gs = ([y, h], [y_ref, h_ref], [g_y, g_h]) if use_h else ([y], [y_ref], [g_y])
    for a, b in zip(torch.autograd.grad(outs, [z, w], gs), torch.autograd.grad(refs, [z, w], gs)):
        torch.testing.assert_close(a, b)


def test_scaled_bn_does_not_keep_its_output() -> None:
    z = torch.randn(4, 3, 5, 5, requires_grad=True)
    w = torch.tensor(0.3, requires_grad=True)
    ours = saved_activation_bytes(lambda: scaled_bn(z, w, 1e-5))
    plain = saved_activation_bytes(lambda: w * F.batch_norm(z, None, None, None, None, True, 0.0, 1e-5))
    assert plain - ours >= z.numel() * z.element_size()  # bn(z) is not kept


def test_kernel_build_recomputation_is_chosen_by_cost() -> None:
    from toponas.topo.program import RECOMPUTE_BUILD_RATIO, recompute_build

    assert recompute_build(10, None)  # no activation known: recompute, the memory-safe choice
    assert recompute_build(int(RECOMPUTE_BUILD_RATIO * 1000), 1000)
    assert not recompute_build(int(RECOMPUTE_BUILD_RATIO * 1000) - 1, 1000)


def test_recomputed_kernel_build_equals_the_kept_build_and_keeps_fewer_bytes(monkeypatch) -> None:
    """The whole simplified supernet with its kernel builds rebuilt in backward (ratio 0) and kept (a huge
    ratio): the same loss and gradients (float64), and fewer saved bytes when rebuilt."""
    from toponas import topo
    from toponas.spaces import create_space
    from toponas.spaces.mixed import Mixing
    from toponas.strategies import create_strategy
    from toponas.topo import program

    space = create_space("nb201")
    torch.manual_seed(0)
    model = topo.simplify(space.build_supernet(4, 1, 5), "full").double().train()
    alphas = create_strategy("darts-v1", space)
    gen = torch.Generator().manual_seed(2)
    x, y = torch.randn(2, 3, 8, 8, generator=gen, dtype=torch.float64), torch.randint(0, 5, (2,), generator=gen)

    def run(ratio: float):
        monkeypatch.setattr(program, "RECOMPUTE_BUILD_RATIO", ratio)
        model.zero_grad(set_to_none=True)
        weights = {g: w.double().detach().requires_grad_(True) for g, w in alphas.mixing().weights.items()}
        loss = F.cross_entropy(model(x, Mixing(weights)), y)
        loss.backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        nbytes = saved_activation_bytes(lambda: F.cross_entropy(model(x, Mixing(weights)), y))
        return loss.detach(), grads, [w.grad.clone() for w in weights.values()], nbytes

    asked = []
    choose = program.recompute_build
    monkeypatch.setattr(program, "recompute_build", lambda kept, act: asked.append((kept, act)) or choose(kept, act))
    kept, rebuilt = run(1e12), run(0.0)
    # every unit asks with its kernels' size and its input's size this step (2 x C x H x W), never "unknown"
    assert asked and all(k > 0 and a is not None and a % 2 == 0 for k, a in asked)
    torch.testing.assert_close(rebuilt[0], kept[0], rtol=0, atol=1e-12)
    for a, b in zip(rebuilt[1] + rebuilt[2], kept[1] + kept[2]):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert len(rebuilt[1]) == len(kept[1]) > 0
    assert rebuilt[3] < kept[3]


#: Depthwise calls ``(kernel, dilation)`` of a separable stage: one, and several (dilation 1 and 2).
SEP_CALLS = ([(3, 1)], [(3, 1), (5, 1), (3, 2), (5, 2)])


def _plain_separable(z, ks, p, calls, stride):
    """The saved computation of a separable stage, as ``_run_stage`` wrote it before ``separable``."""
    d = None
    for k, (kernel, dilation) in zip(ks, calls):
        out = F.conv2d(z, k, None, stride, dilation * (kernel - 1) // 2, dilation, z.shape[1])
        d = out if d is None else d + out
    return F.conv2d(d, p)


def _sep_inputs(calls, dtype, seed=3):
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, 4, 9, 9, generator=gen, dtype=dtype, requires_grad=True)
    ks = [torch.randn(4, 1, k, k, generator=gen, dtype=dtype, requires_grad=True) for k, _ in calls]
    p = torch.randn(4, 4, 1, 1, generator=gen, dtype=dtype, requires_grad=True)
    return z, ks, p


@pytest.mark.parametrize("calls", SEP_CALLS, ids=["one-call", "four-calls"])
@pytest.mark.parametrize("stride", [1, 2])
def test_separable_equals_the_saved_computation(calls, stride) -> None:
    """Outputs and gradients of ``z``, every depthwise kernel and the 1x1 kernel (float64), and of any subset."""
    z, ks, p = _sep_inputs(calls, torch.float64)
    ours, ref = separable(z, ks, p, calls, stride), _plain_separable(z, ks, p, calls, stride)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    g = torch.randn(ref.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    for wrt in ([z, *ks, p], [z], ks, [p], [ks[-1], p]):
        for a, b in zip(
            torch.autograd.grad(ours, wrt, g, retain_graph=True), torch.autograd.grad(ref, wrt, g, retain_graph=True)
        ):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("calls", SEP_CALLS, ids=["one-call", "four-calls"])
def test_separable_gradients_have_the_saved_computations_bits(calls) -> None:
    """float32, ``z`` also read elsewhere (its gradient summed with another's first): bit for bit, as the
    engine adds the calls' gradients of ``z`` in the order the saved computation's convolutions gave them."""
    x, ks, p = _sep_inputs(calls, torch.float32)
    g = torch.randn(2, 4, 9, 9, generator=torch.Generator().manual_seed(5))

    def grads(fn):
        z = F.relu(x)
        loss = (fn(z, ks, p, calls, 1) * g).sum() + (z * z).sum()
        return torch.autograd.grad(loss, [x, *ks, p])

    for a, b in zip(grads(separable), grads(_plain_separable)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("calls", SEP_CALLS, ids=["one-call", "four-calls"])
def test_separable_double_backward(calls) -> None:
    """A backward with ``create_graph`` (NASI's gradient norm) is differentiated again: the saved computation's
    second derivatives."""
    z, ks, p = _sep_inputs(calls, torch.float64)

    def gnorm(fn):
        out = fn(z, ks, p, calls, 2)
        grads = torch.autograd.grad((out * out).sum(), [z, *ks, p], create_graph=True)
        return torch.autograd.grad(sum((gr * gr).sum() for gr in grads), [z, *ks, p])

    for a, b in zip(gnorm(separable), gnorm(_plain_separable)):
        torch.testing.assert_close(a, b)


def test_separable_under_vmap_runs_the_plain_computation() -> None:
    calls = SEP_CALLS[1]
    z, ks, p = _sep_inputs(calls, torch.float64)
    zs = torch.stack([z.detach(), 2 * z.detach()])
    got = torch.func.vmap(lambda zz: separable(zz, ks, p, calls, 1))(zs)
    for i in range(2):
        torch.testing.assert_close(got[i], _plain_separable(zs[i], ks, p, calls, 1))
    gz = torch.func.vmap(torch.func.grad(lambda zz: separable(zz, ks, p, calls, 1).sum()))(zs)
    gz_ref = torch.func.vmap(torch.func.grad(lambda zz: _plain_separable(zz, ks, p, calls, 1).sum()))(zs)
    torch.testing.assert_close(gz, gz_ref)


def test_separable_does_not_keep_the_depthwise_sum() -> None:
    calls = SEP_CALLS[1]
    z, ks, p = _sep_inputs(calls, torch.float32)
    ours = saved_activation_bytes(lambda: separable(z, ks, p, calls, 1))
    plain = saved_activation_bytes(lambda: _plain_separable(z, ks, p, calls, 1))
    assert ours == sum(t.numel() for t in (z, *ks, p)) * z.element_size()  # z and the kernels
    assert plain - ours == z.numel() * z.element_size()  # the depthwise sum d
