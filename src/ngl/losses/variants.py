"""Cross-entropy variants outside the paper's comparison: Poly-1 and label-smoothed CE.

.. math:: \\mathrm{Poly1} = \\mathrm{CE} + \\epsilon (1 - p_t), \\qquad
          \\mathrm{CE_{LS}} = \\mathrm{CE}\\big((1 - s) y + s / C\\big)
"""
from __future__ import annotations

import functools

import torch
from torch import Tensor

from .. import expr as E
from ._common import LossModule, check_finite, check_range, hyperparameters, log_probs, prepare, reduce_loss
from .crossentropy import ce_loss
from .registry import register_loss

__all__ = ["poly1_loss", "Poly1Loss", "label_smoothing_ce_loss", "LabelSmoothingCELoss"]


@hyperparameters(epsilon=check_finite)
def poly1_loss(input: Tensor, target: Tensor, *, epsilon: float = 1.0, from_logits: bool = True,
               weight: Tensor | None = None, ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """Poly-1 (Leng et al., ICLR 2022): :math:`\\mathrm{CE} + \\epsilon (1 - p_t)`,
    ``p_t = sum_c y_c p_c`` for soft targets.

    Example:
        >>> poly1_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))   # log 2 + 1 - 1/2
        tensor(1.1931)
    """
    targets = prepare(input, target, ignore_index=ignore_index, weight=weight, name="poly1")
    logp = log_probs(input, from_logits=from_logits)
    logp_t = targets.pick(logp)
    per_sample = -logp_t + epsilon * (1 - torch.exp(logp_t)) if targets.index is not None else (
        -logp_t + epsilon * (1 - targets.pick(torch.exp(logp))))
    return reduce_loss(per_sample, reduction, targets.sample_weight(weight, per_sample.dtype))


@hyperparameters(smoothing=functools.partial(check_range, lo=0.0, hi=1.0))
def label_smoothing_ce_loss(input: Tensor, target: Tensor, *, smoothing: float = 0.1,
                            from_logits: bool = True, weight: Tensor | None = None,
                            ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """CE against ``(1 - s) y + s / C`` (Szegedy et al., CVPR 2016)."""
    return ce_loss(input, target, label_smoothing=smoothing, from_logits=from_logits, weight=weight,
                   ignore_index=ignore_index, reduction=reduction)


@register_loss("poly1", label="Poly-1", summary="CE + epsilon (1 - p_t)", reference="Leng et al., ICLR 2022",
               expression=E.parse("-(y * log(p)) + y * (1 - p)"))
class Poly1Loss(LossModule):
    """Module form of :func:`poly1_loss`."""

    fn = staticmethod(poly1_loss)

    def __init__(self, *, epsilon: float = 1.0, from_logits: bool = True, ignore_index: int = -100, **kw) -> None:
        super().__init__(epsilon=epsilon, from_logits=from_logits, ignore_index=ignore_index, **kw)


@register_loss("label_smoothing_ce", label="CE + LS", summary="CE against (1 - s) y + s / C",
               reference="Szegedy et al., CVPR 2016")
class LabelSmoothingCELoss(LossModule):
    """Module form of :func:`label_smoothing_ce_loss`."""

    fn = staticmethod(label_smoothing_ce_loss)

    def __init__(self, *, smoothing: float = 0.1, from_logits: bool = True, ignore_index: int = -100, **kw) -> None:
        super().__init__(smoothing=smoothing, from_logits=from_logits, ignore_index=ignore_index, **kw)
