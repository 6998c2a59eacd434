"""Zero-cost indicators of an untrained discrete network: one number per architecture, higher is better.

Each function takes a freshly initialized network (``forward(x) -> logits``) and one batch; none
changes the network it is given in a way that matters to the caller (synflow works on a copy).

* ``grad_norm``: ``sum_l ||dL/dW_l||`` over convolution and linear weights (Abdelfattah et al. 2021).
* ``snip``: ``sum |W * dL/dW|`` over the same weights (connection sensitivity, Lee et al. 2019).
* ``synflow``: ``sum W * dR/dW`` with ``R = sum f_|W|(1)``: the network with every weight replaced by
  its absolute value, BatchNorm removed, run in float64 on an all-ones image (Tanaka et al. 2020, in the
  zero-cost form of Abdelfattah et al.). A network in which one layer is zero scores exactly 0.
* ``naswot``: ``log |det K|`` of the kernel of binary ReLU codes, ``K = sum_relus C C^T + (1-C)(1-C)^T``
  over the images of the batch (Mellor et al. 2021).
* ``nasi``: the NASI proxy ``R = G - mu * max(0, G - nu)`` with ``G = ||dL/dtheta||^2`` the squared
  norm of the mini-batch gradient over all parameters (Shu et al. 2022); ``nu = inf`` means no cap.

The loss ``L`` is the batch-mean cross-entropy; BatchNorm uses batch statistics (training mode).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn
from torch.nn import functional as F


def _weights(net: nn.Module) -> list[torch.Tensor]:
    """Weights of convolutions and linear layers (the layers pruning-at-init measures score)."""
    return [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def loss_gradients(net: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[nn.Parameter, torch.Tensor]:
    """Gradient of the batch-mean cross-entropy for every trainable parameter (zeros where unused).

    ``grad_norm``, ``snip`` and ``nasi`` all read this one backward pass; pass it as ``grads`` to share it.
    """
    net.train()
    params = [p for p in net.parameters() if p.requires_grad]
    loss = F.cross_entropy(net(x), y)
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    return {p: torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)}


Grads = dict[nn.Parameter, torch.Tensor] | None


def grad_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor, grads: Grads = None) -> float:
    """Sum over layers of the gradient norm of the loss (conv and linear weights)."""
    grads = grads if grads is not None else loss_gradients(net, x, y)
    return float(sum(grads[w].norm() for w in _weights(net)))


def snip(net: nn.Module, x: torch.Tensor, y: torch.Tensor, grads: Grads = None) -> float:
    """Sum of ``|W * dL/dW|`` over conv and linear weights."""
    grads = grads if grads is not None else loss_gradients(net, x, y)
    return float(sum((w.detach() * grads[w]).abs().sum() for w in _weights(net)))


def _without_bn(net: nn.Module) -> nn.Module:
    """A float64 copy of ``net`` with every BatchNorm replaced by the identity."""
    clone = copy.deepcopy(net).double()
    for module in list(clone.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, nn.modules.batchnorm._BatchNorm):
                setattr(module, child_name, nn.Identity())
    return clone


def synflow(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """Synaptic flow of ``|W|`` on an all-ones image of ``x``'s shape (one image), BN removed, float64."""
    clone = _without_bn(net)
    with torch.no_grad():
        for p in clone.parameters():
            p.abs_()
    weights = _weights(clone)
    ones = torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)
    out = clone(ones).sum()
    grads = torch.autograd.grad(out, weights, allow_unused=True)
    total = sum((w.detach() * g).sum() for w, g in zip(weights, grads) if g is not None)
    return float(total) if torch.is_tensor(total) else 0.0


def naswot(net: nn.Module, x: torch.Tensor, y: torch.Tensor | None = None) -> float:
    """``log |det K|`` of the binary-code kernel of the ReLUs over the batch (``-inf`` when singular)."""
    n = x.shape[0]
    kernel = torch.zeros(n, n, dtype=torch.float64, device=x.device)

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        codes = (inputs[0].detach() > 0).reshape(n, -1).double()
        kernel.add_(codes @ codes.T + (1 - codes) @ (1 - codes).T)

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.ReLU)]
    try:
        net.train()
        with torch.no_grad():
            net(x)
    finally:
        for h in handles:
            h.remove()
    sign, logdet = torch.linalg.slogdet(kernel)
    return float(logdet) if float(sign) != 0 else -math.inf


def gradient_sq_norm(net: nn.Module, x: torch.Tensor, y: torch.Tensor, grads: Grads = None) -> float:
    """``G = ||dL/dtheta||^2`` over every trainable parameter (NASI's bound on the NTK trace)."""
    grads = grads if grads is not None else loss_gradients(net, x, y)
    return float(sum((g * g).sum() for g in grads.values()))


def nasi_penalty(g: torch.Tensor | float, mu: float, nu: float) -> torch.Tensor | float:
    """``R = G - mu * max(0, G - nu)``: the NTK-trace proxy, penalized above the cap ``nu``."""
    if torch.is_tensor(g):
        return g - mu * torch.clamp(g - nu, min=0)
    return g - mu * max(0.0, g - nu)


def nasi(net: nn.Module, x: torch.Tensor, y: torch.Tensor, mu: float = 1.0, nu: float = math.inf,
         grads: Grads = None) -> float:
    """The NASI proxy of one architecture (see the module docstring)."""
    return float(nasi_penalty(gradient_sq_norm(net, x, y, grads), mu, nu))


def parameter_count(net: nn.Module) -> int:
    """Number of parameters (the ``params`` baseline)."""
    return sum(p.numel() for p in net.parameters())


#: Indicators of an untrained network and one batch: ``fn(net, x, y) -> float``.
ZERO_COST = {"grad_norm": grad_norm, "snip": snip, "synflow": synflow, "naswot": naswot, "nasi": nasi}
#: Those that read the loss gradient (``grads=`` shares one backward pass between them).
GRADIENT_BASED = ("grad_norm", "snip", "nasi")
