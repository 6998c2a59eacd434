"""What a search does that depends on its task: its data and batches, its loss and counts, its result fields.

The search loop (:class:`toponas.loop.search.Search`) calls a task object and never asks which task it
has: classification (the default, ``--task classify``) is :class:`ClassifyTask`; denoising and
super-resolution (``--task denoise|sr``) are :class:`toponas.restoration.search.RestoreSearchTask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError
from ..data import PairedBatches, load_dataset, search_split
from ..strategies.base import CLASSIFICATION

TASKS = ("classify", "denoise", "sr")


@dataclass
class Prepared:
    """What a task's ``prepare`` gives the loop: batches, the header's data line, the supernet's keyword arguments,
    and the side of the images the network sees whole (what a latency table is made for; None: not such images)."""

    batches: Any
    describe: str
    build: dict[str, Any] = field(default_factory=dict)
    image_size: int | None = None


class ClassifyTask:
    """Image classification: cross-entropy, accuracy, the datasets of ``toponas.data``."""

    name = "classify"
    step_task = CLASSIFICATION  # what StepContext.task is

    def __init__(self, config) -> None:
        self.config = config

    def configure_space(self, space):
        """The space this task searches (a restoration space is refused)."""
        if getattr(space, "family", None) == "restoration":
            tasks = "/".join(getattr(space, "tasks", ()))
            raise ConfigError(f"the {space.name} space searches image restoration networks; pass --task {tasks}")
        return space

    def prepare(self, search) -> Prepared:
        """Load and split the dataset; paired (weight, architecture) batches."""
        from .search import resized

        cfg = self.config
        ds = load_dataset(cfg.dataset, cfg.data, cache_dir=cfg.cache_dir, progress=search.progress)
        if cfg.image_size and cfg.image_size != ds.image_size:
            ds = resized(ds, cfg.image_size)
        factor = getattr(search.space, "downsample", 4)  # both spaces' networks halve the image twice
        if ds.image_size % factor:
            raise ConfigError(f"images of {ds.image_size}x{ds.image_size} cannot be downsampled by the "
                              f"{cfg.space} network (the side must be a multiple of {factor}); pass --image-size "
                              f"{max(factor, ds.image_size // factor * factor)}")
        w_idx, a_idx = search_split(ds, cfg.subset, cfg.seed)
        search.ds = ds
        batches = PairedBatches(ds, w_idx, a_idx, cfg.batch_size, cfg.seed, search.device)
        line = (f"data   {ds.name}: {len(ds.train_y)} training images ({len(w_idx)} weight / {len(a_idx)} "
                f"architecture), {ds.num_classes} classes, {ds.image_size}x{ds.image_size}, batch {cfg.batch_size}, "
                f"seed {cfg.seed}")
        return Prepared(batches, line, {"num_classes": ds.num_classes}, image_size=ds.image_size)

    def result_fields(self, search, arch) -> dict[str, Any]:
        """Extra top-level fields of ``result.json`` (none for classification)."""
        return {}


def default_dataset(task: str) -> str:
    """The dataset of a task when none is named: cifar10 (classification), skimage (restoration)."""
    return "skimage" if task in ("denoise", "sr") else "cifar10"


def create_task(config) -> Any:
    """The task object of a search configuration (``config.task``); an unknown task is a ConfigError."""
    if config.task == "classify":
        return ClassifyTask(config)
    if config.task in ("denoise", "sr"):
        from ..restoration.search import RestoreSearchTask

        return RestoreSearchTask(config)
    raise ConfigError(f"unknown task {config.task!r}; choose from {', '.join(TASKS)}")


__all__ = ["TASKS", "ClassifyTask", "Prepared", "create_task", "default_dataset"]
