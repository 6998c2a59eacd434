"""The on-disk cache of decoded datasets: one ``torch.save`` file per (dataset, source) pair.

Decoding 60,000 JPEGs takes seconds; loading the cached uint8 tensors takes a fraction of one. The
cache key hashes the dataset name with the resolved source path, size and modification time (for a
directory: of every file under it), so an edited source is decoded again. Files are written
atomically (temporary file + ``os.replace``); an unreadable cache file is ignored and rebuilt.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
import warnings
from pathlib import Path

import torch

from .dataset import DataError, ImageDataset

CACHE_VERSION = 1
CACHE_ENV = "TOPONAS_CACHE"


def default_cache_dir() -> Path:
    """``$TOPONAS_CACHE`` if set, else ``~/.cache/toponas``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "toponas"


def resolve_cache_dir(cache_dir: str | os.PathLike[str] | None) -> Path:
    """The cache directory to use: the one given, else the default."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def source_fingerprint(path: Path) -> str:
    """A string that changes when the file (or any file under the directory) at ``path`` changes."""
    path = path.resolve()
    if path.is_file():
        st = path.stat()
        return f"file:{path}:{st.st_size}:{st.st_mtime_ns}"
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            digest.update(f"{os.path.relpath(full, path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return f"dir:{path}:{digest.hexdigest()}"


def cache_path(cache_root: Path, name: str, fingerprint: str) -> Path:
    """Where the decoded dataset for this name and source fingerprint is stored."""
    key = hashlib.sha256(f"v{CACHE_VERSION}\0{name}\0{fingerprint}".encode()).hexdigest()[:24]
    return cache_root / "decoded" / f"{name}-{key}.pt"


def load_cached(path: Path, name: str) -> ImageDataset | None:
    """The cached dataset at ``path``, or None when absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if payload.get("version") != CACHE_VERSION:
            return None
        return ImageDataset(
            name=name,
            train_x=payload["train_x"],
            train_y=payload["train_y"],
            test_x=payload["test_x"],
            test_y=payload["test_y"],
            classes=list(payload["classes"]),
            mean=tuple(payload["mean"]),
            std=tuple(payload["std"]),
        )
    except Exception as exc:  # any unreadable cache file is a cache miss, never fatal
        warnings.warn(
            f"ignoring unreadable dataset cache {path} ({type(exc).__name__}: {exc}); rebuilding it",
            stacklevel=3,
        )
        return None


def save_cached(path: Path, ds: ImageDataset, source: str) -> None:
    """Write ``ds`` to ``path`` atomically; a cache that cannot be written only costs a warning."""
    payload = {
        "version": CACHE_VERSION,
        "name": ds.name,
        "source": source,
        "train_x": ds.train_x,
        "train_y": ds.train_y,
        "test_x": ds.test_x,
        "test_y": ds.test_y,
        "classes": list(ds.classes),
        "mean": list(ds.mean),
        "std": list(ds.std),
    }
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
        os.replace(tmp, path)
        tmp = None
    except (OSError, RuntimeError) as exc:  # torch.save reports a full disk as a RuntimeError
        if isinstance(exc, RuntimeError) and "writ" not in str(exc).lower():
            raise
        reason = "the disk is full" if isinstance(exc, RuntimeError) or exc.errno == errno.ENOSPC else str(exc)
        warnings.warn(
            f"could not write the dataset cache {path} ({reason}); the next load decodes again. "
            f"Pass cache_dir= or set {CACHE_ENV} to a writable folder",
            stacklevel=3,
        )
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` if needed; a DataError if it cannot be created."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"cannot create the cache folder {path} ({exc}); pass cache_dir= (or set {CACHE_ENV}) "
            "to a writable folder"
        ) from None
    return path
