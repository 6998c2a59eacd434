"""Split-Attention (ResNeSt) as a composite primitive, for the ``mobile-sa`` space.

Zhang et al., "ResNeSt: Split-Attention Networks" (2020); FP-NAS (Yan et al., CVPR 2021) adds such
blocks to its FBNetV2-style space and searches the number of splits (the radix). Here it replaces the
depthwise convolution of an MBConv branch, keeping its channels ``C``:

    depthwise kxk conv (stride s) C -> r*C (r kernels per channel) -> bn -> relu -> splits U_1..U_r
    s = mean_hw(sum_i U_i) -> fc C -> C_mid (bias) -> relu -> fc C_mid -> r*C (bias)
    a = softmax over the r splits, per channel;  out = sum_i a_i * U_i   (B, C, H / s, W / s)

with ``C_mid = max(C // 4, 4)`` (ResNeSt's reduction 4; its BN after the first fc is left out so a batch
of one trains). Not linear (the attention), so the simplifier runs it as it is. The BN after the conv
is an ordinary one (affine, running statistics), in the supernet too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


def mid_channels(channels: int) -> int:
    return max(channels // 4, 4)


@dataclass(frozen=True)
class SplitAttention:
    """The composite primitive: a radix-``radix`` split-attention depthwise ``kernel x kernel`` conv."""

    kernel: int
    radix: int
    stride: int = 1

    def module(self, channels: int) -> nn.Module:
        return SplitAttentionConv(channels, self.kernel, self.radix, self.stride)

    def macs(self, channels: int, out_size: int) -> int:
        """Multiply-accumulates on ``channels`` channels with an ``out_size`` square output."""
        mid = mid_channels(channels)
        return (self.kernel ** 2 * self.radix * channels * out_size * out_size
                + channels * mid + mid * self.radix * channels)

    def params(self, channels: int) -> int:
        """Trainable parameters (conv kernels, the BN's affine parameters, fc weights and biases)."""
        mid, rc = mid_channels(channels), self.radix * channels
        return self.kernel ** 2 * rc + 2 * rc + channels * mid + mid + mid * rc + rc


class SplitAttentionConv(nn.Module):
    """The module of :class:`SplitAttention` (see the module docstring)."""

    def __init__(self, channels: int, kernel: int, radix: int, stride: int = 1) -> None:
        super().__init__()
        self.channels, self.radix = channels, radix
        mid = mid_channels(channels)
        self.conv = nn.Conv2d(channels, radix * channels, kernel, stride=stride, padding=kernel // 2,
                              groups=channels, bias=False)
        self.bn = nn.BatchNorm2d(radix * channels)
        self.fc1 = nn.Conv2d(channels, mid, 1)
        self.fc2 = nn.Conv2d(mid, radix * channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        u = torch.relu(self.bn(self.conv(x)))  # (B, C * r, H', W'): channel c's r kernels are adjacent
        b, _, h, w = u.shape
        splits = u.view(b, self.channels, self.radix, h, w)  # (B, C, r, H', W')
        s = splits.sum(dim=2).mean(dim=(2, 3), keepdim=True)  # (B, C, 1, 1)
        logits = self.fc2(torch.relu(self.fc1(s)))  # (B, C * r, 1, 1)
        a = torch.softmax(logits.view(b, self.channels, self.radix, 1, 1), dim=2)
        return (a * splits).sum(dim=2)  # (B, C, H', W')


__all__ = ["SplitAttention", "SplitAttentionConv"]
