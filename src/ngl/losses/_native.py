"""The native CPU kernel of NGL (``_ngl_kernel.c``): built on first use with the system C compiler,
cached per source and CPU, loaded with ctypes. Where no compiler works, :func:`kernel` returns None
and NGL runs its pure-torch fast path.

Set ``NGL_NATIVE=0`` to disable it, ``NGL_CACHE_DIR`` to move the cache (default ``~/.cache/ngl``).
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
import warnings
from pathlib import Path

__all__ = ["kernel", "cache_dir"]

_SOURCE = Path(__file__).with_name("_ngl_kernel.c")
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fPIC", "-shared", "-std=gnu99"]


def cache_dir() -> Path:
    return Path(os.environ.get("NGL_CACHE_DIR", Path.home() / ".cache" / "ngl")) / "kernels"


def _cpu_signature() -> str:
    """Model name and feature flags: a build for one CPU is never loaded on another."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [ln for ln in lines if ln.startswith(("model name", "flags", "Features"))][:2]
        return "\n".join(keep)
    except OSError:
        return platform.processor()


def _compiler() -> str | None:
    for cand in (os.environ.get("CC"), (sysconfig.get_config_var("CC") or "").split(" ")[0], "cc", "gcc"):
        if cand and shutil.which(cand):
            return cand
    return None


@functools.lru_cache(maxsize=1)
def kernel() -> ctypes.CDLL | None:
    """The loaded library (``ngl_labels_f32``, ``ngl_dense_f32``), or None if disabled or it cannot be built."""
    if os.environ.get("NGL_NATIVE", "1") == "0":
        return None
    cc = _compiler()
    if cc is None:
        return None
    source = _SOURCE.read_bytes()
    key = hashlib.sha256(source + " ".join(_FLAGS).encode() + _cpu_signature().encode()).hexdigest()[:16]
    lib_path = cache_dir() / f"ngl_kernel_{key}.so"
    try:
        if not lib_path.exists():
            lib_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=lib_path.parent, suffix=".so")
            os.close(fd)
            try:
                subprocess.run([cc, *_FLAGS, str(_SOURCE), "-o", tmp, "-lm"], check=True,
                               capture_output=True, timeout=120)
                os.replace(tmp, lib_path)       # atomic: concurrent builders never see half a file
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        lib = ctypes.CDLL(str(lib_path))
    except (OSError, subprocess.SubprocessError) as exc:
        warnings.warn(f"ngl: native NGL kernel unavailable ({exc.__class__.__name__}); using the "
                      f"torch fast path", RuntimeWarning, stacklevel=2)
        return None
    fp, i64, f32, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_int
    lib.ngl_labels_f32.argtypes = [fp, fp, i64, i64, i64, fp, i32, f32, i64, i32, fp, fp, fp, fp]
    lib.ngl_dense_f32.argtypes = [fp, fp, i64, i64, i64, fp, i32, f32, i32, fp, fp, fp]
    lib.ngl_labels_f32.restype = lib.ngl_dense_f32.restype = i32
    return lib
