"""Training protocols: the published defaults for retraining a found cell, per search space, with sources.

``PROTOCOLS[space]`` holds the values of :class:`~toponas.training.config.TrainConfig` fields that a
space's protocol fixes; ``SOURCES[space]`` says where each one comes from. ``PRESETS`` are smaller
budgets laid over a protocol (``--preset cpu``); flags given on the command line win over both.
"""

from __future__ import annotations

from typing import Any

#: NAS-Bench-201's training protocol for every cell of its space, the "200 epoch" setting
#: (hyper-parameter set '200' of the benchmark; Dong & Yang, "NAS-Bench-201: Extending the Scope of
#: Reproducible Neural Architecture Search", ICLR 2020, Table 2 / Sec. 2.3, and the benchmark's
#: config file ``configs/nas-benchmark/hyper-opts/200E.config``).
NB201_PROTOCOL: dict[str, Any] = {
    "epochs": 200,
    "batch_size": 256,
    "lr": 0.1,
    "lr_min": 0.0,
    "momentum": 0.9,
    "nesterov": True,
    "weight_decay": 5e-4,
    "schedule": "cosine-step",
    "channels": 16,
    "cells": 5,
    "augment": True,
    "cutout": 0,
    "label_smoothing": 0.0,
    "grad_clip": None,
    "aux_weight": 0.0,
    "drop_path": 0.0,
    "amp": False,
}

NB201_SOURCES: dict[str, str] = {
    "epochs": "NAS-Bench-201, hp '200': 200 epochs",
    "batch_size": "NAS-Bench-201, hp '200': batch 256",
    "lr": "NAS-Bench-201, hp '200': initial learning rate 0.1",
    "lr_min": "NAS-Bench-201, hp '200': cosine annealing to 0, no warm-up",
    "momentum": "NAS-Bench-201, hp '200': SGD momentum 0.9",
    "nesterov": "NAS-Bench-201, hp '200': Nesterov momentum",
    "weight_decay": "NAS-Bench-201, hp '200': weight decay 5e-4",
    "schedule": "NAS-Bench-201 code: the cosine schedule is updated every iteration (epoch + step/steps)",
    "channels": "NAS-Bench-201: C = 16 channels in the first stage",
    "cells": "NAS-Bench-201: N = 5 cells per stage",
    "augment": "NAS-Bench-201: random crop (padding 4) and horizontal flip on CIFAR",
    "cutout": "NAS-Bench-201: no cutout",
    "label_smoothing": "NAS-Bench-201: plain softmax cross-entropy",
    "grad_clip": "NAS-Bench-201: no gradient clipping",
    "aux_weight": "NAS-Bench-201: no auxiliary head",
    "drop_path": "NAS-Bench-201: no drop-path",
    "amp": "not part of the protocol; off because this narrow network (C=16) trains faster in float32 (TF32) "
           "with channels-last than under bf16 autocast: 30 vs 37 ms/step at batch 256 on an H100 (measured)",
}

#: The DARTS evaluation protocol on CIFAR-10 (Liu, Simonyan & Yang, "DARTS: Differentiable
#: Architecture Search", ICLR 2019, Sec. 3.3 and Appendix A.2; ``cnn/train.py`` of the reference code).
#: Used once a ``darts`` space is registered; nothing here depends on it existing.
DARTS_PROTOCOL: dict[str, Any] = {
    "epochs": 600,
    "batch_size": 96,
    "lr": 0.025,
    "lr_min": 0.0,
    "momentum": 0.9,
    "nesterov": False,
    "weight_decay": 3e-4,
    "schedule": "cosine-epoch",
    "channels": 36,
    "cells": 20,
    "augment": True,
    "cutout": 16,
    "label_smoothing": 0.0,
    "grad_clip": 5.0,
    "aux_weight": 0.4,
    "drop_path": 0.2,
    "amp": True,
}

DARTS_SOURCES: dict[str, str] = {
    "epochs": "DARTS A.2: 600 epochs",
    "batch_size": "DARTS A.2: batch 96",
    "lr": "DARTS A.2: SGD, initial learning rate 0.025",
    "lr_min": "DARTS cnn/train.py: CosineAnnealingLR to 0",
    "momentum": "DARTS A.2: momentum 0.9",
    "nesterov": "DARTS cnn/train.py: plain momentum (no Nesterov)",
    "weight_decay": "DARTS A.2: weight decay 3e-4",
    "schedule": "DARTS cnn/train.py: the cosine schedule steps once per epoch",
    "channels": "DARTS A.2: 36 initial channels",
    "cells": "DARTS A.2: a network of 20 cells (the DARTS space reads --cells as the layer count)",
    "augment": "DARTS: random crop (padding 4) and horizontal flip",
    "cutout": "DARTS A.2: cutout of length 16",
    "label_smoothing": "DARTS: plain cross-entropy on CIFAR",
    "grad_clip": "DARTS cnn/train.py: gradient norm clipped at 5",
    "aux_weight": "DARTS A.2: auxiliary towers with weight 0.4",
    "drop_path": "DARTS A.2: path dropout of probability 0.2 (ramped linearly over the epochs)",
    "amp": "not part of the protocol; on for the wider DARTS network (not yet measured here)",
}

PROTOCOLS: dict[str, dict[str, Any]] = {"nb201": NB201_PROTOCOL, "darts": DARTS_PROTOCOL}
SOURCES: dict[str, dict[str, str]] = {"nb201": NB201_SOURCES, "darts": DARTS_SOURCES}

#: Smaller budgets for quick checks, laid over the space's protocol. ``cpu``: 5,000 stratified
#: training images, 8 epochs, C=8, N=1, batch 128, the full test set after epochs 4 and 8: 320 steps
#: of about 0.7 s plus two 10,000-image tests, a few minutes on two CPU cores for CIFAR-10. It checks
#: that the pipeline trains; it says nothing about what the cell is worth at the protocol's budget.
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"subset": 5000, "epochs": 8, "channels": 8, "cells": 1, "batch_size": 128, "eval_every": 4},
}


def protocol_for(space: str) -> dict[str, Any]:
    """The protocol defaults of ``space`` (NAS-Bench-201's for a space without its own protocol)."""
    return dict(PROTOCOLS.get(space, NB201_PROTOCOL))


def sources_for(space: str) -> dict[str, str]:
    """Where each default of :func:`protocol_for` comes from."""
    return dict(SOURCES.get(space, NB201_SOURCES))
