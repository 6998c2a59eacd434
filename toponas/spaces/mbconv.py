"""Inverted-residual (MBConv) candidates as primitive chains, the plain mixed block and the discrete block.

An MBConv branch (Sandler et al., "MobileNetV2", CVPR 2018; the FBNet / ProxylessNAS search blocks)::

    expand 1x1 (C_in -> e*C_in) -> bn -> relu -> kxk depthwise (stride s) -> bn -> relu
        -> mask(hidden) -> project 1x1 (e*C_in -> C_out) -> bn -> mask(out)

A block whose shapes match (stride 1, same stage) adds its input: ``y = x + branch(x)``; there the
``skip`` candidate is the branch ``Zero`` (``y = x``: the block is dropped). The first block of a
stage has no residual and no ``skip``. The two masks carry the width search (FBNetV2): ``hidden``
keeps ``e * c'_in`` of the expanded channels (``c'_in`` the input's width), ``out`` keeps the
stage's ``c'_out`` output channels; a weighted sum of such masks is one mask, computed per forward
from the width weights. At a one-hot width the masked block equals the narrower discrete block.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .primitives import (
    BN,
    SEARCH_BN,
    ChannelMask,
    Conv,
    Expand,
    OpSpec,
    Project,
    ReLU,
    Zero,
    build_chain_io,
)


def mbconv_chain(kernel: int, expansion: int, stride: int = 1, bn: BN = SEARCH_BN) -> tuple:
    """The primitives of an MBConv branch (see the module docstring)."""
    return (Expand(expansion), bn, ReLU(), Conv(kernel, 1, True, stride), bn, ReLU(), ChannelMask("hidden"),
            Project(), bn, ChannelMask("out"))


def block_candidates(kernels: Sequence[int], expansions: Sequence[int], stride: int, residual: bool
                     ) -> tuple[OpSpec, ...]:
    """The candidates of a block: every ``kKeE`` MBConv branch, then ``skip`` (the zero branch) if ``residual``."""
    specs = [OpSpec(f"k{k}e{e}", mbconv_chain(k, e, stride)) for k in kernels for e in expansions]
    if residual:
        specs.append(OpSpec("skip", (Zero(),)))
    return tuple(specs)


def expansion_of(spec: OpSpec) -> int | None:
    """The expansion ratio of an MBConv candidate (None for ``skip``)."""
    return next((p.ratio for p in spec.chain if isinstance(p, Expand)), None)


def width_masks(widths: Sequence[int], channels: int, scale: int = 1) -> torch.Tensor:
    """``(choices, scale * channels)``: row j keeps the first ``scale * widths[j]`` channels (ones, then zeros)."""
    idx = torch.arange(scale * channels)
    return torch.stack([(idx < scale * w).float() for w in widths])


def run_chain(spec: OpSpec, ops: nn.Sequential, x: torch.Tensor, masks: dict[str, torch.Tensor | None]
              ) -> torch.Tensor:
    """Run a candidate's modules, multiplying by ``masks[which]`` (shape ``(C,)``, or None: all kept) at masks."""
    for prim, module in zip(spec.chain, ops):
        if isinstance(prim, ChannelMask):
            m = masks.get(prim.which)
            if m is not None:
                x = x * m.view(1, -1, 1, 1).to(x.dtype)
        else:
            x = module(x)
    return x


class MixedBlock(nn.Module):
    """A searchable block of the plain mobile supernet: ``sum_i w_i * cand_i(x)`` over all candidates.

    Attributes the simplifier reads: ``specs`` (candidate declarations: :func:`block_candidates`),
    ``ops[i]`` (the module chain of ``specs[i]``, one module per primitive, built by
    :func:`~toponas.spaces.primitives.build_chain_io`), ``c_in``/``c_out``/``stride``,
    ``residual`` (``cand_i(x) = x + branch_i(x)``), ``group``/``index`` (its row of the mixing),
    ``stage``/``in_stage`` (rows of the ``"width"`` group for the output and the input; ``in_stage``
    is None when the input has a fixed width, the stem), ``in_mask_e{e}``/``out_masks`` (buffers,
    ``(widths, e * c_in)`` and ``(widths, c_out)``: the mask of each width choice).

    ``forward(x, weights, active, in_width, out_width)``: ``weights`` (candidates,) of the block's
    row, ``active`` the candidates that run (None: all; the others contribute ``w_i``), ``in_width``
    / ``out_width`` the width weights of the input's and the output's stage (None: all channels).
    Cost: every candidate runs and is kept for backward, six MBConvs per block.
    """

    def __init__(self, specs: Sequence[OpSpec], c_in: int, c_out: int, stride: int, residual: bool,
                 group: str, index: int, stage: int, in_stage: int | None, in_widths: Sequence[int] | None,
                 out_widths: Sequence[int]) -> None:
        super().__init__()
        if residual and (stride != 1 or c_in != c_out):
            raise ValueError("a residual block keeps its shape (stride 1, c_in == c_out)")
        self.specs = tuple(specs)
        self.c_in, self.c_out, self.stride, self.residual = c_in, c_out, stride, residual
        self.group, self.index, self.stage, self.in_stage = group, index, stage, in_stage
        self.ops = nn.ModuleList(build_chain_io(s, c_in, c_out) for s in self.specs)
        self.expansions = sorted({e for e in map(expansion_of, self.specs) if e is not None})
        for e in self.expansions:
            if in_widths is not None:
                self.register_buffer(f"in_mask_e{e}", width_masks(in_widths, c_in, e), persistent=False)
        self.register_buffer("out_masks", width_masks(out_widths, c_out), persistent=False)

    def masks(self, in_width: torch.Tensor | None, out_width: torch.Tensor | None, expansion: int | None
              ) -> dict[str, torch.Tensor | None]:
        """The run-time masks of one candidate: weighted sums of the width choices' masks."""
        hidden = None
        if in_width is not None and expansion is not None:
            hidden = in_width @ getattr(self, f"in_mask_e{expansion}").to(in_width)
        out = None if out_width is None else out_width @ self.out_masks.to(out_width)
        return {"hidden": hidden, "out": out}

    def candidate(self, i: int, x: torch.Tensor, in_width: torch.Tensor | None,
                  out_width: torch.Tensor | None) -> torch.Tensor:
        spec = self.specs[i]
        if spec.is_zero:  # skip: only in residual blocks, where the block's output is its input
            return x if self.residual else torch.zeros_like(x)
        y = run_chain(spec, self.ops[i], x, self.masks(in_width, out_width, expansion_of(spec)))
        return x + y if self.residual else y  # (B, C_out, H / s, W / s)

    def forward(self, x: torch.Tensor, weights: torch.Tensor, active: Sequence[int] | None = None,
                in_width: torch.Tensor | None = None, out_width: torch.Tensor | None = None) -> torch.Tensor:
        run = range(len(self.specs)) if active is None else active
        out = sum(weights[i] * self.candidate(i, x, in_width, out_width) for i in run)
        if active is not None:
            inactive = [i for i in range(len(self.specs)) if i not in active]
            if inactive:
                out = out + weights[inactive].sum()
        return out

    def extra_repr(self) -> str:
        return (f"{self.group}[{self.index}], candidates={[s.name for s in self.specs]}, "
                f"c_in={self.c_in}, c_out={self.c_out}, stride={self.stride}, residual={self.residual}")


class MBConvBlock(nn.Module):
    """A discrete block: one candidate's modules (``op``, an ``nn.Sequential``), plus the input if ``residual``."""

    def __init__(self, spec: OpSpec, c_in: int, c_out: int, residual: bool) -> None:
        super().__init__()
        self.name = spec.name
        self.residual = residual
        self.op = build_chain_io(spec, c_in, c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.op(x)
        if self.residual:
            return x + y
        return y


__all__ = ["MixedBlock", "MBConvBlock", "mbconv_chain", "block_candidates", "expansion_of", "width_masks",
           "run_chain"]
