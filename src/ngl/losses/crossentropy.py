"""Cross entropy and CE + L2, the paper's baselines.

.. math:: \\mathrm{CE} = -\\sum_c y_c \\log p_c

``ce`` is ``F.cross_entropy`` (the reference implementation); ``ce_l2`` adds an L2 penalty on the
model's weights. Both take logits by default and follow ``F.cross_entropy``'s conventions for
``weight``, ``ignore_index`` and soft targets.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import expr as E
from ._common import LossModule, check_positive, compute_dtype, hyperparameters, log_probs, prepare
from .registry import register_loss

__all__ = ["ce_loss", "CELoss", "ce_l2_loss", "CEL2Loss", "l2_penalty", "PAPER"]

PAPER = "Akhmedova & Körber, arXiv 2404.12948 (2024)"


@hyperparameters()
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

    Example:
        >>> ce_loss(torch.tensor([[2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0]))
        tensor(1.1269)
    """
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


@hyperparameters(l2=check_positive)
def ce_l2_loss(input: Tensor, target: Tensor, *, model: nn.Module | None = None, l2: float = 1e-4,
               from_logits: bool = True, label_smoothing: float = 0.0, weight: Tensor | None = None,
               ignore_index: int = -100, reduction: str = "mean") -> Tensor:
    """CE plus the L2 weight penalty :func:`l2_penalty` when ``model`` is given.

    .. math:: \\mathrm{CE} + \\lambda \\sum_W \\lVert W \\rVert_2^2

    Use the module :class:`CEL2Loss` in training: the trainer calls its ``penalty(model)`` hook
    once per step and adds it to the (reduced) loss.
    """
    loss = ce_loss(input, target, from_logits=from_logits, label_smoothing=label_smoothing,
                   weight=weight, ignore_index=ignore_index, reduction=reduction)
    if model is not None:
        loss = loss + l2_penalty(model, l2).to(loss.dtype)
    return loss


@register_loss("ce", label="CE", summary="cross entropy, -sum_c y_c log p_c",
               reference="F.cross_entropy", expression=E.CE, published=True)
class CELoss(LossModule):
    """Module form of :func:`ce_loss`."""

    fn = staticmethod(ce_loss)

    def __init__(self, *, from_logits: bool = True, ignore_index: int = -100, **kw) -> None:
        super().__init__(from_logits=from_logits, ignore_index=ignore_index, **kw)


@register_loss("ce_l2", label="CE + L2",
               summary="cross entropy plus l2 * sum of squared kernel weights (through penalty(model))",
               reference=PAPER, expression=E.CE, published=True)
class CEL2Loss(LossModule):
    """CE whose L2 weight penalty reaches the model through :meth:`penalty`, called by the trainer.

    ``loss = criterion(logits, y) + criterion.penalty(model)``; ``l2`` defaults to 1e-4 (the
    paper does not publish its weight). The forward pass is plain CE.
    """

    fn = staticmethod(ce_l2_loss)

    def __init__(self, *, l2: float = 1e-4, from_logits: bool = True, ignore_index: int = -100, **kw) -> None:
        super().__init__(l2=l2, from_logits=from_logits, ignore_index=ignore_index, **kw)

    @property
    def l2(self) -> float:
        return float(self.hparams["l2"])

    def penalty(self, model: nn.Module) -> Tensor:
        return l2_penalty(model, self.l2)
