"""Symmetric cross entropy (Wang et al., ICCV 2019).

.. math:: \\ell = \\alpha\\,\\mathrm{CE} + \\beta\\,\\mathrm{RCE}, \\qquad
          \\mathrm{RCE} = -\\sum_c \\mathrm{clip}(p_c, 10^{-7}, 1) \\log \\mathrm{clip}(y_c, 10^{-4}, 1)

For hard labels RCE is ``-log(1e-4) * sum_{c != t} clip(p_c, 1e-7, 1)``, about ``9.21 (1 - p_t)``.
The CE term is plain CE on logits, as the authors' PyTorch code. Defaults are their CIFAR-10
values (alpha=0.1, beta=1.0); CIFAR-100 used alpha=6.0 with beta=0.1.
"""
from __future__ import annotations

import torch
from torch import Tensor

from .. import expr as E
from ._common import LossModule, check_positive, hyperparameters, log_probs, prepare, reduce_loss
from .registry import register_loss

__all__ = ["sce_loss", "SCELoss", "P_MIN", "Y_MIN"]

P_MIN = 1e-7   # clamp of the predicted probabilities in RCE
Y_MIN = 1e-4   # clamp of the targets in RCE: log(0) becomes log(1e-4)


@hyperparameters(alpha=check_positive, beta=check_positive)
def sce_loss(input: Tensor, target: Tensor, *, alpha: float = 0.1, beta: float = 1.0,
             from_logits: bool = True, weight: Tensor | None = None, ignore_index: int = -100,
             reduction: str = "mean") -> Tensor:
    """Symmetric cross entropy :math:`\\alpha\\,\\mathrm{CE} + \\beta\\,\\mathrm{RCE}`.

    Args:
        input: logits ``(B, C, ...)``, or probabilities with ``from_logits=False``.
        target: class labels ``(B, ...)`` or one-hot/soft targets shaped like ``input``.
        alpha, beta: weights of CE and reverse CE (>= 0).
        weight, ignore_index, reduction: as ``F.cross_entropy``.

    Example:
        >>> sce_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]))   # 0.1 log 2 + 9.2103 / 2
        tensor(4.6745)

    Reference: Y. Wang et al., "Symmetric Cross Entropy for Robust Learning with Noisy Labels",
    ICCV 2019.
    """
    targets = prepare(input, target, ignore_index=ignore_index, weight=weight, name="sce")
    logp = log_probs(input, from_logits=from_logits)
    p = torch.exp(logp).clamp(P_MIN, 1.0)
    y = targets.one_hot(logp.dtype)
    ce = -targets.pick(logp)
    rce = -(p * torch.log(y.clamp(Y_MIN, 1.0))).sum(1)
    per_sample = alpha * ce + beta * rce
    return reduce_loss(per_sample, reduction, targets.sample_weight(weight, per_sample.dtype))


@register_loss("sce", label="SCE", summary="alpha CE + beta reverse CE", reference="Wang et al., ICCV 2019",
               expression=E.parse("-(0.1 * y * log(p)) + 9.2103404 * p * (1 - y)"), published=True)
class SCELoss(LossModule):
    """Module form of :func:`sce_loss`."""

    fn = staticmethod(sce_loss)

    def __init__(self, *, alpha: float = 0.1, beta: float = 1.0, from_logits: bool = True,
                 ignore_index: int = -100, **kw) -> None:
        super().__init__(alpha=alpha, beta=beta, from_logits=from_logits, ignore_index=ignore_index, **kw)
