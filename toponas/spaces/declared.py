"""A custom space (a ``.json`` declaration) as recorded in a run, so the run can be retrained and exported.

``result.json`` of a search on a declared space carries the file's path, its SHA-256 and the
declaration itself; :func:`space_for_run` gives ``train``/``export`` a space name that rebuilds it:
the file when it is still there unchanged, else the recorded declaration written beside the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from .custom import SpaceFileError


def is_space_file(space: str) -> bool:
    return space.endswith(".json") or Path(space).is_file()


def describe_space_file(space: str) -> dict[str, Any]:
    """``{"space_file": {"path", "sha256", "declaration"}}`` for a declared space, ``{}`` for a registered one."""
    if not is_space_file(space):
        return {}
    path = Path(space)
    data = path.read_bytes()
    return {"space_file": {"path": str(path.resolve()), "sha256": hashlib.sha256(data).hexdigest(),
                           "declaration": json.loads(data)}}


def space_for_run(record: dict[str, Any], run_dir: Path) -> str:
    """The space name to rebuild a run's space: the declaration file if unchanged, else a recorded copy."""
    space = str(record.get("space", ""))
    info = record.get("space_file")
    if not is_space_file(space):
        return space
    if not isinstance(info, dict) or "declaration" not in info:
        if Path(space).is_file():
            return space
        raise SpaceFileError(f"the run's space file {space} is gone and the run does not record its declaration; "
                             "pass --space FILE")
    for candidate in (Path(space), Path(str(info.get("path", "")))):
        if candidate.is_file() and hashlib.sha256(candidate.read_bytes()).hexdigest() == info.get("sha256"):
            return str(candidate)
    copy = run_dir / "space.json"
    if not copy.is_file() or json.loads(copy.read_text()) != info["declaration"]:
        from ..runtime.files import write_json

        write_json(copy, info["declaration"])
    return str(copy)
