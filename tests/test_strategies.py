"""One step of each strategy on a tiny supernet, and what makes each strategy itself."""

import copy

import pytest
import torch
from torch.nn import functional as F

from toponas import topo
from toponas.registry import UnknownNameError
from toponas.spaces import MixedEdge, create_space
from toponas.strategies import STRATEGIES, create_strategy

# One-shot and training-free strategies update either no architecture parameters or no weights:
# tests/test_oneshot.py covers their step.
BILEVEL = [n for n in STRATEGIES.names() if n not in ("spos", "bn-nas", "pi-nas", "nasi", "hurricane", "fox-nas")]
ON_A_SHARE = ("da-nas",)


def make(name, dtype=torch.float32, topo_mode="off", **hyper):
    torch.manual_seed(0)
    space = create_space("nb201")
    model = space.build_supernet(channels=4, cells=1, num_classes=5)
    model = topo.simplify(model, topo_mode).to(dtype).train()
    strategy = create_strategy(name, space, hyper).to(dtype)
    ctx = strategy.make_context(model)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(6, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 5, (6,), generator=g),
             torch.randn(6, 3, 8, 8, generator=g, dtype=dtype), torch.randint(0, 5, (6,), generator=g))
    return space, model, strategy, ctx, batch


@pytest.mark.parametrize("topo_mode", topo.MODES)
@pytest.mark.parametrize("name", BILEVEL)
def test_one_step_updates_weights_and_architecture(name, topo_mode):
    space, model, strategy, ctx, batch = make(name, topo_mode=topo_mode)
    w0 = [p.detach().clone() for p in model.parameters()]
    a0 = strategy.alphas["cell"].detach().clone()
    strategy.new_epoch(0, strategy.hyper.epochs)
    stats = strategy.step(ctx, *batch)
    assert torch.isfinite(stats.w_loss) and torch.isfinite(stats.a_loss)
    assert 0 <= int(stats.w_correct) <= stats.batch <= 6
    assert stats.batch == 6 or name in ON_A_SHARE  # da-nas steps on a share of the batch (its easy classes)
    assert not torch.equal(strategy.alphas["cell"].detach(), a0)
    changed = [not torch.equal(p.detach(), w) for p, w in zip(model.parameters(), w0)]
    assert sum(changed) > len(changed) // 2
    cell = strategy.derive()
    assert space.parse(str(cell)) == cell


GRADIENT = ("darts-v1", "darts-v2", "gdas", "snas", "drnas", "beta-darts")


@pytest.mark.parametrize("name", [*GRADIENT, "parsec"])
def test_cosine_a_lr_schedule_anneals_the_architecture_optimizer_to_zero(name):
    """a_lr_schedule=cosine sets the architecture optimizer's lr per epoch (a_lr at epoch 0, a_lr/2 halfway,
    near 0 at the end) and reports it; the default constant schedule never writes it."""
    from toponas.strategies.base import cosine_lr

    epochs = 4
    _, _, strategy, ctx, _ = make(name, a_lr_schedule="cosine", a_lr=0.02, epochs=epochs)
    seen = []
    for epoch in range(epochs):
        figures = strategy.begin_epoch(ctx, epoch, epochs)
        lrs = {group["lr"] for group in ctx.a_optimizer.param_groups}
        assert lrs == {figures["a_lr"]}, (name, epoch)
        seen.append(figures["a_lr"])
    assert seen[0] == pytest.approx(0.02) and seen[2] == pytest.approx(0.01)
    assert seen == [pytest.approx(cosine_lr(0.02, 0.0, e, epochs)) for e in range(epochs)]
    assert seen[-1] < 0.2 * seen[0]  # the last epoch of 4 runs at (1 + cos(3 pi / 4)) / 2 = 0.15 of a_lr
    _, _, strategy, ctx, _ = make(name, a_lr=0.02, epochs=epochs)  # constant: the lr the optimizer was built with
    before = [dict(group) for group in ctx.a_optimizer.param_groups]
    for epoch in range(epochs):
        assert "a_lr" not in strategy.begin_epoch(ctx, epoch, epochs)
    assert [g["lr"] for g in ctx.a_optimizer.param_groups] == [g["lr"] for g in before] == [0.02] * len(before)


def test_an_unknown_a_lr_schedule_is_a_clear_error():
    with pytest.raises(ValueError, match="a_lr_schedule: 'step' is not one of constant, cosine"):
        create_strategy("darts-v1", create_space("nb201"), {"a_lr_schedule": "step"})


@pytest.mark.parametrize("name", BILEVEL + ["spos", "pi-nas"])
def test_exact_mode_takes_the_same_step_as_the_plain_supernet(name):
    """Under every strategy, topo=exact changes nothing but the cost (float64, same samples)."""
    results = []
    for mode in ("off", "exact"):
        space, model, strategy, ctx, batch = make(name, dtype=torch.float64, topo_mode=mode)
        strategy.new_epoch(0, strategy.hyper.epochs)
        torch.manual_seed(5)
        strategy.step(ctx, *batch)
        results.append((strategy.alphas["cell"].detach().clone(), [p.detach().clone() for p in model.parameters()]))
    (a_off, w_off), (a_exact, w_exact) = results
    torch.testing.assert_close(a_exact, a_off, rtol=0, atol=1e-9)
    for a, b in zip(w_exact, w_off):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)


def test_unknown_strategy_and_hyperparameter_are_clear_errors():
    space = create_space("nb201")
    known = ("known: advantage, beta-darts, bn-nas, da-nas, darts-v1, darts-v2, drnas, fox-nas, fp-nas, gdas, "
             "hurricane, ista-nas, ista-nas-one-stage, nasi, parsec, pi-nas, snas, spos")
    with pytest.raises(UnknownNameError, match=known):
        create_strategy("darts-v3", space)
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        create_strategy("darts-v1", space, {"learning_rate": 1})
    with pytest.raises(ValueError, match="not a valid float"):
        create_strategy("darts-v1", space, {"w_lr": "fast"})


def test_darts_v1_architecture_gradient_is_the_validation_gradient_of_softmax_mixing():
    space, model, strategy, ctx, batch = make("darts-v1")
    alpha = strategy.alphas["cell"]
    ref_model = copy.deepcopy(model)
    ref_alpha = alpha.detach().clone().requires_grad_(True)
    from toponas.spaces import Mixing

    loss = F.cross_entropy(ref_model(batch[2], Mixing({"cell": F.softmax(ref_alpha, -1)})), batch[3])
    (expected,) = torch.autograd.grad(loss, ref_alpha)
    ctx.a_optimizer.step = lambda: None  # keep the gradient observable
    strategy.arch_step(ctx, *batch)
    torch.testing.assert_close(alpha.grad, expected)


def test_darts_v2_gradient_matches_the_exact_unrolled_gradient():
    """The finite-difference Hessian-vector product agrees with double back-propagation (float64).

    A finer difference step than the reference's 0.01 makes the comparison tight on a tiny net.
    """
    space, model, strategy, ctx, batch = make("darts-v2", dtype=torch.float64, w_wd=0.01, fd_eps=1e-5)
    x_w, y_w, x_a, y_a = batch
    alpha = strategy.alphas["cell"]
    lr = ctx.w_optimizer.param_groups[0]["lr"]
    weights = list(model.parameters())
    before = [w.detach().clone() for w in weights]

    # Exact: d/d alpha of L_val(w - lr (grad_w L_train(w, alpha) + wd w), alpha); no momentum yet.
    from torch.func import functional_call

    names = [n for n, _ in model.named_parameters()]

    def loss_at(params, x, y):
        logits = functional_call(model, dict(zip(names, params)), (x, strategy.mixing()))
        return F.cross_entropy(logits, y)

    g_train = torch.autograd.grad(loss_at(weights, x_w, y_w), weights, create_graph=True)
    virtual = [w - lr * (g + 0.01 * w) for w, g in zip(weights, g_train)]
    (expected,) = torch.autograd.grad(loss_at(virtual, x_a, y_a), [alpha])

    ctx.a_optimizer.step = lambda: None
    strategy.arch_step(ctx, *batch)
    torch.testing.assert_close(alpha.grad, expected, rtol=1e-4, atol=1e-7)
    for w, b in zip(weights, before):  # the virtual step leaves no trace in the weights
        assert torch.equal(w.detach(), b)
    assert strategy.hyper.arch_first


def test_gdas_runs_only_the_sampled_candidate_and_anneals_tau():
    space, model, strategy, ctx, batch = make("gdas")
    calls = {"n": 0}

    def count(module, inputs, output):
        calls["n"] += 1

    edges = [m for m in model.modules() if isinstance(m, MixedEdge)]
    for edge in edges:
        for op in edge.ops:
            op.register_forward_hook(count)
    mixing = strategy.mixing()
    w = mixing.weights["cell"]
    assert torch.equal(w.detach(), F.one_hot(w.detach().argmax(-1), 5).float())
    model(batch[0], mixing)
    assert calls["n"] == len(edges)  # one candidate per edge
    # straight-through: the architecture gets a gradient for every candidate
    F.cross_entropy(model(batch[0], strategy.mixing()), batch[1]).backward()
    assert (strategy.alphas["cell"].grad != 0).sum() > 6

    strategy.new_epoch(0, 250)
    assert strategy.tau.item() == pytest.approx(10.0)
    strategy.new_epoch(249, 250)
    assert strategy.tau.item() == pytest.approx(0.1)
    strategy.new_epoch(125, 251)
    assert strategy.tau.item() == pytest.approx(5.05)


def test_gdas_derives_from_alpha_not_from_the_last_sample():
    space, model, strategy, ctx, batch = make("gdas")
    with torch.no_grad():
        strategy.alphas["cell"].zero_()
        strategy.alphas["cell"][:, 2] = 5.0
    assert strategy.derive().ops == ["nor_conv_1x1"] * 6


def test_drnas_mixes_with_reparameterized_dirichlet_samples():
    space, model, strategy, ctx, batch = make("drnas")
    w1, w2 = strategy.mixing().weights["cell"], strategy.mixing().weights["cell"]
    torch.testing.assert_close(w1.sum(-1), torch.ones(6))
    assert (w1 > 0).all() and not torch.equal(w1, w2)  # a fresh sample per forward pass
    w1.sum().backward()  # rsample: the sample is differentiable in alpha
    loss = (w2 * torch.arange(5.0)).sum()
    (grad,) = torch.autograd.grad(loss, [strategy.alphas["cell"]])
    assert grad.abs().sum() > 0
    assert strategy.regularizer(0) == 0.0  # l2 by default: Adam weight decay
    kl = create_strategy("drnas", space, {"reg": "kl"})
    assert kl.hyper.a_wd == 0.0 and kl.regularizer(0).item() > 0
    with torch.no_grad():
        kl.alphas["cell"].zero_()  # ELU(0) + 1 = 1: Dir(1) itself, KL zero
    assert kl.regularizer(0).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="choose l2 or kl"):
        create_strategy("drnas", space, {"reg": "l1"})
    assert strategy.hyper.arch_first and not strategy.hyper.w_nesterov and strategy.hyper.epochs == 100


def test_snas_soft_gumbel_weights_and_temperature():
    space, model, strategy, ctx, batch = make("snas")
    w = strategy.mixing().weights["cell"]
    torch.testing.assert_close(w.sum(-1), torch.ones(6))
    assert ((w > 0) & (w < 1)).all() and strategy.mixing().active is None
    strategy.new_epoch(0, 100)
    assert strategy.tau.item() == pytest.approx(10.0)
    strategy.new_epoch(99, 100)
    assert strategy.tau.item() == pytest.approx(1.0)


def test_beta_darts_regularizer_is_the_scheduled_beta_decay():
    space, model, strategy, ctx, batch = make("beta-darts")
    alpha = strategy.alphas["cell"]
    assert strategy.regularizer(0) == 0.0
    expected = 0.5 * 40 * torch.logsumexp(alpha, -1).mean()
    torch.testing.assert_close(strategy.regularizer(40), expected)
    # the architecture gradient includes the regularizer's
    ctx.epoch = 40
    ctx.a_optimizer.step = lambda: None
    strategy.arch_step(ctx, *batch)
    with_reg = alpha.grad.clone()
    ctx.epoch = 0
    strategy.arch_step(ctx, *batch)
    (reg_grad,) = torch.autograd.grad(strategy.regularizer(40), [alpha])
    torch.testing.assert_close(with_reg - alpha.grad, reg_grad)
