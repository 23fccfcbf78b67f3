"""The one pickle ngl reads: CIFAR's "python version" batches, through an unpickler that resolves
only NumPy's array reconstruction (no other class or function, so no code runs).

>>> import pickle, numpy as np
>>> restricted_loads(pickle.dumps({"data": np.arange(3, dtype=np.uint8)}, protocol=2))["data"]
array([0, 1, 2], dtype=uint8)
>>> restricted_loads(pickle.dumps(len))
Traceback (most recent call last):
...
_pickle.UnpicklingError: global builtins.len is not allowed in a dataset pickle
"""
from __future__ import annotations

import io
import pickle

__all__ = ["restricted_loads"]

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a dataset pickle")
        return super().find_class(module, name)


def restricted_loads(data: bytes) -> object:
    """Unpickle ``data`` (Python 2 pickles: bytes as latin1) allowing only NumPy arrays."""
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()
