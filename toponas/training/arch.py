"""What ``ARCH`` names on the command line: a cell string, a search result, or a training run.

Every space object provides ``parse(text)`` (validate a genotype string) and ``build_network(...)``;
nothing here knows a space's genotype syntax, so a DARTS space only has to be registered.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import ConfigError
from ..spaces import SPACES, create_space
from ..spaces.cell import CellError
from ..spaces.declared import is_space_file, space_for_run

TRAIN_JSON = "train.json"
MODEL_FILE = "model.pt"
RESULT_JSON = "result.json"


@dataclass(frozen=True)
class ArchSource:
    """A resolved architecture: its space, its canonical genotype string, and where it came from.

    ``kind`` is ``"string"`` (given on the command line), ``"search"`` (a search's ``result.json``)
    or ``"train"`` (a training run: ``weights`` then names the file holding its trained weights).
    """

    space: str
    genotype: str
    kind: str
    origin: str
    weights: Path | None = None
    defaults: dict[str, Any] = field(default_factory=dict)  # the run's own dataset and data path


def parse_genotype(text: str, space: str | None = None) -> tuple[str, str]:
    """``(space, canonical genotype)`` of ``text``: in ``space``, or in the first registered space that parses it."""
    names = [space] if space else SPACES.names()
    errors = []
    for name in names:
        if name not in SPACES and not is_space_file(name):
            raise ConfigError(f"search space {name!r} is not available; known: {', '.join(SPACES.names())}")
        try:
            return name, str(create_space(name).parse(text))
        except (CellError, ValueError) as e:
            errors.append(f"{name}: {e}")
    raise CellError(f"{text!r} is not a path to a run and not a cell of any space ({'; '.join(errors)})")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} holds no run (expected a JSON object)")
    return data


def _from_json(path: Path, space: str | None) -> ArchSource:
    data = _read_json(path)
    if "genotype" in data:  # a search's result.json
        name, genotype = parse_genotype(str(data["genotype"]), space or space_for_run(data, path.parent))
        return ArchSource(name, genotype, "search", str(path), defaults=_run_defaults(data, path.parent))
    if "arch" in data and "history" in data:  # a training run's train.json
        name, genotype = parse_genotype(str(data["arch"]), space or data.get("space"))
        weights = path.parent / MODEL_FILE
        return ArchSource(name, genotype, "train", str(path), weights if weights.exists() else None,
                          defaults=_run_defaults(data, path.parent))
    raise ConfigError(f"{path} is neither a search result.json (no 'genotype') nor a train.json (no 'arch')")


def _run_defaults(data: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """A run's dataset and data path (from its config.json or record), the defaults of retraining it."""
    config = data.get("config") if isinstance(data.get("config"), dict) else None
    if config is None and (run_dir / "config.json").is_file():
        try:
            config = json.loads((run_dir / "config.json").read_text())
        except (OSError, ValueError):
            config = None
    config = config if isinstance(config, dict) else {}
    out = {}
    dataset = config.get("dataset", data.get("dataset"))
    if isinstance(dataset, str):
        out["dataset"] = dataset
    if isinstance(config.get("data"), str):
        out["data"] = config["data"]
    return out


def _from_checkpoint(path: Path, space: str | None) -> ArchSource:
    from .network import read_checkpoint

    meta = read_checkpoint(path).get("network")
    if not meta:
        raise ConfigError(f"{path} is not a checkpoint of `toponas train` (it holds no network description)")
    name, genotype = parse_genotype(meta["arch"], space or meta["space"])
    return ArchSource(name, genotype, "train", str(path), path)


def resolve_arch(arch: str, space: str | None = None) -> ArchSource:
    """Resolve ARCH: a cell string, ``result.json``/``train.json``, a run directory, or a train checkpoint.

    A directory is a training run when it holds ``train.json``, ``model.pt`` or a training
    ``checkpoint.pt`` (an unfinished run), and a search run when it holds ``result.json``.
    """
    path = Path(os.path.expanduser(arch))
    try:
        path.exists()
    except OSError:  # a long cell string is no file name (ENAMETOOLONG)
        name, genotype = parse_genotype(arch, space)
        return ArchSource(name, genotype, "string", "command line")
    if path.is_dir():
        if (path / TRAIN_JSON).exists():
            return _from_json(path / TRAIN_JSON, space)
        if (path / MODEL_FILE).exists():
            return _from_checkpoint(path / MODEL_FILE, space)
        if (path / RESULT_JSON).exists():
            return _from_json(path / RESULT_JSON, space)
        if (path / "checkpoint.pt").exists():
            return _from_checkpoint(path / "checkpoint.pt", space)
        raise ConfigError(f"directory {path} holds no run (no train.json, model.pt, result.json or checkpoint.pt)")
    if path.is_file():
        if path.suffix == ".json":
            return _from_json(path, space)
        if path.suffix in (".pt", ".pth"):
            return _from_checkpoint(path, space)
        raise ConfigError(f"{path}: expected a result.json, train.json, run directory or checkpoint .pt file")
    looks_like_path = "|" not in arch and (os.sep in arch or arch.endswith((".json", ".pt", ".pth")))
    if looks_like_path:
        raise ConfigError(f"no such file or directory: {path}")
    name, genotype = parse_genotype(arch, space)
    return ArchSource(name, genotype, "string", "command line")
