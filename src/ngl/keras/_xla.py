"""NGL's native CPU kernel (:file:`ngl/losses/_ngl_kernel.c`) as an XLA custom call, for Keras on
jax: float32 logits with integer labels or dense targets, on the CPU.

XLA's CPU code for the fast path's polynomials materialises about five ``(B, C)`` intermediates
and costs about 2x cross entropy; the kernel is one pass of value and gradient. ``_ngl_xla.cc``
wraps it with jaxlib's FFI headers (``jax.ffi.include_dir()``); it is compiled on first use with
the system C++ compiler and cached like the PyTorch kernel (:mod:`ngl.kernels`). Where no
compiler works, or with ``NGL_NATIVE=0``, :func:`available` is False and the polynomial path runs.
Torch is never imported.
"""
from __future__ import annotations

import functools
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np

from .. import kernels

__all__ = ["available", "per_sample"]

_SHIM = Path(__file__).with_name("_ngl_xla.cc")
_KERNEL = Path(__file__).parents[1] / "losses" / "_ngl_kernel.c"
_FLAGS = ["-O3", "-march=native", "-fno-math-errno", "-fno-trapping-math", "-fopenmp-simd", "-fPIC",
          "-shared", "-std=c++17", "-DNDEBUG"]


@functools.lru_cache(maxsize=1)
def available() -> bool:
    """Whether the custom calls ``ngl_labels_f32`` / ``ngl_dense_f32`` are registered with XLA."""
    if os.environ.get("NGL_NATIVE", "1") == "0":
        return False
    try:                                  # jax.ffi with ffi_call(vmap_method=...): jax 0.4.36 and later
        import jax.ffi

        if "vmap_method" not in inspect.signature(jax.ffi.ffi_call).parameters:
            return False
    except (ImportError, AttributeError):
        return False
    cxx = kernels.compiler(cxx=True)
    if cxx is None:
        return False
    flags = [*_FLAGS, "-I", jax.ffi.include_dir(), "-I", str(_KERNEL.parent)]
    lib = kernels.build(_SHIM, name="ngl_xla", flags=flags, cc=cxx, depends=[_KERNEL])
    if lib is None:
        return False
    for name, symbol in (("ngl_labels_f32", lib.NglLabels), ("ngl_dense_f32", lib.NglDense)):
        jax.ffi.register_ffi_target(name, jax.ffi.pycapsule(symbol), platform="cpu")
    return True


def applies(x: Any) -> bool:
    """float32 predictions on jax's CPU backend, the custom call registered."""
    import jax

    return str(x.dtype) == "float32" and jax.default_backend() == "cpu" and available()


@functools.lru_cache(maxsize=16)
def _coefficients(alpha: float) -> np.ndarray:
    from ._ngl_fast import coefficients

    coef = coefficients(alpha)
    return np.asarray([coef[k] for k in ("h", "dh", "c", "dc")], dtype=np.float32).ravel()


def _call(z: Any, t: Any, alpha: float) -> tuple[Any, Any]:
    import jax
    import jax.numpy as jnp

    name = "ngl_dense_f32" if t.ndim == z.ndim else "ngl_labels_f32"
    out = (jax.ShapeDtypeStruct(z.shape[:-1], jnp.float32), jax.ShapeDtypeStruct(z.shape, jnp.float32))
    return jax.ffi.ffi_call(name, out, vmap_method="broadcast_all")(
        z, t, alpha=np.float32(alpha), coef=_coefficients(alpha))


@functools.lru_cache(maxsize=1)
def _ngl():
    import jax

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
    def ngl(z, t, alpha):
        return _call(z, t, alpha)[0]

    def backward(alpha, grad, upstream):
        return upstream[..., None] * grad, None

    ngl.defvjp(lambda z, t, alpha: _call(z, t, alpha), backward)
    return ngl


def per_sample(x: Any, y: Any, alpha: float, labels: bool) -> Any:
    """Per-sample NGL of logits ``x`` (``(..., C)``, float32) against labels ``(...)`` or dense
    targets ``(..., C)``; the gradient is the kernel's (first order)."""
    import jax.numpy as jnp

    num_classes = x.shape[-1]
    target = y.reshape(-1).astype(jnp.int32) if labels else y.reshape(-1, num_classes)
    return _ngl()(x.reshape(-1, num_classes), target, float(alpha)).reshape(x.shape[:-1])
