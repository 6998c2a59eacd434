"""Size and cost of a discrete network: parameters and multiply-adds of one image.

Multiply-adds are counted the way NAS-Bench-201 and DARTS report "FLOPs"/"MAdds": the
multiply-accumulates of the convolutions and linear layers for a batch of one image, measured with
``torch.utils.flop_counter.FlopCounterMode`` (which counts 2 FLOPs per multiply-add); batch norm,
pooling, activations and additions are not counted.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters (auxiliary heads included when the model has one)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_mult_adds(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-adds of one forward pass of a single image of ``input_shape`` (C, H, W), in eval mode."""
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    x = torch.zeros(1, *input_shape, device=device)
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(x)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops()) // 2


def format_count(n: float) -> str:
    """``1234567`` -> ``'1.23 M'`` (K, M, G)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n:.0f}"
