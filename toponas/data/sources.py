"""Uniform read access to the regular files of a directory, a tar archive or a zip archive.

Archives are read in place (a tar.gz is streamed with tarfile mode ``r:*``), never extracted to disk.
Every read or format problem becomes a DataError naming the path.
"""

from __future__ import annotations

import lzma
import os
import tarfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

from tqdm import tqdm

from .dataset import DataError

ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz", ".zip")
READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)


def has_archive_suffix(path: Path) -> bool:
    """Whether the file name says it is a tar or zip archive."""
    return path.name.lower().endswith(ARCHIVE_SUFFIXES)


def _corrupt(path: Path, exc: BaseException) -> DataError:
    return DataError(
        f"cannot read {path}: the archive is corrupt or truncated ({type(exc).__name__}: {exc}); "
        "download or copy it again, or pass the extracted folder instead"
    )


class FileSource:
    """The regular files under a directory or inside a .tar(.gz/.bz2/.xz) or .zip archive, by relative path.

    Names are POSIX relative paths (``cifar10/train/cat/0001.jpg``). ``read_many`` yields contents in
    storage order, so a compressed tar is decompressed once, front to back.
    """

    def __init__(self, path: Path, progress: bool = False) -> None:
        self.path = path
        self.progress = progress
        self.kind: str
        self._tar: tarfile.TarFile | None = None
        self._zip: zipfile.ZipFile | None = None
        self._names: list[str] | None = None
        self._members: dict[str, tarfile.TarInfo | zipfile.ZipInfo] = {}
        if path.is_dir():
            self.kind = "directory"
            return
        if not path.is_file():
            raise DataError(f"data path {path} is neither a file nor a directory")
        try:
            if zipfile.is_zipfile(path):
                self.kind = "zip"
                self._zip = zipfile.ZipFile(path)
                return
            self.kind = "tar"
            self._tar = tarfile.open(path, mode="r:*")
        except tarfile.ReadError as exc:
            if has_archive_suffix(path):
                raise _corrupt(path, exc) from None
            raise DataError(
                f"data path {path} is not a directory, a tar archive (.tar, .tar.gz, .tgz) or a .zip "
                "archive; pass the dataset's folder or an archive of it"
            ) from None
        except READ_ERRORS as exc:
            raise _corrupt(path, exc) from None

    def __enter__(self) -> FileSource:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying archive, if any."""
        if self._tar is not None:
            self._tar.close()
        if self._zip is not None:
            self._zip.close()

    def names(self) -> list[str]:
        """Relative POSIX paths of all regular files, in storage order (listed once, then remembered)."""
        if self._names is None:
            self._names = self._list()
        return self._names

    def _list(self) -> list[str]:
        if self.kind == "directory":
            names = []
            for root, dirs, files in os.walk(self.path, followlinks=True):
                dirs.sort()
                rel = Path(root).relative_to(self.path).as_posix()
                prefix = "" if rel == "." else rel + "/"
                names.extend(prefix + f for f in sorted(files) if os.path.isfile(os.path.join(root, f)))
            return names
        try:
            if self._zip is not None:
                for info in self._zip.infolist():
                    if not info.is_dir():
                        self._members[info.filename.replace("\\", "/")] = info
            else:
                assert self._tar is not None
                listing = tqdm(
                    self._tar,
                    desc=f"listing {self.path.name}",
                    unit=" files",
                    disable=not self.progress,
                    leave=False,
                )
                for member in listing:
                    if member.isfile():
                        self._members[member.name.removeprefix("./")] = member
        except READ_ERRORS as exc:
            raise _corrupt(self.path, exc) from None
        return list(self._members)

    def read(self, name: str) -> bytes:
        """The contents of one file."""
        for _, data in self.read_many([name]):
            return data
        raise DataError(f"{self.path} has no file {name!r}")

    def read_many(self, names: Iterable[str]) -> Iterator[tuple[str, bytes]]:
        """Yield ``(name, contents)`` for the given files, in storage order (not the order given)."""
        wanted = set(names)
        order = [n for n in self.names() if n in wanted]
        missing = wanted.difference(order)
        if missing:
            raise DataError(f"{self.path} has no file {sorted(missing)[0]!r}")
        for name in order:
            try:
                if self.kind == "directory":
                    data = (self.path / name).read_bytes()
                elif self._zip is not None:
                    data = self._zip.read(self._members[name])  # type: ignore[arg-type]
                else:
                    assert self._tar is not None
                    handle = self._tar.extractfile(self._members[name])  # type: ignore[arg-type]
                    assert handle is not None
                    data = handle.read()
            except READ_ERRORS as exc:
                if self.kind == "directory":
                    raise DataError(f"cannot read {self.path / name}: {exc}") from None
                raise _corrupt(self.path, exc) from None
            yield name, data

    def label(self, name: str) -> str:
        """A human-readable location of one file, for error messages."""
        if self.kind == "directory":
            return str(self.path / name)
        return f"{name} (in {self.path})"
