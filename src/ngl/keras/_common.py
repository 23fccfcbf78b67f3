"""Target handling, log-probabilities and the base class shared by every Keras loss.

Layout (Keras convention, channels last): predictions ``(B, C)`` or ``(B, d1, ..., C)``; targets
are integer class labels ``(B,)`` / ``(B, d1, ...)`` or one-hot/soft targets of the predictions'
shape. ``call`` returns the per-sample loss ``(B,)`` / ``(B, d1, ...)``; Keras then applies
``sample_weight`` and the reduction (``"sum_over_batch_size"`` is PyTorch's ``"mean"``).
"""
from __future__ import annotations

from typing import Any

import keras
from keras import ops

__all__ = ["EPS", "NGLKerasLoss", "dense_targets", "log_probs", "check_bool"]

EPS = 1e-7   # clip of given probabilities, as Keras and the PyTorch side do


def _fmt(shape: Any) -> str:
    dims = ["None" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return value


def dense_targets(y_true: Any, y_pred: Any, *, name: str = "loss") -> Any:
    """One-hot/soft targets shaped like ``y_pred`` from class labels or dense targets.

    Shapes are checked statically (a ``None`` dimension matches anything). ``(B, 1)`` label
    columns against ``(B, C)`` predictions with ``C > 1`` raise instead of broadcasting, unlike
    the reference TensorFlow code.

    Raises:
        ValueError: one line naming both shapes and what was expected.
    """
    pred_shape, true_shape = tuple(y_pred.shape), tuple(y_true.shape)
    if len(pred_shape) < 2:
        raise ValueError(f"{name}: predictions must be (B, C) or (B, d1, ..., C), got shape "
                         f"{_fmt(pred_shape)}")
    num_classes = pred_shape[-1]
    if num_classes is None:
        raise ValueError(f"{name}: the class dimension of the predictions must be known, got "
                         f"shape {_fmt(pred_shape)}")

    def same(a: tuple, b: tuple) -> bool:
        return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))

    if len(true_shape) == len(pred_shape):
        if true_shape[-1] == 1 and num_classes > 1 and same(true_shape[:-1], pred_shape[:-1]):
            raise ValueError(f"{name}: class labels must have shape {_fmt(pred_shape[:-1])} for "
                             f"predictions {_fmt(pred_shape)}, got {_fmt(true_shape)} (squeeze the "
                             f"label column; one-hot targets must have the predictions' shape)")
        if not same(true_shape, pred_shape):
            raise ValueError(f"{name}: one-hot/soft targets must have the predictions' shape "
                             f"{_fmt(pred_shape)}, got {_fmt(true_shape)}")
        return ops.cast(y_true, y_pred.dtype)
    if not same(true_shape, pred_shape[:-1]):
        raise ValueError(f"{name}: targets must be class labels {_fmt(pred_shape[:-1])} or one-hot "
                         f"{_fmt(pred_shape)} for predictions {_fmt(pred_shape)}, got "
                         f"{_fmt(true_shape)}")
    return ops.one_hot(ops.cast(y_true, "int32"), num_classes, dtype=y_pred.dtype)


def log_probs(y_pred: Any, *, from_logits: bool, renormalize: bool = False) -> Any:
    """Class log-probabilities on the last axis: ``log_softmax`` of logits, or
    ``log(clip(p, 1e-7, 1 - 1e-7))`` of probabilities (renormalised first if asked, as Keras'
    focal loss does). Mirrors :func:`ngl.losses._common.log_probs`."""
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    if renormalize:
        y_pred = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    return ops.log(ops.clip(y_pred, EPS, 1.0 - EPS))


class NGLKerasLoss(keras.losses.Loss):
    """Base of the ngl Keras losses: stores ``from_logits`` and the hyperparameters listed in
    ``_hparams``, turns targets dense and delegates to :meth:`per_sample`.

    Subclasses set ``_hparams`` (attribute names that ``get_config`` saves) and implement
    ``per_sample(y, y_pred)`` with ``y`` dense, shaped like ``y_pred``.
    """

    _hparams: tuple[str, ...] = ()

    def __init__(self, *, from_logits: bool = False, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None, dtype: Any = None) -> None:
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = check_bool("from_logits", from_logits)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y = dense_targets(y_true, y_pred, name=type(self).__name__)
        return self.per_sample(y, y_pred)

    def per_sample(self, y: Any, y_pred: Any) -> Any:   # pragma: no cover - abstract
        raise NotImplementedError

    def probs(self, y_pred: Any) -> Any:
        """``softmax(y_pred)`` with ``from_logits=True``, else ``y_pred`` as given."""
        return ops.softmax(y_pred, axis=-1) if self.from_logits else y_pred

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["from_logits"] = self.from_logits
        config.update({k: getattr(self, k) for k in self._hparams})
        return config

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={getattr(self, k)!r}" for k in ("from_logits", *self._hparams))
        return f"{type(self).__name__}({args})"
