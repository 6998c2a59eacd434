"""Pieces several commands share: the space option's help, loading a space, progress only on a terminal."""

from __future__ import annotations

import sys

from ..spaces import SPACES

SPACE_HELP = f"A registered space ({', '.join(SPACES.names())}) or a .json declaration (docs/spaces.md)."


def load_space(name: str):
    """The space named on the command line (a CellError/UnknownNameError is the error path's to print)."""
    from ..spaces import create_space

    return create_space(name)


def show_progress(no_progress: bool) -> bool:
    """A progress bar only when asked for and stderr is a terminal; plain log lines otherwise."""
    return not no_progress and sys.stderr.isatty()
