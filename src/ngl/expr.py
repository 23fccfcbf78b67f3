"""Loss expressions: the one representation that the search, the losses and the report share.

A loss is a small tree over the terminals ``p`` (predicted probability of a class), ``y`` (target
value of that class) and numeric constants, built from the primitives in :data:`PRIMITIVES`.
Trees are interpreted, never ``eval``-ed, over any array namespace (NumPy, torch, ``keras.ops``,
``jax.numpy``), print as infix (and parse back), convert to sympy/LaTeX, and save to JSON that is
safe to load from a stranger.

The Next Generation Loss (Akhmedova & Körber, arXiv 2404.12948) is :data:`NGL`::

    exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

__all__ = [
    "Expr", "ExprError", "Primitive", "PRIMITIVES", "TERMINALS", "P", "Y", "const", "call",
    "parse", "evaluate", "to_infix", "to_sympy", "to_latex", "simplify", "fingerprint",
    "to_json", "from_json", "save", "load", "load_document", "NGL", "CE", "MAX_NODES", "MAX_DEPTH",
]

MAX_NODES = 256          # loading or parsing a larger tree is refused
MAX_DEPTH = 48           # and so is a deeper one
MAX_FILE_BYTES = 1 << 20  # expression files are small; refuse anything over 1 MiB
DIV_EPS = 1e-6           # protected division: |b| < eps is replaced by +-eps
LOG_EPS = 1e-7           # protected log: log(max(|a|, eps)), the Keras clip constant
SQRT_EPS = 1e-12         # protected sqrt: sqrt(max(|a|, eps)), finite gradient at 0
FORMAT = "ngl.expr"
FORMAT_VERSION = 1


class ExprError(ValueError):
    """A malformed, unsafe or unsupported loss expression."""


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
        raise ValueError(f"unknown array namespace {namespace!r}; expected one of {sorted(_NAMESPACES)}")
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
# Evaluation
# --------------------------------------------------------------------------------------------
def evaluate(expr: Expr, p: Any, y: Any, *, namespace: str | None = None) -> Any:
    """Interpret ``expr`` element-wise on arrays ``p`` and ``y`` (broadcast together).

    ``namespace`` is ``"numpy"``, ``"torch"``, ``"keras"`` or ``"jax"``; by default it follows
    the type of ``p``. The result has the broadcast shape of ``p`` and ``y`` (a constant
    expression is broadcast too).
    """
    ops = _ops_for(p, namespace)

    def ev(node: Expr) -> Any:
        if node.op == "p":
            return p
        if node.op == "y":
            return y
        if node.op == "const":
            return ops.const(node.value, p)
        prim = PRIMITIVES[node.op]
        return prim.fn(ops, *(ev(a) for a in node.args))

    out = ev(expr)
    if expr.symbols != {"p", "y"}:   # keep the broadcast shape when a variable is missing
        out = out + 0 * p + 0 * y
    return out


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

    def conv(node: Expr) -> Any:
        if node.op == "p":
            return p
        if node.op == "y":
            return y
        if node.op == "const":
            v = node.value
            return sympy.Integer(int(v)) if v.is_integer() and abs(v) < 1e15 else sympy.Float(v, 8)
        return PRIMITIVES[node.op].sym(sympy, *(conv(a) for a in node.args))

    return conv(expr)


def simplify(expr: Expr) -> Any:
    """sympy's simplified form, for display (may be slow for large trees)."""
    import sympy

    return sympy.simplify(to_sympy(expr))


def to_latex(expr: Expr) -> str:
    import sympy

    return sympy.latex(to_sympy(expr))


_PROBE_P = [i / 32 for i in range(33)]


def fingerprint(expr: Expr, *, digits: int = 7) -> str:
    """A canonical key: a hash of the loss values on a fixed grid of p in [0, 1] and y in {0, 1}.

    Trees that compute the same loss (``p*y`` and ``y*p``, ``p+p`` and ``2*p``) share a key, so a
    search trains each distinct loss once. Values are rounded to ``digits`` significant digits.
    """
    import numpy as np

    p = np.array(_PROBE_P * 2, dtype=np.float64)
    y = np.array([0.0] * 33 + [1.0] * 33)
    with np.errstate(all="ignore"):
        values = np.asarray(evaluate(expr, p, y, namespace="numpy"), dtype=np.float64) + 0.0  # -0.0 -> 0.0
    text = ",".join(f"{v:.{digits - 1}e}" if np.isfinite(v) else str(v) for v in values.ravel())
    return hashlib.sha1(text.encode()).hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------------
def _to_tree(expr: Expr) -> Any:
    if expr.op in TERMINALS:
        return expr.op
    if expr.op == "const":
        return expr.value
    return [expr.op, *(_to_tree(a) for a in expr.args)]


def _from_tree(obj: Any, depth: int = 0) -> Expr:
    if depth > MAX_DEPTH:
        raise ExprError(f"expression tree is deeper than {MAX_DEPTH} levels")
    if isinstance(obj, bool):
        raise ExprError(f"a boolean is not a valid tree node: {obj!r}")
    if isinstance(obj, (int, float)):
        try:
            value = float(obj)
        except OverflowError:       # a JSON integer beyond float range
            value = math.inf
        if not math.isfinite(value):
            raise ExprError(f"non-finite constant {str(obj)[:40]} in expression tree")
        return const(value)
    if isinstance(obj, str):
        if obj not in TERMINALS:
            raise ExprError(f"unknown terminal {obj!r}; expected 'p', 'y' or a number")
        return Expr(obj)
    if isinstance(obj, list) and obj and isinstance(obj[0], str):
        op, args = obj[0], obj[1:]
        if op not in PRIMITIVES:      # name the operator before looking at its arguments
            raise ExprError(f"unknown primitive {op[:60]!r}; expected one of {sorted(PRIMITIVES)}")
        if len(args) != PRIMITIVES[op].arity:
            raise ExprError(f"{op!r} takes {PRIMITIVES[op].arity} argument(s), got {len(args)}")
        return Expr(op, tuple(_from_tree(a, depth + 1) for a in args))
    raise ExprError(f"malformed tree node {str(obj)[:60]!r}: expected 'p', 'y', a number or "
                    f"[primitive, args...]")


def _check_limits(expr: Expr) -> None:
    if expr.size > MAX_NODES:
        raise ExprError(f"expression has {expr.size} nodes; at most {MAX_NODES} allowed")
    if expr.height > MAX_DEPTH:
        raise ExprError(f"expression is {expr.height} levels deep; at most {MAX_DEPTH} allowed")


def to_json(expr: Expr, **meta: Any) -> dict[str, Any]:
    """A JSON-ready document: the tree, its infix and LaTeX forms, and any metadata given."""
    doc = {"format": FORMAT, "version": FORMAT_VERSION, "tree": _to_tree(expr),
           "infix": to_infix(expr), "latex": to_latex(expr)}
    doc.update(meta)
    return doc


def from_json(doc: Any) -> Expr:
    """Read a tree from a document of :func:`to_json`, a bare tree list, or ``{"infix": ...}``."""
    if isinstance(doc, dict):
        if doc.get("format", FORMAT) != FORMAT:
            raise ExprError(f"not an ngl expression document: format is {doc.get('format')!r}, "
                            f"expected {FORMAT!r}")
        if doc.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            raise ExprError(f"unsupported expression format version {doc.get('version')!r}; "
                            f"this ngl reads version {FORMAT_VERSION}")
        if "tree" in doc:
            doc = doc["tree"]
        elif isinstance(doc.get("infix"), str):
            return parse(doc["infix"])
        else:
            raise ExprError("expression document has neither 'tree' nor 'infix'")
    expr = _from_tree(doc)
    _check_limits(expr)
    return expr


def save(expr: Expr, path: str | os.PathLike[str], **meta: Any) -> Path:
    """Write ``expr`` as JSON atomically (temp file + rename)."""
    from .fileio import write_json_atomic

    return write_json_atomic(path, to_json(expr, **meta), indent=2)


def load_document(path: str | os.PathLike[str]) -> tuple[Expr, dict[str, Any]]:
    """Read an expression file; returns the tree and the whole document (for its metadata)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"expression file not found: {path}")
    if path.stat().st_size > MAX_FILE_BYTES:
        raise ExprError(f"{path}: {path.stat().st_size} bytes; an expression file is at most "
                        f"{MAX_FILE_BYTES} bytes")
    try:
        doc = json.loads(path.read_text(), parse_constant=_reject_constant)
    except ExprError as exc:          # NaN / Infinity
        raise ExprError(f"{path}: {exc}") from None
    except RecursionError:
        raise ExprError(f"{path}: JSON nested too deep; an expression is at most {MAX_DEPTH} "
                        f"levels deep") from None
    except (UnicodeDecodeError, ValueError) as exc:   # JSONDecodeError, over-long integers
        raise ExprError(f"{path}: not valid JSON ({str(exc)[:200]})") from None
    try:
        expr = from_json(doc)
    except ExprError as exc:
        raise ExprError(f"{path}: {exc}") from None
    return expr, doc if isinstance(doc, dict) else {"tree": doc}


def _reject_constant(name: str) -> Any:
    raise ExprError(f"non-finite constant {name} in expression file")


def load(path: str | os.PathLike[str]) -> Expr:
    """Read an expression file written by :func:`save` (validated; never runs code)."""
    return load_document(path)[0]


#: The Next Generation Loss, f5 of arXiv 2404.12948.
NGL = parse("exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))")
#: Cross entropy per class element: -y log p.
CE = parse("-(y * log(p))")
