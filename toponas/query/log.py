"""The query log: the checkpoint of a query-based run, one JSON line per answered query.

The first line records what makes the run itself (strategy, space, seed, hyperparameters, oracle);
each further line one query in order: ``{"query": i, "arch": cell, "accuracy": a, "seconds": s}``.
Lines are appended and flushed as answers arrive, so a killed run loses at most the query it was
asking; a torn last line is dropped on reading.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..config import ConfigError

LOG_FILE = "queries.jsonl"


def read_log(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The header and the entries of a query log (ConfigError: not one, or damaged before its end)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read the query log {path}: {e}") from None
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()  # torn by a kill while writing: that query is asked again
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            raise ConfigError(f"the query log {path} is damaged at line {number} (not JSON)") from None
    if not records or not isinstance(records[0], dict) or not isinstance(records[0].get("run"), dict):
        raise ConfigError(f"{path} is not a toponas query log (its first line has no 'run' record)")
    entries = records[1:]
    for k, entry in enumerate(entries, start=1):
        ok = (isinstance(entry, dict) and entry.get("query") == k and isinstance(entry.get("arch"), str)
              and isinstance(entry.get("accuracy"), (int, float)) and math.isfinite(entry["accuracy"]))
        if not ok:
            raise ConfigError(f"the query log {path} is damaged at query {k}: {json.dumps(entry)[:120]}")
    return records[0]["run"], entries


class QueryLog:
    """Appends to ``OUT/queries.jsonl``; :meth:`open` starts one or checks a resumed one's header."""

    def __init__(self, path: Path, entries: list[dict[str, Any]]) -> None:
        self.path = path
        self.entries = entries

    @classmethod
    def open(cls, out: Path, run: dict[str, Any], resume: bool) -> QueryLog:
        """A new log (``resume`` False, or no log yet) or the existing one if it is this run's."""
        path = out / LOG_FILE
        if not path.exists():
            out.mkdir(parents=True, exist_ok=True)
            with path.open("w", encoding="utf-8") as f:
                f.write(json.dumps({"run": run}) + "\n")
            return cls(path, [])
        if not resume:
            raise ConfigError(f"{out} already holds a query log; pass --resume to continue it or choose another --out")
        saved, entries = read_log(path)
        diffs = [f"{k}: logged {saved.get(k)!r}, given {run.get(k)!r}" for k in sorted(set(saved) | set(run))
                 if saved.get(k) != run.get(k)]
        if diffs:
            raise ConfigError(f"the query log {path} is from another run ({'; '.join(diffs)})")
        with path.open("r+", encoding="utf-8") as f:  # drop a torn last line before appending
            text = f.read()
            keep = text if text.endswith("\n") else text[: text.rfind("\n") + 1]
            f.seek(0)
            f.write(keep)
            f.truncate()
        return cls(path, entries)

    def append(self, entry: dict[str, Any]) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self.entries.append(entry)
