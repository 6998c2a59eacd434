"""The process-wide glibc settings (``toponas/runtime/allocator.py``): applied at import, opt-out, and the
effect they exist for: freed activation-sized blocks are reused without page faults. No timings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from toponas.runtime import allocator
from toponas.runtime.allocator import configure_allocator

ROOT = Path(__file__).resolve().parents[1]
GLIBC = allocator._glibc() is not None
needs_glibc = pytest.mark.skipif(not GLIBC, reason="the settings exist only on glibc")

#: ``malloc`` 48 blocks of 2 MiB and two of 40 MiB (176 MiB, all written), ``free`` them; two rounds, an
#: explicit ``malloc_trim``, two more; print the minor page faults of the last round. By default glibc
#: trims the freed top of its heap (its trim threshold follows the block size) and maps blocks above
#: 32 MiB afresh each time, so every round faults its pages in again. (Raw ``malloc``, not tensors: a tensor's
#: small bookkeeping allocations may land above the blocks and keep the heap from being trimmed, which
#: makes the default's faults depend on the interpreter's hash seed.)
CHURN = """
import ctypes, json
import toponas.runtime  # the import applies the settings (unless TOPONAS_MALLOPT=0)
from toponas.runtime.allocator import allocator_state, minor_faults
libc = ctypes.CDLL(None)
libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
libc.memset.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t]
SIZES = [2 * 2**20] * 48 + [40 * 2**20] * 2
def rnd():
    blocks = [(libc.malloc(n), n) for n in SIZES]
    for b, n in blocks:
        libc.memset(b, 1, n)
    for b, _ in blocks:
        libc.free(b)
rnd(); rnd()
libc.malloc_trim(0)  # what profile does between spaces: returns the memory once, the settings stay
rnd()
f = minor_faults()
rnd()
print(json.dumps({"faults": minor_faults() - f, "applied": list(allocator_state().applied)}))
"""


def _churn(**env: str) -> dict:
    full = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", **env}
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES"):
        if name not in env:
            full.pop(name, None)
    out = subprocess.run([sys.executable, "-c", CHURN], env=full, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_glibc
def test_settings_remove_the_page_faults_of_reallocating_freed_blocks() -> None:
    on, off = _churn(), _churn(TOPONAS_MALLOPT="0")
    assert on["applied"] == [f"M_MMAP_THRESHOLD={allocator.MMAP_THRESHOLD}", "M_MMAP_MAX=0", "M_TRIM_THRESHOLD=-1"]
    assert off["applied"] == []
    pages = 176 * 2**20 // os.sysconf("SC_PAGE_SIZE")
    assert off["faults"] > pages // 2  # the default: the freed heap went back to the system and faults in again
    assert on["faults"] < pages // 20  # kept: reused without faults


@needs_glibc
def test_applied_at_import_and_idempotent() -> None:
    state = allocator.allocator_state()
    assert state is not None and "M_TRIM_THRESHOLD=-1" in state.applied  # toponas.runtime applied it
    assert configure_allocator() is state  # once per process


@needs_glibc
def test_opt_out_and_user_settings_are_respected(monkeypatch) -> None:
    try:
        monkeypatch.setenv("TOPONAS_MALLOPT", "0")
        assert configure_allocator(force=True) == allocator.AllocatorState((), "TOPONAS_MALLOPT=0")
        monkeypatch.delenv("TOPONAS_MALLOPT")
        monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")  # the user's own threshold stays
        assert configure_allocator(force=True).applied == (f"M_MMAP_THRESHOLD={allocator.MMAP_THRESHOLD}",
                                                           "M_MMAP_MAX=0")
    finally:
        monkeypatch.undo()
        assert "M_TRIM_THRESHOLD=-1" in configure_allocator(force=True).applied


def test_without_glibc_nothing_is_done(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "_glibc", lambda: None)
    try:
        assert configure_allocator(force=True) == allocator.AllocatorState((), "not glibc")
    finally:
        monkeypatch.undo()
        configure_allocator(force=True)


def test_profile_reports_minor_faults_per_step(tmp_path, one_thread) -> None:
    from click.testing import CliRunner

    from toponas.cli import main

    out = tmp_path / "p.json"
    result = CliRunner().invoke(main, ["profile", "--topo", "off,full", "--channels", "2", "--batch-size", "2",
                                       "--image-size", "8", "--cells", "1", "--steps", "2", "--warmup", "0",
                                       "--device", "cpu", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert any(line.startswith("configuration") and "minflt/step" in line for line in result.output.splitlines())
    rows = json.loads(out.read_text())["rows"]
    assert [r["name"] for r in rows] == ["topo=off", "topo=full", "largest single network"]
    assert all(isinstance(r["minor_faults_per_step"], int) and r["minor_faults_per_step"] >= 0 for r in rows)
    assert json.loads(out.read_text())["allocator"] == list(allocator.allocator_state().applied)
