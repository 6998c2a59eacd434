"""The mobile (MBConv) macro space as data: its stage table, and the architecture as a value object.

A mobile architecture gives, for every stage of the table, a width choice and one choice per block::

    s1:w1:k3e6,k5e3|s2:w0.75:k7e6,skip,k3e3|s3:w0.5:k5e6,k3e3,skip|s4:w1:k3e3,k7e3|s5:w1:k7e6,skip

``kKeE`` is an inverted-residual (MBConv) block with a ``K x K`` depthwise kernel and expansion
``E`` (``kKeEsR`` in ``mobile-sa``: its depthwise conv a radix-``R`` split attention); ``skip``
drops the block (depth search; never the first block of a stage, which changes the
channels or the resolution); ``wR`` keeps ``floor(R * C)`` of the stage's ``C`` channels. A stage
may list fewer blocks than the table allows; the missing blocks are absent, as ``skip`` blocks would be.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from .cell import CellError


class MobileArchError(CellError):
    """A malformed or invalid mobile architecture string (the message says what and where)."""


class MobileSpaceError(CellError):
    """A mobile space that cannot be built as asked: a width of zero channels, an image too small."""


SKIP = "skip"


def block_name(kernel: int, expansion: int, radix: int = 1) -> str:
    """``k5e6``: the name of an MBConv choice; ``k5e6s2`` with a radix-2 split attention (``mobile-sa``)."""
    return f"k{kernel}e{expansion}" + (f"s{radix}" if radix > 1 else "")


def width_name(ratio: float) -> str:
    """``w0.75``, ``w1``: the name of a width choice."""
    return f"w{ratio:g}"


@dataclass(frozen=True)
class Stage:
    """One row of the stage table: output channels (at ``--channels`` = the table's base), blocks, stride.

    The first block has the stride and changes the channels (no residual, no ``skip``); the others
    keep both (residual, ``skip`` allowed).
    """

    name: str
    channels: int
    blocks: int
    stride: int


@dataclass(frozen=True)
class SizedStage:
    """A stage at a given ``channels``/``cells``: real channels, blocks in the supernet, width channels."""

    name: str
    channels: int
    blocks: int
    stride: int
    widths: tuple[int, ...]  # channels of each width choice, in the order of MobileSpec.widths


@dataclass(frozen=True)
class MobileSpec:
    """The declaration of a mobile space: stem, the stage table, head, and the choices.

    Channels are given for ``channels == base`` and scale as ``c * channels // base``. Defaults: a
    CIFAR-sized FBNet/ProxylessNAS-style table (79.6 MFLOPs for the largest network at 32x32,
    see ``docs/spaces.md``).
    """

    stem: int = 16
    stages: tuple[Stage, ...] = (
        Stage("s1", 24, 2, 1),
        Stage("s2", 32, 3, 2),
        Stage("s3", 64, 3, 2),
        Stage("s4", 96, 2, 1),
        Stage("s5", 160, 2, 2),
    )
    head: int = 640
    kernels: tuple[int, ...] = (3, 5, 7)
    expansions: tuple[int, ...] = (3, 6)
    widths: tuple[float, ...] = (0.5, 0.75, 1.0)
    base: int = 16
    radixes: tuple[int, ...] = (1,)  # split-attention radixes; 1: the plain depthwise conv

    @property
    def mbconv_names(self) -> tuple[str, ...]:
        """The MBConv choices, kernel-major, then expansion, then radix: ``k3e3, k3e6, k5e3, ...``."""
        return tuple(block_name(k, e, r) for k in self.kernels for e in self.expansions for r in self.radixes)

    @property
    def width_names(self) -> tuple[str, ...]:
        return tuple(width_name(r) for r in self.widths)

    @property
    def max_blocks(self) -> int:
        return max(s.blocks for s in self.stages)

    @property
    def total_stride(self) -> int:
        return math.prod(s.stride for s in self.stages)

    def scale(self, c: int, channels: int) -> int:
        return c * channels // self.base

    def sized(self, channels: int | None = None, cells: int | None = None) -> list[SizedStage]:
        """The stages at ``channels`` (default: the base) with at most ``cells`` blocks each.

        A width choice that rounds to zero channels is an error (:class:`MobileSpaceError`).
        """
        channels = self.base if channels is None else channels
        if channels < 1 or (cells is not None and cells < 1):
            raise MobileSpaceError(f"channels and cells must be positive, got {channels} and {cells}")
        out = []
        for s in self.stages:
            c = self.scale(s.channels, channels)
            widths = tuple(math.floor(r * c + 1e-9) for r in self.widths)
            zero = [width_name(r) for r, w in zip(self.widths, widths) if w < 1]
            if zero:
                raise MobileSpaceError(
                    f"stage {s.name}: width {zero[0]} of {c} channels rounds to 0 channels "
                    f"(channels={channels} is too small for this stage table)")
            out.append(SizedStage(s.name, c, s.blocks if cells is None else min(s.blocks, cells), s.stride,
                                  widths))
        if self.scale(self.stem, channels) < 1 or self.scale(self.head, channels) < 1:
            raise MobileSpaceError(f"channels={channels} leaves the stem or the head without channels")
        return out

    def check_image(self, height: int, width: int) -> None:
        """An input the stages cannot downsample (a stride-2 stage on a 1-pixel map) is an error."""
        need = self.total_stride
        if min(height, width) < need:
            raise MobileSpaceError(
                f"image size {height}x{width}: the mobile stages downsample {need}x "
                f"(strides {', '.join(str(s.stride) for s in self.stages)}); use images of at least "
                f"{need}x{need} (e.g. --image-size {max(need, 16)})")


@dataclass(frozen=True)
class StageArch:
    """The choices of one stage: its name, its width ratio and one choice per block (``kKeE`` or ``skip``)."""

    name: str
    width: float
    blocks: tuple[str, ...]

    def __str__(self) -> str:
        return f"{self.name}:{width_name(self.width)}:{','.join(self.blocks)}"


@dataclass(frozen=True)
class MobileArch:
    """A mobile architecture: one :class:`StageArch` per stage, in order. Immutable and hashable.

    ``str(arch)`` is the canonical string (``|`` between stages) and :meth:`parse` reads it back.
    """

    stages: tuple[StageArch, ...]

    @classmethod
    def parse(cls, text: str, spec: MobileSpec | None = None) -> MobileArch:
        """Parse an architecture string; with ``spec``, also check it against the stage table."""
        if isinstance(text, MobileArch):
            return text if spec is None else text.validate(spec)
        if not isinstance(text, str):
            raise MobileArchError(f"a mobile architecture is text, got {type(text).__name__}")
        compact = "".join(text.split())
        if not compact:
            raise MobileArchError("empty mobile architecture; expected e.g. 's1:w1:k3e6,skip|s2:...'")
        stages = []
        for i, part in enumerate(compact.split("|"), start=1):
            pieces = part.split(":")
            if len(pieces) != 3 or not all(pieces):
                raise MobileArchError(f"stage {i}: expected 'NAME:wRATIO:block,block,...', got {part!r}")
            name, width, blocks = pieces
            if not width.startswith("w"):
                raise MobileArchError(f"stage {name}: width {width!r} must be written 'wRATIO', e.g. 'w0.75'")
            try:
                ratio = float(width[1:])
            except ValueError:
                raise MobileArchError(f"stage {name}: width {width!r} is not 'wRATIO', e.g. 'w0.75'") from None
            if not math.isfinite(ratio) or not 0 < ratio <= 1:
                raise MobileArchError(f"stage {name}: width {width!r} must lie in (0, 1]")
            choices = tuple(blocks.split(","))
            if not all(choices):
                raise MobileArchError(f"stage {name}: an empty block choice in {blocks!r}")
            stages.append(StageArch(name, ratio, choices))
        arch = cls(tuple(stages))
        return arch if spec is None else arch.validate(spec)

    def validate(self, spec: MobileSpec) -> MobileArch:
        """Check stage names, widths, block counts and choices against ``spec``; returns ``self``."""
        names = [s.name for s in spec.stages]
        given = [s.name for s in self.stages]
        for i, name in enumerate(given):
            if name not in names:
                raise MobileArchError(f"unknown stage {name!r}; the space has stages {', '.join(names)}")
            if i >= len(names) or name != names[i]:
                raise MobileArchError(f"stage {i + 1} is {name!r}; expected the stages {', '.join(names)} in order")
        if len(given) != len(names):
            raise MobileArchError(f"expected {len(names)} stages ({', '.join(names)}), got {len(given)}")
        allowed = spec.mbconv_names
        for stage, row in zip(self.stages, spec.stages):
            if not any(math.isclose(stage.width, r) for r in spec.widths):
                raise MobileArchError(f"stage {stage.name}: unknown width {width_name(stage.width)!r}; "
                                      f"choose from {', '.join(spec.width_names)}")
            if len(stage.blocks) > row.blocks:
                raise MobileArchError(f"stage {stage.name}: {len(stage.blocks)} blocks, the table allows "
                                      f"at most {row.blocks}")
            for b, choice in enumerate(stage.blocks, start=1):
                if choice == SKIP and b == 1:
                    raise MobileArchError(f"stage {stage.name} block 1: 'skip' is not allowed on the first "
                                          f"block of a stage (it changes the channels or the resolution)")
                if choice != SKIP and choice not in allowed:
                    raise MobileArchError(f"stage {stage.name} block {b}: unknown choice {choice!r}; choose "
                                          f"from {', '.join(allowed)} (or skip after the first block)")
        return self

    def width_index(self, spec: MobileSpec, stage: int) -> int:
        """Index of stage ``stage``'s width in ``spec.widths``."""
        w = self.stages[stage].width
        return next(i for i, r in enumerate(spec.widths) if math.isclose(w, r))

    def __str__(self) -> str:
        return "|".join(str(s) for s in self.stages)


def uniform_arch(spec: MobileSpec, choice: str, width: float, depths: Sequence[int] | None = None) -> MobileArch:
    """Every block ``choice`` (``skip`` only after the first), every stage at ``width``."""
    depths = depths or [s.blocks for s in spec.stages]
    return MobileArch(tuple(StageArch(s.name, width, tuple(choice for _ in range(n)))
                            for s, n in zip(spec.stages, depths)))


__all__ = ["MobileArch", "MobileArchError", "MobileSpaceError", "MobileSpec", "Stage", "StageArch", "SizedStage",
           "SKIP", "block_name", "width_name", "uniform_arch"]
