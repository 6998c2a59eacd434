"""User-declared NAS-Bench-201 style spaces: a candidate list in the API or in a JSON file.

A file names built-in candidates or declares new ones as chains of primitives written compactly::

    {"name": "my-space",
     "candidates": ["none", "skip_connect", "nor_conv_3x3",
                    {"name": "wide_conv", "chain": ["relu", "conv5x5", "bn"]},
                    {"name": "dil_conv_3x3_d3", "chain": ["relu", "conv3x3_d3", "bn"]}]}

Primitive words: ``relu``, ``bn``, ``identity``, ``zero``, ``convKxK`` (optional ``_dD`` dilation),
``dwconvKxK`` (depthwise), ``avgpoolK``, ``maxpoolK``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .cell import CellError
from .nb201 import CANDIDATES, SEARCH_BN, NB201Space
from .primitives import AvgPool, Conv, Identity, MaxPool, OpSpec, Primitive, ReLU, Zero

_CONV = re.compile(r"^(dw)?conv(\d+)x(\d+)(?:_d(\d+))?$")
_POOL = re.compile(r"^(avg|max)pool(\d+)$")


class SpaceFileError(CellError):
    """A space file that cannot be read or declares an invalid candidate (says which and why)."""


def parse_primitive(word: str) -> Primitive:
    """One primitive from its compact word (``conv3x3_d2``, ``avgpool3``, ``relu`` ...)."""
    simple = {"relu": ReLU(), "bn": SEARCH_BN, "identity": Identity(), "zero": Zero()}
    if word in simple:
        return simple[word]
    m = _CONV.match(word)
    if m:
        depthwise, kh, kw, dilation = bool(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4) or 1)
        if kh != kw or kh % 2 == 0:
            raise SpaceFileError(f"primitive {word!r}: kernels must be square and odd")
        if dilation < 1:
            raise SpaceFileError(f"primitive {word!r}: the dilation must be at least 1")
        return Conv(kh, dilation, depthwise)
    m = _POOL.match(word)
    if m:
        k = int(m.group(2))
        if k % 2 == 0:
            raise SpaceFileError(f"primitive {word!r}: pooling kernels must be odd")
        return AvgPool(k) if m.group(1) == "avg" else MaxPool(k)
    raise SpaceFileError(
        f"unknown primitive {word!r}; use relu, bn, identity, zero, convKxK[_dD], dwconvKxK[_dD], avgpoolK, maxpoolK"
    )


def parse_candidate(item: Any) -> str | OpSpec:
    """A built-in candidate name, or ``{"name": ..., "chain": [...]}`` as an ``OpSpec``."""
    if isinstance(item, str):
        if item not in CANDIDATES:
            raise SpaceFileError(f"unknown candidate {item!r}; built-in: {', '.join(CANDIDATES)}")
        return item
    if not isinstance(item, dict) or set(item) != {"name", "chain"} or not isinstance(item["chain"], list):
        raise SpaceFileError(f"a candidate is a built-in name or {{'name': ..., 'chain': [...]}}, got {item!r}")
    name = item["name"]
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_]+", name):
        raise SpaceFileError(f"candidate name {name!r}: use letters, digits and '_' (it appears in cell strings)")
    if not item["chain"]:
        raise SpaceFileError(f"candidate {name!r}: empty chain")
    return OpSpec(name, tuple(parse_primitive(str(w)) for w in item["chain"]))


def space_from_dict(data: dict[str, Any]) -> NB201Space:
    """Build a space from a parsed declaration (see the module docstring)."""
    if not isinstance(data, dict) or "candidates" not in data:
        raise SpaceFileError("a space declaration is an object with 'candidates' (and optionally 'name')")
    unknown = sorted(set(data) - {"name", "candidates"})
    if unknown:
        raise SpaceFileError(f"unknown key(s) {', '.join(unknown)} in the space declaration")
    candidates = [parse_candidate(c) for c in data["candidates"]]
    if len(candidates) < 2:
        raise SpaceFileError("a space needs at least two candidates")
    try:
        return NB201Space(str(data.get("name", "custom")), candidates)
    except ValueError as e:
        raise SpaceFileError(str(e)) from None


def space_from_file(path: str | os.PathLike) -> NB201Space:
    """Read a JSON space declaration."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SpaceFileError(f"space file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SpaceFileError(f"space file {path} is not valid JSON: {e}") from None
    return space_from_dict(data)
