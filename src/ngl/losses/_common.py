"""Input checks, target handling, hyperparameter checks and the one reduction helper shared by
every PyTorch loss.

Layout convention (as ``F.cross_entropy``): predictions ``(B, C)`` or ``(B, C, d1, ...)``;
targets are integer class labels ``(B,)`` / ``(B, d1, ...)`` or one-hot/soft targets of the
prediction's shape. Every loss computes a per-sample value of shape ``(B,)`` / ``(B, d1, ...)``
and hands it to :func:`reduce_loss`. Errors are :mod:`ngl.errors` types (one line in the CLI).
"""
from __future__ import annotations

import difflib
import functools
import inspect
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checks import (check_bool, check_finite, check_int, check_positive, check_range,  # noqa: F401
                      optional)
from ..errors import InputError, InputTypeError

__all__ = ["REDUCTIONS", "Targets", "check_reduction", "reduce_loss", "prepare", "log_probs",
           "check_positive", "check_finite", "check_range", "check_bool", "check_int", "optional", "hyperparameters",
           "compute_dtype", "LossModule"]

REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise InputError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def hyperparameters(**checks: Callable[[str, Any], Any]) -> Callable:
    """Declare a loss function's hyperparameter checks once, next to its signature.

    The decorated function checks the keywords it is called with; its module (a
    :class:`LossModule`) runs the same checks once, at construction, and then calls the unchecked
    function (``fn.unchecked``). ``reduction``, ``from_logits`` and ``ignore_index`` are always
    checked.

    >>> @hyperparameters(gamma=check_positive)
    ... def toy(input, target, *, gamma=2.0, reduction="mean"):
    ...     return gamma
    >>> toy(None, None, gamma=-1.0)
    Traceback (most recent call last):
    ...
    ngl.errors.InputError: gamma must be a finite number >= 0, got -1.0
    """
    checks = {"reduction": lambda name, value: check_reduction(value), "from_logits": check_bool,
              "ignore_index": check_int, **checks}

    def deco(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def checked(*args: Any, **kwargs: Any) -> Tensor:
            for name, value in kwargs.items():
                if name in checks:
                    checks[name](name, value)
            return fn(*args, **kwargs)

        checked.checks, checked.unchecked = checks, fn
        return checked
    return deco


def reduce_loss(loss: Tensor, reduction: str, weight: Tensor | None = None) -> Tensor:
    """Reduce per-sample losses: ``mean`` (weighted mean when ``weight`` is given), ``sum``, ``none``.

    With ``weight`` (per-sample, e.g. class weights of the targets, 0 for ignored samples),
    ``mean`` is ``sum(w * l) / sum(w)``, as ``F.cross_entropy`` does with ``weight``/``ignore_index``;
    when every weight is 0 (every label ignored) it is NaN with zero gradients, as there.
    """
    check_reduction(reduction)
    if weight is not None:
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is None:
        return loss.mean()
    total = weight.sum()
    some = total > 0
    mean = loss.sum() / torch.where(some, total, torch.ones_like(total))   # no 0/0 in the gradient
    return torch.where(some, mean, torch.full_like(mean, float("nan")))


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
    """Check predictions and targets; raise a one-line :class:`~ngl.errors.InputTypeError` or
    :class:`~ngl.errors.InputError` if wrong. While ``torch.compile`` traces, the label range
    check (data-dependent: a host sync) is skipped and ``ignore_index`` is always masked."""
    if not isinstance(input, Tensor) or not isinstance(target, Tensor):
        raise InputTypeError(f"{name}: input and target must be torch.Tensor, got "
                        f"{type(input).__name__} and {type(target).__name__}")
    if not input.is_floating_point():
        raise InputTypeError(f"{name}: predictions must be floating point, got {input.dtype}")
    if input.ndim < 2:
        raise InputError(f"{name}: predictions must be (B, C) or (B, C, d1, ...), got shape {_shape(input)}")
    num_classes = input.shape[1]
    if weight is not None and (weight.ndim != 1 or weight.numel() != num_classes):
        raise InputError(f"{name}: weight must have shape ({num_classes},) (one per class), "
                         f"got {_shape(weight)}")
    if target.dtype == torch.bool or target.is_complex():
        raise InputTypeError(f"{name}: targets must be integer class labels or float one-hot/soft "
                        f"targets, got {target.dtype}")
    if target.is_floating_point():
        if target.shape != input.shape:
            hint = (" (float class labels? pass them as integers: target.long())"
                    if target.shape == input.shape[:1] + input.shape[2:] else "")
            raise InputError(f"{name}: one-hot/soft targets must have the predictions' shape "
                             f"{_shape(input)}, got {_shape(target)}{hint}")
        return Targets(num_classes, dense=target)
    expected = input.shape[:1] + input.shape[2:]
    if target.shape != expected:
        hint = " (squeeze the label column)" if target.shape == expected + (1,) else ""
        raise InputError(f"{name}: class labels must have shape {tuple(expected)} for predictions "
                         f"{_shape(input)}, got {_shape(target)}{hint}")
    valid = None
    if torch.compiler.is_compiling():   # no host sync: always mask, leave the range check to eager
        if ignore_index is not None:
            valid = target != ignore_index
            target = target.masked_fill(~valid, 0)
    elif target.numel():
        lo, hi = (int(v) for v in torch.aminmax(target))
        if ignore_index is not None and lo <= ignore_index <= hi:   # only then can any be ignored
            ignored = target == ignore_index
            valid = ~ignored
            target = target.masked_fill(ignored, 0)
            lo, hi = (int(v) for v in torch.aminmax(target))
        if lo < 0 or hi >= num_classes:
            raise InputError(f"{name}: class label {lo if lo < 0 else hi} out of range "
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


def _keywords(fn: Callable) -> list[str]:
    return [n for n, p in inspect.signature(fn).parameters.items()
            if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD) and n not in ("input", "target")]


class LossModule(nn.Module):
    """Thin module of a registered loss: keeps keyword hyperparameters, delegates to ``fn``.

    Hyperparameters are checked once, here, by the checks declared on ``fn`` with
    :func:`hyperparameters`; an unknown keyword is refused with the valid ones.
    """

    fn: Callable[..., Tensor]

    def __init__(self, *, weight: Tensor | None = None, reduction: str = "mean", **hparams) -> None:
        super().__init__()
        self.reduction = check_reduction(reduction)
        self.hparams = self.check_hparams(hparams)
        self.register_buffer("weight", weight)

    @classmethod
    def valid_keywords(cls) -> list[str]:
        """Every keyword the module takes: its constructors' and its function's."""
        names = [n for c in cls.__mro__ if "__init__" in vars(c) and issubclass(c, LossModule)
                 for n, p in inspect.signature(c.__init__).parameters.items() if p.kind is p.KEYWORD_ONLY]
        positional = [n for n, p in inspect.signature(cls.__init__).parameters.items()
                      if p.kind is p.POSITIONAL_OR_KEYWORD]    # e.g. ExpressionLoss(expression)
        return [n for n in dict.fromkeys(names + _keywords(cls.fn)) if n not in positional]

    @classmethod
    def check_hparams(cls, hparams: dict[str, Any]) -> dict[str, Any]:
        fn_keywords = _keywords(cls.fn)
        for name in hparams:
            if name not in fn_keywords:
                valid = cls.valid_keywords()
                close = difflib.get_close_matches(name, valid, n=1)
                did = f" (did you mean {close[0]!r}?)" if close else ""
                raise InputError(f"{cls.__name__}: unknown keyword {name!r}{did}; valid: {', '.join(valid)}")
        checks = getattr(cls.fn, "checks", {})
        for name, value in hparams.items():
            if name in checks:
                checks[name](name, value)
        return hparams

    def forward(self, input: Tensor, target: Tensor) -> Tensor:
        fn = getattr(type(self).fn, "unchecked", type(self).fn)    # checked at construction
        return fn(input, target, weight=self.weight, reduction=self.reduction, **self.hparams)

    def extra_repr(self) -> str:
        return ", ".join(f"{k}={v!r}" for k, v in self.hparams.items())
