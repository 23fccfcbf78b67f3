"""The native CPU kernel of NGL (``_ngl_kernel.c``): built on first use with the system C compiler,
cached per source and CPU (:mod:`ngl.kernels`), loaded with ctypes. Where no compiler works,
:func:`kernel` returns None and NGL runs its pure-torch fast path.

Set ``NGL_NATIVE=0`` to disable it, ``NGL_CACHE_DIR`` to move the cache (default ``~/.cache/ngl``).
"""
from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

from .. import kernels
from ..kernels import cache_dir

__all__ = ["kernel", "cache_dir", "SOURCE", "FLAGS"]

SOURCE = Path(__file__).with_name("_ngl_kernel.c")
FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fPIC", "-shared"]


def _compiler() -> str | None:
    return kernels.compiler()


@functools.lru_cache(maxsize=1)
def kernel() -> ctypes.CDLL | None:
    """The loaded library (``ngl_labels_f32``, ``ngl_dense_f32``), or None if disabled or it
    cannot be built."""
    if os.environ.get("NGL_NATIVE", "1") == "0":
        return None
    cc = _compiler()
    if cc is None:
        return None
    lib = kernels.build(SOURCE, name="ngl_kernel", flags=[*FLAGS, "-std=gnu99"], cc=cc)
    if lib is None:
        return None
    fp, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
    lib.ngl_labels_f32.argtypes = [fp, fp, i64, i64, i64, fp, i32, f32, i64, i32, fp, fp, fp, fp]
    lib.ngl_dense_f32.argtypes = [fp, fp, i64, i64, i64, fp, i32, f32, i32, fp, fp, fp]
    lib.ngl_labels_f32.restype = lib.ngl_dense_f32.restype = i32
    return lib
