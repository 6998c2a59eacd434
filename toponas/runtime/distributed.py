"""One run over many processes (``torchrun --nproc_per_node N -m toponas search ...``): data parallel.

Every process takes its share of each global batch (weight and architecture batch alike), computes
its gradients, and every gradient of a parameter (supernet weights *and* architecture parameters) is
averaged across processes the moment autograd computes it, before clipping or any optimizer sees it:
the semantics of ``DistributedDataParallel``, in which the update is the gradient of the global
batch's mean loss. ``DistributedDataParallel`` itself is not used: its reducer hooks the gradient
*accumulation* of ``.backward()``, and the strategies take their gradients with ``torch.autograd.grad``
(weights and architecture parameters apart, DARTS-V2's extra gradients), which it never sees; a hook on
each parameter sees every one of them. All processes then apply the same averaged update, so their
weights and architecture parameters stay equal without any broadcast (checked after every epoch).

Batch norm is per process (no SyncBatchNorm), as in the reference's single-GPU search with the
per-process batch: a run over ``N`` processes with global batch ``B`` normalizes over ``B / N`` images.

The launcher sets ``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; with
none set (or ``WORLD_SIZE=1``) nothing here does anything. Rank 0 alone writes files and prints.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..config import ConfigError


@dataclass(frozen=True)
class World:
    """This process's place among the run's processes (``size == 1``: a plain one-process run)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> World:
        """Read the launcher's environment (``torchrun``); no environment: a world of one."""
        try:
            size = int(os.environ.get("WORLD_SIZE", "1"))
            rank = int(os.environ.get("RANK", "0"))
            local = int(os.environ.get("LOCAL_RANK", str(rank)))
        except ValueError:
            raise ConfigError("WORLD_SIZE, RANK and LOCAL_RANK must be whole numbers (set by torchrun)") from None
        if size < 1 or not 0 <= rank < size:
            raise ConfigError(f"RANK {rank} does not lie in 0..WORLD_SIZE-1 (WORLD_SIZE {size})")
        return cls(rank, size, local)

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes checkpoints, logs and results."""
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        """A global batch must split evenly over the processes."""
        if batch_size % self.size:
            raise ConfigError(f"--batch-size {batch_size} is not divisible by the {self.size} processes "
                              f"(WORLD_SIZE); pass a multiple of {self.size}")

    def check_resume(self, saved_size: int) -> None:
        """A run resumes with the number of processes it was started with (the data order depends on it)."""
        if saved_size != self.size:
            raise ConfigError(f"the run was started with {saved_size} process(es) and cannot resume with "
                              f"{self.size}; resume it with torchrun --nproc_per_node {saved_size}"
                              if saved_size > 1 else
                              f"the run was started in one process and cannot resume with {self.size}; "
                              "resume it without torchrun")

    def device(self, device: torch.device) -> torch.device:
        """On CUDA each process takes the GPU of its local rank (unless one was named)."""
        if self.distributed and device.type == "cuda" and device.index is None:
            device = torch.device("cuda", self.local_rank)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return device

    def init(self, device: torch.device) -> None:
        """Join the process group (NCCL on CUDA, gloo on the CPU); a world of one joins nothing."""
        if not self.distributed or torch.distributed.is_initialized():
            return
        if not torch.distributed.is_available():
            raise ConfigError("this torch has no torch.distributed; run in one process")
        backend = "nccl" if device.type == "cuda" else "gloo"
        torch.distributed.init_process_group(backend, rank=self.rank, world_size=self.size)

    def shard(self, tensors: Sequence[torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """This process's contiguous share of each tensor's first dimension (sizes differ by at most one)."""
        if not self.distributed:
            return tuple(tensors)
        return tuple(torch.tensor_split(t, self.size)[self.rank] for t in tensors)

    def any(self, flag: bool) -> bool:
        """True on every process when it is true on one (a stop signal, so that all stop at the same step)."""
        if not self.distributed:
            return flag
        t = torch.tensor([1.0 if flag else 0.0])
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return bool(t.item() > 0)

    def in_step(self, state: Any) -> bool:
        """Whether every process holds the same values as rank 0: the floating-point tensors anywhere in
        ``state`` (tensors, and dicts, lists and tuples of them), one broadcast of all of them."""
        if not self.distributed:
            return True
        flat = [t.detach().reshape(-1).to(torch.float64) for t in _tensors(state) if t.is_floating_point()]
        if not flat:
            return True
        mine = torch.cat(flat).cpu()
        theirs = mine.clone()
        torch.distributed.broadcast(theirs, src=0)
        same = torch.tensor([1.0 if torch.equal(mine, theirs) else 0.0])
        torch.distributed.all_reduce(same, op=torch.distributed.ReduceOp.MIN)
        return bool(same.item() > 0)

    def close(self) -> None:
        """Leave the process group (at the end of a run)."""
        if self.distributed and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def _tensors(state: Any) -> Iterator[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        yield state
    elif isinstance(state, dict):
        for value in state.values():
            yield from _tensors(value)
    elif isinstance(state, (list, tuple)):
        for value in state:
            yield from _tensors(value)


class GradientAverage:
    """Averages, across processes, every gradient autograd computes for the attached parameters.

    Each process's gradient is weighted by its share of the global batch (:attr:`share`, set per
    step), so the sum over processes is the gradient of the global batch's mean loss even when a last,
    smaller batch does not split evenly. Parameters created later (a supernet that changes between
    epochs) are attached by calling :meth:`attach` again; each is hooked once.
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self.share = 1.0 / world.size

    def attach(self, parameters: Iterable[torch.Tensor]) -> None:
        if not self.world.distributed:
            return
        for p in parameters:
            if p.requires_grad and getattr(p, "_toponas_averaged_by", None) is not self:
                p.register_hook(self._average)
                p._toponas_averaged_by = self  # hooked once (a tensor's == is elementwise: no set of them)

    def set_batch(self, local: int, total: int) -> None:
        """This step's batch sizes: this process's share and the global batch."""
        self.share = local / total

    def _average(self, grad: torch.Tensor) -> torch.Tensor:
        summed = grad.detach() * self.share
        torch.distributed.all_reduce(summed)
        # A gradient that is itself differentiated (create_graph) keeps its local graph, with the value of the average.
        return grad + (summed - grad).detach() if grad.requires_grad else summed
