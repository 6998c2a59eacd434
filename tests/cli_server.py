"""Run ``python -m toponas.cli ARGS`` as a fresh process without paying for ``import torch`` each time.

A server process imports the command line once (torch included, no tensor work) and forks one child per
request; the child runs the CLI entry point with its own argv, working directory, stdin (``/dev/null``),
stdout and stderr (files) and exits with the CLI's status, as ``python -m toponas.cli`` would. A fault
test thus still sees a separate process's exit code and streams; only the import is shared. The fault
suite runs some sixty such processes: importing torch in each cost more than the commands themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import Future
from pathlib import Path

SERVER = r'''
import atexit, json, os, sys, threading, traceback
import toponas.cli
from toponas.cli import main
requests, lock, pids = sys.stdin, threading.Lock(), {}
reply = os.fdopen(os.dup(1), "w")

def reap():
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            threading.Event().wait(0.02)
            continue
        with lock:
            rid = pids.pop(pid, None)
            reply.write(json.dumps({"id": rid, "code": os.waitstatus_to_exitcode(status)}) + "\n")
            reply.flush()

threading.Thread(target=reap, daemon=True).start()
for line in requests:
    req = json.loads(line)
    with lock:
        pid = os.fork()
        if pid:
            pids[pid] = req["id"]
            continue
    # the child: a fresh ``python -m toponas.cli ARGS``
    code = 1
    try:
        os.chdir(req["cwd"])
        os.environ.clear()
        os.environ.update(req["env"])
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
            f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.dup2(f, fd)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", closefd=False)
        sys.stderr = open(2, "w", closefd=False)
        sys.argv = [toponas.cli.__file__, *req["args"]]
        try:
            main(prog_name="python -m toponas.cli")
            code = 0
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            if not isinstance(e.code, (int, type(None))):
                print(e.code, file=sys.stderr)
        except BaseException:
            traceback.print_exc()
            code = 1
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:
                pass
        os._exit(code)
'''


class CliServer:
    """``run(*args)`` -> :class:`subprocess.CompletedProcess` of ``python -m toponas.cli ARGS`` (thread-safe)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.proc = subprocess.Popen([sys.executable, "-c", SERVER], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, env=env)
        self.lock = threading.Lock()
        self.futures: dict[int, Future] = {}
        self.next_id = 0
        self.tmp = tempfile.TemporaryDirectory(prefix="toponas-cli-")
        threading.Thread(target=self._replies, daemon=True).start()

    def _replies(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self.lock:
                future = self.futures.pop(msg["id"], None)
            if future is not None:
                future.set_result(msg["code"])
        with self.lock:  # the server died: fail whoever waits
            for future in self.futures.values():
                future.set_exception(RuntimeError("the CLI server exited"))
            self.futures.clear()

    def run(self, *args: str, timeout: float = 300, cwd: str | None = None) -> subprocess.CompletedProcess:
        with self.lock:
            rid, self.next_id = self.next_id, self.next_id + 1
            future: Future = Future()
            self.futures[rid] = future
            out, err = Path(self.tmp.name) / f"{rid}.out", Path(self.tmp.name) / f"{rid}.err"
            request = {"id": rid, "args": list(args), "cwd": cwd or os.getcwd(), "env": self.env,
                       "stdout": str(out), "stderr": str(err)}
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
        try:
            code = future.result(timeout=timeout)
        except TimeoutError as e:
            raise subprocess.TimeoutExpired(["toponas", *args], timeout) from e
        return subprocess.CompletedProcess(["toponas", *args], code, out.read_text(), err.read_text())

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.tmp.cleanup()
