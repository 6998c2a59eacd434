"""``toponas train`` of a restoration architecture (or a baseline): patches, Adam, PSNR/SSIM on the test images.

The same resumable run loop as every other run (:class:`toponas.runtime.loop.RunLoop`): per step a batch
of random training patches degraded on the fly, an L2 (or L1) loss, Adam with a cosine learning rate; after
the last epoch the whole test images are restored and scored, ``train.json`` holds ``psnr`` and ``ssim``,
``model.pt`` the weights with a description that ``export`` rebuilds, ``RUN/examples/`` the pictures
``report`` shows.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..config import ConfigError, check_known_keys, check_types
from ..runtime import peak_memory, resolve_device, write_json
from ..runtime.loop import Diverged, RunLoop
from ..runtime.provenance import provenance
from ..runtime.signals import Interrupted
from ..training.cost import count_mult_adds, count_parameters
from ..training.network import network_meta, save_model
from .figures import save_examples
from .images import load_images
from .search import task_of
from .task import RestorationBatches

TRAIN_JSON = "train.json"


@dataclass
class RestoreTrainConfig:
    """A restoration training run: the architecture (or ``baseline:NAME``), the task, the budget."""

    arch: str
    space: str
    task: str = "denoise"
    sigma: float = 25.0
    scale: int = 2
    patch_size: int = 48
    grey: bool = False
    loss: str = "l2"
    dataset: str = "skimage"
    data: str | None = None
    cache_dir: str | None = None
    epochs: int = 10
    patches: int = 1024
    batch_size: int = 16
    lr: float = 1e-3
    lr_min: float = 1e-5
    channels: int = 16
    seed: int = 0
    out: str = "runs/train"
    device: str = "auto"
    source: str | None = None

    def __post_init__(self) -> None:
        check_types(self)
        for name in ("epochs", "patches", "batch_size", "channels"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> RestoreTrainConfig:
        check_known_keys(cls, values, "config key(s)")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class RestoreTrainDiverged(Diverged):
    """The training loss became NaN or infinite."""


class RestoreTrainInterrupted(Interrupted):
    """Stopped by a signal; ``--resume`` continues."""


def build_model(config: RestoreTrainConfig) -> tuple[nn.Module, str]:
    """The network of ``config.arch`` (a space's architecture, or ``baseline:NAME``) and its canonical name."""
    from ..spaces import create_space
    from .baselines import build_baseline, is_baseline

    channels = 1 if config.grey else 3
    if is_baseline(config.arch):
        return build_baseline(config.arch, channels, config.task, config.scale, config.channels), config.arch
    space = create_space(config.space)
    arch = space.parse(config.arch)
    if getattr(space, "tasks", None) is None or config.task not in space.tasks:
        raise ConfigError(f"the {config.space} space builds no --task {config.task} network")
    arch_scale = getattr(arch, "scale", None)
    if config.task == "sr" and arch_scale is not None and arch_scale != config.scale:
        raise ConfigError(f"the architecture was searched for x{arch_scale}, not --scale {config.scale}; "
                          f"pass --scale {arch_scale} (or search again at x{config.scale})")
    return space.build_network(arch, config.channels, in_channels=channels), str(arch)


class RestoreTrainer(RunLoop):
    """One restoration training run in ``config.out`` (see the module docstring)."""

    result_file = TRAIN_JSON
    interrupted = RestoreTrainInterrupted
    diverged = RestoreTrainDiverged
    loss_names = {"loss": "training loss"}
    diverged_hint = "Lower the learning rate (--lr) or check the data."

    def __init__(self, config: RestoreTrainConfig, resume: bool = False, progress: bool = True,
                 log: Callable[[str], None] = print, command: list[str] | None = None) -> None:
        super().__init__(config.out, resume=resume, progress=progress, log=log)
        self.config = config
        self.command = command
        self.task = task_of(config)

    @property
    def epochs(self) -> int:
        return self.config.epochs

    @property
    def seed(self) -> int:
        return self.config.seed

    def check_saved(self, state: dict[str, Any]) -> None:
        saved = state.get("config") or {}
        diffs = [f"{k}: saved {saved.get(k)!r}, given {v!r}" for k, v in self.config.to_dict().items()
                 if k not in ("epochs", "out", "device", "data", "cache_dir", "source") and saved.get(k) != v]
        if "restore" not in state or diffs:
            raise ConfigError("cannot resume: " + ("; ".join(diffs) or "not a restoration training checkpoint"))

    def finished_result(self) -> dict[str, Any]:
        return json.loads((self.out / TRAIN_JSON).read_text())

    def setup(self, state: dict[str, Any] | None) -> None:
        cfg = self.config
        self.device = resolve_device(cfg.device)
        self.images = load_images(cfg.dataset, cfg.data, cfg.grey, cfg.cache_dir, self.progress)
        self.task.check(self.images)
        steps = max(1, math.ceil(cfg.patches / cfg.batch_size))
        self.batches = RestorationBatches(self.task, self.images, cfg.batch_size, steps, cfg.seed, self.device,
                                          paired=False)
        torch.manual_seed(cfg.seed)
        model, self.arch = build_model(cfg)
        lr_side = cfg.patch_size // self.task.out_scale
        self.parameters = count_parameters(model)
        self.mult_adds = count_mult_adds(model, (self.task.channels, lr_side, lr_side))
        self.meta = {**network_meta(cfg.space, self.arch, cfg.channels, 1, 1, lr_side, (0.0,) * self.task.channels,
                                    (1.0,) * self.task.channels, in_channels=self.task.channels),
                     "task": cfg.task, "scale": self.task.out_scale, "output": "image in [0, 1]"}
        self.model = model.to(self.device).train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr)
        if state is not None:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.restore(state)
            self.log(f"resuming {self.out} at epoch {self.epoch + 1}, step {self.step}")
        else:
            self.log(f"train {self.arch} ({cfg.space}) for {self.task.describe()} on {self.images.name}: "
                     f"{len(self.images.train)} training images, {len(self.images.test)} test images, {cfg.epochs} "
                     f"epochs of {steps} steps (batch {cfg.batch_size}, patches {cfg.patch_size}), C={cfg.channels}, "
                     f"{self.parameters:,} parameters, {self.mult_adds:,} multiply-adds per {lr_side}x{lr_side} input")
        self.out.mkdir(parents=True, exist_ok=True)

    def checkpoint_state(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "restore": True, "network": self.meta}

    def steps_per_epoch(self) -> int:
        return len(self.batches)

    def begin_epoch(self, epoch: int) -> None:
        cfg = self.config
        self.lr = cfg.lr_min + (cfg.lr - cfg.lr_min) * (1 + math.cos(math.pi * epoch / cfg.epochs)) / 2
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr

    def epoch_batches(self, epoch: int, start: int):
        return self.batches.epoch(epoch, start)

    def zero_sums(self) -> dict[str, Any]:
        return {"loss": 0.0, "n": 0, "seconds": 0.0}

    def take_step(self, epoch: int, step: int, steps: int, batch) -> tuple[dict, dict, int]:
        x, y = batch
        self.optimizer.zero_grad(set_to_none=True)
        loss = self.task.loss(self.model(x), y)
        loss.backward()
        self.optimizer.step()
        return {"loss": float(loss.detach())}, {}, int(x.shape[0])

    def end_epoch(self, epoch: int, sums: dict) -> None:
        n = max(sums["n"], 1)
        record = {"epoch": epoch + 1, "lr": self.lr, "loss": sums["loss"] / n, "seconds": sums["seconds"]}
        self.history.append(record)
        self.log(f"epoch {epoch + 1}/{self.epochs}  loss {record['loss']:.4f}  lr {self.lr:.2g}  "
                 f"{record['seconds']:.1f}s")

    def finish(self) -> dict[str, Any]:
        cfg = self.config
        self.model.eval()
        scores = self.task.evaluate(self.model, self.images, self.device, keep=3)
        reference = self.task.baseline_psnr(self.images)
        save_model(self.out / "model.pt", self.model, self.meta)
        save_examples(scores["examples"], self.images.test_names, self.out)
        peak, kind = peak_memory(self.device)
        result = {
            "arch": self.arch, "space": cfg.space, "task": cfg.task, "dataset": self.images.name,
            "psnr": scores["psnr"], "ssim": scores["ssim"], "test_scores": scores["per_image"],
            "input_psnr" if cfg.task == "denoise" else "bicubic_psnr": reference["psnr"],
            "input_ssim" if cfg.task == "denoise" else "bicubic_ssim": reference["ssim"],
            "restoration": {"kind": cfg.task, "sigma": cfg.sigma if cfg.task == "denoise" else None,
                            "scale": cfg.scale if cfg.task == "sr" else None, "channels": self.task.channels,
                            "loss": cfg.loss, "patch_size": cfg.patch_size,
                            "metric": "Y channel, border shaved" if self.task.y_channel else "all channels"},
            "parameters": self.parameters, "mult_adds": self.mult_adds,
            "mult_adds_input": [self.task.channels, cfg.patch_size // self.task.out_scale,
                                cfg.patch_size // self.task.out_scale],
            "epochs": cfg.epochs, "seconds": self.seconds,
            "ms_per_step": sorted(self.step_ms)[len(self.step_ms) // 2] if self.step_ms else None,
            "peak_memory_bytes": int(peak), "peak_memory_kind": kind, "device": str(self.device),
            "train_images": len(self.images.train), "test_images": len(self.images.test), "history": self.history,
            "config": cfg.to_dict(),
            "provenance": provenance(self.device, self.command),
        }
        write_json(self.out / TRAIN_JSON, result)
        return result


def summary(result: dict[str, Any]) -> str:
    """Lines for the terminal."""
    ref = ("input", result.get("input_psnr")) if "input_psnr" in result else ("bicubic", result.get("bicubic_psnr"))
    return "\n".join([
        f"network    {result['arch']} ({result['space']}), {result['parameters']:,} parameters, "
        f"{result['mult_adds']:,} multiply-adds",
        f"test       PSNR {result['psnr']:.2f} dB, SSIM {result['ssim']:.4f} ({ref[0]}: {ref[1]:.2f} dB) on "
        f"{len(result['test_scores'])} images of {result['dataset']}",
        f"time       {result['seconds']:.1f} s, {result['ms_per_step'] or float('nan'):.1f} ms/step",
    ])


__all__ = ["RestoreTrainConfig", "RestoreTrainer", "build_model", "summary"]
