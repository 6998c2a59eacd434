"""The space contract: every registered space (``SPACES.names()``) builds, searches, derives and verifies.

Adding a space to the registry adds its tests here by itself: the supernet, one step of every strategy
(under ``--topo full``, and under every mode for one strategy of each kind), the derived architecture's
string round trip and discrete network, and ``verify`` in the exact and full modes, all on tiny shapes.
"""

from __future__ import annotations

import copy
import warnings

import pytest
import torch

from toponas import topo
from toponas.restoration.task import RestorationTask
from toponas.spaces import SPACES, create_space
from toponas.spaces.protocol import SearchUnit, search_units
from toponas.strategies import STRATEGIES, create_strategy
from toponas.strategies.base import CLASSIFICATION

CHANNELS, SIZE, BATCH = 4, 8, 4


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def plain_supernets():
    """One plain supernet per space, built once (every test takes a deep copy)."""
    cache = {}

    def get(name: str):
        if name not in cache:
            space = create_space(name)
            torch.manual_seed(0)
            cache[name] = (space, space.build_supernet(CHANNELS, space.verify_cells, 5))
        return cache[name]

    return get


def batch():
    g = torch.Generator().manual_seed(1)
    return (torch.randn(BATCH, 3, SIZE, SIZE, generator=g), torch.randint(0, 5, (BATCH,), generator=g),
            torch.randn(BATCH, 3, SIZE, SIZE, generator=g), torch.randint(0, 5, (BATCH,), generator=g))


def task_batch(space):
    """``(task, batch, network output shape)``: classification with 5 classes, or a restoration space's images."""
    if getattr(space, "family", None) != "restoration":
        return CLASSIFICATION, batch(), (BATCH, 5)
    task = RestorationTask(space.tasks[0], scale=max(space.out_scale, 2))
    shape = space.output_shape(BATCH, SIZE)
    g = torch.Generator().manual_seed(1)
    x_w, _, x_a, _ = batch()
    return task, (x_w, torch.randn(shape, generator=g), x_a, torch.randn(shape, generator=g)), shape


@pytest.mark.parametrize("name", SPACES.names())
def test_space_follows_the_protocol(name, plain_supernets) -> None:
    space, plain = plain_supernets(name)
    units = search_units(plain)
    assert units and all(isinstance(u, SearchUnit) for _, u in units)
    assert set(space.arch_shapes) == set(space.edge_keys) == set(space.group_ops)
    for g, (rows, k) in space.arch_shapes.items():
        assert len(space.edge_keys[g]) == rows and len(space.group_ops[g]) == k
    arch = space.largest_genotype()
    assert space.parse(str(arch)) == arch
    weights = space.one_hot(arch)
    assert {g: tuple(w.shape) for g, w in weights.items()} == space.arch_shapes
    assert space.example_unit(CHANNELS).unit.edges[0].specs
    assert space.verify_vertices(1, torch.Generator().manual_seed(0))


# Every strategy steps on every space under ``full`` (the mode with the most rewriting; see WIDTH_VARIANTS); ``off`` and
# ``exact`` run with one strategy of each kind the loop drives differently (a strategy knows nothing of
# the simplifier, so the other crosses would repeat these): relaxed bilevel, hard-sampled, multi-path
# sampled, progressively pruned and one-shot single-path.
# The intermediate NAS-Bench-201 widths (3 and 4 convolutions) are the same DAG and arch shapes as nb201
# and nb201-wide6 with more candidates per edge; only the representatives step on them.
MODE_REPRESENTATIVES = ("darts-v1", "gdas", "parsec", "drnas", "spos")
WIDTH_VARIANTS = ("nb201-wide3", "nb201-wide4")
COMBOS = [(space, s, m) for space in SPACES.names() for s in STRATEGIES.names() for m in topo.MODES
          if s in MODE_REPRESENTATIVES or (m == "full" and space not in WIDTH_VARIANTS)]


def test_mode_representatives_are_registered() -> None:
    assert set(MODE_REPRESENTATIVES) <= set(STRATEGIES.names())
    assert set(WIDTH_VARIANTS) <= set(SPACES.names())
    groups = {frozenset(create_space(v).arch_shapes) for v in WIDTH_VARIANTS}
    assert groups == {frozenset(create_space("nb201").arch_shapes)}


@pytest.mark.parametrize(("name", "strategy_name", "mode"), COMBOS)
def test_every_strategy_steps(name, strategy_name, mode, plain_supernets) -> None:
    space, plain = plain_supernets(name)
    torch.manual_seed(0)
    try:
        strategy = create_strategy(strategy_name, space)
    except NotImplementedError as e:  # the strategy declares (Strategy.families) that it does not search this space
        assert strategy_name in str(e) and space.name in str(e)
        pytest.skip(str(e))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # candidates the planner leaves to their modules (DARTS' reduce skip)
        model = topo.simplify(strategy.prepare_supernet(copy.deepcopy(plain), 0), mode).train()
    if mode != "off":
        assert all(isinstance(u, topo.SimplifiedUnit) for _, u in search_units(model))
    ctx = strategy.make_context(model)
    task, data, out_shape = task_batch(space)
    ctx.task = task
    strategy.new_epoch(0, strategy.hyper.epochs)

    def learned():  # architecture state (alphas, codes, ...) and the supernet's weights
        return [t.detach().clone() for t in [*strategy.state_dict().values(), *model.parameters()]
                if torch.is_tensor(t)]

    before = learned()
    stats = strategy.step(ctx, *data)
    assert torch.isfinite(stats.w_loss) and torch.isfinite(stats.a_loss)
    # bilevel strategies move both (tests/test_strategies.py); one-shot ones only the weights
    assert any(not torch.equal(a, b) for a, b in zip(before, learned()))
    arch = strategy.derive()
    assert space.parse(str(arch)) == arch
    net = space.build_network(arch, CHANNELS, space.verify_cells, 5)
    assert net(data[0]).shape == out_shape


@pytest.mark.parametrize("mode", ["exact", "full"])
@pytest.mark.parametrize("name", SPACES.names())
def test_verify_passes(name, mode) -> None:
    space = create_space(name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # 16x16: at 8x8 a mobile net's last stages are 1x1 maps, and bn statistics over 3 values let bn's
        # eps (which the merged block's normalized kernels see at another scale) show at the vertices
        report = topo.verify(space, mode, channels=CHANNELS, size=16, batch=3, trials=1)
    assert report.ok, str(report)
