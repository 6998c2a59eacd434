"""The ``toponas`` command line, one module per concept; the commands of each module are in its ``COMMANDS``.

User errors (bad options, missing data, malformed cells, unwritable outputs) print one ``error:``
line and exit 1, never a traceback; the other exit statuses are in :mod:`toponas.cli.errors`.
Adding a command is adding a module here and its name to :data:`MODULES`.
"""

from __future__ import annotations

import importlib

import click

from ..runtime.allocator import configure_allocator
from .errors import EXIT_CODES, USER_ERRORS, fail, guarded

configure_allocator()  # every command: glibc keeps freed activations for reuse (see toponas/runtime/allocator.py)

#: The modules whose ``COMMANDS`` make up the command line, in --help order.
MODULES = ("search", "lookup", "simplifier", "rank", "train", "report", "sweep", "latency")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="toponas")
def main() -> None:
    """TopoNAS: fast gradient-based neural architecture search."""


for _module in MODULES:
    for _command in importlib.import_module(f"{__name__}.{_module}").COMMANDS:
        main.add_command(guarded(_command))

__all__ = ["EXIT_CODES", "USER_ERRORS", "fail", "main"]
