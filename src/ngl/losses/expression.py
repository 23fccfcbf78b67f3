"""Any loss expression over ``p`` and ``y`` (:mod:`ngl.expr`) as a PyTorch loss.

.. math:: \\ell = \\frac{1}{C} \\sum_c f(p_c, y_c)

averaged over classes per sample, exactly as NGL is; ``p = softmax(logits)``. This is how a loss
found by the GP search drops into training code.
"""
from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn

from .. import expr as E
from ._common import check_reduction, compute_dtype, prepare, reduce_loss

__all__ = ["expression_loss", "ExpressionLoss", "from_expression", "as_expression"]


def as_expression(spec: E.Expr | str | os.PathLike[str] | dict[str, Any]) -> E.Expr:
    """An :class:`~ngl.expr.Expr` from a tree, a JSON file path, a JSON document, or infix text."""
    if isinstance(spec, E.Expr):
        return spec
    if isinstance(spec, dict):
        return E.from_json(spec)
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and spec.endswith(".json")):
        return E.load(spec)
    if isinstance(spec, str):
        return E.parse(spec[5:] if spec.startswith("expr:") else spec)
    raise TypeError(f"expected an Expr, a .json path, a JSON dict or infix text, got {type(spec).__name__}")


def expression_loss(input: Tensor, target: Tensor, expression: E.Expr, *, from_logits: bool = True,
                    weight: Tensor | None = None, ignore_index: int = -100,
                    reduction: str = "mean") -> Tensor:
    """Evaluate ``expression`` element-wise on ``(p, y)`` and average over classes per sample.

    Args:
        input: logits ``(B, C, ...)``, or probabilities with ``from_logits=False``.
        target: class labels ``(B, ...)`` or one-hot/soft targets shaped like ``input``.
        expression: the loss tree.
        weight, ignore_index, reduction: as :func:`ngl.losses.ngl_loss`.
    """
    targets = prepare(input, target, ignore_index=ignore_index, weight=weight, name="expression")
    dtype = compute_dtype(input)
    x = input.to(dtype)
    p = torch.softmax(x, dim=1) if from_logits else x
    per_sample = E.evaluate(expression, p, targets.one_hot(dtype), namespace="torch").mean(1)
    return reduce_loss(per_sample, reduction, targets.sample_weight(weight, per_sample.dtype))


class ExpressionLoss(nn.Module):
    """A loss expression as an ``nn.Module``; ``str(module.expression)`` is its infix form."""

    def __init__(self, expression: E.Expr | str | os.PathLike[str] | dict[str, Any], *,
                 from_logits: bool = True, weight: Tensor | None = None, ignore_index: int = -100,
                 reduction: str = "mean") -> None:
        super().__init__()
        self.expression = as_expression(expression)
        self.from_logits, self.ignore_index = from_logits, ignore_index
        self.reduction = check_reduction(reduction)
        self.register_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return expression_loss(input, target, self.expression, from_logits=self.from_logits,
                               weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)

    def extra_repr(self) -> str:
        return f"{E.to_infix(self.expression)!r}"


def from_expression(spec: E.Expr | str | os.PathLike[str] | dict[str, Any], **kwargs: Any) -> ExpressionLoss:
    """A ready PyTorch loss from an expression, a saved expression file, or infix text.

    >>> loss_fn = from_expression("runs/search/hall_of_fame/0.json")
    >>> loss_fn = from_expression("exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))")
    """
    return ExpressionLoss(spec, **kwargs)
