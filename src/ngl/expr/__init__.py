"""Loss expressions: the one representation that the search, the losses and the report share.

A loss is a small tree over the terminals ``p`` (predicted probability of a class), ``y`` (target
value of that class) and numeric constants, built from the primitives in :data:`PRIMITIVES`.
Trees are interpreted, never ``eval``-ed, over any array namespace (NumPy, torch, ``keras.ops``,
``jax.numpy``), print as infix (and parse back), convert to sympy/LaTeX, rewrite to a readable
equivalent (:func:`readable`), and save to JSON that is safe to load from a stranger.

The Next Generation Loss (Akhmedova & Körber, arXiv 2404.12948) is :data:`NGL`::

    exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))
"""
from .files import (FORMAT, FORMAT_VERSION, MAX_FILE_BYTES, as_expression, from_json, is_expression_spec,
                    load, load_document, save, to_json)
from .rewrite import readable, readable_infix
from .text import Parser, fingerprint, parse, probe_grid, simplify, to_latex, to_sympy
from .tree import (DIV_EPS, LOG_EPS, MAX_DEPTH, MAX_NODES, PRIMITIVES, SQRT_EPS, TERMINALS, P, Y, Expr,
                   ExprError, Primitive, call, const, evaluate, to_infix)
from .files import _to_tree  # noqa: F401  (raw tree form, used by tests)

__all__ = [
    "Expr", "ExprError", "Primitive", "PRIMITIVES", "TERMINALS", "P", "Y", "const", "call",
    "parse", "Parser", "as_expression", "is_expression_spec", "evaluate", "to_infix", "to_sympy",
    "to_latex", "simplify", "readable", "readable_infix", "fingerprint", "probe_grid",
    "to_json", "from_json", "save", "load", "load_document", "NGL", "CE", "MAX_NODES", "MAX_DEPTH",
    "MAX_FILE_BYTES", "NGL_ALPHA", "FORMAT", "FORMAT_VERSION", "DIV_EPS", "LOG_EPS", "SQRT_EPS",
]

#: NGL's published constant alpha (arXiv 2404.12948); the one copy that every backend uses.
NGL_ALPHA = 2.4092
#: The Next Generation Loss, f5 of arXiv 2404.12948.
NGL = parse(f"exp({NGL_ALPHA} - p * (1 + y)) - cos(cos(sin(p)))")
#: Cross entropy per class element: -y log p.
CE = parse("-(y * log(p))")
