"""Build a discrete network from a description, and save / load trained networks with that description.

A network description (``meta``) holds what rebuilds the module without the data: space, genotype,
channels, cells, classes, input shape, and the normalization a deployed model's input needs.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..config import ConfigError
from ..loop.checkpoint import load_checkpoint, save_checkpoint
from ..spaces import create_space

MODEL_FORMAT = "toponas-network/1"


def build_network(space: Any, genotype: str, channels: int, cells: int, num_classes: int,
                  in_channels: int = 3, auxiliary: bool = False) -> nn.Module:
    """``space.build_network(...)`` with the original operations; ``auxiliary`` only where the space has one."""
    if isinstance(space, str):
        space = create_space(space)
    kwargs: dict[str, Any] = {}
    if auxiliary:
        if "auxiliary" not in inspect.signature(space.build_network).parameters:
            raise ConfigError(f"the {space.name} network has no auxiliary head; leave --aux-weight at 0")
        kwargs["auxiliary"] = True
    return space.build_network(genotype, channels=channels, cells=cells, num_classes=num_classes,
                               in_channels=in_channels, **kwargs)


def network_meta(space: str, genotype: str, channels: int, cells: int, num_classes: int, image_size: int,
                 mean: tuple[float, ...] = (0.0, 0.0, 0.0), std: tuple[float, ...] = (1.0, 1.0, 1.0),
                 classes: list[str] | None = None, auxiliary: bool = False, in_channels: int = 3) -> dict[str, Any]:
    """The description stored beside trained weights (see the module docstring)."""
    return {
        "format": MODEL_FORMAT, "space": space, "arch": genotype, "channels": channels, "cells": cells,
        "num_classes": num_classes, "in_channels": in_channels, "image_size": image_size,
        "mean": list(mean), "std": list(std), "classes": list(classes or []), "auxiliary": auxiliary,
    }


def from_meta(meta: dict[str, Any]) -> nn.Module:
    """An (untrained) network built from a description."""
    return build_network(meta["space"], meta["arch"], meta["channels"], meta["cells"], meta["num_classes"],
                         meta.get("in_channels", 3), meta.get("auxiliary", False))


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict as contiguous CPU tensors (portable, whatever the training memory format)."""
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_model(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    """Write trained weights and their description atomically (``RUN/model.pt``)."""
    save_checkpoint(path, {"format": MODEL_FORMAT, "network": meta, "model": cpu_state(model)})


def read_checkpoint(path: Path) -> dict[str, Any]:
    """:func:`toponas.loop.checkpoint.load_checkpoint`, with an unreadable file as a user error."""
    try:
        state = load_checkpoint(Path(path))
    except RuntimeError as e:
        raise ConfigError(str(e)) from None
    if not isinstance(state, dict):
        raise ConfigError(f"{path} is not a checkpoint written by toponas")
    return state


def load_trained(path: Path) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network of a ``model.pt`` or a training ``checkpoint.pt``, in eval mode, and its description."""
    state = read_checkpoint(Path(path))
    meta = state.get("network")
    if not meta or "model" not in state:
        raise ConfigError(f"{path} is not a model or checkpoint written by `toponas train`")
    model = from_meta(meta)
    model.load_state_dict(state["model"])
    return model.eval(), meta
