"""Where a result came from: toponas and torch versions, device, command line, git commit of a checkout."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch


def toponas_version() -> str:
    try:
        from importlib.metadata import version

        return version("toponas")
    except Exception:  # not installed (run from a checkout on PYTHONPATH)
        return "unknown"


def git_commit(where: Path | None = None) -> str | None:
    """The commit of the checkout holding the toponas package (None when not run from one)."""
    where = where or Path(__file__).resolve().parents[2]
    if not (where / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(where), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    if out.returncode != 0 or not commit:
        return None
    dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, timeout=5, stdin=subprocess.DEVNULL)
    return commit + ("-dirty" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def provenance(device: torch.device | str, command: list[str] | None = None) -> dict[str, Any]:
    """The ``provenance`` record of ``result.json`` / ``train.json``."""
    return {
        "toponas": toponas_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(torch.device(device)) if str(device).startswith("cuda") else
        platform.processor() or platform.machine(),
        "command": list(command) if command is not None else list(sys.argv),
        "git_commit": git_commit(),
    }
