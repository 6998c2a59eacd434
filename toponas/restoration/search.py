"""The restoration task of a search (``--task denoise|sr``): what :class:`toponas.loop.search.Search` calls."""

from __future__ import annotations

import math
from typing import Any

from ..config import ConfigError
from ..loop.task import Prepared
from ..spaces.mixed import Mixing
from .figures import save_examples
from .images import load_images
from .task import RestorationBatches, RestorationTask


def task_of(config) -> RestorationTask:
    """The :class:`RestorationTask` of a search or training configuration."""
    return RestorationTask(config.task, sigma=float(config.sigma), scale=int(config.scale),
                           patch_size=int(config.patch_size), channels=1 if config.grey else 3,
                           loss_name=config.loss)


class RestoreSearchTask:
    """Denoising or super-resolution: patches of clean images, degraded on the fly; PSNR/SSIM at the end."""

    def __init__(self, config) -> None:
        self.config = config
        self.step_task = task_of(config)
        self.name = config.task

    def configure_space(self, space):
        """The restoration space at the run's depth (``--cells``) and scale; other spaces are refused."""
        cfg = self.config
        if getattr(space, "family", None) != "restoration":
            from ..spaces import SPACES

            ours = [n for n in SPACES.names() if cfg.task in getattr(SPACES.create(n), "tasks", ())]
            raise ConfigError(f"--task {cfg.task} searches a restoration space ({', '.join(ours)}), not {space.name}")
        if cfg.task not in space.tasks:
            raise ConfigError(f"the {space.name} space searches --task {'/'.join(space.tasks)}, not {cfg.task}")
        if cfg.cells and cfg.cells != space.default_cells:
            space = space.with_cells(cfg.cells)
        if hasattr(space, "with_scale"):
            space = space.with_scale(cfg.scale)
        return space

    def prepare(self, search) -> Prepared:
        cfg, task = self.config, self.step_task
        images = load_images(cfg.dataset, cfg.data, cfg.grey, cfg.cache_dir, search.progress)
        task.check(images)
        self.images = images
        steps = max(1, math.ceil(cfg.patches / cfg.batch_size))
        batches = RestorationBatches(task, images, cfg.batch_size, steps, cfg.seed, search.device)
        p = cfg.patch_size
        line = (f"data   {images.name}: {len(images.train)} training images (patches {p}x{p}, "
                f"{steps} steps of {cfg.batch_size} per epoch), {len(images.test)} test images; {task.describe()}, "
                f"seed {cfg.seed}")
        return Prepared(batches, line, {"in_channels": task.channels})

    def result_fields(self, search, arch) -> dict[str, Any]:
        """``psnr`` / ``ssim`` of the derived network (the supernet at its vertex) on the whole test images."""
        space, model = search.space, search.model
        weights = {g: w.to(search.device) for g, w in space.one_hot(arch).items()}
        model.eval()
        try:
            scores = self.step_task.evaluate(lambda x: model(x, Mixing(weights)), self.images, search.device, keep=3)
        finally:
            model.train()
        save_examples(scores["examples"], self.images.test_names, search.out)  # what `report` shows
        return {"task": self.name, "psnr": scores["psnr"], "ssim": scores["ssim"],
                "test_scores": scores["per_image"], "restoration": self.summary()}

    def summary(self) -> dict[str, Any]:
        t = self.step_task
        return {"kind": t.kind, "sigma": t.sigma if t.kind == "denoise" else None,
                "scale": t.scale if t.kind == "sr" else None, "channels": t.channels, "loss": t.loss_name,
                "patch_size": t.patch_size, "metric": "Y channel, border shaved" if t.y_channel else "all channels"}


