"""The command line's one error path: every fault is one ``error:`` line and an exit status, never a traceback.

Exit statuses (the table in the README, tested in ``tests/test_faults.py``):

====  =====================================================================
0     done
1     a user error: bad option value, bad or missing file, unwritable output
2     a usage error: unknown option or command, a missing argument (click)
3     the run diverged (NaN loss); the last good checkpoint is kept
4     ``toponas verify`` found a broken promise
130   interrupted by Ctrl-C (SIGINT), state saved: ``--resume`` continues
143   stopped by SIGTERM, state saved: ``--resume`` continues
====  =====================================================================
"""

from __future__ import annotations

import errno
import functools
import os
import signal
import sys
from collections.abc import Callable
from typing import Any, NoReturn

import click
import torch

from ..benchmark import BenchmarkError
from ..config import ConfigError
from ..data import DataError
from ..registry import UnknownNameError
from ..spaces.cell import CellError

DONE, USER_ERROR, USAGE, DIVERGED, VERIFY_FAILED, SIGINT_EXIT, SIGTERM_EXIT = 0, 1, 2, 3, 4, 130, 143
EXIT_CODES = {DONE: "done", USER_ERROR: "user error", USAGE: "usage error", DIVERGED: "diverged",
              VERIFY_FAILED: "verify found a broken promise", SIGINT_EXIT: "interrupted (SIGINT), state saved",
              SIGTERM_EXIT: "terminated (SIGTERM), state saved"}


def _user_errors() -> tuple[type[BaseException], ...]:
    from ..export import ExportError
    from ..report import ReportError

    return (ConfigError, DataError, BenchmarkError, CellError, UnknownNameError, ReportError, ExportError)


#: The one list of exceptions that are the user's to fix (printed as one line, exit 1).
USER_ERRORS: tuple[type[BaseException], ...] = _user_errors()


def fail(message: str, code: int = USER_ERROR) -> NoReturn:
    """Print ``error: message`` (one line) on stderr and exit with ``code`` (under torchrun: rank 0 prints it)."""
    if os.environ.get("RANK", "0") in ("0", ""):
        click.echo(f"error: {' '.join(str(message).split())}", err=True)
    sys.exit(code)


class Terminated(BaseException):
    """SIGTERM outside a run loop (which saves and stops by itself)."""


def _on_sigterm(signum, frame) -> None:
    raise Terminated


def os_error_line(e: OSError) -> str:
    """One line for an ``OSError`` that reached the command line (a file the user named)."""
    from ..runtime.files import describe_os_error

    where = e.filename or ""
    if e.errno in (errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST):
        return describe_os_error(e, where)
    if e.errno == errno.ENAMETOOLONG:
        return f"file name too long: {str(where)[:80]}..."
    return f"{e.strerror or e}: {where}" if where else str(e)


def _hold_signals() -> None:
    """Ignore SIGINT and SIGTERM from now on: the run has saved its state and the process is exiting."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, signal.SIG_IGN)
        except ValueError:  # not the main thread
            pass


def run_guarded(callback: Callable[[], Any]) -> Any:
    """Run a command's work; map every expected fault to its line and exit status."""
    from ..runtime.loop import Diverged
    from ..runtime.signals import Interrupted

    try:
        old = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread (click's test runner in a thread)
        old = None
    try:
        return callback()
    except Interrupted as e:
        old = None
        _hold_signals()  # a further Ctrl-C/SIGTERM while exiting must not kill the process by default action
        fail(str(e), e.code)
    except Diverged as e:
        fail(str(e), DIVERGED)
    except USER_ERRORS as e:
        fail(str(e), USER_ERROR)
    except OSError as e:
        fail(os_error_line(e), USER_ERROR)
    except (MemoryError, torch.OutOfMemoryError):
        fail("out of memory; lower --batch-size, --channels or --cells (or --image-size)", USER_ERROR)
    except KeyboardInterrupt:
        fail("interrupted before the run loop started (nothing to save); run the command again", SIGINT_EXIT)
    except Terminated:
        fail("terminated before the run loop started (nothing to save); run the command again", SIGTERM_EXIT)
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def guarded(command: click.Command) -> click.Command:
    """``command`` with its callback run through :func:`run_guarded` (also when invoked on its own)."""
    callback = command.callback
    if callback is not None and not getattr(callback, "_guarded", False):
        @functools.wraps(callback)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            return run_guarded(lambda: callback(*args, **kwargs))

        wrapper._guarded = True  # type: ignore[attr-defined]
        command.callback = wrapper
    return command
