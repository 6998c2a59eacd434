"""K copies of one network as one: parameters and buffers stacked along a new leading dimension.

:class:`Stacked` runs the K copies in one pass with ``torch.func.vmap`` over ``functional_call``; a loss
that is the *sum* of the K copies' losses has, in slice ``k`` of each stacked tensor, exactly copy ``k``'s own
gradient (the copies share nothing). Elementwise optimizers (SGD with momentum, weight decay, Nesterov; Adam)
stepping the stacked tensors are then K independent optimizers; what is not elementwise is done per slice
here: gradient-norm clipping (:func:`clip_per_copy`), the optimizers' saved state (:func:`stack_states`,
:func:`slice_state`). Nothing here knows a strategy; ``toponas.loop.seeds`` uses it for many seeds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call, vmap


class Stacked(nn.Module):
    """The parameters and buffers of ``copies`` (equal structure) stacked, run by ``vmap`` on ``base``.

    ``base`` is the module whose code runs (one of the copies; its own tensors are swapped out during a
    call). Inputs of :meth:`forward` carry the copy dimension first; batch norm's running statistics are
    stacked buffers, updated per copy.
    """

    def __init__(self, base: nn.Module, copies: Sequence[nn.Module]) -> None:
        super().__init__()
        self._base = [base]  # a list: not a submodule, so its own tensors are not this module's
        self.names = [n for n, _ in base.named_parameters()]
        self.buffer_names = [n for n, _ in base.named_buffers()]
        params = [dict(c.named_parameters()) for c in copies]
        buffers = [dict(c.named_buffers()) for c in copies]
        self.stacked = nn.ParameterList()
        for name in self.names:
            parts = [p[name] for p in params]
            self.stacked.append(nn.Parameter(torch.stack([p.detach() for p in parts]),
                                             requires_grad=parts[0].requires_grad))
        for i, name in enumerate(self.buffer_names):
            self.register_buffer(f"b{i}", torch.stack([b[name] for b in buffers]))
        self.copies = len(copies)

    def buffers_by_name(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, f"b{i}") for i, name in enumerate(self.buffer_names)}

    def base_inputs(self, *inputs: Any) -> tuple:
        """The arguments of one copy's call from its slices of :meth:`forward`'s inputs (default: as they are)."""
        return inputs

    def forward(self, *inputs: Any) -> torch.Tensor:
        """``base(*base_inputs(*inputs[k]))`` for every copy ``k``, stacked (every input: the copy dimension first)."""
        base = self._base[0]

        def one(params: dict, buffers: dict, *slices: Any) -> torch.Tensor:
            return functional_call(base, {**params, **buffers}, self.base_inputs(*slices), tie_weights=False,
                                   strict=True)

        return vmap(one)(dict(zip(self.names, self.stacked)), self.buffers_by_name(), *inputs)

    def copy_into(self, k: int, module: nn.Module) -> None:
        """Write copy ``k``'s parameters and buffers into ``module`` (of the base's structure)."""
        params, buffers = dict(module.named_parameters()), dict(module.named_buffers())
        with torch.no_grad():
            for name, t in zip(self.names, self.stacked):
                params[name].copy_(t[k])
            for name, t in self.buffers_by_name().items():
                buffers[name].copy_(t[k])


def clip_per_copy(parameters: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """``nn.utils.clip_grad_norm_`` of each copy apart (the stacked gradients' slice ``k`` is copy ``k``'s):
    the total 2-norm of each slice over all parameters, each slice scaled by ``min(1, max_norm / (norm + 1e-6))``.
    Returns the K norms."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return torch.zeros(0)
    k = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(k, -1), dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, dim=1)
    coef = (max_norm / (total + 1e-6)).clamp(max=1.0)
    for g in grads:
        g.mul_(coef.view(-1, *[1] * (g.dim() - 1)).to(g.dtype))
    return total


def stack_states(states: Sequence[dict[str, Any]], shapes: Sequence[torch.Size]) -> dict[str, Any]:
    """One optimizer state dict for the stacked parameters from the copies' state dicts (same optimizer
    and order): per-parameter tensors of the parameter's shape (``shapes``: the copies' parameters) are
    stacked; the rest (Adam's ``step``) must agree and is kept once. The first copy's param groups."""
    first = states[0]
    state: dict[int, dict[str, Any]] = {}
    for index, entry in first["state"].items():
        state[index] = {}
        for key, value in entry.items():
            values = [s["state"][index][key] for s in states]
            if isinstance(value, torch.Tensor) and value.shape == shapes[index]:
                state[index][key] = torch.stack(values)
            else:
                if not all(_same(v, value) for v in values):
                    raise ValueError(f"optimizer state {key!r} differs between the copies")
                state[index][key] = value
    return {"state": state, "param_groups": first["param_groups"]}


def slice_state(stacked: dict[str, Any], k: int, shapes: Sequence[torch.Size]) -> dict[str, Any]:
    """Copy ``k``'s optimizer state dict from the stacked one (the inverse of :func:`stack_states`)."""
    state = {}
    for index, entry in stacked["state"].items():
        state[index] = {key: (v[k].clone() if isinstance(v, torch.Tensor) and v.dim() == len(shapes[index]) + 1
                              and v.shape[1:] == shapes[index] else v)
                        for key, v in entry.items()}
    return {"state": state, "param_groups": stacked["param_groups"]}


def optimizer_shapes(optimizer: torch.optim.Optimizer) -> list[torch.Size]:
    """The shapes of an optimizer's parameters, in its state dict's index order."""
    return [p.shape for group in optimizer.param_groups for p in group["params"]]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    return a == b
