"""Expressions as text: infix printing and a safe parser, sympy/LaTeX forms, canonical keys."""
from __future__ import annotations

import hashlib
import re
from typing import Any

from .tree import MAX_DEPTH, MAX_NODES, PRIMITIVES, TERMINALS, Expr, ExprError, _check_limits, const, evaluate, fold

__all__ = ["to_infix", "parse", "to_sympy", "simplify", "to_latex", "fingerprint"]


# --------------------------------------------------------------------------------------------
# Infix printing and parsing
# --------------------------------------------------------------------------------------------
def _fmt_const(v: float) -> str:
    text = str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return f"({text})" if v < 0 or text.startswith("-") else text


def to_infix(expr: Expr) -> str:
    """Readable infix; :func:`parse` reads it back to the identical tree."""
    if expr.op in TERMINALS:
        return expr.op
    if expr.op == "const":
        return _fmt_const(expr.value)
    prim = PRIMITIVES[expr.op]
    if prim.infix:
        a, b = expr.args
        left, right = to_infix(a), to_infix(b)
        if _prec(a) < prim.precedence:
            left = f"({left})"
        if _prec(b) <= prim.precedence:
            right = f"({right})"
        return f"{left} {prim.infix} {right}"
    if expr.op == "neg":
        inner = to_infix(expr.args[0])
        return f"-{inner}" if _prec(expr.args[0]) >= 4 and expr.args[0].op != "const" else f"-({inner})"
    return f"{expr.op}({', '.join(to_infix(a) for a in expr.args)})"


def _prec(expr: Expr) -> int:
    return PRIMITIVES[expr.op].precedence if expr.op in PRIMITIVES else 4


_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z_]\w*)|(.))")
_BINARY = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


def parse(text: str) -> Expr:
    """Parse infix such as ``"exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))"`` without ``eval``.

    Grammar: ``+ - * /`` with the usual precedence, unary minus, parentheses, numbers, ``p``,
    ``y`` and calls of any primitive by name (``min(a, b)``, ``square(p)``, ``add(p, y)``).
    """
    if not isinstance(text, str):
        raise ExprError(f"expected an expression string, got {type(text).__name__}")
    if len(text) > 20 * MAX_NODES:
        raise ExprError(f"expression text is {len(text)} characters; at most {20 * MAX_NODES} allowed")
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        num, name, other = m.groups()
        tokens.append(("num", num) if num else ("name", name) if name else ("op", other))
        pos = m.end()
    tokens.append(("end", ""))
    i = 0

    def peek() -> tuple[str, str]:
        return tokens[i]

    def take(kind: str, val: str | None = None) -> str:
        nonlocal i
        k, v = tokens[i]
        if k != kind or (val is not None and v != val):
            want = val or kind
            raise ExprError(f"cannot parse {text!r}: expected {want!r} but found {v or 'end of text'!r}")
        i += 1
        return v

    def expression(depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise ExprError(f"expression is nested deeper than {MAX_DEPTH} levels")
        node = term(depth)
        while peek() in (("op", "+"), ("op", "-")):
            node = Expr(_BINARY[take("op")], (node, term(depth)))
        return node

    def term(depth: int) -> Expr:
        node = unary(depth)
        while peek() in (("op", "*"), ("op", "/")):
            node = Expr(_BINARY[take("op")], (node, unary(depth)))
        return node

    def unary(depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise ExprError(f"expression is nested deeper than {MAX_DEPTH} levels")
        if peek() == ("op", "-"):
            take("op", "-")
            if peek()[0] == "num":
                return const(-float(take("num")))
            return Expr("neg", (unary(depth + 1),))
        return atom(depth)

    def atom(depth: int) -> Expr:
        kind, val = peek()
        if kind == "num":
            return const(float(take("num")))
        if kind == "op" and val == "(":
            take("op", "(")
            node = expression(depth + 1)
            take("op", ")")
            return node
        if kind == "name":
            take("name")
            if val in TERMINALS:
                return Expr(val)
            if val not in PRIMITIVES:
                raise ExprError(f"unknown primitive {val!r} in {text!r}; expected one of {sorted(PRIMITIVES)}")
            take("op", "(")
            args = [expression(depth + 1)]
            while peek() == ("op", ","):
                take("op", ",")
                args.append(expression(depth + 1))
            take("op", ")")
            return Expr(val, tuple(args))
        raise ExprError(f"cannot parse {text!r}: unexpected {val or 'end of text'!r}")

    node = expression(0)
    if peek()[0] != "end":
        raise ExprError(f"cannot parse {text!r}: unexpected {peek()[1]!r} after a complete expression")
    _check_limits(node)
    return node


# --------------------------------------------------------------------------------------------
# sympy, LaTeX and canonical keys
# --------------------------------------------------------------------------------------------
def to_sympy(expr: Expr) -> Any:
    """The sympy form (protected ops appear unprotected: ``div`` as ``/``, ``log`` of ``|a|``)."""
    import sympy

    p, y = sympy.symbols("p y", real=True)

    def number(v: float) -> Any:
        return sympy.Integer(int(v)) if v.is_integer() and abs(v) < 1e15 else sympy.Float(v, 8)

    return fold(expr, p=p, y=y, const=number, apply=lambda prim, args: prim.sym(sympy, *args))


def simplify(expr: Expr) -> Any:
    """sympy's simplified form, for display (may be slow for large trees)."""
    import sympy

    return sympy.simplify(to_sympy(expr))


def to_latex(expr: Expr) -> str:
    import sympy

    return sympy.latex(to_sympy(expr))


def probe_grid(points: int = 33):
    """The fixed probe inputs of every expression check: ``points`` values of p on [0, 1], once with
    y = 0 and once with y = 1, as float64 NumPy arrays ``(p, y)`` of length ``2 * points``.

    >>> p, y = probe_grid(3)
    >>> p.tolist(), y.tolist()
    ([0.0, 0.5, 1.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.0, 1.0, 1.0, 1.0])
    """
    import numpy as np

    p = np.linspace(0.0, 1.0, points, dtype=np.float64)
    return np.tile(p, 2), np.repeat(np.array([0.0, 1.0]), points)


def fingerprint(expr: Expr, *, digits: int = 7) -> str:
    """A canonical key: a hash of the loss values on a fixed grid of p in [0, 1] and y in {0, 1}.

    Trees that compute the same loss (``p*y`` and ``y*p``, ``p+p`` and ``2*p``) share a key, so a
    search trains each distinct loss once. Values are rounded to ``digits`` significant digits.
    """
    import numpy as np

    p, y = probe_grid()
    with np.errstate(all="ignore"):
        values = np.asarray(evaluate(expr, p, y, namespace="numpy"), dtype=np.float64) + 0.0  # -0.0 -> 0.0
    text = ",".join(f"{v:.{digits - 1}e}" if np.isfinite(v) else str(v) for v in values.ravel())
    return hashlib.sha1(text.encode()).hexdigest()[:16]

