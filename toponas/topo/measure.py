"""Cost measurements: activations saved for backward, convolution calls and multiply-adds.

``saved_activation_bytes(fn)`` runs ``fn`` (a forward pass) under ``saved_tensors_hooks`` and counts
every distinct storage autograd keeps for backward, parameters excluded: the activation memory a
training step holds at its peak (storages, so a view of a larger tensor counts that tensor once).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode


@dataclass(frozen=True)
class Saved:
    """Distinct tensors (storages) saved for backward and their bytes."""

    count: int
    bytes: int


def saved_activations(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> Saved:
    """Run ``fn`` and count the storages autograd saves for backward (parameters excluded).

    ``exclude`` adds tensors not to count (e.g. a model's buffers); any ``nn.Parameter`` is skipped.
    The result of ``fn`` is kept alive until counting ends, so nothing is freed early.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        if isinstance(t, nn.Parameter) or t.device.type == "meta":
            return t
        storage = t.untyped_storage()
        ptr = storage.data_ptr()
        if ptr not in skip and ptr != 0:
            seen[ptr] = storage.nbytes()
        # Detached: a pack hook that returns the tensor itself makes a saved output and its grad_fn a
        # reference cycle through C++ that the garbage collector cannot see, and the whole graph outlives
        # ``fn`` (the scaling study ran out of memory on it). The graph is never run backward here.
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    del out
    return Saved(len(seen), sum(seen.values()))


def saved_activation_bytes(fn: Callable[[], Any], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd saves for backward while running ``fn``."""
    return saved_activations(fn, exclude).bytes


@dataclass(frozen=True)
class ConvCost:
    """Convolution calls and multiply-adds during one call of a function: dense and depthwise apart
    (on CPU the simplifier runs average pooling as a depthwise all-ones convolution)."""

    calls: int
    macs: int
    depthwise_calls: int = 0
    depthwise_macs: int = 0


class _ConvCounter(TorchDispatchMode):
    """Count ``aten.convolution`` calls and multiply-adds (forward only)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = {False: [0, 0], True: [0, 0]}  # depthwise -> [calls, macs]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        out = func(*args, **(kwargs or {}))
        if func.overloadpacket is torch.ops.aten.convolution:
            weight = args[1]  # (C_out, C_in / groups, kh, kw)
            depthwise = args[8] > 1 and weight.shape[1] == 1
            self.counts[depthwise][0] += 1
            self.counts[depthwise][1] += out.numel() * weight[0].numel()
        return out


def conv_cost(fn: Callable[[], Any]) -> ConvCost:
    """Convolution calls and multiply-adds made by ``fn`` (run without gradients)."""
    counter = _ConvCounter()
    with torch.no_grad(), counter:
        fn()
    (calls, macs), (dw_calls, dw_macs) = counter.counts[False], counter.counts[True]
    return ConvCost(calls, macs, dw_calls, dw_macs)


class _OpCounter(TorchDispatchMode):
    """Count every ATen operation run under it (by name), forward and backward (the CPU backward runs on
    the calling thread)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001
        name = str(func.overloadpacket.__name__)
        self.counts[name] = self.counts.get(name, 0) + 1
        return func(*args, **(kwargs or {}))


def aten_ops(fn: Callable[[], Any]) -> dict[str, int]:
    """The ATen operations ``fn`` runs, by name (deterministic: what a step costs in calls, whatever the load)."""
    counter = _OpCounter()
    with counter:
        fn()
    return counter.counts
