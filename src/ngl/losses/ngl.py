"""The Next Generation Loss (NGL), f5 of Akhmedova & Körber, arXiv 2404.12948 (2024).

.. math::

    \\ell(p, y) = \\frac{1}{C} \\sum_{c=1}^{C} \\big[ e^{\\alpha - p_c (1 + y_c)}
                  - \\cos(\\cos(\\sin p_c)) \\big], \\qquad \\alpha = 2.4092

per sample, with ``p = softmax(logits)`` and ``y`` the one-hot target. ``reduction="mean"`` then
averages over samples, which is exactly the reference code's ``torch.mean`` over the whole
``(B, C)`` tensor. ``reduction="none"`` returns the per-sample values (the class-mean above).

The fast path (integer labels, logits, float32/16) never materialises the one-hot target: the
per-class term of a wrong class is a function of ``p`` alone, ``h(p) = e^{α-p} - cos(cos(sin p))``,
evaluated with its derivative as degree-8 Chebyshev interpolants on ``[0, 1]`` (abs. error
< 2e-7 on values of 4 to 11) by Horner's rule; the true class gets an exact correction. It
returns the value and the logit gradient from one forward pass. On CPU (float32) that pass is one
fused C kernel (:mod:`ngl.losses._native`, built on first use); elsewhere it is torch ops.
"""
from __future__ import annotations

import functools

import numpy as np
import torch
from torch.autograd.function import once_differentiable
from torch import Tensor

from . import _native
from ._common import LossModule, check_finite, check_reduction, compute_dtype, prepare, reduce_loss

__all__ = ["ngl_loss", "NGLLoss", "ALPHA"]

ALPHA = 2.4092
_DEGREE = 8


@functools.lru_cache(maxsize=16)
def _poly(alpha: float) -> np.ndarray:
    """Monomial coefficients in ``u = 2p - 1`` of ``h`` (row 0) and ``dh/dp`` (row 1), highest
    degree first: degree-8 Chebyshev interpolants on ``p`` in ``[0, 1]``."""
    from numpy.polynomial import chebyshev as cheb

    def h(u):
        p = (u + 1) / 2
        return np.exp(alpha - p) - np.cos(np.cos(np.sin(p)))

    def dh(u):
        p = (u + 1) / 2
        return -np.exp(alpha - p) - np.sin(np.cos(np.sin(p))) * np.sin(np.sin(p)) * np.cos(p)

    return np.stack([cheb.cheb2poly(cheb.chebinterpolate(f, _DEGREE))[::-1] for f in (h, dh)])


@functools.lru_cache(maxsize=32)
def _coefficients(alpha: float, dtype: torch.dtype, device: torch.device) -> tuple[list[Tensor], ...]:
    """:func:`_poly` as lists of 0-d tensors (operands of ``torch.addcmul``)."""
    return tuple([torch.tensor(c, dtype=dtype, device=device) for c in row] for row in _poly(alpha))


@functools.lru_cache(maxsize=16)
def _poly_f32(alpha: float) -> tuple[np.ndarray, int, int]:
    """float32 coefficients for the C kernel and their addresses (the array keeps them alive)."""
    coef = np.ascontiguousarray(_poly(alpha), dtype=np.float32)
    return coef, coef[0].ctypes.data, coef[1].ctypes.data


def _horner(coef: list[Tensor], u: Tensor) -> Tensor:
    out = torch.addcmul(coef[1], coef[0], u)
    for c in coef[2:]:
        torch.addcmul(c, out, u, out=out)    # in place: no allocation per step
    return out


def _torch_forward(logits: Tensor, index: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """Per-sample value and logit gradient with torch ops (any device)."""
    p = torch.softmax(logits, dim=1)
    num_classes = p.shape[1]
    u = p * 2 - 1
    coef_h, coef_dh = _coefficients(alpha, p.dtype, p.device)
    h, dh = _horner(coef_h, u), _horner(coef_dh, u)
    idx = index.unsqueeze(1)
    pt = p.gather(1, idx)
    e1, e2 = torch.exp(alpha - pt), torch.exp(alpha - 2 * pt)
    value = (h.sum(1, keepdim=True) + e2 - e1).squeeze(1) / num_classes
    dh = dh.scatter_add(1, idx, e1 - 2 * e2)          # true class: d/dp of e^{a-2p} instead of e^{a-p}
    grad = p * (dh - (p * dh).sum(1, keepdim=True))   # softmax backward
    return value, grad.div_(num_classes)


def _native_forward(lib, logits: Tensor, index: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
    """The same with the fused C kernel (CPU, float32)."""
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
                                 coef_h, coef_dh, _DEGREE, alpha, value.data_ptr(), grad.data_ptr())
    if status != 0:
        raise RuntimeError(f"ngl: native kernel failed with status {status}")
    return value, grad


def _exact_terms(p: Tensor, y: Tensor, alpha: float) -> Tensor:
    """The published element-wise term, as the reference code computes it."""
    return torch.exp(alpha - p * (1 + y)) - torch.cos(torch.cos(torch.sin(p)))


class _FastNGL(torch.autograd.Function):
    """Per-sample NGL from logits and integer labels; the gradient is computed in the forward pass
    (first-order only: double backward raises)."""

    @staticmethod
    def forward(ctx, logits: Tensor, index: Tensor, alpha: float, total: float | None) -> Tensor:
        """Per-sample values, or with ``total`` their sum times ``total`` (the fused
        unweighted mean/sum of :func:`reduce_loss`, which saves an autograd node)."""
        x = logits.to(compute_dtype(logits))
        lib = _native.kernel() if x.device.type == "cpu" and x.dtype == torch.float32 else None
        value, grad = (_native_forward(lib, x, index, alpha) if lib is not None
                       else _torch_forward(x, index, alpha))
        ctx.save_for_backward(grad)
        ctx.in_dtype, ctx.total = logits.dtype, total
        return value if total is None else value.sum() * total

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):
        (grad,) = ctx.saved_tensors
        scale = grad_out.unsqueeze(1) if ctx.total is None else grad_out * ctx.total
        return (grad * scale).to(ctx.in_dtype), None, None, None


def ngl_loss(input: Tensor, target: Tensor, *, alpha: float = ALPHA, from_logits: bool = True,
             scaling: bool = False, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean", fast: bool | None = None) -> Tensor:
    """Next Generation Loss.

    .. math:: \\ell = \\frac{1}{C}\\sum_c e^{\\alpha - p_c(1+y_c)} - \\cos(\\cos(\\sin p_c))

    Args:
        input: logits ``(B, C)`` or ``(B, C, d1, ...)``; probabilities if ``from_logits=False``.
        target: class labels ``(B,)``/``(B, d1, ...)`` or one-hot/soft targets shaped like ``input``.
        alpha: the constant 2.4092 of the published loss.
        from_logits: apply softmax over dim 1 (the reference PyTorch code); False takes ``input``
            as probabilities (the reference Keras code, whose model ends in a softmax).
        scaling: apply a sigmoid to the probabilities first, as the reference Keras example
            (``scaling=True``) does; this squeezes ``p`` into ``[0.5, 0.731]``.
        weight: per-class weights ``(C,)``; each sample's loss is scaled by its target's weight and
            ``mean`` divides by the total weight.
        ignore_index: label to skip (integer targets only).
        reduction: ``"mean"`` (the published value), ``"sum"``, or ``"none"`` (per sample).
        fast: force (True) or forbid (False) the fused path; default: used where it applies.

    Returns:
        Scalar, or per-sample values ``(B,)``/``(B, d1, ...)`` with ``reduction="none"``.

    Example:
        >>> logits, labels = torch.randn(8, 10), torch.randint(0, 10, (8,))
        >>> ngl_loss(logits, labels)

    Reference: S. Akhmedova, N. Körber, "Next Generation Loss Function for Image
    Classification", arXiv 2404.12948 (2024).
    """
    check_finite("alpha", alpha)
    check_reduction(reduction)
    targets = prepare(input, target, ignore_index=ignore_index, weight=weight, name="ngl")
    dtype = compute_dtype(input)
    usable = from_logits and not scaling and targets.index is not None
    if fast and not usable:
        raise ValueError("ngl: the fast path needs logits (from_logits=True), scaling=False and "
                         "integer class labels")
    if usable and (fast or (fast is None and dtype != torch.float64)):
        sample_weight = targets.sample_weight(weight, torch.float32)
        count = targets.index.numel()
        if sample_weight is None and reduction != "none" and count:
            return _FastNGL.apply(input, targets.index, float(alpha), 1.0 / count if reduction == "mean" else 1.0)
        per_sample = _FastNGL.apply(input, targets.index, float(alpha), None)
    else:
        x = input.to(dtype)
        p = torch.softmax(x, dim=1) if from_logits else x
        if scaling:
            p = torch.sigmoid(p)
        per_sample = _exact_terms(p, targets.one_hot(dtype), alpha).mean(1)
    return reduce_loss(per_sample, reduction, targets.sample_weight(weight, per_sample.dtype))


class NGLLoss(LossModule):
    """Module form of :func:`ngl_loss`; stores the hyperparameters and delegates."""

    fn = staticmethod(ngl_loss)

    def __init__(self, *, alpha: float = ALPHA, from_logits: bool = True, scaling: bool = False,
                 ignore_index: int = -100, fast: bool | None = None, **kw) -> None:
        super().__init__(alpha=check_finite("alpha", alpha), from_logits=from_logits, scaling=scaling,
                         ignore_index=ignore_index, fast=fast, **kw)
