"""Target handling, log-probabilities and the base class shared by every Keras loss.

Layout (Keras convention, channels last): predictions ``(B, C)`` or ``(B, d1, ..., C)``; targets
are integer class labels ``(B,)`` / ``(B, d1, ...)`` or one-hot/soft targets of the predictions'
shape. ``call`` returns the per-sample loss ``(B,)`` / ``(B, d1, ...)``; Keras then applies
``sample_weight`` and the reduction (``"sum_over_batch_size"`` is PyTorch's ``"mean"``).
"""
from __future__ import annotations

from typing import Any

import keras
import numpy as np
from keras import ops

from ..checks import check_bool, check_number  # noqa: F401 (re-exported)
from ..errors import InputError

__all__ = ["EPS", "KerasLoss", "NGLKerasLoss", "targets", "dense_targets", "check_labels",
           "concrete", "log_probs", "check_bool", "check_number"]

EPS = 1e-7   # clip of given probabilities, as Keras and the PyTorch side do
#: Keras' reductions (``"sum_over_batch_size"``, the default, is PyTorch's ``"mean"``).
REDUCTIONS = ("sum_over_batch_size", "sum", "mean", "mean_with_sample_weight", "none", None)


def _fmt(shape: Any) -> str:
    dims = ["None" if d is None else str(d) for d in shape]
    return "(" + ", ".join(dims) + ("," if len(dims) == 1 else "") + ")"


def _same(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is None or y is None or x == y for x, y in zip(a, b))


def _check_target_shapes(true_shape: tuple, pred_shape: tuple, name: str) -> bool:
    """True for class labels, False for dense targets; shape errors raise :class:`InputError`."""
    if len(pred_shape) < 2:
        raise InputError(f"{name}: predictions must be (B, C) or (B, d1, ..., C), got shape "
                         f"{_fmt(pred_shape)}")
    num_classes = pred_shape[-1]
    if num_classes is None:
        raise InputError(f"{name}: the class dimension of the predictions must be known, got "
                         f"shape {_fmt(pred_shape)}")
    if len(true_shape) == len(pred_shape):
        if true_shape[-1] == 1 and num_classes > 1 and _same(true_shape[:-1], pred_shape[:-1]):
            raise InputError(f"{name}: class labels must have shape {_fmt(pred_shape[:-1])} for "
                             f"predictions {_fmt(pred_shape)}, got {_fmt(true_shape)} (squeeze the "
                             f"label column; one-hot targets must have the predictions' shape)")
        if not _same(true_shape, pred_shape):
            raise InputError(f"{name}: one-hot/soft targets must have the predictions' shape "
                             f"{_fmt(pred_shape)}, got {_fmt(true_shape)}")
        return False
    if not _same(true_shape, pred_shape[:-1]):
        raise InputError(f"{name}: targets must be class labels {_fmt(pred_shape[:-1])} or one-hot "
                         f"{_fmt(pred_shape)} for predictions {_fmt(pred_shape)}, got "
                         f"{_fmt(true_shape)}")
    return True


def concrete(x: Any) -> np.ndarray | None:
    """``x`` as a NumPy array when its values exist now (eager), None inside a compiled graph
    (``jax.jit``, ``tf.function``, ``torch.compile``), where values cannot be inspected."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if isinstance(x, jax.core.Tracer):
            return None
    elif backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly() or not hasattr(x, "numpy"):
            return None
    elif backend == "torch":
        import torch

        if torch.compiler.is_compiling():
            return None
    return np.asarray(ops.convert_to_numpy(x))


def check_labels(labels: Any, num_classes: int, *, name: str = "loss") -> None:
    """Refuse labels outside ``0 .. num_classes - 1`` (``-1`` included) or not whole numbers, with
    one line, when their values are concrete. Inside a compiled step (``model.fit`` on jax and
    tensorflow, any ``jax.jit`` / ``tf.function``) they cannot be read and are not checked: there
    an out-of-range label silently gives a wrong loss for its sample (``ops.one_hot`` makes an
    all-zero row; a gather wraps ``-1`` to the last class or clamps, depending on the backend).

    Raises:
        InputError: naming the first bad label, its position and the valid range.
    """
    values = concrete(labels)
    if values is None or values.size == 0:
        return
    bad = (values < 0) | (values >= num_classes) | (values != np.floor(values))
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        value = values[where].item()     # Keras hands labels over as floats: show 7, not 7.0
        value = int(value) if float(value).is_integer() else value
        raise InputError(f"{name}: class labels must be whole numbers in 0..{num_classes - 1}, got "
                         f"{value!r} at index {where if len(where) > 1 else where[0]} "
                         f"({int(bad.sum())} bad of {values.size})")


def targets(y_true: Any, y_pred: Any, *, name: str = "loss") -> tuple[Any, bool]:
    """``(y_true, is_labels)``: class labels (range-checked when eager, see :func:`check_labels`)
    or dense targets cast to the predictions' dtype. Shapes are checked statically (a ``None``
    dimension matches anything); ``(B, 1)`` label columns against ``(B, C)`` predictions with
    ``C > 1`` raise instead of broadcasting, unlike the reference TensorFlow code.

    Raises:
        InputError: one line naming both shapes and what was expected, or the bad label.
    """
    pred_shape = tuple(y_pred.shape)
    if _check_target_shapes(tuple(y_true.shape), pred_shape, name):
        check_labels(y_true, pred_shape[-1], name=name)
        return y_true, True
    return ops.cast(y_true, y_pred.dtype), False


def dense_targets(y_true: Any, y_pred: Any, *, name: str = "loss") -> Any:
    """One-hot/soft targets shaped like ``y_pred`` from class labels or dense targets (checked
    as :func:`targets` does)."""
    y, is_labels = targets(y_true, y_pred, name=name)
    if not is_labels:
        return y
    return ops.one_hot(ops.cast(y, "int32"), y_pred.shape[-1], dtype=y_pred.dtype)


def log_probs(y_pred: Any, *, from_logits: bool, renormalize: bool = False) -> Any:
    """Class log-probabilities on the last axis: ``log_softmax`` of logits, or
    ``log(clip(p, 1e-7, 1 - 1e-7))`` of probabilities (renormalised first if asked, as Keras'
    focal loss does). Mirrors :func:`ngl.losses._common.log_probs`."""
    if from_logits:
        return ops.log_softmax(y_pred, axis=-1)
    if renormalize:
        y_pred = y_pred / ops.sum(y_pred, axis=-1, keepdims=True)
    return ops.log(ops.clip(y_pred, EPS, 1.0 - EPS))


class KerasLoss(keras.losses.Loss):
    """Base of every ngl Keras loss: stores ``from_logits`` and the hyperparameters listed in
    ``_hparams``, turns targets dense and delegates to :meth:`per_sample`.

    Subclasses set ``_hparams`` (attribute names that ``get_config`` saves) and implement
    ``per_sample(y, y_pred)`` with ``y`` dense, shaped like ``y_pred``.
    """

    _hparams: tuple[str, ...] = ()

    def __init__(self, *, from_logits: bool = False, reduction: str | None = "sum_over_batch_size",
                 name: str | None = None, dtype: Any = None) -> None:
        if reduction not in REDUCTIONS:
            raise InputError(f"reduction must be one of {', '.join(map(repr, REDUCTIONS))}, got "
                             f"{reduction!r}")
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


#: Former name of :class:`KerasLoss` (it is the base of every Keras loss, not NGL's); kept for one
#: release.
NGLKerasLoss = KerasLoss
