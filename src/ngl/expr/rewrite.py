"""Readable forms of found losses: SymPy-simplified, constants rounded, kept only where they train
exactly like the original (:func:`readable`, :func:`readable_infix`).

A GP winner such as ``exp(-(y / (2.1897 * (1.0999 * ((-0.5829) * p) - (-2.3351)) - y)) * ...)``
carries chains of constants that SymPy folds at once. A rewritten form may only replace the
original where it is the same loss *under ngl's protected operators* (``div``, ``log``, ``sqrt``
of :mod:`ngl.expr.tree`): SymPy sees ``a / b``, ``log|a|`` and ``sqrt|a|`` without the guards, so
``log(p**2) -> 2*log(p)`` or ``sqrt(p)**2 -> p`` change the loss at ``p = 0``. Every candidate is
therefore checked numerically (values and gradients w.r.t. ``p``, float64 torch autograd through
:func:`ngl.expr.evaluate`) on :func:`check_grid`, and the raw tree is kept when none passes.

>>> str(readable(parse("p * 1.0999 * 1.767 * y")))
'1.944 * p * y'
>>> str(readable(parse("log(square(p))")))      # 2*log(p) differs at p = 0
'log(square(p))'
"""
from __future__ import annotations

import math
from typing import Any

from .text import parse
from .tree import MAX_DEPTH, MAX_NODES, Expr, ExprError, call, const, evaluate, fold, to_infix

__all__ = ["readable", "readable_infix", "check_grid", "round_constants", "from_sympy", "DIGITS",
           "EXACT_TOL", "ROUNDED_TOL", "SIMPLIFY_MAX_NODES", "REWRITE_MAX_NODES"]

#: trees above this many nodes skip ``sympy.simplify`` (as do trees with sin, cos or tanh)
SIMPLIFY_MAX_NODES = 48
#: and above this many also SymPy's cheap rewrites (its automatic folding still applies)
REWRITE_MAX_NODES = 96
#: significant digits of the constants of a readable form
DIGITS = 4
#: a rewritten form with exact constants must match the original to this (relative and absolute)
EXACT_TOL = 1e-6
#: and its rounded version to this, relative to each value plus the RMS over the p of its y
ROUNDED_TOL = 1e-3

_FUNCS = {"exp": "exp", "log": "log", "sin": "sin", "cos": "cos", "tanh": "tanh", "Abs": "abs"}


class _Unsupported(Exception):
    """SymPy produced something no ngl primitive expresses."""


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------
def check_grid(points: int = 65) -> tuple[Any, Any]:
    """The inputs a rewrite is checked on: ``points`` values of p on [0, 1] (the 33-point probe
    grid of :func:`ngl.expr.probe_grid` included) times y in {0, 0.1, 0.5, 0.9, 1}, float64 NumPy.

    >>> p, y = check_grid(3)
    >>> p.tolist()[:3], sorted(set(y.tolist()))
    ([0.0, 0.5, 1.0], [0.0, 0.1, 0.5, 0.9, 1.0])
    """
    import numpy as np

    ys = np.array([0.0, 0.1, 0.5, 0.9, 1.0])
    p = np.linspace(0.0, 1.0, points, dtype=np.float64)
    return np.tile(p, len(ys)), np.repeat(ys, points)


def _behaviour(expr: Expr) -> tuple[Any, Any]:
    """Values and d/dp of ``expr`` on :func:`check_grid` (float64 torch autograd), one row per y."""
    import numpy as np
    import torch

    gp, gy = check_grid()
    p = torch.tensor(gp, dtype=torch.float64, requires_grad=True)
    y = torch.tensor(gy, dtype=torch.float64)
    value = evaluate(expr, p, y, namespace="torch")
    (grad,) = torch.autograd.grad(value.sum(), p, allow_unused=True)
    grad = np.zeros_like(gp) if grad is None else grad.detach().numpy()
    rows = len(set(gy.tolist()))
    return value.detach().numpy().reshape(rows, -1), grad.reshape(rows, -1)


def _close(a: Any, b: Any, *, tol: float, scaled: bool) -> bool:
    """``|a - b| <= tol * (|b| + s)`` everywhere, with s = 1 or (``scaled``) the RMS of the finite
    ``b`` of the same row (the same y); non-finite entries must sit at the same places and be
    equal (NaN equals NaN)."""
    import numpy as np

    fa, fb = np.isfinite(a), np.isfinite(b)
    if not (fa == fb).all() or not np.array_equal(a[~fb], b[~fb], equal_nan=True):
        return False
    s = np.ones((len(b), 1))
    if scaled:              # per row, without overflow: top * rms(b / top)
        b0 = np.where(fb, np.abs(b), 0.0)
        top = np.max(b0, axis=1, keepdims=True)
        safe = np.where(top > 0, top, 1.0)
        mean_sq = np.sum((b0 / safe) ** 2, axis=1, keepdims=True) / np.maximum(fb.sum(1, keepdims=True), 1)
        s = top * np.sqrt(mean_sq)
    return bool(np.all((np.abs(a - b) <= tol * (np.abs(b) + s))[fb]))


def _same(candidate: Expr, reference: tuple[Any, Any], *, tol: float, scaled: bool) -> bool:
    import numpy as np

    with np.errstate(all="ignore"):
        got = _behaviour(candidate)
        return all(_close(g, r, tol=tol, scaled=scaled) for g, r in zip(got, reference))


# --------------------------------------------------------------------------------------------
# SymPy -> Expr
# --------------------------------------------------------------------------------------------
def _number(node: Any) -> Expr:
    try:
        value = complex(node)
    except (TypeError, ValueError):
        raise _Unsupported(f"number {node}") from None
    if value.imag or not math.isfinite(value.real):
        raise _Unsupported(f"number {node}")
    return const(value.real)


def _product(factors: list[Expr]) -> Expr | None:
    out = None
    for f in factors:
        out = f if out is None else call("mul", out, f)
    return out


def _power(base: Expr, exponent: Any) -> Expr:
    """``base ** exponent`` from square, sqrt, mul and div (else exp(e * log(base)))."""
    import sympy

    if exponent.is_Float and float(8 * exponent).is_integer():       # p**0.5 is sqrt(p)
        exponent = sympy.Rational(float(exponent))
    if exponent.is_Rational and exponent.q in (1, 2):
        return _half_power(base, int(2 * exponent))
    if exponent.is_Rational and exponent.q in (4, 8):
        return call("sqrt", _power(base, 2 * exponent))
    if exponent.is_Number:
        return call("exp", call("mul", _number(exponent), call("log", base)))
    raise _Unsupported(f"power with exponent {exponent}")


def _half_power(base: Expr, twice: int) -> Expr:
    """``base ** (twice / 2)``."""
    if twice < 0:
        return call("div", 1.0, _half_power(base, -twice))
    if twice % 2:
        root = call("sqrt", base)
        return root if twice == 1 else call("mul", _half_power(base, twice - 1), root)
    n = twice // 2
    if n == 0:
        return const(1.0)
    if n == 1:
        return base
    if n % 2:
        return call("mul", _half_power(base, twice - 2), base)
    return call("square", _half_power(base, n))


def _mul(node: Any) -> Expr:
    coeff, rest = node.as_coeff_Mul()
    num, den = [], []
    for f in rest.as_ordered_factors():
        if f.is_Pow and f.exp.is_Number and f.exp.is_negative:
            den.append(_power(from_sympy(f.base), -f.exp))
        else:
            num.append(from_sympy(f))
    if coeff.is_negative:
        return call("neg", _mul(-node))
    if coeff != 1:
        num.insert(0, _number(coeff))
    top = _product(num) or const(1.0)
    return call("div", top, _product(den)) if den else top


def _add(node: Any) -> Expr:
    terms = list(node.as_ordered_terms())
    terms.sort(key=lambda t: t.could_extract_minus_sign())          # stable: positive terms first
    out = None
    for t in terms:
        negative = t.could_extract_minus_sign()
        part = from_sympy(-t if negative else t)
        if out is None:
            out = call("neg", part) if negative else part
        else:
            out = call("sub" if negative else "add", out, part)
    return out


def from_sympy(node: Any) -> Expr:
    """The ngl tree of a SymPy expression over symbols named ``p`` and ``y`` (``+ - * /``, powers
    by square/sqrt/mul/div, exp, log, sin, cos, tanh, Abs, Min, Max). Anything else (sinh,
    Piecewise, complex numbers, infinities) raises :class:`~ngl.expr.ExprError`.

    >>> import sympy
    >>> p, y = sympy.symbols("p y")
    >>> str(from_sympy(2 * p / (y + 1) - sympy.sqrt(p)))
    '2 * p / (y + 1) - sqrt(p)'
    """
    try:
        return _from_sympy(node)
    except (_Unsupported, RecursionError) as exc:
        raise ExprError(f"no ngl form for the sympy expression {node}: {exc}") from None


def _from_sympy(node: Any) -> Expr:
    if node.is_Symbol:
        if node.name not in ("p", "y"):
            raise _Unsupported(f"symbol {node.name}")
        return Expr(node.name)
    if node.is_Number or node.is_NumberSymbol:
        return _number(node)
    if node.is_Add:
        return _add(node)
    if node.is_Mul:
        return _mul(node)
    if node.is_Pow:
        return _power(from_sympy(node.base), node.exp)
    name = type(node).__name__
    if name in _FUNCS:
        return call(_FUNCS[name], *[from_sympy(a) for a in node.args])
    if name in ("Min", "Max"):
        args = [from_sympy(a) for a in node.args]
        out = args[0]
        for a in args[1:]:
            out = call(name.lower(), out, a)
        return out
    raise _Unsupported(name)


# --------------------------------------------------------------------------------------------
# Expr -> SymPy, rounding, the choice
# --------------------------------------------------------------------------------------------
def _sympy_forms(expr: Expr) -> list[Any]:
    """Rewrites of ``expr`` by SymPy over ``p > 0`` and ``y >= 0`` (a probability and a target;
    the check covers ``p = 0``): the automatically folded form; up to :data:`REWRITE_MAX_NODES`
    nodes also ``factor_terms``, ``cancel``, ``powsimp`` and ``factor_terms(together(.))`` of it
    (milliseconds); and up to :data:`SIMPLIFY_MAX_NODES` nodes without sin, cos or tanh also
    ``sympy.simplify`` (its ``trigsimp`` takes seconds to minutes on trigonometric trees and,
    on 100 random trees, shrank them no more than the cheap rewrites did)."""
    import sympy

    p, y = sympy.Symbol("p", positive=True), sympy.Symbol("y", nonnegative=True)

    def number(v: float) -> Any:
        return sympy.Integer(int(v)) if v.is_integer() and abs(v) < 1e15 else sympy.Float(v, 17)

    folded = fold(expr, p=p, y=y, const=number, apply=lambda prim, args: prim.sym(sympy, *args))
    forms = [folded]
    rewrites = [sympy.factor_terms, sympy.cancel, sympy.powsimp,
                lambda f: sympy.factor_terms(sympy.together(f))] if expr.size <= REWRITE_MAX_NODES else []
    if expr.size <= SIMPLIFY_MAX_NODES and not folded.has(sympy.sin, sympy.cos, sympy.tanh):
        rewrites.append(sympy.simplify)
    for rewrite in rewrites:
        try:
            forms.append(rewrite(folded))
        except Exception:       # noqa: BLE001  SymPy raises many kinds; a failed rewrite is no candidate
            continue
    return forms


def round_constants(expr: Expr, digits: int = DIGITS) -> Expr:
    """``expr`` with every constant rounded to ``digits`` significant digits.

    >>> str(round_constants(parse("1.94352331 * p - 0.000123456")))
    '1.944 * p - 0.0001235'
    """
    if expr.op == "const":
        return const(float(f"{expr.value:.{digits}g}"))
    if not expr.args:
        return expr
    return Expr(expr.op, tuple(round_constants(a, digits) for a in expr.args))


def _tidy(expr: Expr) -> Expr:
    """Rewrites that are exact in floating point, values and gradients alike: a subtree without
    p or y becomes its value, ``log(abs(a))`` and ``sqrt(abs(a))`` drop the abs (ngl's log and
    sqrt take |a|), ``abs(abs(a))`` and ``neg(neg(a))`` fold, and ``a + (-c)``, ``(-c) + a``,
    ``a - (-c)`` become ``a - c``, ``a - c``, ``a + c``.

    >>> str(_tidy(parse("log(abs(p + (-2.5))) - (-1.5) * exp(0)")))
    'log(p - 2.5) + 1.5'
    """
    if expr.args and not expr.symbols:                  # a constant subtree: its float64 value
        import numpy as np

        with np.errstate(all="ignore"):
            value = float(evaluate(expr, np.float64(0.0), np.float64(0.0), namespace="numpy"))
        return const(value) if math.isfinite(value) else expr
    args = tuple(_tidy(a) for a in expr.args)
    negative = [a.op == "const" and a.value < 0 for a in args]
    if expr.op in ("log", "sqrt") and args[0].op == "abs":
        args = args[0].args
    elif expr.op in ("abs", "neg") and args[0].op == expr.op:
        return args[0] if expr.op == "abs" else args[0].args[0]
    elif expr.op == "add" and negative[1]:
        return call("sub", args[0], const(-args[1].value))
    elif expr.op == "add" and negative[0]:
        return call("sub", args[1], const(-args[0].value))
    elif expr.op == "sub" and negative[1]:
        return call("add", args[0], const(-args[1].value))
    return Expr(expr.op, args, expr.value) if args else expr


def _key(expr: Expr) -> tuple[int, int]:
    return expr.size, len(to_infix(expr))


def _candidates(expr: Expr) -> list[Expr]:
    """:func:`_tidy` of ``expr`` and of each SymPy form that ngl can express."""
    out = [_tidy(expr)]
    try:
        forms = _sympy_forms(expr)
    except Exception:           # noqa: BLE001  e.g. Max(nan, p) while SymPy folds: no SymPy forms
        return out
    for form in forms:
        try:
            out.append(_tidy(from_sympy(form)))
        except ExprError:
            continue
    return out


def _rounded(expr: Expr, reference: tuple[Any, Any], digits: int) -> Expr:
    """``expr`` with constants of ``digits`` significant digits, or more (up to 6) where fewer
    change the loss beyond :data:`ROUNDED_TOL`; ``expr`` itself if even 6 do."""
    for nd in range(digits, max(digits, 6) + 1):
        rounded = round_constants(expr, nd)
        if rounded == expr:
            return expr
        if _same(rounded, reference, tol=ROUNDED_TOL, scaled=True):
            return rounded
    return expr


def readable(expr: Expr, *, digits: int = DIGITS) -> Expr:
    """The simplest form of ``expr`` that trains like it; ``expr`` itself where none is found.

    Candidates: ``expr`` with exact folds (:func:`_tidy`) and SymPy's rewrites of it
    (:func:`_sympy_forms`: folded, cheap rewrites, ``sympy.simplify`` for small trees without
    trigonometry) converted back to ngl primitives (forms ngl cannot express, or beyond
    :data:`~ngl.expr.MAX_NODES` / :data:`~ngl.expr.MAX_DEPTH`, are dropped). On
    :func:`check_grid`, with values ``v`` and gradients ``g = df/dp`` (float64 torch autograd
    through the protected operators):

    1. a candidate with its exact constants is kept only if ``|v_c - v| <= 1e-6 (1 + |v|)`` and
       the same for ``g`` (:data:`EXACT_TOL`; non-finite entries identical);
    2. its constants (and those of ``expr`` itself) rounded to ``digits`` significant digits
       replace it if ``|v_r - v| <= 1e-3 (|v| + rms_y(v))`` and the same for ``g``, where
       ``rms_y`` is the RMS over the p of the same y (:data:`ROUNDED_TOL`: rounding moves a
       constant by up to 5e-5 relatively, so this asks for the same loss to a thousandth of its
       scale at each target value, not to 1e-6); where that fails, one more digit is tried, up
       to 6, and then the exact constants stay.

    The smallest survivor (nodes, then infix length) wins; ``expr`` wins ties. Takes 0.01 to
    0.3 s per tree.

    >>> str(readable(parse("p / p * y")))     # y differs at p = 0 (protected division)
    'p / p * y'
    """
    import numpy as np

    with np.errstate(all="ignore"):
        reference = _behaviour(expr)
    best, best_key = expr, _key(expr)
    exact = [c for c in _candidates(expr) if c.size <= MAX_NODES and c.height <= MAX_DEPTH
             and _same(c, reference, tol=EXACT_TOL, scaled=False)]
    for cand in [expr, *exact]:
        cand = _rounded(cand, reference, digits)
        if _key(cand) < best_key:
            best, best_key = cand, _key(cand)
    return best


def readable_infix(infix: str, *, digits: int = DIGITS) -> str:
    """:func:`readable` of an infix string, as infix.

    >>> readable_infix("exp(-(y * (2.5 * p - (-1.25))))")
    'exp(-(y * (2.5 * p + 1.25)))'
    """
    return to_infix(readable(parse(infix), digits=digits))
