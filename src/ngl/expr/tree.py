"""The expression tree, its primitives and the interpreter over array namespaces.

A loss is a small tree over the terminals ``p`` (predicted probability of a class), ``y`` (target
value of that class) and numeric constants, built from :data:`PRIMITIVES`; :func:`evaluate`
interprets it element-wise with NumPy, torch, ``keras.ops`` or ``jax.numpy`` (never ``eval``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from ..errors import InputError

__all__ = ["Expr", "ExprError", "Primitive", "PRIMITIVES", "TERMINALS", "P", "Y", "const", "call",
           "evaluate", "fold", "to_infix", "MAX_NODES", "MAX_DEPTH", "DIV_EPS", "LOG_EPS", "SQRT_EPS"]

MAX_NODES = 256          # loading or parsing a larger tree is refused
MAX_DEPTH = 48           # and so is a deeper one
DIV_EPS = 1e-6           # protected division: |b| < eps is replaced by +-eps
LOG_EPS = 1e-7           # protected log: log(max(|a|, eps)), the Keras clip constant
SQRT_EPS = 1e-12         # protected sqrt: sqrt(max(|a|, eps)), finite gradient at 0


class ExprError(InputError):
    """A malformed, unsafe or unsupported loss expression (a ``ValueError``; one line in the CLI)."""


# --------------------------------------------------------------------------------------------
# Array namespaces
# --------------------------------------------------------------------------------------------
class _Ops:
    """The dozen array functions an expression needs, taken from one array module."""

    def __init__(self, mod: Any, const: Callable[[float, Any], Any]):
        self.mod, self.const = mod, const
        for name in ("exp", "log", "sin", "cos", "tanh", "sqrt", "abs", "square", "minimum",
                     "maximum", "where"):
            setattr(self, name, getattr(mod, name))


def _numpy_ops() -> _Ops:
    import numpy as np

    return _Ops(np, lambda v, like: np.asarray(v, dtype=getattr(like, "dtype", np.float64)))


def _torch_ops() -> _Ops:
    import torch

    return _Ops(torch, lambda v, like: torch.tensor(v, dtype=like.dtype, device=like.device))


def _keras_ops() -> _Ops:
    from keras import ops

    return _Ops(ops, lambda v, like: ops.convert_to_tensor(v, dtype=like.dtype))


def _jax_ops() -> _Ops:
    import jax.numpy as jnp

    return _Ops(jnp, lambda v, like: jnp.asarray(v, dtype=like.dtype))


_NAMESPACES: dict[str, Callable[[], _Ops]] = {
    "numpy": _numpy_ops, "torch": _torch_ops, "keras": _keras_ops, "jax": _jax_ops,
}


def _ops_for(x: Any, namespace: str | None) -> _Ops:
    if namespace is None:
        mod = type(x).__module__
        namespace = "torch" if mod.startswith("torch") else "jax" if mod.startswith("jax") else (
            "numpy" if mod.startswith("numpy") or isinstance(x, (int, float)) else "keras")
    if namespace not in _NAMESPACES:
        raise InputError(f"unknown array namespace {namespace!r}; expected one of {sorted(_NAMESPACES)}")
    return _NAMESPACES[namespace]()


# --------------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Primitive:
    """An operator: its arity, how it computes over an array namespace, and its sympy form."""

    name: str
    arity: int
    fn: Callable[..., Any] = field(repr=False)       # fn(ops, *args)
    sym: Callable[..., Any] = field(repr=False)      # sym(sympy, *args)
    infix: str | None = None                         # binary operator symbol, if printed infix
    precedence: int = 4


def _pdiv(o: _Ops, a: Any, b: Any) -> Any:
    eps = o.const(DIV_EPS, b)
    return a / o.where(o.abs(b) < eps, o.where(b < 0, -eps, eps), b)


_PRIMS = [
    Primitive("add", 2, lambda o, a, b: a + b, lambda s, a, b: a + b, "+", 1),
    Primitive("sub", 2, lambda o, a, b: a - b, lambda s, a, b: a - b, "-", 1),
    Primitive("mul", 2, lambda o, a, b: a * b, lambda s, a, b: a * b, "*", 2),
    Primitive("div", 2, _pdiv, lambda s, a, b: a / b, "/", 2),
    Primitive("neg", 1, lambda o, a: -a, lambda s, a: -a, None, 3),
    Primitive("exp", 1, lambda o, a: o.exp(a), lambda s, a: s.exp(a)),
    Primitive("log", 1, lambda o, a: o.log(o.maximum(o.abs(a), o.const(LOG_EPS, a))),
              lambda s, a: s.log(s.Abs(a))),
    Primitive("sin", 1, lambda o, a: o.sin(a), lambda s, a: s.sin(a)),
    Primitive("cos", 1, lambda o, a: o.cos(a), lambda s, a: s.cos(a)),
    Primitive("tanh", 1, lambda o, a: o.tanh(a), lambda s, a: s.tanh(a)),
    Primitive("sqrt", 1, lambda o, a: o.sqrt(o.maximum(o.abs(a), o.const(SQRT_EPS, a))),
              lambda s, a: s.sqrt(s.Abs(a))),
    Primitive("square", 1, lambda o, a: o.square(a), lambda s, a: a**2),
    Primitive("abs", 1, lambda o, a: o.abs(a), lambda s, a: s.Abs(a)),
    Primitive("min", 2, lambda o, a, b: o.minimum(a, b), lambda s, a, b: s.Min(a, b)),
    Primitive("max", 2, lambda o, a, b: o.maximum(a, b), lambda s, a, b: s.Max(a, b)),
]
#: Every operator a loss expression may use, by name. ``div``, ``log`` and ``sqrt`` are protected.
PRIMITIVES: dict[str, Primitive] = {prim.name: prim for prim in _PRIMS}
#: The variables: predicted probability ``p`` and target ``y`` of one class.
TERMINALS = ("p", "y")


# --------------------------------------------------------------------------------------------
# The tree
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Expr:
    """A node: ``op`` is a primitive name, ``"p"``, ``"y"`` or ``"const"`` (with ``value``)."""

    op: str
    args: tuple["Expr", ...] = ()
    value: float | None = None

    def __post_init__(self) -> None:
        if self.op == "const":
            if self.args or not isinstance(self.value, float) or not math.isfinite(self.value):
                raise ExprError(f"a constant needs one finite float value, got {self.value!r}")
        elif self.op in TERMINALS:
            if self.args or self.value is not None:
                raise ExprError(f"terminal {self.op!r} takes no arguments")
        elif self.op in PRIMITIVES:
            if len(self.args) != PRIMITIVES[self.op].arity:
                raise ExprError(f"{self.op!r} takes {PRIMITIVES[self.op].arity} argument(s), "
                                f"got {len(self.args)}")
        else:
            raise ExprError(f"unknown primitive {self.op!r}; expected one of "
                            f"{sorted(PRIMITIVES) + list(TERMINALS) + ['const']}")

    # structure ------------------------------------------------------------------------------
    def nodes(self) -> Iterator["Expr"]:
        """All nodes, pre-order."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.args))

    @property
    def size(self) -> int:
        return sum(1 for _ in self.nodes())

    @property
    def height(self) -> int:
        return 1 + max((a.height for a in self.args), default=0)

    @property
    def symbols(self) -> frozenset[str]:
        return frozenset(n.op for n in self.nodes() if n.op in TERMINALS)

    # sugar ----------------------------------------------------------------------------------
    def __call__(self, p: Any, y: Any, *, namespace: str | None = None) -> Any:
        return evaluate(self, p, y, namespace=namespace)

    def __str__(self) -> str:
        return to_infix(self)


P = Expr("p")
Y = Expr("y")


def const(value: float) -> Expr:
    """A numeric constant leaf."""
    return Expr("const", value=float(value))


def call(op: str, *args: Expr | float) -> Expr:
    """Apply primitive ``op``; bare numbers become constants: ``call("add", 1, Y)``."""
    return Expr(op, tuple(a if isinstance(a, Expr) else const(a) for a in args))


# --------------------------------------------------------------------------------------------
# Printing (as DEAP's PrimitiveTree.__str__: the tree prints itself; ngl.expr.text parses)
# --------------------------------------------------------------------------------------------
def _fmt_const(v: float) -> str:
    text = str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    return f"({text})" if v < 0 or text.startswith("-") else text


def _prec(expr: Expr) -> int:
    return PRIMITIVES[expr.op].precedence if expr.op in PRIMITIVES else 4


def to_infix(expr: Expr) -> str:
    """Readable infix with the fewest parentheses; :func:`ngl.expr.parse` reads it back to the
    identical tree.

    >>> to_infix(call("mul", P, call("add", 1, Y)))
    'p * (1 + y)'
    """
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


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------
def fold(expr: Expr, *, p: Any, y: Any, const: Callable[[float], Any],
         apply: Callable[[Primitive, list[Any]], Any]) -> Any:
    """Bottom-up walk: terminals become ``p``/``y``, constants ``const(value)``, and each primitive
    ``apply(primitive, argument_results)``. The interpreter and the sympy form are two folds."""
    if expr.op == "p":
        return p
    if expr.op == "y":
        return y
    if expr.op == "const":
        return const(expr.value)
    return apply(PRIMITIVES[expr.op], [fold(a, p=p, y=y, const=const, apply=apply) for a in expr.args])


def evaluate(expr: Expr, p: Any, y: Any, *, namespace: str | None = None) -> Any:
    """Interpret ``expr`` element-wise on arrays ``p`` and ``y`` (broadcast together).

    ``namespace`` is ``"numpy"``, ``"torch"``, ``"keras"`` or ``"jax"``; by default it follows
    the type of ``p``. The result has the broadcast shape of ``p`` and ``y`` (a constant
    expression is broadcast too).
    """
    ops = _ops_for(p, namespace)
    out = fold(expr, p=p, y=y, const=lambda v: ops.const(v, p),
               apply=lambda prim, args: prim.fn(ops, *args))
    if expr.symbols != {"p", "y"}:   # keep the broadcast shape when a variable is missing
        out = out + 0 * p + 0 * y
    return out


def _check_limits(expr: Expr) -> None:
    if expr.size > MAX_NODES:
        raise ExprError(f"expression has {expr.size} nodes; at most {MAX_NODES} allowed")
    if expr.height > MAX_DEPTH:
        raise ExprError(f"expression is {expr.height} levels deep; at most {MAX_DEPTH} allowed")
