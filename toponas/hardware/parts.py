"""The timed parts of a mobile network: stem, every (block position, candidate, channels) and the head.

A network of the mobile space (``toponas.spaces.mobile``) is a chain: stem, blocks, head (1x1 conv,
pooling, classifier). Its latency is predicted as the sum of its parts' latencies. A block's part is
keyed by where it sits (``s2.b1``: its position fixes the input side and stride), its candidate and
its real input and output channels (the widths of the previous and of its own stage):
``s2.b1:k5e6:12>24``. ``skip`` is no part (an identity). The head's key has its input channels:
``head:80``. Every part a network of the space can contain is listed by :func:`all_parts`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from torch import nn

from ..config import ConfigError
from ..spaces.mbconv import MBConvBlock, spec_candidates
from ..spaces.mobile import arch_blocks, head_module, layout, stem_module
from ..spaces.mobile_arch import SKIP
from ..spaces.mobile_cost import conv_side
from ..spaces.primitives import TRAIN_BN, with_bn


class LatencyError(ConfigError):
    """A latency table that does not fit (another space, device, size; a missing entry; a corrupt file)."""


@dataclass(frozen=True)
class Part:
    """One timed piece: its key, input shape ``(channels, side)``, and how to build it."""

    key: str
    channels: int
    side: int
    kind: str  # "stem", "block" or "head"
    slot: int = -1  # block index for blocks
    candidate: str = ""
    c_out: int = 0


def slot_names(space) -> list[str]:
    """``s2.b1`` per slot, in network order."""
    names = []
    for slot in space.slots:
        names.append(f"{space.spec.stages[slot.stage].name}.b{slot.position + 1}")
    return names


def block_key(name: str, candidate: str, c_in: int, c_out: int) -> str:
    return f"{name}:{candidate}:{c_in}>{c_out}"


def check_space(space) -> None:
    """Only mobile-family spaces (a chain of blocks) have a latency table."""
    if getattr(space, "family", None) != "mobile":
        raise LatencyError(f"latency tables are made for mobile spaces (--space mobile or mobile-sa), "
                           f"not the {space.name} space")


def all_parts(space, channels: int, image_size: int, in_channels: int = 3) -> Iterator[Part]:
    """Every part a network of ``space`` at ``channels`` on ``image_size`` images can contain."""
    check_space(space)
    space.spec.check_image(image_size, image_size)
    stem, stages, slots, _head = layout(space.spec, channels)
    yield Part("stem", in_channels, image_size, "stem")
    side = image_size
    for b, (slot, name) in enumerate(zip(slots, slot_names(space))):
        outs = stages[slot.stage].widths
        ins = (stem,) if slot.in_stage is None else stages[slot.in_stage].widths
        pairs = [(w, w) for w in outs] if slot.residual else [(a, o) for a in ins for o in outs]
        for cand in space.group_ops[slot.group]:
            if cand == SKIP:
                continue
            for c_in, c_out in pairs:
                yield Part(block_key(name, cand, c_in, c_out), c_in, side, "block", b, cand, c_out)
        side = conv_side(side, 3, slot.stride)
    for w in stages[-1].widths:
        yield Part(f"head:{w}", w, side, "head")


def arch_parts(space, arch, channels: int) -> list[str]:
    """The keys of the parts of the network of ``arch`` (stem, its blocks but ``skip``, head), in order."""
    check_space(space)
    arch = space.parse(arch)
    stem, stages, slots, _ = layout(space.spec, channels)
    keys, c_prev = ["stem"], stem
    for slot, name, choice in zip(slots, slot_names(space), arch_blocks(arch, slots)):
        if choice == SKIP:
            continue
        c_out = stages[slot.stage].widths[arch.width_index(space.spec, slot.stage)]
        keys.append(block_key(name, choice, c_prev, c_out))
        c_prev = c_out
    keys.append(f"head:{c_prev}")
    return keys


class Head(nn.Module):
    """The head as the network runs it: 1x1 conv, BN, ReLU, global average pooling, classifier."""

    def __init__(self, c_in: int, channels: int, num_classes: int) -> None:
        super().__init__()
        self.head = head_module(c_in, channels)
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        return self.classifier(self.head(x).mean(dim=(2, 3)))


def build_part(space, part: Part, channels: int, num_classes: int = 10) -> nn.Module:
    """The module of ``part``, built as the discrete network builds it (affine BN, eval-mode timing)."""
    stem, stages, slots, head = layout(space.spec, channels)
    if part.kind == "stem":
        return stem_module(part.channels, stem)
    if part.kind == "head":
        return Head(part.channels, head, num_classes)
    slot = slots[part.slot]
    specs = spec_candidates(space.spec, slot.c_in, part.c_out, slot.stride, slot.residual)
    cand = next(c for c in specs if c.name == part.candidate)
    return MBConvBlock(with_bn(cand, TRAIN_BN), part.channels, slot.residual)


__all__ = ["LatencyError", "Part", "all_parts", "arch_parts", "build_part", "block_key", "check_space",
           "slot_names"]
