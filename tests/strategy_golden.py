"""Tiny seeded searches of every registered supernet strategy, and their comparison with stored ones.

``python tests/strategy_golden.py record DIR`` runs each case (a 2-epoch search on 48 digits images through
the real search loop) and saves what it ends with (``DIR/<case>.pt``: the strategy's and the model's state,
every optimizer's state and result.json without the timings); ``compare DIR`` runs them again and checks
every tensor with ``torch.equal``. ``record-cut DIR`` leaves interrupted runs (checkpoints) in ``DIR/cut`` and
``resume DIR`` resumes them and compares with the uninterrupted results: a checkpoint written by one version of
the code still resumes, to the same bits, under another. ``GOLDEN_WHY=TEXT ... rerecord
tests/data/strategy_golden.json CASE...`` rewrites those cases' entries of the golden JSON, with TEXT as the
reason (check first that they moved only by float rounding). ``tests/test_strategy_golden.py`` runs a few
cases against ``tests/data/strategy_golden.json`` (the alphas and genotype of every case).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

FAST = dict(dataset="digits", subset=48, batch_size=8, channels=4, cells=1, seed=5, device="cpu")
ONESHOT = {"evo_population": 4, "evo_sample": 2, "evo_cycles": 4, "eval_batches": 1}
#: case -> (strategy, space, hyper, other config fields)
CASES: dict[str, tuple[str, str, dict[str, Any], dict[str, Any]]] = {
    "darts-v1": ("darts-v1", "nb201", {}, {}),
    "darts-v1-topo-off": ("darts-v1", "nb201", {}, {"topo": "off"}),
    "darts-v2": ("darts-v2", "nb201", {}, {}),
    "gdas": ("gdas", "nb201", {}, {}),
    "snas": ("snas", "nb201", {}, {}),
    "drnas": ("drnas", "nb201", {}, {}),
    "drnas-kl": ("drnas", "nb201", {"reg": "kl"}, {}),
    "drnas-progressive": ("drnas", "nb201", {"progressive": True, "epochs": 4, "warmup_frac": 0.0}, {}),
    "beta-darts": ("beta-darts", "nb201", {}, {}),
    "parsec": ("parsec", "nb201", {"samples": 2}, {}),
    "fp-nas": ("fp-nas", "nb201", {"joint_after": 1, "sample_scale": 0.3}, {}),
    "advantage": ("advantage", "nb201", {"drop_none": True, "w_epochs": 1}, {}),
    "spos": ("spos", "nb201", ONESHOT, {}),
    "bn-nas": ("bn-nas", "nb201", ONESHOT, {"topo": "off"}),
    "pi-nas": ("pi-nas", "nb201", ONESHOT, {}),
    "nasi": ("nasi", "nb201", {"epochs": 2, "samples": 4}, {}),
    "ista-nas": ("ista-nas", "nb201", {"lasso_iters": 50}, {}),
    "ista-nas-darts": ("ista-nas", "darts", {"lasso_iters": 50}, {"subset": 24, "channels": 4}),
    "ista-nas-one-stage": ("ista-nas-one-stage", "nb201", {"lasso_iters": 50}, {}),
    "da-nas": ("da-nas", "nb201", {"epochs": 3}, {}),
    "da-nas-mobile": ("da-nas", "mobile", {"epochs": 3}, {"subset": 16, "cells": None}),
    "darts-v1-mobile": ("darts-v1", "mobile", {}, {"subset": 16, "cells": None}),
    "gdas-mobile": ("gdas", "mobile", {}, {"subset": 16, "cells": None}),
    "fp-nas-mobile": ("fp-nas", "mobile", {"sample_scale": 0.1}, {"subset": 16, "cells": None, "topo": "off"}),
    "hurricane": ("hurricane", "mobile", ONESHOT, {"subset": 16, "topo": "off", "cells": None}),
    "fox-nas": ("fox-nas", "mobile", {**ONESHOT, "fox_samples": 8, "sa_steps": 50},
                {"subset": 16, "topo": "off", "cells": None}),
}
#: Cases whose checkpoint mid-run is kept by ``record-cut`` (after the stage switches where there are some).
CUT_AFTER = {"da-nas": 5, "darts-v1": 4, "gdas": 4, "drnas-progressive": 7, "fp-nas": 4, "pi-nas": 4, "spos": 5,
             "ista-nas": 4, "advantage": 4, "hurricane": 1}
TIMINGS = {"search_seconds", "ms_per_step", "seconds", "peak_memory_bytes", "peak_memory_kind", "provenance",
           "out_dir", "step_ms"}
#: Every case's strategy must be registered; a strategy that no case covers is reported by ``check_cases``.


def config(case: str, out: Path):
    from toponas.config import SearchConfig

    strategy, space, hyper, other = CASES[case]
    fields = {**FAST, **other, "strategy": strategy, "space": space, "out": str(out),
              "cache_dir": str(out.parent / "cache"), "hyper": {"epochs": 2, **hyper}}
    return SearchConfig(**fields)


def strip(value: Any) -> Any:
    """result.json without what depends on the clock or the machine."""
    if isinstance(value, dict):
        return {k: strip(v) for k, v in value.items() if k not in TIMINGS}
    if isinstance(value, list):
        return [strip(v) for v in value]
    return value


def outcome(search) -> dict[str, Any]:
    """What a finished search ends with: states of strategy, model and optimizers; the result."""
    from toponas.runtime.checkpoint import load_checkpoint

    ckpt = load_checkpoint(search.out / "checkpoint.pt")
    optim = ckpt.get("optimizers") or {k: ckpt[k] for k in ("w_optimizer", "a_optimizer")}
    strategy = dict(search.strategy.state_dict())
    extra = strategy.pop("_extra_state", None)
    if extra and extra.get("joint_optimizer") is not None:  # FP-NAS before the contract kept it there
        optim = {**optim, "joint_optimizer": extra.pop("joint_optimizer")}
    if extra is not None:
        extra.pop("joint_optimizer", None)
        if extra:
            strategy["_extra_state"] = extra
    result = json.loads((search.out / "result.json").read_text())
    return {"strategy": strategy, "model": dict(search.model.state_dict()), "optimizers": optim,
            "result": strip(result)}


def run(case: str, out: Path, **kwargs) -> dict[str, Any]:
    from toponas.loop import Search

    search = Search(config(case, out), progress=False, log=lambda m: None, **kwargs)
    search.run()
    return outcome(search)


def differences(a: Any, b: Any, where: str = "") -> list[str]:
    """Where ``a`` and ``b`` differ (tensors by ``torch.equal``)."""
    if torch.is_tensor(a) or torch.is_tensor(b):
        ok = torch.is_tensor(a) and torch.is_tensor(b) and a.dtype == b.dtype and torch.equal(a, b)
        return [] if ok else [where]
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}/{k}: only in one" for k in sorted(set(a) ^ set(b), key=str)]
        for k in a:
            if k in b:
                out += differences(a[k], b[k], f"{where}/{k}")
        return out
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def main(argv: list[str]) -> int:
    import tempfile

    torch.set_num_threads(1)
    command, where = argv[0], Path(argv[1])
    cases = argv[2:] or list(CASES)
    bad = 0
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            if command == "record":
                where.mkdir(parents=True, exist_ok=True)
                torch.save(run(case, Path(tmp) / case), where / f"{case}.pt")
                print(f"recorded {case}")
            elif command == "compare":
                got = run(case, Path(tmp) / case)
                diffs = differences(torch.load(where / f"{case}.pt", weights_only=False), got)
                bad += bool(diffs)
                print(f"{case}: {'bit-identical' if not diffs else 'DIFFERS ' + '; '.join(diffs[:5])}")
            elif command == "rerecord":  # where: the golden JSON; its entry of the case, with a note of why
                gold = json.loads(where.read_text())
                got = run(case, Path(tmp) / case)
                old = gold["cases"][case]
                why = os.environ.get("GOLDEN_WHY", "re-recorded")
                gold["cases"][case] = {
                    "genotype": got["result"]["genotype"],
                    "alphas": {k[len("alphas."):]: v.tolist() for k, v in got["strategy"].items()
                               if k.startswith("alphas.")},
                    "w_loss": [h["w_loss"] for h in got["result"]["history"]],
                    "recorded": (old["recorded"] + "; " if "recorded" in old else "") + why,
                }
                where.write_text(json.dumps(gold, indent=1) + "\n")
                print(f"re-recorded {case}")
            elif command == "record-cut" and case in CUT_AFTER:
                from toponas.loop import SearchInterrupted

                try:
                    run(case, where / "cut" / case, interrupt_after=CUT_AFTER[case])
                except SearchInterrupted:
                    print(f"left {case} interrupted after {CUT_AFTER[case]} steps")
            elif command == "resume" and case in CUT_AFTER:
                got = run(case, where / "cut" / case, resume=True)
                diffs = differences(torch.load(where / f"{case}.pt", weights_only=False), got)
                bad += bool(diffs)
                print(f"{case} resumed: {'bit-identical' if not diffs else 'DIFFERS ' + '; '.join(diffs[:5])}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
