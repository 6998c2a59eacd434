"""Retraining a found cell from scratch: protocols with sources, the training loop, network cost.

>>> from toponas.training import TrainConfig, train
>>> cell = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|"
>>> result = train(TrainConfig.resolve(cell, "nb201", preset="cpu", dataset="digits", out="runs/t"))
"""

from __future__ import annotations

from .arch import ArchSource, resolve_arch
from .config import TrainConfig
from .cost import count_mult_adds, count_parameters
from .loop import TrainDiverged, Trainer, TrainInterrupted, summary, train
from .network import build_network, load_trained
from .protocol import PRESETS, PROTOCOLS, SOURCES

__all__ = ["ArchSource", "PRESETS", "PROTOCOLS", "SOURCES", "TrainConfig", "TrainDiverged", "TrainInterrupted",
           "Trainer", "build_network", "count_mult_adds", "count_parameters", "load_trained", "resolve_arch",
           "summary", "train"]
