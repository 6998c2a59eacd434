"""Writing run files: atomically, with the user's umask, strict JSON, and a clear error for a full disk.

A reader never sees half a file, and a write that fails (full disk, read-only directory) leaves the
earlier file as it was and raises :class:`OutputError` naming the path.
"""

from __future__ import annotations

import errno
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ..config import ConfigError


class OutputError(ConfigError):
    """A file or directory cannot be written (not writable, a file in the way, the disk is full)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def describe_os_error(e: OSError, path: Path | str) -> str:
    """One readable line for an ``OSError`` while writing ``path``."""
    if e.errno == errno.ENOSPC or e.errno == errno.EDQUOT:
        return f"the disk is full while writing {path} (the earlier file, if any, is kept); free space and retry"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write {path}: permission denied or read-only file system"
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return f"cannot write {path}: a file is in the way of the directory"
    return f"cannot write {path}: {e.strerror or e}"


def atomic_write_bytes(path: Path, write: Callable[[IO[bytes]], Any]) -> None:
    """Write through ``write(file)`` into a temporary file beside ``path``, then rename it over.

    The file gets the permissions a plain ``open`` would give (``0666`` less the umask), not the
    ``0600`` of a temporary file. Any ``OSError`` becomes an :class:`OutputError` naming ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise OutputError(describe_os_error(e, path)) from None
    except RuntimeError as e:  # torch.save reports a full disk as a RuntimeError ("file write failed")
        _remove(tmp)
        if "write" in str(e).lower():
            raise OutputError(describe_os_error(OSError(errno.ENOSPC, "No space left on device"), path)) from None
        raise
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str | None) -> None:
    if tmp is not None and os.path.exists(tmp):
        try:
            os.unlink(tmp)
        except OSError:
            pass


def finite(data: Any) -> Any:
    """``data`` with every NaN or infinite float replaced by ``None`` (strict JSON has neither)."""
    if isinstance(data, float):
        return data if math.isfinite(data) else None
    if isinstance(data, dict):
        return {k: finite(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [finite(v) for v in data]
    return data


def json_text(data: Any) -> str:
    """Strict JSON (no ``NaN``/``Infinity``: they become ``null``), indented, with a final newline."""
    return json.dumps(finite(data), indent=2, sort_keys=False, allow_nan=False) + "\n"


def write_json(path: Path, data: Any, *, only_if_changed: bool = False) -> bool:
    """Write strict JSON atomically; with ``only_if_changed`` an identical file is left untouched.

    Returns whether the file was written.
    """
    path = Path(path)
    text = json_text(data)
    if only_if_changed and path.is_file():
        try:
            if path.read_text() == text:
                return False
        except OSError:
            pass
    atomic_write_bytes(path, lambda f: f.write(text.encode()))
    return True


def check_writable(path: Path | str, *, directory: bool = False, what: str = "output") -> Path:
    """Fail before any work when ``path`` (a file to write, or a ``directory``) cannot be written.

    Nothing is created: the nearest existing ancestor must be a writable directory, and no file may
    stand where a directory is needed (or a directory where the file goes).
    """
    path = Path(os.path.expanduser(str(path)))
    if path.exists():
        if directory and not path.is_dir():
            raise OutputError(f"{what} {path} is a file, not a directory")
        if not directory and path.is_dir():
            raise OutputError(f"{what} {path} is a directory, not a file")
        target = path if directory else path.parent
    else:
        target = path.parent
    probe = target
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{what} {path}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{what} {path}: {probe} is not writable")
    if path.exists() and not os.access(path, os.W_OK):
        raise OutputError(f"{what} {path} is not writable")
    return path
