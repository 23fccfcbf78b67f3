"""Every registered ngl loss as a ``keras.losses.Loss`` written with ``keras.ops``.

One class runs on the tensorflow, jax and torch backends and gives the numbers of its PyTorch
twin in :mod:`ngl.losses` (same hyperparameters, defaults, clipping constants and per-sample
forms). Two deliberate differences follow Keras conventions:

- ``from_logits=False`` by default: ``y_pred`` holds probabilities, as from a model ending in a
  softmax layer (the published Keras example). Pass ``from_logits=True`` for logits.
- The class axis is the LAST one; ``sample_weight`` and ``class_weight`` (``model.fit``) replace
  PyTorch's ``weight``/``ignore_index``; ``reduction="sum_over_batch_size"`` is PyTorch's ``"mean"``.

Each class is registered next to its definition, in :data:`ngl.keras.LOSSES` under the name of
its PyTorch twin, and for serialisation under package ``ngl`` (``"ngl>NGL"`` ...).
"""
from __future__ import annotations

import os
from typing import Any, Callable

import keras
from keras import ops

from .. import expr as E
from ..errors import InputTypeError
from ..expr import NGL_ALPHA, as_expression, is_expression_spec
from ._common import KerasLoss, check_bool, check_number, log_probs, targets
from ._ngl_fast import ngl_per_sample
from .registry import LOSSES

__all__ = ["NGL", "CE", "CEL2", "Focal", "SCE", "Poly1", "LabelSmoothingCE", "Expression",
           "apply_l2", "as_expression", "get_loss", "from_expression"]

_serializable = keras.saving.register_keras_serializable(package="ngl")


def _register(name: str) -> Callable[[type[KerasLoss]], type[KerasLoss]]:
    """Register a loss class in :data:`LOSSES` under ``name`` and with Keras (``"ngl>Class"``)."""
    def deco(cls: type[KerasLoss]) -> type[KerasLoss]:
        return LOSSES.add(name, _serializable(cls))
    return deco


@_register("ce")
class CE(KerasLoss):
    """Cross entropy :math:`-\\sum_c \\tilde y_c \\log p_c`, ``ỹ = (1 - s) y + s / C``.

    Probabilities (``from_logits=False``, default) are clipped to ``[1e-7, 1 - 1e-7]`` and
    renormalised in log space, exactly as ``ngl.losses.ce_loss`` feeds them to
    ``F.cross_entropy``; logits go through ``log_softmax``.

    Args:
        label_smoothing: ``s`` in ``[0, 1]`` (Szegedy et al. 2016).
    """

    _hparams = ("label_smoothing",)

    def __init__(self, *, from_logits: bool = False, label_smoothing: float = 0.0, **kw: Any) -> None:
        super().__init__(from_logits=from_logits, **kw)
        self.label_smoothing = check_number("label_smoothing", label_smoothing, low=0.0, high=1.0)

    def per_sample(self, y: Any, y_pred: Any) -> Any:
        logits = y_pred if self.from_logits else log_probs(y_pred, from_logits=False)
        logp = ops.log_softmax(logits, axis=-1)
        if self.label_smoothing:
            y = y * (1.0 - self.label_smoothing) + self.label_smoothing / y_pred.shape[-1]
        return -ops.sum(y * logp, axis=-1)


def apply_l2(model: keras.Model, l2: float) -> int:
    """Put ``keras.regularizers.L2(l2)`` on every trainable variable with ``ndim >= 2`` (the
    kernels of conv/dense layers; biases and norm scales are exempt), the rule of
    ``ngl.losses.l2_penalty``. ``model.fit`` then adds ``l2 * sum(w**2)`` to the loss. The
    regularizer lives on the built variables: call it again after ``load_model``.

    Returns:
        The number of variables regularised.
    """
    l2 = check_number("l2", l2, low=0.0)
    count = 0
    for variable in model.trainable_variables:
        if len(variable.shape) >= 2:
            variable.regularizer = keras.regularizers.L2(l2)
            count += 1
    return count


@_register("ce_l2")
class CEL2(CE):
    """CE; its L2 weight penalty ``l2 * sum(W**2)`` is a regularizer the user applies.

    A Keras loss sees only ``(y_true, y_pred)``, so the penalty goes on the model:
    ``loss.apply_to(model)`` (all kernels, as the PyTorch trainer's ``penalty(model)``) or
    ``kernel_regularizer=loss.regularizer()`` on the layers you build. ``l2`` defaults to 1e-4
    (the paper does not publish its weight).
    """

    _hparams = ("label_smoothing", "l2")

    def __init__(self, *, l2: float = 1e-4, **kw: Any) -> None:
        super().__init__(**kw)
        self.l2 = check_number("l2", l2, low=0.0)

    def regularizer(self) -> keras.regularizers.Regularizer:
        return keras.regularizers.L2(self.l2)

    def apply_to(self, model: keras.Model) -> int:
        """:func:`apply_l2` with this loss's ``l2``."""
        return apply_l2(model, self.l2)


@_register("focal")
class Focal(KerasLoss):
    """Focal loss, :math:`-\\alpha \\sum_c y_c (1 - p_c)^\\gamma \\log p_c` (Lin et al., ICCV 2017).

    The probability path renormalises and clips to ``[1e-7, 1 - 1e-7]`` as Keras'
    ``CategoricalFocalCrossentropy``; the logit path is exact (log space).

    Args:
        gamma: focusing parameter >= 0 (0 gives alpha-scaled CE).
        alpha: balance factor for every class, or None for 1.
    """

    _hparams = ("gamma", "alpha")

    def __init__(self, *, gamma: float = 2.0, alpha: float | None = 0.25, from_logits: bool = False,
                 **kw: Any) -> None:
        super().__init__(from_logits=from_logits, **kw)
        self.gamma = check_number("gamma", gamma, low=0.0)
        self.alpha = None if alpha is None else check_number("alpha", alpha, low=0.0)

    def per_sample(self, y: Any, y_pred: Any) -> Any:
        logp = log_probs(y_pred, from_logits=self.from_logits, renormalize=True)
        terms = y * logp
        if self.gamma:
            terms = terms * ops.power(-ops.expm1(logp), self.gamma)
        loss = -ops.sum(terms, axis=-1)
        return loss if self.alpha is None else self.alpha * loss


@_register("sce")
class SCE(KerasLoss):
    """Symmetric cross entropy :math:`\\alpha\\,\\mathrm{CE} + \\beta\\,\\mathrm{RCE}`,
    ``RCE = -sum_c clip(p_c, 1e-7, 1) log clip(y_c, 1e-4, 1)`` (Wang et al., ICCV 2019).

    Args:
        alpha, beta: weights of CE and reverse CE (defaults: the authors' CIFAR-10 0.1 / 1.0).
    """

    _hparams = ("alpha", "beta")

    def __init__(self, *, alpha: float = 0.1, beta: float = 1.0, from_logits: bool = False,
                 **kw: Any) -> None:
        super().__init__(from_logits=from_logits, **kw)
        self.alpha = check_number("alpha", alpha, low=0.0)
        self.beta = check_number("beta", beta, low=0.0)

    def per_sample(self, y: Any, y_pred: Any) -> Any:
        logp = log_probs(y_pred, from_logits=self.from_logits)
        p = ops.clip(ops.exp(logp), 1e-7, 1.0)
        ce = -ops.sum(y * logp, axis=-1)
        rce = -ops.sum(p * ops.log(ops.clip(y, 1e-4, 1.0)), axis=-1)
        return self.alpha * ce + self.beta * rce


@_register("ngl")
class NGL(KerasLoss):
    """Next Generation Loss (f5 of Akhmedova & Körber, arXiv 2404.12948).

    .. math:: \\ell = \\frac{1}{C}\\sum_c e^{\\alpha - p_c(1+y_c)} - \\cos(\\cos(\\sin p_c))

    per sample (a mean over classes), so the default reduction gives the reference code's mean
    over the whole ``(B, C)`` tensor. Computed by the fast path of :mod:`ngl.keras._ngl_fast`
    (polynomials for the wrong classes, an exact true-class correction, a custom gradient): within
    1e-6 (relative) of the formula above, at about the cost of cross entropy.

    Args:
        alpha: the constant 2.4092 of the published loss.
        from_logits: False (default, Keras convention): ``y_pred`` are probabilities (a softmax
            output, in ``[0, 1]``); True applies a softmax on the last axis first (the reference
            PyTorch code).
        scaling: apply a sigmoid to the probabilities first, as the reference Keras example does
            (``scaling=True`` there); it squeezes ``p`` into ``[0.5, 0.731]``.
        reduction, name, dtype: as ``keras.losses.Loss``.

    Example::

        model.compile(optimizer="adam", loss=ngl.keras.NGL())   # the model ends in a softmax
        ngl.keras.NGL()([0, 2], [[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]])   # 6.78009...
    """

    _hparams = ("alpha", "scaling")

    def __init__(self, *, alpha: float = NGL_ALPHA, from_logits: bool = False, scaling: bool = False,
                 **kw: Any) -> None:
        super().__init__(from_logits=from_logits, **kw)
        self.alpha = check_number("alpha", alpha)
        self.scaling = check_bool("scaling", scaling)

    def call(self, y_true: Any, y_pred: Any) -> Any:
        y, _ = targets(y_true, y_pred, name="NGL")
        return ngl_per_sample(y, y_pred, alpha=self.alpha, from_logits=self.from_logits,
                              scaling=self.scaling)


@_register("poly1")
class Poly1(KerasLoss):
    """Poly-1 (Leng et al., ICLR 2022): :math:`\\mathrm{CE} + \\epsilon (1 - p_t)`,
    ``p_t = sum_c y_c p_c``."""

    _hparams = ("epsilon",)

    def __init__(self, *, epsilon: float = 1.0, from_logits: bool = False, **kw: Any) -> None:
        super().__init__(from_logits=from_logits, **kw)
        self.epsilon = check_number("epsilon", epsilon)

    def per_sample(self, y: Any, y_pred: Any) -> Any:
        logp = log_probs(y_pred, from_logits=self.from_logits)
        p_t = ops.sum(y * ops.exp(logp), axis=-1)
        return -ops.sum(y * logp, axis=-1) + self.epsilon * (1.0 - p_t)


@_register("label_smoothing_ce")
class LabelSmoothingCE(CE):
    """CE against ``(1 - s) y + s / C`` with ``smoothing`` s = 0.1 by default."""

    _hparams = ("smoothing",)

    def __init__(self, *, smoothing: float = 0.1, **kw: Any) -> None:
        super().__init__(label_smoothing=smoothing, **kw)
        self.smoothing = self.label_smoothing


@_serializable
class Expression(KerasLoss):
    """Any :mod:`ngl.expr` loss expression, :math:`\\frac{1}{C}\\sum_c f(p_c, y_c)` per sample.

    Args:
        expression: an ``Expr``, a ``.json`` expression file, its JSON document, or infix text
            (``"expr:"`` prefix optional).
        from_logits: as :class:`NGL` (default False: ``y_pred`` are probabilities).

    The config stores the expression's infix text, so a saved model needs no expression file.
    """

    def __init__(self, expression: E.Expr | str | os.PathLike[str] | dict[str, Any], *,
                 from_logits: bool = False, **kw: Any) -> None:
        super().__init__(from_logits=from_logits, **kw)
        self.expression = as_expression(expression)

    def per_sample(self, y: Any, y_pred: Any) -> Any:
        p = self.probs(y_pred)
        return ops.mean(E.evaluate(self.expression, p, y, namespace="keras"), axis=-1)

    def get_config(self) -> dict[str, Any]:
        config = super().get_config()
        config["expression"] = E.to_infix(self.expression)   # parse() reads it back exactly
        return config

    def __repr__(self) -> str:
        return f"Expression({E.to_infix(self.expression)!r}, from_logits={self.from_logits!r})"


def get_loss(spec: str, **kwargs: Any) -> Any:
    """A Keras loss by registry name (``"ngl"``), Keras registered name (``"ngl>NGL"``),
    expression file (``*.json``) or ``"expr:<infix>"``; ``kwargs`` go to the constructor.

    >>> get_loss("focal", gamma=1.5, from_logits=True)
    Focal(from_logits=True, gamma=1.5, alpha=0.25)
    >>> get_loss("ngl>NGL")
    NGL(from_logits=False, alpha=2.4092, scaling=False)

    Raises:
        UnknownNameError: an unknown name (the message names close matches).
    """
    if not isinstance(spec, str):
        raise InputTypeError(f"loss spec must be a string, got {type(spec).__name__}")
    if spec in LOSSES:
        return LOSSES.get(spec)(**kwargs)
    if spec.startswith("ngl>"):
        cls = keras.saving.get_registered_object(spec)
        if cls is not None:
            return cls(**kwargs)
    if is_expression_spec(spec, registered=LOSSES):
        return from_expression(spec, **kwargs)
    return LOSSES.get(spec)(**kwargs)   # an unknown name: UnknownNameError naming close matches


def from_expression(spec: Any, **kwargs: Any) -> Any:
    """A Keras loss from an expression: an ``Expr``, a saved ``.json`` file (e.g. from the GP
    search's hall of fame), its JSON document, or infix text. ``kwargs``: ``from_logits``,
    ``reduction``, ``name``.

    >>> from_expression("square(p - y)", from_logits=True)
    Expression('square(p - y)', from_logits=True)
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    return Expression(spec, **kwargs)
