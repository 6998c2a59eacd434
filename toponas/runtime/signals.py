"""Stopping a run by signal: Ctrl-C (SIGINT) and SIGTERM (what a cluster scheduler sends) both save and stop.

The first signal asks the loop to finish the current step, save and stop (exit 130 for SIGINT, 143
for SIGTERM). Any further signal while it does so only says so: the save is never cut short, so
the progress of the epoch is kept. ``kill -9`` stops without saving; ``--resume`` then continues
from the last checkpoint.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable

#: The exit status of a run stopped by each signal (128 + the signal number, as shells report it).
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(RuntimeError):
    """The run was stopped by a signal; its state is saved and ``--resume`` continues it."""

    def __init__(self, message: str, code: int = 130) -> None:
        super().__init__(message)
        self.code = code


class StopSignals:
    """A context in which SIGINT and SIGTERM set :attr:`signum` instead of stopping the process."""

    def __init__(self, say: Callable[[str], None] | None = None) -> None:
        self.signum: int | None = None
        self._say = say or (lambda m: print(m, file=sys.stderr, flush=True))
        self._old: dict[int, object] = {}

    @property
    def stopping(self) -> bool:
        return self.signum is not None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.signum, 130) if self.signum is not None else 130

    def request(self, signum: int = signal.SIGINT) -> None:
        """Ask the loop to stop as a signal would (also used by tests to simulate Ctrl-C)."""
        if self.signum is None:
            self.signum = signum

    def _handler(self, signum, frame) -> None:
        if self.signum is None:
            self.signum = signum
            self._say("stopping: finishing this step, then saving the state (--resume continues it)")
        else:
            self._say("already stopping: saving the state, please wait (kill -9 stops without saving)")

    def __enter__(self) -> StopSignals:
        for sig in EXIT_CODES:
            try:
                self._old[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: leave signals alone
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old.clear()
