"""Cross-entropy family: CE, CE + L2, label-smoothed CE and Poly-1.

.. math:: \\mathrm{CE} = -\\sum_c y_c \\log p_c

``ce`` and ``label_smoothing_ce`` are ``F.cross_entropy`` (the reference implementation); the
others add a term to it. All take logits by default and follow ``F.cross_entropy``'s conventions
for ``weight``, ``ignore_index`` and soft targets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._common import (LossModule, check_finite, check_positive, check_range, check_reduction,
                      compute_dtype, log_probs, prepare, reduce_loss)

__all__ = ["ce_loss", "CELoss", "ce_l2_loss", "CEL2Loss", "label_smoothing_ce_loss",
           "LabelSmoothingCELoss", "poly1_loss", "Poly1Loss", "l2_penalty"]


def ce_loss(input: Tensor, target: Tensor, *, from_logits: bool = True, label_smoothing: float = 0.0,
            weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Cross entropy, :math:`-\\sum_c y_c \\log p_c`.

    Args:
        input: logits ``(B, C, ...)`` (or probabilities with ``from_logits=False``, clipped to
            ``[1e-7, 1 - 1e-7]`` as Keras does).
        target: class labels ``(B, ...)`` or one-hot/soft targets shaped like ``input``.
        label_smoothing: mix targets with the uniform distribution (Szegedy et al. 2016).
        weight, ignore_index, reduction: as ``F.cross_entropy``.

    Returns:
        Scalar, or per-sample values with ``reduction="none"``.
    """
    check_reduction(reduction)
    targets = prepare(input, target, ignore_index=ignore_index, weight=weight, name="ce")
    x = input.to(compute_dtype(input)) if from_logits else log_probs(input, from_logits=False)
    # soft targets in x's dtype (a float16 target would otherwise degrade the float32 result)
    tgt = target.to(x.dtype) if targets.index is None else target.long()
    return F.cross_entropy(x, tgt, weight=None if weight is None else weight.to(x.dtype),
                           ignore_index=ignore_index, reduction=reduction,
                           label_smoothing=label_smoothing)


def l2_penalty(model: nn.Module, l2: float) -> Tensor:
    """``l2 * sum(w**2)`` over the kernels (parameters with ``ndim >= 2``) of ``model``: Keras'
    ``kernel_regularizer=l2(l2)`` on every conv/dense layer; biases and norm scales are exempt."""
    weights = [w for w in model.parameters() if w.ndim >= 2 and w.requires_grad]
    if not weights:
        return torch.zeros(())
    return l2 * torch.stack([w.float().square().sum() for w in weights]).sum()


def ce_l2_loss(input: Tensor, target: Tensor, *, model: nn.Module | None = None, l2: float = 1e-4,
               **kwargs) -> Tensor:
    """CE plus the L2 weight penalty :func:`l2_penalty` when ``model`` is given.

    .. math:: \\mathrm{CE} + \\lambda \\sum_W \\lVert W \\rVert_2^2

    Use the module :class:`CEL2Loss` in training: the trainer calls its ``penalty(model)`` hook
    once per step and adds it to the (reduced) loss.
    """
    check_positive("l2", l2)
    loss = ce_loss(input, target, **kwargs)
    if model is not None:
        loss = loss + l2_penalty(model, l2).to(loss.dtype)
    return loss


def label_smoothing_ce_loss(input: Tensor, target: Tensor, *, smoothing: float = 0.1, **kwargs) -> Tensor:
    """CE against ``(1 - s) y + s / C`` (Szegedy et al., CVPR 2016)."""
    check_range("smoothing", smoothing, 0.0, 1.0)
    return ce_loss(input, target, label_smoothing=smoothing, **kwargs)


def poly1_loss(input: Tensor, target: Tensor, *, epsilon: float = 1.0, from_logits: bool = True,
               weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Poly-1 (Leng et al., ICLR 2022): :math:`\\mathrm{CE} + \\epsilon (1 - p_t)`,
    ``p_t = sum_c y_c p_c`` for soft targets."""
    check_finite("epsilon", epsilon)
    targets = prepare(input, target, ignore_index=ignore_index, weight=weight, name="poly1")
    logp = log_probs(input, from_logits=from_logits)
    logp_t = targets.pick(logp)
    per_sample = -logp_t + epsilon * (1 - torch.exp(logp_t)) if targets.index is not None else (
        -logp_t + epsilon * (1 - targets.pick(torch.exp(logp))))
    return reduce_loss(per_sample, reduction, targets.sample_weight(weight, per_sample.dtype))


class CELoss(LossModule):
    """Module form of :func:`ce_loss`."""

    fn = staticmethod(ce_loss)

    def __init__(self, *, from_logits: bool = True, ignore_index: int = -100, **kw) -> None:
        super().__init__(from_logits=from_logits, ignore_index=ignore_index, **kw)


class CEL2Loss(CELoss):
    """CE whose L2 weight penalty reaches the model through :meth:`penalty`, called by the trainer.

    ``loss = criterion(logits, y) + criterion.penalty(model)``; ``l2`` defaults to 1e-4 (the
    paper does not publish its weight).
    """

    def __init__(self, *, l2: float = 1e-4, **kw) -> None:
        super().__init__(**kw)
        self.l2 = check_positive("l2", l2)

    def penalty(self, model: nn.Module) -> Tensor:
        return l2_penalty(model, self.l2)


class LabelSmoothingCELoss(LossModule):
    """Module form of :func:`label_smoothing_ce_loss`."""

    fn = staticmethod(label_smoothing_ce_loss)

    def __init__(self, *, smoothing: float = 0.1, from_logits: bool = True, ignore_index: int = -100, **kw) -> None:
        check_range("smoothing", smoothing, 0.0, 1.0)
        super().__init__(smoothing=smoothing, from_logits=from_logits, ignore_index=ignore_index, **kw)


class Poly1Loss(LossModule):
    """Module form of :func:`poly1_loss`."""

    fn = staticmethod(poly1_loss)

    def __init__(self, *, epsilon: float = 1.0, from_logits: bool = True, ignore_index: int = -100, **kw) -> None:
        super().__init__(epsilon=check_finite("epsilon", epsilon), from_logits=from_logits, ignore_index=ignore_index, **kw)
