"""Expressions as JSON files: safe to load from a stranger (validated trees, size and depth limits,
no NaN/Infinity, never any code), written atomically."""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..errors import MissingFileError
from .text import parse, to_latex
from .tree import MAX_DEPTH, PRIMITIVES, TERMINALS, Expr, ExprError, _check_limits, const, to_infix

from ..runspec import is_expression_spec  # the one rule, shared with bench and the registries

__all__ = ["to_json", "from_json", "save", "load", "load_document", "as_expression",
           "is_expression_spec", "FORMAT", "FORMAT_VERSION", "MAX_FILE_BYTES"]

MAX_FILE_BYTES = 1 << 20  # expression files are small; refuse anything over 1 MiB
FORMAT = "ngl.expr"
FORMAT_VERSION = 1


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
    from ..fileio import write_json_atomic

    return write_json_atomic(path, to_json(expr, **meta), indent=2)


def load_document(path: str | os.PathLike[str]) -> tuple[Expr, dict[str, Any]]:
    """Read an expression file; returns the tree and the whole document (for its metadata)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"expression file not found: {path}")
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



def as_expression(spec: Expr | str | os.PathLike[str] | dict[str, Any]) -> Expr:
    """An :class:`Expr` from a tree, a JSON file path, a JSON document, or infix text
    (``expr:`` prefix optional).

    >>> str(as_expression("expr:square(p - y)"))
    'square(p - y)'
    """
    if isinstance(spec, Expr):
        return spec
    if isinstance(spec, dict):
        return from_json(spec)
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and spec.endswith(".json")):
        return load(spec)
    if isinstance(spec, str):
        return parse(spec[5:] if spec.startswith("expr:") else spec)
    raise ExprError(f"expected an Expr, a .json path, a JSON dict or infix text, got {type(spec).__name__}")
