"""Export a discrete network for deployment: TorchScript (always) or ONNX (``pip install onnx``).

The network comes from a training run (its trained weights) or from a cell string / search result
(freshly initialized from ``seed``). Every export is checked: the exported model is run on a
random batch of another size than the one it was exported with, and its outputs must equal the
PyTorch model's (eval mode). A ``FILE.json`` beside the export records the architecture, the input
shape and the normalization a caller must apply (``(x / 255 - mean) / std`` per channel).
"""

from __future__ import annotations

import importlib.util
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import ConfigError
from .training.arch import resolve_arch
from .training.cost import count_mult_adds, count_parameters
from .training.network import build_network, load_trained, network_meta

FORMATS = ("torchscript", "onnx")
ONNX_OPSET = 17
ONNX_HINT = "ONNX export needs the onnx package: pip install onnx (or pip install 'toponas[onnx]')"


class ExportError(RuntimeError):
    """The network could not be exported, or the export does not reproduce the PyTorch model."""


@dataclass
class ExportReport:
    """What was written and how closely the export matches the PyTorch model."""

    path: Path
    format: str
    method: str
    parameters: int
    mult_adds: int
    max_abs_diff: float | None
    meta: dict[str, Any]
    trained: bool


def load_network(arch: str, space: str | None = None, channels: int = 16, cells: int = 5,
                 num_classes: int = 10, image_size: int = 32, seed: int = 0) -> tuple[nn.Module, dict, bool]:
    """``(model in eval mode, description, trained?)`` for ARCH as the ``export`` command takes it.

    A training run (directory, ``train.json``, ``model.pt`` or its ``checkpoint.pt``) gives its
    trained weights and its own sizes; anything else is built fresh with the given sizes and seed.
    """
    source = resolve_arch(arch, space)
    if source.kind == "train":
        if source.weights is None:
            raise ConfigError(f"{source.origin}: the run has no model.pt or checkpoint.pt with weights")
        model, meta = load_trained(source.weights)
        return model, meta, True
    torch.manual_seed(seed)
    model = build_network(source.space, source.genotype, channels, cells, num_classes)
    meta = network_meta(source.space, source.genotype, channels, cells, num_classes, image_size)
    return model.eval(), meta, False


def _example(meta: dict[str, Any], batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    size = meta["image_size"]
    return torch.randn(batch, meta.get("in_channels", 3), size, size, generator=generator)


def to_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> str:
    """Save ``model`` as TorchScript; ``torch.jit.script`` where the model allows it, else a trace.

    The NAS-Bench-201 network is traced (its cells hold a Python genotype object that scripting
    cannot type); its control flow is fixed by the genotype, so the trace is exact for any batch size.
    PyTorch >= 2.10 marks TorchScript deprecated (it still works); those warnings are silenced here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            scripted = torch.jit.script(model)
            method = "script"
        except Exception:  # scripting cannot compile the module: trace its (static) control flow
            scripted = torch.jit.trace(model, example)
            method = "trace"
        torch.jit.save(scripted, str(path))
    return method


def to_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> str:
    """Save ``model`` as ONNX (opset 17) with a dynamic batch dimension, input ``input``, output ``logits``."""
    if importlib.util.find_spec("onnx") is None:
        raise ExportError(ONNX_HINT)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(model, (example,), str(path), dynamo=False, opset_version=ONNX_OPSET,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return f"torch.onnx (opset {ONNX_OPSET})"


def run_exported(path: Path, fmt: str, x: torch.Tensor) -> torch.Tensor | None:
    """Run an exported file on ``x`` (None for ONNX when onnxruntime is not installed)."""
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loaded = torch.jit.load(str(path))
        with torch.no_grad():
            return loaded(x)
    if importlib.util.find_spec("onnxruntime") is None:
        return None
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"input": x.numpy()})[0])


def export(arch: str, fmt: str, out: str | Path, space: str | None = None, channels: int = 16, cells: int = 5,
           num_classes: int = 10, image_size: int = 32, seed: int = 0, atol: float = 1e-4) -> ExportReport:
    """Export ARCH to ``out`` in ``fmt`` and check its outputs against the PyTorch model."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; choose from {', '.join(FORMATS)}")
    model, meta, trained = load_network(arch, space, channels, cells, num_classes, image_size, seed)
    shape = (meta.get("in_channels", 3), meta["image_size"], meta["image_size"])
    parameters, mult_adds = count_parameters(model), count_mult_adds(model, shape)
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = _example(meta, 2, seed)
    try:
        method = (to_torchscript if fmt == "torchscript" else to_onnx)(model, example, path)
    except ExportError:
        raise
    except Exception as e:
        raise ExportError(f"{fmt} export failed: {e}") from e
    check = _example(meta, 3, seed + 1)  # another batch size than the export's example
    with torch.no_grad():
        expected = model(check)
    got = run_exported(path, fmt, check)
    diff = None if got is None else float((got - expected).abs().max())
    if diff is not None and not torch.allclose(got, expected, rtol=1e-4, atol=atol):
        raise ExportError(f"the exported {fmt} model differs from the PyTorch model by up to {diff:.3g}")
    info = {**meta, "export_format": fmt, "export_method": method, "input_shape": ["batch", *shape],
            "parameters": parameters, "mult_adds": mult_adds, "trained": trained, "max_abs_diff": diff}
    path.with_name(path.name + ".json").write_text(json.dumps(info, indent=2) + "\n")
    return ExportReport(path, fmt, method, parameters, mult_adds, diff, meta, trained)
