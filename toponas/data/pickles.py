"""Restricted unpickling of the numpy-array batch files CIFAR and ImageNet16 are distributed as.

Only numpy arrays and plain containers can be rebuilt, so a tampered batch file cannot run code.
"""

from __future__ import annotations

import io
import pickle
from typing import Any

from .dataset import DataError

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _NumpyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays are expected")
        return super().find_class(module, name)


def load_batch(data: bytes, where: str) -> dict[str, Any]:
    """Unpickle one batch file (a dict of numpy arrays/lists) with str keys; DataError if it is not one."""
    try:
        obj = _NumpyUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as exc:  # unpickling raises many types (UnpicklingError, EOFError, ValueError, ...)
        raise DataError(
            f"{where} is not a readable pickled batch ({type(exc).__name__}: {exc}); the file is corrupt "
            "or truncated: download or copy it again"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"{where} should hold a dict of arrays, but holds a {type(obj).__name__}")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}
