"""``--compile``: ``torch.compile`` of the network a step runs, in place, with a mode chosen by device.

What is compiled is the supernet's (or network's) forward, and with it, through AOTAutograd, its
backward; the strategy's code around it (mixing weights, ``torch.autograd.grad``, the optimizers) stays
eager. The mixing weights, temperatures and one-hot samples reach the compiled forward as tensors, so
new values do not recompile; the simplifier's merged kernels are built inside the forward from them
(tensor code, traced once). ``nn.Module.compile`` compiles in place, so ``state_dict`` keys,
checkpoints and the strategies' access to the module's attributes are unchanged.

Modes: on CUDA ``reduce-overhead`` (CUDA graphs: the simplified step is bound by kernel launches
there, ``docs/profile.md``), elsewhere ``default``.
"""

from __future__ import annotations

import shutil

import torch
from torch import nn

from ..config import ConfigError

#: The compiler backend. Tests set ``aot_eager`` (Dynamo and AOTAutograd trace as in a real run, without
#: Inductor's C++ code generation, which takes minutes for even a tiny supernet on a loaded 2-core machine).
BACKEND = "inductor"


def compile_mode(device: torch.device) -> str:
    """``reduce-overhead`` (CUDA graphs) on CUDA, ``default`` elsewhere."""
    return "reduce-overhead" if device.type == "cuda" else "default"


def check_compile(device: torch.device) -> None:
    """A ConfigError (one line) when this torch or machine cannot compile for ``device``."""
    if not hasattr(torch, "compile") or not hasattr(nn.Module, "compile"):
        raise ConfigError(f"--compile needs torch >= 2.2 (this is {torch.__version__}); drop --compile")
    try:
        import importlib

        importlib.import_module("torch._dynamo")
    except Exception as e:  # a Python that this torch's compiler does not support
        raise ConfigError(f"--compile is not available with this torch ({type(e).__name__}: {e}); "
                          "drop --compile") from None
    if device.type == "cpu" and not (shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")):
        raise ConfigError("--compile on the CPU needs a C++ compiler (g++ or clang++) on the PATH; drop --compile")


def compile_options(device: torch.device) -> dict:
    """The keyword arguments of ``torch.compile`` for ``device`` (a mode only for Inductor)."""
    return {"backend": BACKEND, **({"mode": compile_mode(device)} if BACKEND == "inductor" else {})}


def compile_module(module: nn.Module, device: torch.device) -> nn.Module:
    """``module`` with its forward compiled in place (``nn.Module.compile``), returned for chaining."""
    module.compile(**compile_options(device))
    return module


def compiled_frames() -> int:
    """Frames Dynamo has compiled so far in this process (their growth after warm-up is recompilations)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
