"""Expressions as text: a safe infix parser, sympy/LaTeX forms, canonical keys (the infix printer
lives with the tree, :func:`ngl.expr.tree.to_infix`)."""
from __future__ import annotations

import hashlib
import re
from typing import Any

from .tree import (MAX_DEPTH, MAX_NODES, PRIMITIVES, TERMINALS, Expr, ExprError, _check_limits, const, evaluate,
                   fold, to_infix)

__all__ = ["Parser", "to_infix", "parse", "to_sympy", "simplify", "to_latex", "fingerprint"]


# --------------------------------------------------------------------------------------------
# Parsing (printing lives with the tree: ngl.expr.tree.to_infix)
# --------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"\s*(?:(\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)|([A-Za-z_]\w*)|(.))")
_BINARY = {"+": "add", "-": "sub", "*": "mul", "/": "div"}


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:       # only trailing whitespace is left
            break
        num, name, other = m.groups()
        tokens.append(("num", num) if num else ("name", name) if name else ("op", other))
        pos = m.end()
    tokens.append(("end", ""))
    return tokens


class Parser:
    """Recursive descent over the tokens of one expression text (never ``eval``).

    Grammar: ``expression := term (("+" | "-") term)*``, ``term := unary (("*" | "/") unary)*``,
    ``unary := "-" unary | atom``, ``atom := number | p | y | name "(" expression ("," expression)* ")"
    | "(" expression ")"``. Nesting deeper than :data:`MAX_DEPTH` is refused.

    >>> tree = Parser("-(y * log(p))").parse()
    >>> tree.op, str(tree.args[0])
    ('neg', 'y * log(p)')
    """

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.tokens = _tokenize(self.text)
        self.i = 0

    def parse(self) -> Expr:
        node = self.expression(0)
        if self.peek()[0] != "end":
            raise ExprError(f"cannot parse {self.text!r}: unexpected {self.peek()[1]!r} after a "
                            f"complete expression")
        _check_limits(node)
        return node

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i]

    def take(self, kind: str, val: str | None = None) -> str:
        k, v = self.tokens[self.i]
        if k != kind or (val is not None and v != val):
            raise ExprError(f"cannot parse {self.text!r}: expected {val or kind!r} but found "
                            f"{v or 'end of text'!r}")
        self.i += 1
        return v

    def expression(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise ExprError(f"expression is nested deeper than {MAX_DEPTH} levels")
        node = self.term(depth)
        while self.peek() in (("op", "+"), ("op", "-")):
            node = Expr(_BINARY[self.take("op")], (node, self.term(depth)))
        return node

    def term(self, depth: int) -> Expr:
        node = self.unary(depth)
        while self.peek() in (("op", "*"), ("op", "/")):
            node = Expr(_BINARY[self.take("op")], (node, self.unary(depth)))
        return node

    def unary(self, depth: int) -> Expr:
        if depth > MAX_DEPTH:
            raise ExprError(f"expression is nested deeper than {MAX_DEPTH} levels")
        if self.peek() != ("op", "-"):
            return self.atom(depth)
        self.take("op", "-")
        if self.peek()[0] == "num":
            return const(-float(self.take("num")))
        return Expr("neg", (self.unary(depth + 1),))

    def atom(self, depth: int) -> Expr:
        kind, val = self.peek()
        if kind == "num":
            return const(float(self.take("num")))
        if (kind, val) == ("op", "("):
            self.take("op", "(")
            node = self.expression(depth + 1)
            self.take("op", ")")
            return node
        if kind == "name":
            return self.name(depth)
        raise ExprError(f"cannot parse {self.text!r}: unexpected {val or 'end of text'!r}")

    def name(self, depth: int) -> Expr:
        val = self.take("name")
        if val in TERMINALS:
            return Expr(val)
        if val not in PRIMITIVES:
            raise ExprError(f"unknown primitive {val!r} in {self.text!r}; expected one of {sorted(PRIMITIVES)}")
        self.take("op", "(")
        args = [self.expression(depth + 1)]
        while self.peek() == ("op", ","):
            self.take("op", ",")
            args.append(self.expression(depth + 1))
        self.take("op", ")")
        return Expr(val, tuple(args))


def parse(text: str) -> Expr:
    """Parse infix such as ``"exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))"`` without ``eval``.

    Grammar: ``+ - * /`` with the usual precedence, unary minus, parentheses, numbers, ``p``,
    ``y`` and calls of any primitive by name (``min(a, b)``, ``square(p)``, ``add(p, y)``).

    >>> str(parse("exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))"))
    'exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))'
    """
    if not isinstance(text, str):
        raise ExprError(f"expected an expression string, got {type(text).__name__}")
    if len(text) > 20 * MAX_NODES:
        raise ExprError(f"expression text is {len(text)} characters; at most {20 * MAX_NODES} allowed")
    return Parser(text).parse()


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

