"""Scores read from a trained one-shot supernet: ``supernet`` (SPOS / Pi-NAS) and ``bn-gamma`` (BN-NAS).

A run directory of ``toponas search --strategy spos|pi-nas|bn-nas`` holds ``config.json`` and
``checkpoint.pt``; the supernet is rebuilt from the configuration (the strategy's
``prepare_supernet`` included) and its weights loaded. ``supernet`` scores a cell by its shared-weight
accuracy (single path, BN with batch statistics) on held-out images: the first ``images`` of the
run's architecture half; ``bn-gamma`` by the sum over edges of its candidates' mean ``|gamma|``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..config import ConfigError, SearchConfig
from ..data import load_dataset, normalize, search_split
from ..loop.checkpoint import CHECKPOINT, load_checkpoint
from ..spaces import create_space
from ..strategies import create_strategy
from ..strategies.oneshot import BNNAS, candidate_bns, gamma_scores, path_mixing, shared_accuracy

#: Which strategies' runs each supernet indicator reads.
RUN_STRATEGIES = {"supernet": ("spos", "pi-nas"), "bn-gamma": ("bn-nas",)}


def load_run(run: str | Path, indicator: str, space_name: str):
    """``(config, space, strategy, model)`` of a supernet run, checked against the indicator and space."""
    run = Path(run)
    cfg_path, ckpt_path = run / "config.json", run / CHECKPOINT
    if not cfg_path.is_file() or not ckpt_path.is_file():
        raise ConfigError(f"--supernet {run} is not a supernet run (needs config.json and {CHECKPOINT} "
                          f"of `toponas search --strategy {'|'.join(RUN_STRATEGIES[indicator])}`)")
    try:
        config = SearchConfig.load(cfg_path)
    except (ConfigError, TypeError) as e:
        raise ConfigError(f"--supernet {run}: {e}") from None
    if config.strategy not in RUN_STRATEGIES[indicator]:
        raise ConfigError(f"--supernet {run} is a {config.strategy} run; the {indicator} indicator reads a "
                          f"{' or '.join(RUN_STRATEGIES[indicator])} supernet")
    if config.space != space_name:
        raise ConfigError(f"--supernet {run} is a run of space {config.space!r}, not {space_name!r}")
    try:
        state = load_checkpoint(ckpt_path)
    except RuntimeError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(state, dict) or not {"model", "strategy", "epoch"} <= set(state):
        raise ConfigError(f"--supernet {run}: {CHECKPOINT} is not a checkpoint of `toponas search`")
    space = create_space(config.space)
    strategy = create_strategy(config.strategy, space, config.hyper)
    model = space.build_supernet(config.channels, config.cells or space.default_cells,
                                 _num_classes(state, run))
    model = strategy.prepare_supernet(model, state["epoch"])
    strategy.make_context(model)
    try:
        model.load_state_dict(state["model"])
        strategy.load_state_dict(state["strategy"])
    except RuntimeError as e:
        raise ConfigError(f"--supernet {run}: its checkpoint does not fit the rebuilt supernet ({e})") from None
    model.train()  # search BN: batch statistics
    return config, space, strategy, model


def _num_classes(state: dict, run: Path) -> int:
    for key, value in state["model"].items():
        if key.endswith("classifier.weight"):
            return int(value.shape[0])
    raise ConfigError(f"--supernet {run}: no classifier in its checkpoint")


def supernet_scorer(run: str | Path, indicator: str, space_name: str, data: str | None = None,
                    images: int = 256) -> tuple[Callable[[str], float], dict]:
    """A scorer ``cell string -> score`` for ``supernet`` or ``bn-gamma``, and a description of the run."""
    config, space, strategy, model = load_run(run, indicator, space_name)
    about = {"run": str(run), "strategy": config.strategy, "epochs": strategy.hyper.epochs}
    index = {name: i for i, name in enumerate(space.op_names)}

    def choices(cell: str) -> torch.Tensor:
        return torch.tensor([index[op] for op in space.parse(cell).ops], dtype=torch.int64)

    if indicator == "bn-gamma":
        assert isinstance(strategy, BNNAS)
        (edges, cands), = space.arch_shapes.values()
        table = gamma_scores(candidate_bns(model), edges, cands)
        rows = torch.arange(edges)
        return (lambda cell: float(table[rows, choices(cell)].sum())), about

    ds = load_dataset(config.dataset, data or config.data, cache_dir=config.cache_dir, progress=False)
    if config.image_size and config.image_size != ds.image_size:
        from ..loop.search import resized

        ds = resized(ds, config.image_size)
    _, arch_idx = search_split(ds, config.subset, config.seed)
    idx = arch_idx[:images]
    x = normalize(ds.train_x[idx], ds.mean, ds.std)
    y = ds.train_y[idx]
    bs = config.batch_size
    batches = [(x[i:i + bs], y[i:i + bs]) for i in range(0, len(y), bs)]
    group = space.group
    like = next(iter(strategy.alphas.values()))
    about["images"] = len(y)

    def score(cell: str) -> float:
        acc, loss = shared_accuracy(model, path_mixing({group: choices(cell)}, space.arch_shapes, like), batches)
        return acc - 1e-4 * loss  # ties (equal accuracy) broken by the lower loss

    return score, about
