"""The Next Generation Loss (NGL), f5 of Akhmedova & Körber, arXiv 2404.12948 (2024).

.. math::

    \\ell(p, y) = \\frac{1}{C} \\sum_{c=1}^{C} \\big[ e^{\\alpha - p_c (1 + y_c)}
                  - \\cos(\\cos(\\sin p_c)) \\big], \\qquad \\alpha = 2.4092

per sample, with ``p = softmax(logits)`` and ``y`` the one-hot target. ``reduction="mean"`` then
averages over samples, which is exactly the reference code's ``torch.mean`` over the whole
``(B, C)`` tensor. ``reduction="none"`` returns the per-sample values (the class-mean above).

The fast path (logits, float32/16; integer labels, or one-hot/soft targets that need no gradient)
never materialises a one-hot target and returns the value and the logit gradient from one
forward pass (:mod:`ngl.losses._ngl_fused`): a native C kernel on CPU (which also checks the
labels, applies ``ignore_index`` and reduces), an Inductor-fused kernel on CUDA, torch ops
elsewhere.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import expr as E
from ..errors import InputError
from ..expr import NGL_ALPHA
from . import _ngl_fused as _fused
from ._common import (LossModule, check_bool, check_finite, compute_dtype, hyperparameters, optional, prepare,
                      reduce_loss)
from .crossentropy import PAPER
from .registry import register_loss

__all__ = ["ngl_loss", "NGLLoss"]


def _exact_terms(p: Tensor, y: Tensor, alpha: float) -> Tensor:
    """The published element-wise term, as the reference code computes it."""
    return torch.exp(alpha - p * (1 + y)) - torch.cos(torch.cos(torch.sin(p)))


@hyperparameters(alpha=check_finite, scaling=check_bool, fast=optional(check_bool))
def ngl_loss(input: Tensor, target: Tensor, *, alpha: float = NGL_ALPHA, from_logits: bool = True,
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
        fast: force (True) or forbid (False) the fused path; default: used where it applies
            (logits, ``scaling=False``, not float64, targets that need no gradient).

    Returns:
        Scalar, or per-sample values ``(B,)``/``(B, d1, ...)`` with ``reduction="none"``.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> ngl_loss(logits, torch.tensor([0, 1]), reduction="none")
        tensor([6.8307, 6.6341])
        >>> ngl_loss(logits, torch.tensor([0, 1]))    # the reference code's mean over (B, C)
        tensor(6.7324)

    Reference: S. Akhmedova, N. Körber, "Next Generation Loss Function for Image
    Classification", arXiv 2404.12948 (2024).
    """
    if fast is not False and from_logits and not scaling and weight is None and _fused.native_applies(input, target):
        return _fused.NativeNGL.apply(input, target, float(alpha), ignore_index, reduction)
    targets = prepare(input, target, ignore_index=ignore_index, weight=weight, name="ngl")
    dtype = compute_dtype(input)
    y = targets.index if targets.index is not None else targets.dense.to(dtype)
    usable = from_logits and not scaling and not y.requires_grad
    if fast and not usable:
        raise InputError("ngl: the fast path needs logits (from_logits=True), scaling=False and "
                         "targets that need no gradient")
    x = input.to(dtype)
    sample_weight = targets.sample_weight(weight, dtype)
    if usable and (fast or (fast is None and dtype != torch.float64)):
        count = x.numel() // max(x.shape[1], 1)
        if torch.compiler.is_compiling():      # one custom op with a fake kernel: no graph break
            per_sample = _fused.compiled_value(x, y, float(alpha))
        elif sample_weight is None and reduction != "none" and count:
            return _fused.FastNGL.apply(x, y, float(alpha), reduction)
        else:
            per_sample = _fused.FastNGL.apply(x, y, float(alpha))
    else:
        p = torch.softmax(x, dim=1) if from_logits else x
        if scaling:
            p = torch.sigmoid(p)
        per_sample = _exact_terms(p, targets.one_hot(dtype), alpha).mean(1)
    return reduce_loss(per_sample, reduction, sample_weight)


@register_loss("ngl", label="f5 (NGL)", summary="mean_c exp(2.4092 - p_c (1 + y_c)) - cos(cos(sin p_c))",
               reference=PAPER, expression=E.NGL, published=True)
class NGLLoss(LossModule):
    """Module form of :func:`ngl_loss`; stores the hyperparameters and delegates."""

    fn = staticmethod(ngl_loss)

    def __init__(self, *, alpha: float = NGL_ALPHA, from_logits: bool = True, scaling: bool = False,
                 ignore_index: int = -100, fast: bool | None = None, **kw) -> None:
        super().__init__(alpha=alpha, from_logits=from_logits, scaling=scaling,
                         ignore_index=ignore_index, fast=fast, **kw)
