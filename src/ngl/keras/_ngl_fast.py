"""NGL's fast path in ``keras.ops``: polynomials for the wrong-class term, an exact true-class
correction, and a derivative that is given, not traced through the polynomials.

With integer labels the per-class term of a wrong class depends on ``p`` alone,

.. math:: h(p) = e^{\\alpha - p} - \\cos(\\cos(\\sin p)),

so a sample's loss is :math:`\\frac{1}{C}\\big[\\sum_c h(p_c) + e^{\\alpha - 2p_t} - e^{\\alpha - p_t}\\big]`
(``t`` the true class). ``h`` and ``h'`` are degree-8 Chebyshev interpolants on ``p`` in
``[0, 1]`` (max. abs. error 1.2e-7 on values of 4 to 11, 2.4e-7 on derivatives of -4 to -11:
3e-8 and 6e-8 relative), evaluated by Horner's rule: no transcendental function per element;
the two exponentials of the correction are per sample. Dense (one-hot or soft) targets keep ``e^{α - p(1+y)}`` exact (one exponential per
element) and take only ``cos(cos(sin p))`` and its derivative as polynomials.

No autodiff runs through the polynomials; how the derivative is supplied suits each backend:

- tensorflow: (inputs of at least :data:`TF_MIN_ELEMENTS` elements, or of a batch size
  unknown when traced) one XLA-compiled pass (``tf.function(jit_compile=True)``, fused even when the
  training step is not compiled) returns the value and the derivative with respect to the input
  (logits through the softmax, or probabilities through the sigmoid of ``scaling=True``); the
  backward pass only scales it (``tf.custom_gradient`` via ``keras.ops.custom_gradient``).
- jax: float32 logits on the CPU (labels or dense targets) run NGL's native kernel as an XLA
  custom call (:mod:`ngl.keras._xla`, one pass for value and gradient); otherwise the
  polynomials are ``jax.custom_jvp`` functions whose derivative is the derivative polynomial and
  ``jax.jit`` fuses the rest.
- torch: logits, with integer labels or dense targets, go to the fused path of
  :mod:`ngl.losses.ngl` (the native C kernel on CPU; torch is imported then, and only on the torch
  backend); other inputs take the TensorFlow form in eager torch ops (``torch.autograd.Function``
  via ``keras.ops.custom_gradient``).

The polynomials hold for ``p`` in ``[0, 1]``: probabilities given directly (``from_logits=False``)
outside it make the batch take the published formula element by element (``keras.ops.cond``), so
the value is the formula's, as in :func:`ngl.losses.ngl_loss`.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import keras
import numpy as np
from keras import ops

__all__ = ["DEGREE", "TF_MIN_ELEMENTS", "coefficients", "ngl_per_sample", "published"]

DEGREE = 8
#: On tensorflow, inputs with a static size below this take the published formula: for them the
#: call into the XLA pass costs more than it saves (measured at (128, 10)).
TF_MIN_ELEMENTS = 4096


def _wrong_class(alpha: float) -> tuple[Callable, Callable]:
    def h(p):
        return np.exp(alpha - p) - np.cos(np.cos(np.sin(p)))

    def dh(p):
        return -np.exp(alpha - p) - np.sin(np.cos(np.sin(p))) * np.sin(np.sin(p)) * np.cos(p)
    return h, dh


def _ccs(p):
    return np.cos(np.cos(np.sin(p)))


def _dccs(p):
    return np.sin(np.cos(np.sin(p))) * np.sin(np.sin(p)) * np.cos(p)


@functools.lru_cache(maxsize=16)
def coefficients(alpha: float) -> dict[str, tuple[float, ...]]:
    """Monomial coefficients in ``u = 2p - 1``, highest degree first, of the degree-:data:`DEGREE`
    Chebyshev interpolants on ``p`` in ``[0, 1]`` of ``h`` / ``h'`` (keys ``"h"``, ``"dh"``) and of
    ``cos(cos(sin p))`` / its derivative (``"c"``, ``"dc"``).

    >>> u = 2 * 0.3 - 1
    >>> round(float(np.polyval(coefficients(2.4092)["h"], u)), 6)   # h(0.3) = 7.6653849...
    7.665385
    """
    from numpy.polynomial import chebyshev as cheb

    h, dh = _wrong_class(alpha)
    rows = {"h": h, "dh": dh, "c": _ccs, "dc": _dccs}
    return {k: tuple(float(c) for c in cheb.cheb2poly(
        cheb.chebinterpolate(lambda u, f=f: f((u + 1) / 2), DEGREE))[::-1]) for k, f in rows.items()}


def _horner(coef: tuple[float, ...], u: Any) -> Any:
    out = coef[0] * u + coef[1]
    for c in coef[2:]:
        out = out * u + c
    return out


def _probs(x: Any, labels: Any, from_logits: bool) -> tuple[Any, Any]:
    """``p`` and, for labels, the true class's ``p_t`` (``(..., 1)``, gathered per sample)."""
    index = None if labels is None else ops.expand_dims(ops.cast(labels, "int32"), -1)
    if not from_logits:
        return x, None if index is None else ops.take_along_axis(x, index, axis=-1)
    shift = ops.max(x, axis=-1, keepdims=True)
    e = ops.exp(x - shift)
    total = ops.sum(e, axis=-1, keepdims=True)
    p_t = None if index is None else ops.exp(ops.take_along_axis(x, index, axis=-1) - shift) / total
    return e / total, p_t


def _terms(s: Any, s_t: Any, y: Any, alpha: float) -> tuple[Any, Any, Any]:
    """Per-sample value, d value / d s for every class as if it were a wrong one (or exact, for
    dense targets), and the true class's extra derivative ``delta_t`` (``(..., 1)``; 0 for dense)."""
    coef, num_classes = coefficients(alpha), s.shape[-1]
    u = 2.0 * s - 1.0
    if s_t is None:                       # dense targets: e^{a - s(1+y)} exact
        e = ops.exp(alpha - s * (1.0 + y))
        value = ops.mean(e - _horner(coef["c"], u), axis=-1)
        return value, (-(1.0 + y) * e - _horner(coef["dc"], u)) / num_classes, 0.0
    e1, e2 = ops.exp(alpha - s_t), ops.exp(alpha - 2.0 * s_t)
    value = (ops.sum(_horner(coef["h"], u), axis=-1) + ops.squeeze(e2 - e1, -1)) / num_classes
    return value, _horner(coef["dh"], u) / num_classes, (e1 - 2.0 * e2) / num_classes


def _value_and_grad(x: Any, y: Any, alpha: float, from_logits: bool, scaling: bool) -> tuple[Any, Any]:
    """Per-sample NGL and its derivative with respect to ``x`` (logits or probabilities)."""
    labels = y if len(y.shape) < len(x.shape) else None
    p, p_t = _probs(x, labels, from_logits)
    s, s_t = (ops.sigmoid(p), None if p_t is None else ops.sigmoid(p_t)) if scaling else (p, p_t)
    value, grad, delta_t = _terms(s, s_t, y, alpha)
    if scaling:
        grad = grad * s * (1.0 - s)
        delta_t = 0.0 if s_t is None else delta_t * s_t * (1.0 - s_t)
    if from_logits:                       # softmax backward: p * (g - sum(p g))
        if labels is not None:
            delta_t = delta_t * p_t
        grad = p * (grad - ops.sum(p * grad, axis=-1, keepdims=True) - delta_t)
    if labels is None:
        return value, grad
    mask = ops.expand_dims(ops.cast(labels, "int32"), -1) == ops.arange(x.shape[-1], dtype="int32")
    return value, grad + ops.where(mask, delta_t, 0.0)


@functools.lru_cache(maxsize=64)
def _tf_compiled(alpha: float, from_logits: bool, scaling: bool, kind: tuple) -> Callable:
    """The pass as an XLA function, one per ``kind`` (class count, ranks and dtypes of the
    inputs): retracing then relaxes only the batch dimensions."""
    import tensorflow as tf

    return tf.function(functools.partial(_value_and_grad, alpha=alpha, from_logits=from_logits,
                                         scaling=scaling), jit_compile=True, reduce_retracing=True)


@functools.lru_cache(maxsize=16)
def _jax_polys(alpha: float) -> tuple[Callable, Callable]:
    """``h`` and ``cos(cos(sin p))`` as element-wise ``jax.custom_jvp`` functions of ``p`` whose
    derivative is the derivative polynomial (no autodiff through Horner's rule)."""
    import jax

    coef = coefficients(alpha)

    def make(value_key: str, grad_key: str) -> Callable:
        @jax.custom_jvp
        def f(p):
            return _horner(coef[value_key], 2.0 * p - 1.0)

        @f.defjvp
        def f_jvp(primals, tangents):
            (p,), (dp,) = primals, tangents
            return f(p), _horner(coef[grad_key], 2.0 * p - 1.0) * dp
        return f
    return make("h", "dh"), make("c", "dc")


def _jax_value(x: Any, y: Any, alpha: float, from_logits: bool, scaling: bool) -> Any:
    """Per-sample NGL on jax: the loss written with the polynomial functions of
    :func:`_jax_polys`; XLA fuses it and its derivative (measured faster there than one node
    returning a precomputed gradient, which XLA's CPU fusion splits into more passes)."""
    h, ccs = _jax_polys(alpha)
    p = ops.softmax(x, axis=-1) if from_logits else x
    s = ops.sigmoid(p) if scaling else p
    if len(y.shape) == len(x.shape):
        return ops.mean(ops.exp(alpha - s * (1.0 + y)) - ccs(s), axis=-1)
    index = ops.expand_dims(ops.cast(y, "int32"), -1)
    s_t = ops.squeeze(ops.take_along_axis(s, index, axis=-1), -1)
    return (ops.sum(h(s), axis=-1) + ops.exp(alpha - 2.0 * s_t) - ops.exp(alpha - s_t)) / x.shape[-1]


def _torch_kernel(x: Any, y: Any, alpha: float, labels: bool) -> Any:
    """Logits on the torch backend, with integer labels or dense targets: the fused path of
    :func:`ngl.losses.ngl_loss` (the native C kernel on CPU), over ``(N, C)`` rows."""
    from ..losses.ngl import ngl_loss

    num_classes = x.shape[-1]
    target = y.reshape(-1).long() if labels else y.reshape(-1, num_classes)
    flat = ngl_loss(x.reshape(-1, num_classes), target, alpha=alpha, reduction="none", fast=True)
    return flat.reshape(x.shape[:-1])


def published(y: Any, x: Any, *, alpha: float, from_logits: bool, scaling: bool) -> Any:
    """Per-sample NGL by the published formula, element by element (autodiff gradient)."""
    p = ops.softmax(x, axis=-1) if from_logits else x
    p = ops.sigmoid(p) if scaling else p
    if len(y.shape) < len(x.shape):
        y = ops.one_hot(ops.cast(y, "int32"), x.shape[-1], dtype=x.dtype)
    return ops.mean(ops.exp(alpha - p * (1.0 + y)) - ops.cos(ops.cos(ops.sin(p))), axis=-1)


def _small(x: Any) -> bool:
    size = 1
    for d in x.shape:
        if d is None:
            return False
        size *= d
    return size < TF_MIN_ELEMENTS


def ngl_per_sample(y: Any, x: Any, *, alpha: float, from_logits: bool, scaling: bool) -> Any:
    """Per-sample NGL of predictions ``x`` (``(..., C)``) against labels ``(...)`` or dense
    targets ``(..., C)``, with a custom gradient (first order).

    Probabilities given directly (``from_logits=False``, ``scaling=False``) outside ``[0, 1]``
    take the published formula as it is (as :func:`ngl.losses.ngl_loss` does): the polynomials
    hold on ``[0, 1]`` only, so such a batch is computed element by element."""
    if from_logits or scaling:                 # softmax and sigmoid outputs lie in [0, 1]
        return _fast_per_sample(y, x, alpha=alpha, from_logits=from_logits, scaling=scaling)
    in_range = ops.logical_and(ops.all(x >= 0.0), ops.all(x <= 1.0))
    return ops.cond(in_range,
                    lambda: _fast_per_sample(y, x, alpha=alpha, from_logits=False, scaling=False),
                    lambda: published(y, x, alpha=alpha, from_logits=False, scaling=False))


def _fast_per_sample(y: Any, x: Any, *, alpha: float, from_logits: bool, scaling: bool) -> Any:
    backend = keras.backend.backend()
    labels = len(y.shape) < len(x.shape)
    if backend == "torch" and from_logits and not scaling:
        return _torch_kernel(x, y, alpha, labels)
    if backend == "jax":
        from . import _xla

        if from_logits and not scaling and _xla.applies(x):
            return _xla.per_sample(x, y, alpha, labels)
        return _jax_value(x, y, alpha, from_logits, scaling)
    if backend == "tensorflow" and _small(x):
        return published(y, x, alpha=alpha, from_logits=from_logits, scaling=scaling)
    kind = (x.shape[-1], len(x.shape), len(y.shape), str(x.dtype), str(y.dtype))
    compute = (_tf_compiled(alpha, from_logits, scaling, kind) if backend == "tensorflow" else
               functools.partial(_value_and_grad, alpha=alpha, from_logits=from_logits, scaling=scaling))

    @ops.custom_gradient
    def loss(x, y):
        value, grad = compute(x, y)

        def backward(*args, upstream=None):
            upstream = args[0] if upstream is None else upstream
            return ops.expand_dims(upstream, -1) * grad, None
        return value, backward

    return loss(x, y)
