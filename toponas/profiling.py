"""Cost of one search step per simplifier mode, against the largest single network of the space.

Every configuration gets the same batch; steps are interleaved after warm-up and the median is
reported, so machine noise hits all configurations alike. A search step is a weight step and an
architecture step (two forward/backward passes); the single network's figure is two training
steps on the same two batches, the same amount of work, so the two compare like for like.
"""

from __future__ import annotations

import copy
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from . import topo
from .spaces import create_space
from .spaces.nb201 import SEARCH_BN
from .strategies import create_strategy
from .topo.measure import saved_activation_bytes


@dataclass
class ProfileRow:
    """Figures of one configuration (``name``: ``topo=MODE`` or ``largest single network``)."""

    name: str
    ms_per_step: float
    ms_spread: tuple[float, float]  # min and max of the timed steps
    saved_activation_bytes: int  # tensors kept for backward by one forward pass (weight batch)
    peak_memory_bytes: int | None  # CUDA peak over one step above what was resident; None on the CPU
    parameters: int
    mult_adds: int  # of one forward pass on one batch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mult_adds(fn: Callable[[], torch.Tensor]) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops() // 2


def _peak(step: Callable[[], object], device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    _sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    resident = torch.cuda.memory_allocated(device)  # every configuration's model and optimizer state
    step()
    _sync(device)
    return torch.cuda.max_memory_allocated(device) - resident


def largest_cell(space) -> str:
    """The architecture with the most expensive candidate everywhere (the space's own definition)."""
    return str(space.largest_genotype())


def profile(
    space_name: str = "nb201",
    strategy_name: str = "darts-v1",
    modes: Sequence[str] = ("off", "exact", "full"),
    channels: int = 16,
    cells: int | None = None,
    batch_size: int = 64,
    image_size: int = 32,
    steps: int = 3,
    warmup: int = 1,
    device: str | torch.device = "cpu",
    disable: Sequence[str] = (),
    single: bool = True,
    seed: int = 0,
    log: Callable[[str], None] = lambda s: None,
) -> list[ProfileRow]:
    """Median time per search step and memory figures of each mode (and the largest single net)."""
    device = torch.device(device)
    space = create_space(space_name)
    cells = cells or space.default_cells
    gen = torch.Generator().manual_seed(seed)
    shape = (batch_size, 3, image_size, image_size)
    batch = [torch.randn(shape, generator=gen), torch.randint(0, 10, (batch_size,), generator=gen),
             torch.randn(shape, generator=gen), torch.randint(0, 10, (batch_size,), generator=gen)]
    batch = [t.to(device) for t in batch]
    torch.manual_seed(seed)
    plain = space.build_supernet(channels, cells, 10)
    configs: dict[str, tuple[Callable[[], object], Callable[[], torch.Tensor], torch.nn.Module]] = {}
    for mode in modes:
        model = topo.simplify(copy.deepcopy(plain), mode, disable=disable).to(device).train()
        torch.manual_seed(seed)
        strategy = create_strategy(strategy_name, space).to(device)
        ctx = strategy.make_context(model)
        h = ctx.hyper
        strategy.new_epoch(0, h.epochs)

        def step(strategy=strategy, ctx=ctx):
            return strategy.step(ctx, *batch)

        def forward(strategy=strategy, model=model):
            return F.cross_entropy(model(batch[0], strategy.mixing()), batch[1])

        configs[f"topo={mode}"] = (step, forward, model)
    if single:
        net = space.build_network(space.largest_genotype(), channels, cells, 10, bn=SEARCH_BN).to(device).train()
        opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=5e-4, nesterov=True)

        def train_two(net=net, opt=opt):
            for x, y in ((batch[0], batch[1]), (batch[2], batch[3])):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                opt.step()

        configs["largest single network"] = (train_two, lambda net=net: F.cross_entropy(net(batch[0]), batch[1]),
                                             net)

    def seeded(fn, i: int):
        """Every configuration draws the same samples at step i (GDAS, DrNAS ...): a fair comparison."""
        torch.manual_seed(seed * 1_000_003 + i)
        return fn()

    def timed(fn) -> float:
        _sync(device)
        t = time.perf_counter()
        fn()
        _sync(device)
        return (time.perf_counter() - t) * 1000

    for _ in range(warmup):
        for name, (step, _, _) in configs.items():
            log(f"warm-up {name}")
            timed(lambda step=step: seeded(step, -1))
    times: dict[str, list[float]] = {name: [] for name in configs}
    for i in range(steps):
        order = list(configs.items())
        if i % 2:  # alternate the order, so no configuration always runs right after the same other one
            order.reverse()
        for name, (step, _, _) in order:
            times[name].append(timed(lambda step=step, i=i: seeded(step, i)))
        log(f"step {i + 1}/{steps}: " + ", ".join(f"{n} {t[-1]:.0f} ms" for n, t in times.items()))
    rows = []
    for name, (step, forward, model) in configs.items():
        ts = times[name]
        rows.append(ProfileRow(
            name=name,
            ms_per_step=statistics.median(ts),
            ms_spread=(min(ts), max(ts)),
            saved_activation_bytes=saved_activation_bytes(lambda forward=forward: seeded(forward, 0)),
            peak_memory_bytes=_peak(lambda step=step: seeded(step, 0), device),
            parameters=sum(p.numel() for p in model.parameters()),
            mult_adds=_mult_adds(lambda forward=forward: seeded(forward, 0)),
        ))
    return rows


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def format_table(rows: Sequence[ProfileRow], baseline: str = "topo=off") -> str:
    """A plain-text table with ratios against the plain supernet and the largest single network."""
    by = {r.name: r for r in rows}
    base, single = by.get(baseline), by.get("largest single network")
    head = (f"{'configuration':24s} {'ms/step':>9s} {'saved MB':>9s} {'peak MB':>8s} {'params':>9s} "
            f"{'MMACs':>8s} {'off/this time':>13s} {'off/this mem':>12s} {'this/single time':>16s} "
            f"{'this/single mem':>15s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        mb = r.saved_activation_bytes / 2**20
        peak = f"{r.peak_memory_bytes / 2**20:8.0f}" if r.peak_memory_bytes is not None else f"{'n/a':>8s}"
        lines.append(
            f"{r.name:24s} {r.ms_per_step:9.1f} {mb:9.1f} {peak} {r.parameters:9d} {r.mult_adds / 1e6:8.1f} "
            f"{_ratio(base.ms_per_step, r.ms_per_step) if base else '-':>13s} "
            f"{_ratio(base.saved_activation_bytes, r.saved_activation_bytes) if base else '-':>12s} "
            f"{_ratio(r.ms_per_step, single.ms_per_step) if single else '-':>16s} "
            f"{_ratio(r.saved_activation_bytes, single.saved_activation_bytes) if single else '-':>15s}"
        )
    return "\n".join(lines)


def rows_to_json(rows: Sequence[ProfileRow]) -> list[dict]:
    return [asdict(r) for r in rows]
