"""NGL's fused value-and-gradient from logits and integer labels or dense (one-hot/soft)
targets, in one forward pass.

With labels, the per-class term of a wrong class depends on ``p`` alone,
``h(p) = e^{α-p} - cos(cos(sin p))``; ``h`` and ``h'`` are degree-8 Chebyshev interpolants on
``[0, 1]`` (abs. error < 2e-7 on values of 4 to 11), evaluated by Horner's rule; the true class
gets an exact correction::

    value = (1/C) (sum_c h(p_c) + e^{α-2p_t} - e^{α-p_t})
    grad  = (1/C) p (dL/dp - sum_c p_c dL/dp_c),  dL/dp_c = h'(p_c) + [c = t](e^{α-p_t} - 2e^{α-2p_t})

With dense targets ``e^{α - p(1+y)}`` is computed (one exponential per element) and only
``k(p) = cos(cos(sin p))`` and ``k'`` are polynomials: ``dL/dp_c = -(1+y_c) e^{α-p_c(1+y_c)} - k'(p_c)``.

Three implementations, picked by :func:`value_and_grad`:

1. the native C kernel (CPU, float32; :mod:`ngl.losses._native`);
2. the *fused* path: :func:`forward` compiled by ``torch.compile`` (Inductor writes one C++ or
   Triton kernel per pass), used on CUDA and on CPU when the native kernel is unavailable;
   ``NGL_FUSED=0`` turns it off;
3. :func:`forward` as plain torch ops, the fallback where compiling is unavailable.

Each returns per-sample values or, with ``reduction="mean"``/``"sum"``, the reduced value and the
gradient of it (the scale folded into the gradient's pass). ``torch.compile`` of a loss sees the
whole thing as one custom op, ``ngl::value_and_grad``, with a fake (meta) implementation and a
registered backward; eager code uses :class:`NativeNGL` (CPU float32: one kernel call that also
checks labels, applies ``ignore_index`` and reduces) or :class:`FastNGL` (any implementation),
``autograd.Function``s with less per-call overhead.
"""
from __future__ import annotations

import ctypes
import functools
import os
import warnings
from typing import Callable

import numpy as np
import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from ..errors import InputError
from . import _native

__all__ = ["DEGREE", "poly", "forward", "native_call", "native_forward", "fused_forward", "value_and_grad",
           "fused_enabled", "IMPLEMENTATIONS", "FastNGL", "NativeNGL", "native_applies", "compiled_value"]

DEGREE = 8   # must equal DEG in _ngl_kernel.c


def _ccs(p):
    return np.cos(np.cos(np.sin(p)))


def _dccs(p):
    return np.sin(np.cos(np.sin(p))) * np.sin(np.sin(p)) * np.cos(p)


@functools.lru_cache(maxsize=16)
def poly(alpha: float) -> np.ndarray:
    """Monomial coefficients in ``u = 2p - 1``, highest degree first, of degree-8 Chebyshev
    interpolants on ``p`` in ``[0, 1]``: rows ``h``, ``dh/dp`` (the wrong-class term
    ``e^{α-p} - cos(cos(sin p))``) and ``k``, ``dk/dp`` (``k = cos(cos(sin p))``, for dense targets)."""
    from numpy.polynomial import chebyshev as cheb

    rows = (lambda p: np.exp(alpha - p) - _ccs(p), lambda p: -np.exp(alpha - p) - _dccs(p), _ccs, _dccs)
    return np.stack([cheb.cheb2poly(cheb.chebinterpolate(lambda u, f=f: f((u + 1) / 2), DEGREE))[::-1]
                     for f in rows])


@functools.lru_cache(maxsize=16)
def _poly_floats(alpha: float) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(map(float, row)) for row in poly(alpha))


@functools.lru_cache(maxsize=16)
def _poly_f32(alpha: float) -> tuple[np.ndarray, int]:
    """float32 coefficients for the C kernel and their address (the array keeps them alive)."""
    coef = np.ascontiguousarray(poly(alpha), dtype=np.float32)
    return coef, coef.ctypes.data


def _horner(coef: tuple[float, ...], u: Tensor) -> Tensor:
    out = coef[0] * u + coef[1]
    for c in coef[2:]:
        out.mul_(u).add_(c)      # in place on a fresh tensor: no allocation per step in eager
    return out


def forward(logits: Tensor, target: Tensor, alpha: float, reduction: str = "none") -> tuple[Tensor, Tensor]:
    """Per-sample values (or their mean/sum, ``reduction``) and the logit gradient of the loss,
    with torch ops (any device); ``target``: class labels (int64, every one valid) or dense targets
    shaped like ``logits``."""
    return _forward(logits, target, alpha, _poly_floats(alpha), reduction=reduction)


def _forward(logits: Tensor, target: Tensor, alpha: float, coef: tuple[tuple[float, ...], ...], *,
             reduction: str = "none", fused: bool = False) -> tuple[Tensor, Tensor]:
    """:func:`forward` with the coefficients given: pure torch ops, so Inductor can fuse it
    (``fused``: the softmax written out, one reciprocal per sample instead of a division per
    element)."""
    if fused:
        ez = torch.exp(logits - logits.amax(1, keepdim=True))
        p = ez * ez.sum(1, keepdim=True).reciprocal()
    else:
        p = torch.softmax(logits, dim=1)
    num_classes = p.shape[1]
    u = p * 2 - 1
    if target.is_floating_point():                 # dense: e^{a - p(1+y)} exact, k as a polynomial
        w = 1 + target
        e = torch.exp(alpha - p * w)
        value = (e - _horner(coef[2], u)).sum(1) / num_classes
        d = -w * e - _horner(coef[3], u)
    else:
        idx = target.unsqueeze(1)
        pt = p.gather(1, idx)
        e1, e2 = torch.exp(alpha - pt), torch.exp(alpha - 2 * pt)
        value = (_horner(coef[0], u).sum(1, keepdim=True) + e2 - e1).squeeze(1) / num_classes
        classes = torch.arange(num_classes, device=p.device).view((1, -1) + (1,) * (p.ndim - 2))
        d = _horner(coef[1], u) + (classes == idx) * (e1 - 2 * e2)   # true class: d/dp e^{a-2p}
    scale = 1.0 / value.numel() if reduction == "mean" else 1.0     # of the gradient, too
    grad = p * (d - (p * d).sum(1, keepdim=True)) * (scale / num_classes)   # softmax backward
    return (value, grad) if reduction == "none" else (value.sum() * scale, grad)


_REDUCE = {"none": 0, "mean": 1, "sum": 2}
_Info = ctypes.c_int64 * 2          # out: samples kept, the bad label
_NOTHING_IGNORED = -(2 ** 63)


def native_call(lib, logits: Tensor, target: Tensor, alpha: float, *, ignore_index: int = _NOTHING_IGNORED,
                reduction: str = "none") -> tuple[Tensor, Tensor]:
    """The native C kernel (CPU, float32 logits; int64 labels or float32 dense targets): the loss
    (per-sample values ``(B, d...)`` for ``reduction="none"``, else the reduced scalar) and the
    logit gradient of its sum. Labels are range-checked by the kernel: a bad one raises
    :class:`~ngl.errors.InputError`."""
    z, t = logits.contiguous(), target.contiguous()
    batch, num_classes = z.shape[0], z.shape[1]
    spatial = z.numel() // max(batch * num_classes, 1)
    per_sample = reduction == "none"
    out = torch.empty(z.shape[:1] + z.shape[2:] if per_sample else ())
    grad = torch.empty_like(z)
    value, total = (out.data_ptr(), None) if per_sample else (None, out.data_ptr())
    address = _poly_f32(alpha)[1]
    if t.is_floating_point():
        status = lib.ngl_dense_f32(z.data_ptr(), t.data_ptr(), batch, num_classes, spatial, address, DEGREE,
                                   alpha, _REDUCE[reduction], value, grad.data_ptr(), total)
    else:
        info = _Info()
        status = lib.ngl_labels_f32(z.data_ptr(), t.data_ptr(), batch, num_classes, spatial, address, DEGREE,
                                    alpha, ignore_index, _REDUCE[reduction], value, grad.data_ptr(), total, info)
        if status == 3:
            raise InputError(f"ngl: class label {info[1]} out of range [0, {num_classes - 1}] for "
                             f"{num_classes} classes")
    if status != 0:
        raise RuntimeError(f"ngl: native kernel failed with status {status}")
    return out, grad


def native_forward(lib, logits: Tensor, target: Tensor, alpha: float,
                   reduction: str = "none") -> tuple[Tensor, Tensor]:
    """:func:`forward` by the native C kernel (CPU, float32)."""
    if logits.numel() == 0:
        return forward(logits, target, alpha, reduction)
    return native_call(lib, logits, target, alpha, reduction=reduction)


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


def _fused_none(alpha: float, coef) -> Callable:
    def none(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return _forward(logits, target, alpha, coef, reduction="none", fused=True)    # constants baked in
    return none


def _fused_mean(alpha: float, coef) -> Callable:
    def mean(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return _forward(logits, target, alpha, coef, reduction="mean", fused=True)
    return mean


def _fused_sum(alpha: float, coef) -> Callable:
    def total(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        return _forward(logits, target, alpha, coef, reduction="sum", fused=True)
    return total


#: One function per reduction: one dynamo code object, so one recompile budget, each.
_FUSED = {"none": _fused_none, "mean": _fused_mean, "sum": _fused_sum}


@functools.lru_cache(maxsize=16)
def _compiled(alpha: float, reduction: str = "none") -> Callable:
    return torch.compile(_FUSED[reduction](alpha, _poly_floats(alpha)), dynamic=None, fullgraph=True)


def fused_forward(logits: Tensor, target: Tensor, alpha: float, reduction: str = "none") -> tuple[Tensor, Tensor]:
    """:func:`forward` compiled by Inductor; compiled on first use per alpha, reduction, target
    kind and shape family."""
    return _compiled(alpha, reduction)(logits, target)


def value_and_grad(logits: Tensor, target: Tensor, alpha: float, impl: str | None = None,
                   reduction: str = "none") -> tuple[Tensor, Tensor]:
    """Per-sample values (or their mean/sum) and the logit gradient of the loss by the fastest
    implementation available, or by ``impl`` (``"native"``, ``"fused"`` or ``"torch"``; benchmarks
    compare them). ``target``: valid int64 labels or dense targets of the logits' shape and dtype."""
    if impl is not None:
        return IMPLEMENTATIONS[impl](logits, target, alpha, reduction)
    if logits.device.type == "cpu" and logits.dtype == torch.float32:
        lib = _native.kernel()
        if lib is not None:
            return native_forward(lib, logits, target, alpha, reduction)
    if fused_enabled(logits.device) and logits.numel():
        try:
            return fused_forward(logits, target, alpha, reduction)
        except torch.OutOfMemoryError:
            raise
        except Exception as exc:   # no working compiler/Triton here: eager torch ops from now on
            if type(exc).__name__ == "FailOnRecompileLimitHit":   # too many shape/dtype variants:
                return forward(logits, target, alpha, reduction)   # this one eager, the rest fused
            _FUSED_BROKEN.append(f"{type(exc).__name__}: {exc}"[:200])
            warnings.warn(f"ngl: compiling the fused NGL path failed ({_FUSED_BROKEN[0]}); using "
                          f"torch ops", RuntimeWarning, stacklevel=2)
    return forward(logits, target, alpha, reduction)


def _native_or_fail(logits: Tensor, target: Tensor, alpha: float, reduction: str) -> tuple[Tensor, Tensor]:
    lib = _native.kernel()
    if lib is None:
        raise RuntimeError("ngl: the native NGL kernel is unavailable (NGL_NATIVE=0 or no C compiler)")
    return native_forward(lib, logits, target, alpha, reduction)


#: The implementations by name, for ``value_and_grad(..., impl=name)``.
IMPLEMENTATIONS = {"native": _native_or_fail, "fused": fused_forward, "torch": forward}


# --------------------------------------------------------------------------------------------
# What autograd and torch.compile see
# --------------------------------------------------------------------------------------------
@torch.library.custom_op("ngl::value_and_grad", mutates_args=())
def _value_and_grad_op(logits: Tensor, target: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    value, grad = value_and_grad(logits, target, alpha)
    return value.contiguous(), grad.contiguous()


@_value_and_grad_op.register_fake
def _(logits: Tensor, target: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    return logits.new_empty(logits.shape[:1] + logits.shape[2:]), logits.new_empty(logits.shape)


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


def compiled_value(logits: Tensor, target: Tensor, alpha: float) -> Tensor:
    """Per-sample values through the custom op (what ``torch.compile`` traces)."""
    return torch.ops.ngl.value_and_grad(logits, target, alpha)[0]


def _scaled_grad(ctx, grad_out: Tensor) -> Tensor:
    """The saved gradient times the upstream one: for a reduced loss on CPU, ``loss.backward()``'s
    1 hands the gradient through as it is (no pass over it; on a GPU reading it would sync)."""
    (grad,) = ctx.saved_tensors
    if ctx.per_sample:
        return grad * grad_out.unsqueeze(1)
    if grad.device.type == "cpu" and grad_out.item() == 1.0:
        return grad
    return grad * grad_out


class FastNGL(torch.autograd.Function):
    """Eager form: NGL from logits and valid labels or dense targets, per sample or reduced
    (``reduction`` ``"mean"``/``"sum"``, which saves an autograd node and a pass), the gradient
    computed in the forward pass (first-order only: double backward raises); ``impl`` as
    :func:`value_and_grad`."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, alpha: float, reduction: str = "none",
                impl: str | None = None) -> Tensor:
        value, grad = value_and_grad(logits, target, alpha, impl, reduction)
        ctx.save_for_backward(grad)
        ctx.per_sample = reduction == "none"
        return value

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        return _scaled_grad(ctx, grad_out), None, None, None, None


def native_applies(logits: Tensor, target: Tensor) -> bool:
    """Whether :class:`NativeNGL` takes these inputs as they are: float32 CPU logits, int64 labels
    or float32 dense targets (without gradient) of the right shape, outside ``torch.compile``."""
    if logits.dtype is not torch.float32 or not logits.is_cpu or not target.is_cpu or logits.ndim < 2:
        return False
    if target.dtype is torch.int64:
        shape_ok = target.ndim == logits.ndim - 1 and target.shape == logits.shape[:1] + logits.shape[2:]
    else:
        shape_ok = target.dtype is torch.float32 and target.shape == logits.shape and not target.requires_grad
    return shape_ok and logits.numel() > 0 and not torch.compiler.is_compiling() and _native.kernel() is not None


class NativeNGL(torch.autograd.Function):
    """NGL's whole loss in one native call: labels checked, ``ignore_index`` and the reduction
    applied by the kernel, the gradient computed in the forward pass (first-order only)."""

    @staticmethod
    def forward(ctx, logits: Tensor, target: Tensor, alpha: float, ignore_index: int,
                reduction: str) -> Tensor:
        out, grad = native_call(_native.kernel(), logits, target, alpha, ignore_index=ignore_index,
                                reduction=reduction)
        ctx.save_for_backward(grad)
        ctx.per_sample = reduction == "none"
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        return _scaled_grad(ctx, grad_out), None, None, None, None
