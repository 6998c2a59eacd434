"""Found restoration networks against hand-designed baselines at equal size, on a CPU budget.

Per seed: search ``mod-nas`` (denoising, sigma 25, colour) and ``trilevel`` (super-resolution x2) on the
embedded ``skimage`` photographs, retrain the found networks, and train the baselines with the same budget:
a DnCNN-style denoiser whose depth gives the parameter count nearest the found denoiser's (same width), an
FSRCNN-style and an ESPCN-style upscaler whose sizes give the multiply-adds nearest the found upscaler's;
bicubic is scored by every SR run. Writes ``OUT/table.json`` and ``OUT/table.md``; runs already finished in
OUT are read, not repeated (more seeds later extend the table).

    python benchmarks/restoration_table.py --seeds 0 1 2 --out runs/restoration-table
    python benchmarks/restoration_table.py --tasks denoise --search-epochs 40 --seeds 0 1 2 --out runs/rt-e40
"""

from __future__ import annotations

import argparse
import itertools
import json
import statistics
from pathlib import Path

import torch

from toponas.config import SearchConfig
from toponas.loop import Search
from toponas.restoration.baselines import build_baseline
from toponas.restoration.runs import RESTORE_PRESETS
from toponas.restoration.train import RestoreTrainConfig, RestoreTrainer
from toponas.spaces import create_space
from toponas.training.cost import count_mult_adds, count_parameters

#: The CPU restoration budget (docs/restoration.md): a search of 8 epochs x 32 steps of 8 patches of 32x32, every
#: network retrained with ``toponas train --preset cpu`` (1,280 steps of 16 patches of 48x48, Adam 1e-3, L2).
SEARCH = {"epochs": 8, "patches": 256, "batch_size": 8, "patch_size": 32, "loss": "l2"}
TRAIN = dict(RESTORE_PRESETS["cpu"])
TASKS = {"denoise": {"space": "mod-nas", "sigma": 25.0, "cells": 2},
         "sr": {"space": "trilevel", "scale": 2, "cells": 3}}


def search(task: str, seed: int, out: Path, channels: int, strategy: str) -> dict:
    if (out / "result.json").exists():
        return json.loads((out / "result.json").read_text())
    t = TASKS[task]
    cfg = SearchConfig(task=task, space=t["space"], strategy=strategy, dataset="skimage", channels=channels,
                       cells=t["cells"], sigma=t.get("sigma", 25.0), scale=t.get("scale", 2), seed=seed,
                       out=str(out), device="cpu", topo="full", batch_size=SEARCH["batch_size"],
                       patch_size=SEARCH["patch_size"], patches=SEARCH["patches"], loss=SEARCH["loss"],
                       hyper={"epochs": SEARCH["epochs"]})
    return Search(cfg, progress=False).run().to_dict()


def train(arch: str, space: str, task: str, seed: int, out: Path, channels: int) -> dict:
    if (out / "train.json").exists():
        return json.loads((out / "train.json").read_text())
    t = TASKS[task]
    cfg = RestoreTrainConfig(arch=arch, space=space, task=task, sigma=t.get("sigma", 25.0), scale=t.get("scale", 2),
                             dataset="skimage", channels=channels, seed=seed, out=str(out), device="cpu", **TRAIN)
    return RestoreTrainer(cfg, progress=False).run()


def size(arch: str, task: str, channels: int) -> tuple[int, int]:
    """(parameters, multiply-adds on a 24x24 input) of a baseline."""
    net = build_baseline(arch, 3, task, 2, channels)
    return count_parameters(net), count_mult_adds(net, (3, 24, 24))


def matched_dncnn(params: int, channels: int) -> str:
    return min((f"baseline:dncnn:{d}" for d in range(3, 21)),
               key=lambda a: abs(size(a, "denoise", channels)[0] - params))


def matched_sr(kind: str, macs: int) -> str:
    if kind == "fsrcnn":
        grid = (f"baseline:fsrcnn:{d},{s},{m}" for d, s, m in itertools.product(
            (8, 12, 16, 24, 32, 48, 56, 64, 96), (4, 8, 12, 16), (1, 2, 3, 4)))
    else:
        grid = (f"baseline:espcn:{a},{b}" for a, b in itertools.product((8, 12, 16, 24, 32, 48, 64, 96, 128),
                                                                            (4, 8, 16, 32, 48, 64)))
    return min(grid, key=lambda a: abs(size(a, "sr", 16)[1] - macs))


def macs_on(net_result: dict) -> int:
    """The found network's multiply-adds on the same 24x24 (low-resolution) input as the baselines'."""
    space = create_space(net_result["space"])
    net = space.build_network(net_result["arch"], net_result["config"]["channels"])
    return count_mult_adds(net, (3, 24, 24))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--channels", type=int, default=12)
    ap.add_argument("--strategy", default="darts-v1")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    ap.add_argument("--out", default="runs/restoration-table")
    ap.add_argument("--search-epochs", type=int, default=SEARCH["epochs"],
                    help=f"epochs of each search (the CPU budget's: {SEARCH['epochs']})")
    ap.add_argument("--quick", action="store_true", help="a smoke test: one epoch of a few patches each")
    args = ap.parse_args()
    SEARCH["epochs"] = args.search_epochs
    if args.quick:
        SEARCH.update(epochs=1, patches=16)
        TRAIN.update(epochs=1, patches=16)
    torch.set_num_threads(1)
    root = Path(args.out)
    rows = json.loads((root / "table.json").read_text()) if (root / "table.json").exists() else []
    done = {(r["task"], r["seed"]) for r in rows}
    for seed in args.seeds:
        for task in args.tasks:
            if (task, seed) in done:
                continue
            base = root / f"{task}-s{seed}"
            found = search(task, seed, base / "search", args.channels, args.strategy)
            space = TASKS[task]["space"]
            net = train(found["genotype"], space, task, seed, base / "found", args.channels)
            row = {"task": task, "seed": seed, "genotype": found["genotype"], "search_psnr": found["psnr"],
                   "search_seconds": found["search_seconds"], "found": pick(net, macs_on(net))}
            if task == "denoise":
                arch = matched_dncnn(net["parameters"], args.channels)
                row["dncnn"] = pick(train(arch, space, task, seed, base / "dncnn", args.channels),
                                    size(arch, task, args.channels)[1])
                row["input_psnr"] = net["input_psnr"]
            else:
                for kind in ("fsrcnn", "espcn"):
                    arch = matched_sr(kind, row["found"]["macs24"])
                    row[kind] = pick(train(arch, space, task, seed, base / kind, 16), size(arch, task, 16)[1])
                row["bicubic_psnr"], row["bicubic_ssim"] = net["bicubic_psnr"], net["bicubic_ssim"]
            rows.append(row)
            root.mkdir(parents=True, exist_ok=True)
            (root / "table.json").write_text(json.dumps(rows, indent=2) + "\n")
            print(json.dumps(row))
    (root / "table.md").write_text(markdown(rows))
    print(markdown(rows))


def pick(result: dict, macs24: int) -> dict:
    return {"arch": result["arch"], "psnr": result["psnr"], "ssim": result["ssim"],
            "parameters": result["parameters"], "macs24": macs24, "seconds": result["seconds"]}


def markdown(rows: list[dict]) -> str:
    lines = []
    for task, others in (("denoise", ("found", "dncnn")), ("sr", ("found", "fsrcnn", "espcn"))):
        mine = [r for r in rows if r["task"] == task]
        if not mine:
            continue
        lines += [f"### {task}", "", "| network | seeds | PSNR (dB) | SSIM | parameters | MACs (24x24 input) |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for key in others:
            ps = [r[key]["psnr"] for r in mine]
            ss = [r[key]["ssim"] for r in mine]
            spread = f" ± {statistics.stdev(ps):.2f}" if len(ps) > 1 else ""
            lines.append(f"| {key} | {len(mine)} | {statistics.mean(ps):.2f}{spread} | {statistics.mean(ss):.4f} | "
                         f"{statistics.mean(r[key]['parameters'] for r in mine):,.0f} | "
                         f"{statistics.mean(r[key]['macs24'] for r in mine):,.0f} |")
        ref = "input_psnr" if task == "denoise" else "bicubic_psnr"
        lines.append(f"| {'noisy input' if task == 'denoise' else 'bicubic'} | {len(mine)} | "
                     f"{statistics.mean(r[ref] for r in mine):.2f} | | 0 | 0 |")
        lines.append("")
        for r in mine:
            lines.append(f"- seed {r['seed']}: " + ", ".join(
                f"{k} `{r[k]['arch']}` {r[k]['psnr']:.2f} dB" for k in others))
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
