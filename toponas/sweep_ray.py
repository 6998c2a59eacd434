"""The Ray backend of ``toponas sweep``: every run a Ray task with its CPUs and GPUs, anywhere on a cluster.

Ray is an optional extra (``pip install 'toponas[ray]'``), imported here only. A task runs the same
``toponas search --resume`` subprocess as the local pool, so finished runs are skipped (by the
caller), killed ones resume from their checkpoints, and the summary is the same. The run directories
must be on a file system every node sees (the driver reads their ``result.json``).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

from .config import ConfigError


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def check_reachable(address: str, timeout: float = 3.0) -> None:
    """Fail fast (one line) when a ``host:port`` or ``ray://host:port`` address does not answer."""
    if address in ("auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"ray://{address}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        raise ConfigError(f"--address {address!r} is not host:port (or ray://host:port, or auto)") from None
    if not host or not port:
        raise ConfigError(f"--address {address!r} is not host:port (or ray://host:port, or auto)")
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise ConfigError(f"cannot reach the Ray cluster at {address}: {e.strerror or e}") from None


class RayCluster:
    """A connection to Ray that runs functions as tasks with fixed resources."""

    def __init__(self, ray: Any, where: str, cpus: float, gpus: float, owned: bool) -> None:
        self.ray, self.where, self.cpus, self.gpus, self.owned = ray, where, cpus, gpus, owned

    @classmethod
    def connect(cls, address: str | None, cpus: float, gpus: float) -> RayCluster:
        """Join the cluster at ``address`` (None: the Ray instance of this process, else a new local one)."""
        if cpus <= 0 or gpus < 0:
            raise ConfigError(f"--cpus-per-run must be positive and --gpus-per-run not negative (got {cpus}, {gpus})")
        try:
            import ray
        except ImportError:
            raise ConfigError("--backend ray needs Ray: pip install 'toponas[ray]'") from None
        owned = False
        if not ray.is_initialized():
            if address:
                check_reachable(address)
            try:
                ray.init(address=address, include_dashboard=False, log_to_driver=False,
                         configure_logging=False)
            except Exception as e:  # Ray raises ConnectionError, RuntimeError, ValueError ... for a bad cluster
                raise ConfigError(f"cannot start or join Ray{f' at {address}' if address else ''}: "
                                  f"{_first_line(e)}") from None
            owned = address is None
        total = ray.cluster_resources()
        have_cpu, have_gpu = float(total.get("CPU", 0)), float(total.get("GPU", 0))
        if cpus > have_cpu or gpus > have_gpu:
            if owned:
                ray.shutdown()
            raise ConfigError(f"a run asks for {cpus:g} CPU and {gpus:g} GPU but the Ray cluster has {have_cpu:g} "
                              f"CPU and {have_gpu:g} GPU in all; lower --cpus-per-run / --gpus-per-run")
        where = address or f"a local Ray instance ({have_cpu:g} CPU, {have_gpu:g} GPU)"
        return cls(ray, where, cpus, gpus, owned)

    def map(self, fn: Callable[..., Any], items: Sequence[Any], *args: Any) -> Iterator[tuple[Any, Any]]:
        """``(item, fn(item, *args))`` for each item, run as Ray tasks, yielded as they finish.

        A task whose worker died is retried by Ray (the run resumes from its checkpoint); a task that
        still fails yields ``(1, "error: ...")`` like a failed run.
        """
        ray = self.ray
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus)(fn)
        refs = {task.remote(item, *args): item for item in items}
        pending = list(refs)
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                for ref in done:
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as e:
                        result = (1, f"error: the Ray task failed: {_first_line(e)}")
                    yield refs[ref], result
        finally:
            if self.owned:
                ray.shutdown()
