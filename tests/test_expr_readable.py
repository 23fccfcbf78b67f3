"""Readable forms (ngl.expr.readable): equivalent to the raw tree in values and gradients, shorter
where SymPy can fold, and the raw tree wherever SymPy's algebra ignores ngl's protected operators."""
from __future__ import annotations

import random

import numpy as np
import pytest
import sympy
import torch

from ngl import expr as E
from ngl.expr import Expr, ExprError, P, Y, const, readable, readable_infix
from ngl.expr import rewrite as R

README_WINNER = ("exp(-(y / (2.1897 * (1.0999 * ((-0.5829) * p) - (-2.3351)) - y)) * (1.0999 * (1.767 * "
                 "(y * (p - (-0.537)))) - 1.4512))")
UNARY = [n for n, prim in E.PRIMITIVES.items() if prim.arity == 1]
BINARY = [n for n, prim in E.PRIMITIVES.items() if prim.arity == 2]


def random_tree(rnd: random.Random, depth: int) -> Expr:
    """GP-like trees: p, y and 4-decimal constants in [-3, 3] under every primitive."""
    if depth == 0 or rnd.random() < 0.25:
        r = rnd.random()
        return P if r < 0.4 else Y if r < 0.8 else const(round(rnd.uniform(-3, 3), 4))
    if rnd.random() < 0.45:
        return Expr(rnd.choice(UNARY), (random_tree(rnd, depth - 1),))
    return Expr(rnd.choice(BINARY), (random_tree(rnd, depth - 1), random_tree(rnd, depth - 1)))


def values_and_grads(expr: Expr, p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pt = torch.tensor(p, dtype=torch.float64, requires_grad=True)
    v = E.evaluate(expr, pt, torch.tensor(y, dtype=torch.float64), namespace="torch")
    (g,) = torch.autograd.grad(v.sum(), pt, allow_unused=True)
    return v.detach().numpy(), np.zeros_like(p) if g is None else g.numpy()


def assert_equivalent(new: Expr, old: Expr, p: np.ndarray, ys: tuple[float, ...], tol: float) -> None:
    """For each y in ``ys`` (all of ``p``): ``|new - old| <= tol (|old| + rms(old))`` for values
    and d/dp, rms over the finite entries of that y; non-finite entries identical."""
    with np.errstate(all="ignore"):
        for yv in ys:
            y = np.full_like(p, yv)
            for a, b in zip(values_and_grads(new, p, y), values_and_grads(old, p, y)):
                fin = np.isfinite(b)
                np.testing.assert_array_equal(np.isfinite(a), fin)
                np.testing.assert_array_equal(a[~fin], b[~fin])
                a, b = a[fin], b[fin]
                rms = float(np.sqrt(np.mean(b.astype(np.longdouble) ** 2))) if b.size else 0.0
                assert np.all(np.abs(a - b) <= tol * (np.abs(b) + rms)), (str(new), str(old), yv)


PROBE_P = np.linspace(0, 1, 33)              # the probe grid: these p, y in {0, 1}
OFF_P = np.random.default_rng(0).uniform(0.001, 1, 200)
OFF_Y = (0.0, 0.3, 0.7, 1.0)


@pytest.mark.slow
def test_fifty_random_trees_keep_values_and_gradients_on_the_probe_grid():
    rnd = random.Random(19)
    trees = []
    while len(trees) < 50:
        tree = random_tree(rnd, rnd.randint(2, 6))
        if tree.symbols == {"p", "y"}:
            trees.append(tree)
    shorter = 0
    for tree in trees:
        exact = readable(tree, digits=17)             # no rounding: the same loss to 1e-6
        assert_equivalent(exact, tree, PROBE_P, (0.0, 1.0), R.EXACT_TOL)
        new = readable(tree)
        assert E.parse(E.to_infix(new)) == new
        assert new.size <= tree.size
        assert_equivalent(new, tree, PROBE_P, (0.0, 1.0), R.ROUNDED_TOL)
        assert_equivalent(new, tree, OFF_P, OFF_Y, 3 * R.ROUNDED_TOL)   # off the grid, soft y
        shorter += new.size < tree.size
    assert shorter >= 15, shorter          # the rewrite does something on GP-like trees


@pytest.mark.parametrize("text, expected", [
    ("log(square(p))", "log(square(p))"), ("square(sqrt(p))", "square(sqrt(p))"),
    ("sqrt(square(p))", "sqrt(square(p))"), ("p / p * y", "p / p * y"),
    ("log(p * p) * y", "y * log(square(p))")])
def test_rewrites_that_change_the_protected_loss_are_refused(text, expected):
    """SymPy proposes ``2*log(p)``, ``p``, ``y``: equal for p > 0, not at p = 0 under ngl's
    protected log, sqrt and division (in value or gradient), so they are not taken."""
    raw = E.parse(text)
    at_zero = (np.array([0.0]), np.array([1.0]))
    wrong = [c for c in R._candidates(raw)
             if not all(np.allclose(a, b, rtol=1e-6, atol=1e-6)
                        for a, b in zip(values_and_grads(c, *at_zero), values_and_grads(raw, *at_zero)))]
    assert wrong, "sympy should propose a rewrite that differs at p = 0, or this test checks nothing"
    assert E.to_infix(readable(raw)) == expected
    assert readable(raw) not in wrong


def test_the_readme_winner_becomes_short_and_stays_the_same_loss():
    raw = E.parse(README_WINNER)
    new = readable(raw)
    text = E.to_infix(new)
    assert len(text) <= 0.65 * len(README_WINNER), text
    assert new.size <= raw.size - 6
    consts = [n.value for n in new.nodes() if n.op == "const"]
    assert consts and all(float(f"{v:.4g}") == v for v in consts)       # 4 significant digits
    assert_equivalent(new, raw, PROBE_P, (0.0, 1.0), R.ROUNDED_TOL)
    assert_equivalent(new, raw, OFF_P, OFF_Y, R.ROUNDED_TOL)
    assert readable_infix(README_WINNER) == text


def test_rounding_keeps_exact_constants_where_four_digits_change_the_loss():
    """exp(1000 p y) amplifies a constant's rounding 1000-fold: more digits, then none."""
    tree = E.parse("exp(1234.5678 * p * y)")
    new = readable(tree)
    assert new != R.round_constants(tree, 4)
    assert_equivalent(new, tree, PROBE_P, (0.0, 1.0), R.ROUNDED_TOL)


def test_small_cases_and_ties():
    assert readable_infix("p * 1.0999 * 1.767 * y") == "1.944 * p * y"
    assert readable_infix("y * log(exp(p))") == "p * y"
    assert readable_infix("p + p") == "p + p"              # 2 * p is no shorter: the raw form wins
    # a real hall-of-fame entry: SymPy's forms change the protected division at y = 0, the exact
    # folds (constant subtree, p + (-c)) and rounding remain
    assert (readable_infix("-(sqrt(p + (-2.1219)) / (sin(y) / exp((-0.6571))))")
            == "-(sqrt(p - 2.122) / (sin(y) / 0.5184))")
    assert readable(E.CE) == E.CE


def test_from_sympy_builds_ngl_primitives_and_refuses_the_rest():
    p, y = sympy.symbols("p y")
    cases = {p ** sympy.Rational(3, 2) * y ** -2: "p * sqrt(p) / square(y)",
             p ** sympy.Rational(1, 4): "sqrt(sqrt(p))", p ** -3: "1 / (square(p) * p)",
             p ** 0.3: "exp(0.3 * log(p))", sympy.Max(p, y, 1): "max(max(1, p), y)",
             -p * y / 2 + sympy.exp(-p): "exp(-p) - 0.5 * p * y",
             sympy.tanh(sympy.Abs(p - y)): "tanh(abs(p - y))"}
    for form, text in cases.items():
        assert E.to_infix(R.from_sympy(form)) == text
    for bad in (sympy.sinh(p), sympy.Piecewise((p, y > 0), (y, True)), sympy.I * p, sympy.zoo * p):
        with pytest.raises(ExprError):
            R.from_sympy(bad)
