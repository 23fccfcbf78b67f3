"""Build and load ngl's native kernels: a C or C++ source compiled on first use with the system
compiler into a shared library, cached per source, flags and CPU, loaded with ctypes.

Torch- and Keras-free: NGL's PyTorch kernel (:mod:`ngl.losses._native`) and its XLA custom call
for Keras on jax (:mod:`ngl.keras._xla`) both build through it. ``NGL_CACHE_DIR`` moves the cache
(default ``~/.cache/ngl``).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sysconfig
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

__all__ = ["cache_dir", "compiler", "build"]


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


def compiler(*, cxx: bool = False) -> str | None:
    """The C (or C++) compiler to use: ``$CC`` / ``$CXX``, Python's own, then ``cc``/``gcc``
    (``c++``/``g++``); None if there is none."""
    env, config, names = ("CXX", "CXX", ("c++", "g++")) if cxx else ("CC", "CC", ("cc", "gcc"))
    for cand in (os.environ.get(env), (sysconfig.get_config_var(config) or "").split(" ")[0], *names):
        if cand and shutil.which(cand):
            return cand
    return None


def build(source: Path, *, name: str, flags: Sequence[str], cc: str,
          depends: Sequence[Path] = ()) -> ctypes.CDLL | None:
    """``source`` compiled with ``cc`` and ``flags`` into ``<cache>/<name>_<key>.so`` (``key``
    hashes the source, the files it ``depends`` on, the flags and the CPU) and loaded; None, with a
    warning, if that fails. Concurrent builders never see half a file (atomic rename)."""
    digest = hashlib.sha256()
    for path in (source, *depends):
        digest.update(Path(path).read_bytes())
    digest.update(" ".join(flags).encode() + _cpu_signature().encode())
    lib_path = cache_dir() / f"{name}_{digest.hexdigest()[:16]}.so"
    try:
        if not lib_path.exists():
            lib_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=lib_path.parent, suffix=".so")
            os.close(fd)
            try:
                subprocess.run([cc, *flags, str(source), "-o", tmp, "-lm"], check=True,
                               capture_output=True, timeout=300)
                os.replace(tmp, lib_path)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        return ctypes.CDLL(str(lib_path))
    except (OSError, subprocess.SubprocessError) as exc:
        warnings.warn(f"ngl: native kernel {name} unavailable ({exc.__class__.__name__}); using the "
                      f"portable path", RuntimeWarning, stacklevel=3)
        return None
