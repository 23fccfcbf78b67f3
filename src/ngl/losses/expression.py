"""Any loss expression over ``p`` and ``y`` (:mod:`ngl.expr`) as a PyTorch loss.

.. math:: \\ell = \\frac{1}{C} \\sum_c f(p_c, y_c)

averaged over classes per sample, exactly as NGL is; ``p = softmax(logits)``. This is how a loss
found by the GP search drops into training code.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor

from .. import expr as E
from ..expr import as_expression
from ._common import LossModule, compute_dtype, hyperparameters, prepare, reduce_loss

__all__ = ["expression_loss", "ExpressionLoss", "from_expression", "as_expression"]


@hyperparameters()
def expression_loss(input: Tensor, target: Tensor, expression: E.Expr, *, from_logits: bool = True,
                    weight: Tensor | None = None, ignore_index: int = -100,
                    reduction: str = "mean") -> Tensor:
    """Evaluate ``expression`` element-wise on ``(p, y)`` and average over classes per sample.

    Args:
        input: logits ``(B, C, ...)``, or probabilities with ``from_logits=False``.
        target: class labels ``(B, ...)`` or one-hot/soft targets shaped like ``input``.
        expression: the loss tree.
        weight, ignore_index, reduction: as :func:`ngl.losses.ngl_loss`.

    Example:
        >>> square_error = E.parse("square(p - y)")
        >>> expression_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([0]), square_error)
        tensor(0.2500)
    """
    targets = prepare(input, target, ignore_index=ignore_index, weight=weight, name="expression")
    dtype = compute_dtype(input)
    x = input.to(dtype)
    p = torch.softmax(x, dim=1) if from_logits else x
    per_sample = E.evaluate(expression, p, targets.one_hot(dtype), namespace="torch").mean(1)
    return reduce_loss(per_sample, reduction, targets.sample_weight(weight, per_sample.dtype))


class ExpressionLoss(LossModule):
    """A loss expression as an ``nn.Module``; ``str(module.expression)`` is its infix form.

    >>> ExpressionLoss("square(p - y)", reduction="sum")
    ExpressionLoss('square(p - y)')
    """

    fn = staticmethod(expression_loss)

    def __init__(self, expression: E.Expr | str | os.PathLike[str] | dict[str, Any], *,
                 from_logits: bool = True, ignore_index: int = -100, **kw) -> None:
        super().__init__(expression=as_expression(expression), from_logits=from_logits,
                         ignore_index=ignore_index, **kw)

    @property
    def expression(self) -> E.Expr:
        return self.hparams["expression"]

    def extra_repr(self) -> str:
        return repr(E.to_infix(self.expression))


def from_expression(spec: E.Expr | str | os.PathLike[str] | dict[str, Any], **kwargs: Any) -> ExpressionLoss:
    """A ready PyTorch loss from an expression, a saved expression file, or infix text.

    >>> from_expression("exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))")
    ExpressionLoss('exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))')
    >>> from_expression(E.NGL, ignore_index=255)   # or a saved file: "runs/search/hall_of_fame/00.json"
    ExpressionLoss('exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))')
    """
    return ExpressionLoss(spec, **kwargs)
