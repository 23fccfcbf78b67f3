"""Focal loss, multi-class softmax form (Lin et al., ICCV 2017).

.. math:: \\ell = -\\sum_c \\alpha\\, y_c (1 - p_c)^{\\gamma} \\log p_c

With ``gamma=0`` and ``alpha=None`` it is cross entropy. Defaults (``alpha=0.25``, ``gamma=2``)
and the probability path (renormalise, clip to ``[1e-7, 1 - 1e-7]``) follow Keras 3's
``CategoricalFocalCrossentropy``; the logit path works in log space (no clipping).
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import expr as E
from ._common import LossModule, check_positive, hyperparameters, log_probs, optional, prepare, reduce_loss
from .registry import register_loss

__all__ = ["focal_loss", "FocalLoss"]


@hyperparameters(gamma=check_positive, alpha=optional(check_positive))
def focal_loss(input: Tensor, target: Tensor, *, gamma: float = 2.0, alpha: float | None = 0.25,
               from_logits: bool = True, weight: Tensor | None = None, ignore_index: int = -100,
               reduction: str = "mean") -> Tensor:
    """Focal loss :math:`-\\alpha (1 - p_t)^\\gamma \\log p_t` (summed over classes for soft targets).

    Args:
        input: logits ``(B, C, ...)``, or probabilities with ``from_logits=False``.
        target: class labels ``(B, ...)`` or one-hot/soft targets shaped like ``input``.
        gamma: focusing parameter >= 0; 0 gives (alpha-scaled) CE.
        alpha: balance factor applied to every class (Keras semantics), or None for 1.
        weight, ignore_index, reduction: as ``F.cross_entropy``.

    Example:
        >>> logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
        >>> focal_loss(logits, torch.tensor([0, 1]), gamma=2.0, reduction="none")
        tensor([0.0027, 0.1221])
        >>> focal_loss(logits, torch.tensor([0, 1]), gamma=0.0, alpha=None)   # gamma 0: CE
        tensor(0.6691)

    Reference: T.-Y. Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017.
    """
    targets = prepare(input, target, ignore_index=ignore_index, weight=weight, name="focal")
    logp = log_probs(input, from_logits=from_logits, renormalize=True)
    if targets.index is not None:
        logp_t = targets.pick(logp)
        per_sample = -(-torch.expm1(logp_t)).pow(gamma) * logp_t
    else:
        per_sample = -(targets.dense.to(logp.dtype) * (-torch.expm1(logp)).pow(gamma) * logp).sum(1)
    if alpha is not None:
        per_sample = alpha * per_sample
    return reduce_loss(per_sample, reduction, targets.sample_weight(weight, per_sample.dtype))


@register_loss("focal", label="Focal", summary="-alpha (1 - p_t)^gamma log p_t",
               reference="Lin et al., ICCV 2017",
               expression=E.parse("-(0.25 * y * square(1 - p) * log(p))"), published=True)
class FocalLoss(LossModule):
    """Module form of :func:`focal_loss`."""

    fn = staticmethod(focal_loss)

    def __init__(self, *, gamma: float = 2.0, alpha: float | None = 0.25, from_logits: bool = True,
                 ignore_index: int = -100, **kw) -> None:
        super().__init__(gamma=gamma, alpha=alpha, from_logits=from_logits, ignore_index=ignore_index, **kw)
