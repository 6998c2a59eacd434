"""PARSEC, FP-NAS and AdvantageNAS: the estimators on hand-computable cases, steps, FLOPs, resume."""

import copy
import json
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from toponas.config import SearchConfig
from toponas.flops import arch_flops, cost_table
from toponas.loop import Search, SearchInterrupted
from toponas.spaces import MixedEdge, NB201Space, create_space
from toponas.strategies import StepContext, create_strategy
from toponas.strategies.sampling import (
    Draws,
    SoftmaxWeightedSum,
    adaptive_samples,
    decode_joint,
    entropy,
    importance_weights,
    joint_logits,
    score_gradient,
    single_path_mixing,
)


def make(name, **hyper):
    torch.manual_seed(0)
    space = create_space("nb201")
    model = space.build_supernet(channels=4, cells=1, num_classes=5).train()
    strategy = create_strategy(name, space, hyper)
    ctx = strategy.make_context(model)
    g = torch.Generator().manual_seed(1)
    batch = (torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g),
             torch.randn(6, 3, 8, 8, generator=g), torch.randint(0, 5, (6,), generator=g))
    return space, model, strategy, ctx, batch


# -- the PARSEC estimator ------------------------------------------------------------------------
def test_importance_weights_and_distribution_gradient_by_hand():
    # Two candidates, uniform prior; child 0 took candidate 0 with log-likelihood -1, child 1
    # candidate 1 with -2: omega = (1, e^-1) / (1 + e^-1).
    omega = importance_weights(torch.tensor([-1.0, -2.0]))
    w0 = 1 / (1 + math.exp(-1))
    torch.testing.assert_close(omega, torch.tensor([w0, 1 - w0]))
    # sum_k omega_k (onehot(a_k) - p) = (w0 - 1/2, 1/2 - w0); the loss gradient is its negative.
    grad = score_gradient(torch.zeros(1, 2), torch.tensor([[0], [1]]), omega)
    torch.testing.assert_close(grad, torch.tensor([[0.5 - w0, w0 - 0.5]]))
    # temperature 2 halves the log-likelihoods; a non-uniform prior enters through p
    torch.testing.assert_close(importance_weights(torch.tensor([-1.0, -2.0]), 2.0),
                               F.softmax(torch.tensor([-0.5, -1.0]), 0))
    logits = torch.tensor([[math.log(3.0), 0.0]])  # p = (3/4, 1/4)
    grad = score_gradient(logits, torch.tensor([[0], [1]]), omega)
    torch.testing.assert_close(grad, torch.tensor([[0.75 - w0, w0 - 0.75]]))
    with pytest.raises(ValueError, match="temperature"):
        importance_weights(torch.zeros(2), 0.0)


class TwoWayStub(nn.Module):
    """Logits ``[w * c_a, 0]`` with ``a`` the candidate of edge 0: known, differentiable losses."""

    coef = (1.0, -2.0)

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(0.5))

    def forward(self, x, mixing):
        a = mixing.active["cell"][0][0]
        gate = mixing.weights["cell"][0, a]
        logit = self.w * self.coef[a] * gate
        return torch.stack([logit, torch.zeros(())]).expand(x.shape[0], 2)


def test_parsec_step_on_two_candidates_with_known_losses():
    space = NB201Space("two", ("none", "skip_connect"))
    strategy = create_strategy("parsec", space, {"grad_clip": 0})
    with torch.no_grad():
        strategy.alphas["cell"].zero_()
    model = TwoWayStub()
    w_opt = torch.optim.SGD(model.parameters(), lr=0.1)
    a_opt = torch.optim.Adam(strategy.alphas.values())
    a_opt.step = lambda: None  # keep the gradient observable
    ctx = StepContext(model, list(model.parameters()), w_opt, a_opt, strategy.hyper)
    x, y = torch.zeros(3, 1), torch.zeros(3, dtype=torch.long)
    draws = Draws({"cell": torch.tensor([[0] * 6, [1] * 6])})

    # reference: CE_a = softplus(-w c_a) per image; l_a = -3 CE_a; omega = softmax(l)
    w = torch.tensor(0.5, requires_grad=True)
    ce = torch.stack([F.softplus(-w * c) for c in TwoWayStub.coef])
    omega = F.softmax(-3 * ce.detach(), 0)
    (expected_w_grad,) = torch.autograd.grad((omega * ce).sum(), [w])

    strategy.weight_phase(ctx, x, y, draws)
    torch.testing.assert_close(model.w.grad, expected_w_grad)
    torch.testing.assert_close(strategy.last_w_omega, omega)

    with torch.no_grad():
        model.w.fill_(0.5)
    loss, _ = strategy.arch_phase(ctx, x, y, draws)
    torch.testing.assert_close(strategy.last_omega, omega)
    torch.testing.assert_close(loss, ce.detach().mean())
    row = torch.tensor([0.5 - omega[0], 0.5 - omega[1]])  # -(sum_k omega_k (onehot - 1/2))
    torch.testing.assert_close(strategy.alphas["cell"].grad, row.expand(6, 2))


def test_online_weighted_sum_matches_the_softmax_weighted_sum():
    torch.manual_seed(0)
    logliks = torch.tensor([-300.0, -5.0, -7.0, 40.0, 39.5])  # peaked, with a late maximum
    grads = [[torch.randn(3), None if k % 2 else torch.randn(2, 2)] for k in range(5)]
    acc = SoftmaxWeightedSum()
    for loglik, g in zip(logliks, grads):
        acc.add(loglik, g)
    omega = F.softmax(logliks, 0)
    first, second = acc.result()
    torch.testing.assert_close(first, sum(o * g[0] for o, g in zip(omega, grads)))
    torch.testing.assert_close(second, sum(o * g[1] for o, g in zip(omega, grads) if g[1] is not None))
    torch.testing.assert_close(acc.weights(), omega)
    only_none = SoftmaxWeightedSum()
    only_none.add(torch.tensor(0.0), [None])
    assert only_none.result() == [None]


# -- FP-NAS --------------------------------------------------------------------------------------
def test_entropy_to_number_of_samples():
    uniform = torch.zeros(6, 5)
    h = entropy(uniform)
    assert h.item() == pytest.approx(6 * math.log(5))
    assert adaptive_samples(h, 1.5) == 15  # ceil(14.48)
    sharp = torch.full((6, 5), -50.0)
    sharp[:, 2] = 50.0
    assert adaptive_samples(entropy(sharp), 1.5) == 1  # the floor
    assert adaptive_samples(0.0, 1.5) == 1
    masked = torch.tensor([[0.0, float("-inf")]])
    assert entropy(masked).item() == 0.0  # dropped candidates contribute nothing, not NaN

    _, _, strategy, _, _ = make("fp-nas")
    with torch.no_grad():
        strategy.alphas["cell"].zero_()
    assert strategy.num_samples() == 15
    with torch.no_grad():
        strategy.alphas["cell"].copy_(sharp)
    assert strategy.num_samples() == 1


def test_factorized_to_joint_switch_preserves_the_distribution():
    _, _, strategy, _, _ = make("fp-nas", joint_after=3)
    with torch.no_grad():
        strategy.alphas["cell"].copy_(torch.randn(6, 5) * 2)
    assert strategy.joint_rows == {"cell": [3, 4, 5]} and strategy.joint["cell"].shape == (125,)
    before_probs = strategy.probabilities()["cell"].clone()
    before_cell, before_h = strategy.derive(), strategy.entropy()
    p = before_probs[3:]
    product = (p[0][:, None, None] * p[1][None, :, None] * p[2][None, None, :]).reshape(-1)

    strategy.new_epoch(2, 10)
    assert not strategy.is_joint
    strategy.new_epoch(3, 10)
    assert strategy.is_joint and strategy.joint_optimizer is not None
    assert not strategy.joint_optimizer.state  # fresh Adam state at the switch
    joint = F.softmax(strategy.joint["cell"].detach(), -1)
    torch.testing.assert_close(joint, product)
    torch.testing.assert_close(strategy.probabilities()["cell"], before_probs)
    assert strategy.derive() == before_cell
    assert strategy.entropy() == pytest.approx(before_h, rel=1e-5)
    # the state order is row-major: state 5^2 a + 5 b + c decodes to (a, b, c)
    assert decode_joint(torch.tensor(2 * 25 + 3 * 5 + 4), 5, 3).tolist() == [2, 3, 4]
    torch.testing.assert_close(F.softmax(joint_logits(torch.zeros(2, 3)), -1), torch.full((9,), 1 / 9))
    # draws of the joint rows come from the joint states
    torch.manual_seed(0)
    draws = strategy.sample(7)
    assert torch.equal(draws.choices["cell"][:, 3:], decode_joint(draws.joint["cell"], 5, 3))


def test_default_switch_is_at_half_of_the_run_epochs():
    # A fixed 25 never switched in a run shortened with --epochs (the CPU budget's 8 epochs).
    hyper = type(create_strategy("fp-nas", create_space("nb201")).hyper)
    assert hyper().joint_after is None
    assert hyper().joint_epoch(50) == 25 and hyper().joint_epoch(8) == 4 and hyper().joint_epoch(1) == 0
    assert hyper.resolve({"joint_after": "3"}).joint_epoch(8) == 3
    assert hyper.resolve({"joint_after": "-1"}).joint_epoch(8) == -1
    assert hyper.resolve({"joint_after": "none"}).joint_after is None
    assert hyper.resolve({"joint_after": 2}).joint_after == 2
    with pytest.raises(ValueError, match="joint_after"):
        hyper.resolve({"joint_after": "soon"})
    _, _, strategy, _, _ = make("fp-nas", epochs=8)
    for epoch, joint in [(0, False), (3, False), (4, True), (5, True)]:
        strategy.new_epoch(epoch, 8)
        assert strategy.is_joint == joint
    _, _, never, _, _ = make("fp-nas", joint_after=-1)
    never.new_epoch(7, 8)
    assert not never.is_joint


# -- one step of each strategy -------------------------------------------------------------------
@pytest.mark.parametrize("name, hyper", [
    ("parsec", {"samples": 3}),
    ("parsec", {"samples": 2, "share_samples": False, "temperature": 6.0}),
    ("fp-nas", {"joint_after": 0, "sample_scale": 0.3, "flops_target": 0.05}),
    ("advantage", {}),
    ("advantage", {"baseline": False, "drop_none": True}),
])
def test_one_step_changes_weights_and_distribution(name, hyper):
    space, model, strategy, ctx, batch = make(name, **hyper)
    w0 = [p.detach().clone() for p in model.parameters()]
    a0 = strategy.alphas["cell"].detach().clone()
    strategy.new_epoch(0, strategy.hyper.epochs)
    j0 = {g: p.detach().clone() for g, p in getattr(strategy, "joint", {}).items()}
    stats = strategy.step(ctx, *batch)
    assert torch.isfinite(stats.w_loss) and torch.isfinite(stats.a_loss)
    assert 0 <= int(stats.w_correct) <= 6 and 0 <= int(stats.a_correct) <= 6
    assert not torch.equal(strategy.alphas["cell"].detach(), a0)
    for g, p in j0.items():
        assert not torch.equal(strategy.joint[g].detach(), p)
    changed = {n for (n, p), w in zip(model.named_parameters(), w0) if not torch.equal(p.detach(), w)}
    assert {n for n, _ in model.named_parameters() if ".edges." not in n} <= changed  # stem, blocks, head
    assert any(".edges." in n for n in changed) or "advantage" in name  # some sampled convolutions
    k = strategy.num_samples() if name != "fp-nas" else 3  # ceil(0.3 * 9.66)
    per_step = k * (1 if strategy.hyper.share_samples else 2)
    assert strategy.result_extras() == {"samples_total": per_step}
    assert strategy.epoch_summary()["samples"] == per_step
    cell = strategy.derive()
    assert space.parse(str(cell)) == cell


def test_single_path_mixing_runs_only_the_chosen_candidates():
    mixing = single_path_mixing({"cell": torch.tensor([3, 0, 1])}, num_candidates={"cell": 5})
    assert mixing.active == {"cell": [[3], [0], [1]]}
    assert torch.equal(mixing.weights["cell"], F.one_hot(torch.tensor([3, 0, 1]), 5).float())


def test_children_run_single_path_one_after_another():
    space, model, strategy, ctx, batch = make("parsec", samples=4)
    calls = []
    edges = [m for m in model.modules() if isinstance(m, MixedEdge)]  # 3 cells x 6 edges
    for e, edge in enumerate(edges):
        for i, op in enumerate(edge.ops):
            op.register_forward_hook(lambda mod, inp, out, e=e, i=i: calls.append((e, i)))
    torch.manual_seed(5)
    strategy.step(ctx, *batch)
    torch.manual_seed(5)
    draws = strategy.sample(4)
    expected = [(6 * c + e, int(draws.choices["cell"][k, e])) for k in range(4) for c in range(3)
                for e in range(6)]
    assert calls == expected * 2  # weight phase, then distribution phase on the same samples


def test_advantage_credit_is_the_gate_gradient_and_the_baseline_moves():
    space, model, strategy, ctx, batch = make("advantage")
    _, _, x, y = batch
    ctx.a_optimizer.step = lambda: None
    alpha = strategy.alphas["cell"]
    torch.manual_seed(3)
    draws = strategy.sample(1)
    choice = draws.choices["cell"][0]
    ref_model = copy.deepcopy(model)
    gate = F.one_hot(choice, 5).float().requires_grad_(True)
    loss = F.cross_entropy(ref_model(x, draws.mixing(0, {"cell": gate})), y)
    (gate_grad,) = torch.autograd.grad(loss, [gate])
    credit = gate_grad[torch.arange(6), choice]
    probs = F.softmax(alpha.detach(), -1)

    strategy.arch_phase(ctx, x, y, draws)
    torch.testing.assert_close(strategy.last_credit["cell"], credit)
    # first step: the baseline was 0, so the advantage is the credit itself
    torch.testing.assert_close(alpha.grad, credit[:, None] * (F.one_hot(choice, 5) - probs))
    torch.testing.assert_close(strategy.baseline_of("cell"), 0.05 * credit)
    # second step on the same child: the advantage is the credit minus the baseline
    strategy.arch_phase(ctx, x, y, draws)
    torch.testing.assert_close(alpha.grad, 0.95 * credit[:, None] * (F.one_hot(choice, 5) - probs))
    torch.testing.assert_close(strategy.baseline_of("cell"), (0.05 + 0.05 * 0.95) * credit)
    assert "baseline_of" not in dict(strategy.named_buffers())
    assert any(k.startswith("credit_baseline") for k in strategy.state_dict())


def test_advantage_drop_none_and_weight_epochs():
    space, model, strategy, ctx, batch = make("advantage", drop_none=True, w_epochs=1)
    with torch.no_grad():
        strategy.alphas["cell"][:, 0] = 10.0  # none would win everything
    draws = strategy.sample(500)
    assert (draws.choices["cell"] != 0).all()
    assert "none" not in strategy.derive().ops
    assert strategy.probabilities()["cell"][:, 0].eq(0).all()
    # after w_epochs the weights stay, the distribution still moves
    strategy.new_epoch(1, 2)
    ctx.epoch = 1
    w0 = [p.detach().clone() for p in model.parameters()]
    a0 = strategy.alphas["cell"].detach().clone()
    stats = strategy.step(ctx, *batch)
    assert all(torch.equal(p.detach(), w) for p, w in zip(model.parameters(), w0))
    assert not torch.equal(strategy.alphas["cell"].detach(), a0) and torch.isfinite(stats.w_loss)


# -- FLOPs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("cell", [
    "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
    "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",
    "|nor_conv_1x1~0|+|avg_pool_3x3~0|skip_connect~1|+|nor_conv_3x3~0|none~1|nor_conv_1x1~2|",
])
def test_flops_match_the_flop_counter(cell):
    space = create_space("nb201")
    for channels, cells, size, classes in ((4, 1, 8, 5), (3, 2, 12, 7)):
        net = space.build_network(cell, channels, cells, classes).eval()
        with FlopCounterMode(display=False) as counter:
            net(torch.randn(1, 3, size, size))
        # FlopCounterMode counts 2 FLOPs per multiply-accumulate of convolutions and matmuls
        assert arch_flops(space, cell, channels, cells, size, classes) == counter.get_total_flops() // 2
    table = cost_table(space)
    choices = torch.tensor([[0, 0, 0, 0, 0, 0], [3, 1, 2, 4, 0, 3]])
    assert table(choices).tolist() == [arch_flops(space, [space.op_names[i] for i in row]) for row in choices]
    # the NAS-Bench-201 CIFAR-10 network: 7.78 (all none) to 220.12 (all 3x3) MFLOPs
    assert arch_flops(space, ["none"] * 6) == 7_783_040
    assert arch_flops(space, ["nor_conv_3x3"] * 6) == 220_119_680


def test_flops_term_favours_cheap_architectures():
    _, _, strategy, _, _ = make("fp-nas", flops_target=50.0, flops_beta=2.0)
    cheap, dear = torch.zeros(6, dtype=torch.long), torch.full((6,), 3)  # none / nor_conv_3x3
    cost = strategy.cost(Draws({"cell": torch.stack([cheap, dear])}))
    assert cost[0] == pytest.approx(2 * math.log(0.01))  # under the target: C = eps
    assert cost[1] == pytest.approx(2 * math.log(220.11968 / 50 - 1 + 0.01), rel=1e-5)


# -- the search loop -----------------------------------------------------------------------------
def tiny(tmp_path, name, **hyper):
    return SearchConfig(strategy="fp-nas", dataset="digits", subset=96, batch_size=16, channels=4, cells=1,
                        seed=3, out=str(tmp_path / name), cache_dir=str(tmp_path / "cache"), device="cpu",
                        hyper={"epochs": 2, "joint_after": 1, "sample_scale": 0.3, **hyper})


def quiet(_msg):
    pass


def test_fpnas_resume_across_the_joint_switch_is_exact(tmp_path):
    full = Search(tiny(tmp_path, "full"), progress=False, log=quiet)
    full.run()
    cut = tiny(tmp_path, "cut")
    with pytest.raises(SearchInterrupted):  # epoch 2, step 1: after the switch
        Search(cut, progress=False, log=quiet, interrupt_after=4).run()
    resumed = Search(cut, resume=True, progress=False, log=quiet)
    resumed.run()
    a, b = full.strategy.state_dict(), resumed.strategy.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert bool(a["joint_on"])
    joint_a = full.strategy.optimizers(full.ctx)["joint_optimizer"]  # the strategy's own Adam, checkpointed
    joint_b = resumed.strategy.optimizers(resumed.ctx)["joint_optimizer"]
    sa, sb = joint_a.state_dict()["state"], joint_b.state_dict()["state"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[i]["exp_avg"], sb[i]["exp_avg"]) for i in sa)
    for x, y in zip(full.model.state_dict().values(), resumed.model.state_dict().values()):
        assert torch.equal(x, y)
    data = json.loads((tmp_path / "cut" / "result.json").read_text())
    ref = json.loads((tmp_path / "full" / "result.json").read_text())
    samples = [h["samples"] for h in data["history"]]
    assert samples == [h["samples"] for h in ref["history"]] and all(s >= 3 for s in samples)
    assert data["samples_total"] == sum(samples) == ref["samples_total"]
    assert [h["joint"] for h in data["history"]] == [False, True]
    assert data["genotype"] == ref["genotype"]
