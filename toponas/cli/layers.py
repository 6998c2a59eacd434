"""The one way options are layered: defaults, then a config file (or the run's saved one), then flags given."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import click
from click.core import ParameterSource

from ..config import ConfigError


def given(ctx: click.Context, name: str) -> bool:
    """Whether option ``name`` was set on the command line or through its environment variable."""
    return ctx.get_parameter_source(name) in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT)


def layered(ctx: click.Context, options: dict[str, Any], names: Iterable[str], base_given: bool) -> dict[str, Any]:
    """The values of ``names`` to set over a base: every option without a base, else only the given ones."""
    return {k: options[k] for k in names if given(ctx, k) or not base_given}


def parse_pairs(values: Iterable[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` items (``--hp``, ``--set``) as a dict, keys with ``-`` spelled ``_``."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"{flag} expects KEY=VALUE, got {item!r}")
        out[key.strip().replace("-", "_")] = value.strip()
    return out
