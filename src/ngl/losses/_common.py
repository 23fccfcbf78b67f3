"""Input checks, target handling and the one reduction helper shared by every PyTorch loss.

Layout convention (as ``F.cross_entropy``): predictions ``(B, C)`` or ``(B, C, d1, ...)``;
targets are integer class labels ``(B,)`` / ``(B, d1, ...)`` or one-hot/soft targets of the
prediction's shape. Every loss computes a per-sample value of shape ``(B,)`` / ``(B, d1, ...)``
and hands it to :func:`reduce_loss`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["REDUCTIONS", "Targets", "check_reduction", "reduce_loss", "prepare", "log_probs",
           "check_positive", "check_finite", "check_range", "compute_dtype", "LossModule"]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_positive(name: str, value: float, *, allow_zero: bool = True) -> float:
    ok = _is_number(value) and (value >= 0 if allow_zero else value > 0)
    if not (ok and value == value and value != float("inf")):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_finite(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value or abs(value) == float("inf"):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_range(name: str, value: float, lo: float, hi: float) -> float:
    if not (_is_number(value) and lo <= value <= hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], got {value!r}")
    return float(value)


def reduce_loss(loss: Tensor, reduction: str, weight: Tensor | None = None) -> Tensor:
    """Reduce per-sample losses: ``mean`` (weighted mean when ``weight`` is given), ``sum``, ``none``.

    With ``weight`` (per-sample, e.g. class weights of the targets, 0 for ignored samples),
    ``mean`` is ``sum(w * l) / sum(w)``, as ``F.cross_entropy`` does with ``weight``/``ignore_index``.
    """
    check_reduction(reduction)
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / weight.sum() if weight is not None else loss.mean()


@dataclass
class Targets:
    """Validated targets. ``index`` for class labels (ignored entries set to 0), else ``dense``."""

    num_classes: int
    index: Tensor | None = None
    dense: Tensor | None = None
    valid: Tensor | None = None        # bool mask of non-ignored labels, None if nothing ignored

    def one_hot(self, dtype: torch.dtype) -> Tensor:
        """Dense targets ``(B, C, d...)`` (ignored samples become all-zero rows)."""
        if self.dense is not None:
            return self.dense.to(dtype)
        y = F.one_hot(self.index, self.num_classes).to(dtype).movedim(-1, 1)
        if self.valid is not None:
            y = y * self.valid.unsqueeze(1).to(dtype)
        return y

    def sample_weight(self, weight: Tensor | None, dtype: torch.dtype) -> Tensor | None:
        """Per-sample weights: class weight of the target (soft: weighted by ``y``) times the mask."""
        w = None
        if weight is not None:
            if self.index is not None:
                w = weight.to(dtype)[self.index]
            else:
                shape = (1, -1) + (1,) * (self.dense.ndim - 2)
                w = (self.dense.to(dtype) * weight.to(dtype).view(shape)).sum(1)
        if self.valid is not None:
            mask = self.valid.to(dtype)
            w = mask if w is None else w * mask
        return w

    def pick(self, values: Tensor) -> Tensor:
        """``values[b, target[b]]`` for labels, ``sum_c y_c values_c`` for dense targets."""
        if self.index is not None:
            return values.gather(1, self.index.unsqueeze(1)).squeeze(1)
        return (values * self.dense.to(values.dtype)).sum(1)


def _shape(t: Tensor) -> str:
    return "(" + ", ".join(str(s) for s in t.shape) + ")"


def prepare(input: Tensor, target: Tensor, *, ignore_index: int | None = -100,
            weight: Tensor | None = None, name: str = "loss") -> Targets:
    """Check predictions and targets; raise a one-line ``TypeError``/``ValueError`` if wrong."""
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise TypeError(f"{name}: input and target must be torch.Tensor, got "
                        f"{type(input).__name__} and {type(target).__name__}")
    if not input.is_floating_point():
        raise TypeError(f"{name}: predictions must be floating point, got {input.dtype}")
    if input.ndim < 2:
        raise ValueError(f"{name}: predictions must be (B, C) or (B, C, d1, ...), got shape {_shape(input)}")
    num_classes = input.shape[1]
    if weight is not None and (weight.ndim != 1 or weight.numel() != num_classes):
        raise ValueError(f"{name}: weight must have shape ({num_classes},) (one per class), "
                         f"got {_shape(weight)}")
    if target.dtype == torch.bool or target.is_complex():
        raise TypeError(f"{name}: targets must be integer class labels or float one-hot/soft "
                        f"targets, got {target.dtype}")
    if target.is_floating_point():
        if target.shape != input.shape:
            hint = (" (float class labels? pass them as integers: target.long())"
                    if target.shape == input.shape[:1] + input.shape[2:] else "")
            raise ValueError(f"{name}: one-hot/soft targets must have the predictions' shape "
                             f"{_shape(input)}, got {_shape(target)}{hint}")
        return Targets(num_classes, dense=target)
    expected = input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        hint = " (squeeze the label column)" if target.shape == expected + (1,) else ""
        raise ValueError(f"{name}: class labels must have shape {tuple(expected)} for predictions "
                         f"{_shape(input)}, got {_shape(target)}{hint}")
    valid = None
    if target.numel():
        lo, hi = (int(v) for v in torch.aminmax(target))
        if ignore_index is not None and lo <= ignore_index <= hi:   # only then can any be ignored
            ignored = target == ignore_index
            valid = ~ignored
            target = target.masked_fill(ignored, 0)
            lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{name}: class label {lo if lo < 0 else hi} out of range "
                             f"[0, {num_classes - 1}] for {num_classes} classes")
    return Targets(num_classes, index=target if target.dtype == torch.int64 else target.long(),
                   valid=valid)


def compute_dtype(input: Tensor) -> torch.dtype:
    """float16/bfloat16 inputs are computed in float32; float32/float64 stay as they are."""
    return torch.float32 if input.dtype in (torch.float16, torch.bfloat16) else input.dtype


def log_probs(input: Tensor, *, from_logits: bool, renormalize: bool = False,
              eps: float = 1e-7) -> Tensor:
    """Class log-probabilities along dim 1: ``log_softmax`` of logits (exact in log space), or
    ``log(clip(p, eps, 1 - eps))`` of given probabilities (optionally renormalised first, as Keras)."""
    x = input.to(compute_dtype(input))
    if from_logits:
        return F.log_softmax(x, dim=1)
    if renormalize:
        x = x / x.sum(1, keepdim=True)
    return x.clamp(eps, 1 - eps).log()


class LossModule(nn.Module):
    """Thin module of a registered loss: keeps keyword hyperparameters, delegates to ``fn``."""

    fn: Callable[..., Tensor]

    def __init__(self, *, weight: Tensor | None = None, reduction: str = "mean", **hparams) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.hparams = hparams
        self.register_buffer("weight", weight)

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        return type(self).fn(input, target, weight=self.weight, reduction=self.reduction, **self.hparams)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
