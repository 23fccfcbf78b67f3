"""NGL's fused value-and-gradient from logits and integer labels, in one forward pass.

The per-class term of a wrong class depends on ``p`` alone, ``h(p) = e^{α-p} - cos(cos(sin p))``;
``h`` and ``h'`` are degree-8 Chebyshev interpolants on ``[0, 1]`` (abs. error < 2e-7 on values of
4 to 11), evaluated by Horner's rule; the true class gets an exact correction::

    value = (1/C) (sum_c h(p_c) + e^{α-2p_t} - e^{α-p_t})
    grad  = (1/C) p (dL/dp - sum_c p_c dL/dp_c),  dL/dp_c = h'(p_c) + [c = t](e^{α-p_t} - 2e^{α-2p_t})

Three implementations, picked by :func:`value_and_grad`:

1. the native C kernel (CPU, float32; :mod:`ngl.losses._native`);
2. the *fused* path: :func:`forward` compiled by ``torch.compile`` (Inductor writes one C++ or
   Triton kernel per pass), used on CUDA and on CPU when the native kernel is unavailable;
   ``NGL_FUSED=0`` turns it off;
3. :func:`forward` as plain torch ops, the fallback where compiling is unavailable.

``torch.compile`` of a loss sees the whole thing as one custom op, ``ngl::value_and_grad``, with
a fake (meta) implementation and a registered backward; eager code uses :class:`FastNGL`, an
``autograd.Function`` with less per-call overhead.
"""
from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from . import _native

__all__ = ["DEGREE", "poly", "forward", "native_forward", "fused_forward", "value_and_grad",
           "fused_enabled", "IMPLEMENTATIONS", "FastNGL", "compiled_value"]

DEGREE = 8   # must equal DEG in _ngl_kernel.c


@functools.lru_cache(maxsize=16)
def poly(alpha: float) -> np.ndarray:
    """Monomial coefficients in ``u = 2p - 1`` of ``h`` (row 0) and ``dh/dp`` (row 1), highest
    degree first: degree-8 Chebyshev interpolants on ``p`` in ``[0, 1]``."""
    from numpy.polynomial import chebyshev as cheb

    def h(u):
        p = (u + 1) / 2
        return np.exp(alpha - p) - np.cos(np.cos(np.sin(p)))

    def dh(u):
        p = (u + 1) / 2
        return -np.exp(alpha - p) - np.sin(np.cos(np.sin(p))) * np.sin(np.sin(p)) * np.cos(p)

    return np.stack([cheb.cheb2poly(cheb.chebinterpolate(f, DEGREE))[::-1] for f in (h, dh)])


@functools.lru_cache(maxsize=16)
def _poly_floats(alpha: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
    coef_h, coef_dh = poly(alpha)
    return tuple(map(float, coef_h)), tuple(map(float, coef_dh))


@functools.lru_cache(maxsize=16)
def _poly_f32(alpha: float) -> tuple[np.ndarray, int, int]:
    """float32 coefficients for the C kernel and their addresses (the array keeps them alive)."""
    coef = np.ascontiguousarray(poly(alpha), dtype=np.float32)
    return coef, coef[0].ctypes.data, coef[1].ctypes.data


def _horner(coef: tuple[float, ...], u: Tensor) -> Tensor:
    out = coef[0] * u + coef[1]
    for c in coef[2:]:
        out.mul_(u).add_(c)      # in place on a fresh tensor: no allocation per step in eager
    return out


def forward(logits: Tensor, index: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Per-sample value and logit gradient with torch ops (any device)."""
    return _forward(logits, index, alpha, *_poly_floats(alpha))


def _forward(logits: Tensor, index: Tensor, alpha: float, coef_h: tuple[float, ...],
             coef_dh: tuple[float, ...]) -> tuple[Tensor, Tensor]:
    """:func:`forward` with the coefficients given: pure torch ops, so Inductor can fuse it."""
    p = torch.softmax(logits, dim=1)
    num_classes = p.shape[1]
    u = p * 2 - 1
    idx = index.unsqueeze(1)
    pt = p.gather(1, idx)
    e1, e2 = torch.exp(alpha - pt), torch.exp(alpha - 2 * pt)
    value = (_horner(coef_h, u).sum(1, keepdim=True) + e2 - e1).squeeze(1) / num_classes
    classes = torch.arange(num_classes, device=p.device).view((1, -1) + (1,) * (p.ndim - 2))
    dh = _horner(coef_dh, u) + (classes == idx) * (e1 - 2 * e2)   # true class: d/dp e^{a-2p}
    grad = p * (dh - (p * dh).sum(1, keepdim=True)) / num_classes  # softmax backward
    return value, grad


def native_forward(lib, logits: Tensor, index: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """The same with the native C kernel (CPU, float32)."""
    z = logits.contiguous()
    t = index.contiguous()
    batch, num_classes = z.shape[0], z.shape[1]
    spatial = z.numel() // max(batch * num_classes, 1)
    value = torch.empty(t.shape, dtype=z.dtype)
    grad = torch.empty_like(z)
    if z.numel() == 0:
        return value, grad
    _, coef_h, coef_dh = _poly_f32(alpha)
    status = lib.ngl_forward_f32(z.data_ptr(), t.data_ptr(), batch, num_classes, spatial,
                                 coef_h, coef_dh, DEGREE, alpha, value.data_ptr(), grad.data_ptr())
    if status != 0:
        raise RuntimeError(f"ngl: native kernel failed with status {status}")
    return value, grad


# --------------------------------------------------------------------------------------------
# The fused (compiled) path
# --------------------------------------------------------------------------------------------
_FUSED_BROKEN: list[str] = []     # set once when compiling failed: never retried


@functools.lru_cache(maxsize=4)
def _can_compile(device_type: str) -> bool:
    if device_type == "cuda":
        from torch.utils._triton import has_triton

        return has_triton()
    return device_type == "cpu" and _native._compiler() is not None   # Inductor needs one too


def fused_enabled(device: torch.device) -> bool:
    """Whether :func:`fused_forward` is used on ``device`` (``NGL_FUSED=0`` turns it off)."""
    return os.environ.get("NGL_FUSED", "1") != "0" and not _FUSED_BROKEN and _can_compile(device.type)


@functools.lru_cache(maxsize=8)
def _compiled(alpha: float):
    coef_h, coef_dh = _poly_floats(alpha)

    def fn(logits: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        return _forward(logits, index, alpha, coef_h, coef_dh)     # constants baked in
    return torch.compile(fn, dynamic=None, fullgraph=True)


def fused_forward(logits: Tensor, index: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """:func:`forward` compiled by Inductor; compiled on first use per alpha and shape family."""
    return _compiled(alpha)(logits, index)


def value_and_grad(logits: Tensor, index: Tensor, alpha: float,
                   impl: str | None = None) -> tuple[Tensor, Tensor]:
    """Per-sample values and logit gradients by the fastest implementation available, or by
    ``impl`` (``"native"``, ``"fused"`` or ``"torch"``; benchmarks compare them)."""
    if impl is not None:
        return IMPLEMENTATIONS[impl](logits, index, alpha)
    if logits.device.type == "cpu" and logits.dtype == torch.float32:
        lib = _native.kernel()
        if lib is not None:
            return native_forward(lib, logits, index, alpha)
    if fused_enabled(logits.device) and logits.numel():
        try:
            return fused_forward(logits, index, alpha)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:   # no working compiler/Triton here: eager torch ops from now on
            _FUSED_BROKEN.append(f"{type(exc).__name__}: {exc}"[:200])
            warnings.warn(f"ngl: compiling the fused NGL path failed ({_FUSED_BROKEN[0]}); using "
                          f"torch ops", RuntimeWarning, stacklevel=2)
    return forward(logits, index, alpha)


def _native_or_fail(logits: Tensor, index: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    lib = _native.kernel()
    if lib is None:
        raise RuntimeError("ngl: the native NGL kernel is unavailable (NGL_NATIVE=0 or no C compiler)")
    return native_forward(lib, logits, index, alpha)


#: The implementations by name, for ``value_and_grad(..., impl=name)``.
IMPLEMENTATIONS = {"native": _native_or_fail, "fused": lambda z, t, a: fused_forward(z, t, a),
                   "torch": lambda z, t, a: forward(z, t, a)}


# --------------------------------------------------------------------------------------------
# What autograd and torch.compile see
# --------------------------------------------------------------------------------------------
@torch.library.custom_op("ngl::value_and_grad", mutates_args=())
def _value_and_grad_op(logits: Tensor, index: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    value, grad = value_and_grad(logits, index, alpha)
    return value.contiguous(), grad.contiguous()


@_value_and_grad_op.register_fake
def _(logits: Tensor, index: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    return logits.new_empty(index.shape), logits.new_empty(logits.shape)


@torch.library.custom_op("ngl::value_and_grad_backward", mutates_args=())
def _backward_op(grad: Tensor, grad_value: Tensor) -> Tensor:
    return grad * grad_value.unsqueeze(1)


@_backward_op.register_fake
def _(grad: Tensor, grad_value: Tensor) -> Tensor:
    return torch.empty_like(grad)


def _refuse_double_backward(ctx, grad_out: Tensor):
    raise RuntimeError("ngl: NGL's fused gradient is first-order only; use ngl_loss(..., fast=False) "
                       "for higher-order gradients")


def _setup_context(ctx, inputs, output) -> None:
    ctx.save_for_backward(output[1])
    ctx.mark_non_differentiable(output[1])


def _backward(ctx, grad_value: Tensor, _grad_grad):
    (grad,) = ctx.saved_tensors
    return _backward_op(grad, grad_value), None, None


_backward_op.register_autograd(_refuse_double_backward)
_value_and_grad_op.register_autograd(_backward, setup_context=_setup_context)


def compiled_value(logits: Tensor, index: Tensor, alpha: float) -> Tensor:
    """Per-sample values through the custom op (what ``torch.compile`` traces)."""
    return torch.ops.ngl.value_and_grad(logits, index, alpha)[0]


class FastNGL(torch.autograd.Function):
    """Eager form: per-sample NGL from logits and integer labels, the gradient computed in the
    forward pass (first-order only: double backward raises)."""

    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor, alpha: float, total: float | None,
                impl: str | None = None) -> Tensor:
        """Per-sample values, or with ``total`` their sum times ``total`` (the fused
        unweighted mean/sum, which saves an autograd node); ``impl`` as :func:`value_and_grad`."""
        value, grad = value_and_grad(logits, index, alpha, impl)
        ctx.save_for_backward(grad)
        ctx.total = total
        return value if total is None else value.sum() * total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        (grad,) = ctx.saved_tensors
        scale = grad_out.unsqueeze(1) if ctx.total is None else grad_out * ctx.total
        return grad * scale, None, None, None, None
