"""The loss-expression core: infix round trip, evaluation, fingerprints, JSON and safe loading."""
from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch

from ngl import expr as E
from ngl.expr import CE, NGL, Expr, ExprError, P, Y, call, const
from ngl.losses import from_expression, get_loss, ngl_loss

UNARY = [n for n, prim in E.PRIMITIVES.items() if prim.arity == 1]
BINARY = [n for n, prim in E.PRIMITIVES.items() if prim.arity == 2]


def random_tree(rnd: random.Random, depth: int) -> Expr:
    if depth == 0 or rnd.random() < 0.2:
        r = rnd.random()
        if r < 0.35:
            return P
        if r < 0.7:
            return Y
        return const(rnd.choice([0.0, 1.0, -1.0, 2.4092, -0.5, 1e-7, -3e12, 123456.789, 2.0 ** -30]))
    if rnd.random() < 0.45:
        return Expr(rnd.choice(UNARY), (random_tree(rnd, depth - 1),))
    return Expr(rnd.choice(BINARY), (random_tree(rnd, depth - 1), random_tree(rnd, depth - 1)))


HANDPICKED = [
    NGL, CE, const(-2.0), call("neg", -2.0), call("neg", call("neg", P)), call("neg", call("neg", -1.0)),
    call("sub", P, -1.0), call("sub", P, call("neg", P)), call("mul", call("neg", P), Y),
    call("neg", call("mul", P, Y)), call("sub", call("sub", P, Y), P), call("sub", P, call("sub", Y, P)),
    call("div", P, call("div", Y, P)), call("div", call("div", P, Y), P), call("mul", P, call("add", Y, 1)),
    call("add", P, call("neg", call("exp", call("neg", Y)))), call("min", call("neg", P), -0.25),
    call("neg", call("add", -1.0, P)), call("square", call("neg", P)), call("sub", -0.0 + -1.5, -2.5),
]


@pytest.mark.parametrize("tree", HANDPICKED, ids=[E.to_infix(t) for t in HANDPICKED])
def test_infix_round_trip_handpicked(tree):
    assert E.parse(E.to_infix(tree)) == tree


def test_infix_round_trip_random_trees():
    rnd = random.Random(7)
    for i in range(400):
        tree = random_tree(rnd, rnd.randint(1, 6))
        text = E.to_infix(tree)
        assert E.parse(text) == tree, text
        assert E.from_json({"tree": json.loads(json.dumps(E._to_tree(tree)))}) == tree
        if i % 40 == 0:   # the full document also holds LaTeX (sympy: slow), so only some
            assert E.from_json(json.loads(json.dumps(E.to_json(tree)))) == tree


def test_parse_precedence_and_unary_minus():
    assert E.parse("p - y - p") == call("sub", call("sub", P, Y), P)
    assert E.parse("p + y * p") == call("add", P, call("mul", Y, P))
    assert E.parse("-p * y") == call("mul", call("neg", P), Y)
    assert E.parse("-2") == const(-2.0)
    assert E.parse("--p") == call("neg", call("neg", P))
    assert E.parse("1.5e-3 * .5") == call("mul", 1.5e-3, 0.5)


def test_ngl_expression_is_the_formula(rng):
    p, y = rng.random(50), (rng.random(50) < 0.3).astype(float)
    ref = np.exp(2.4092 - p * (1 + y)) - np.cos(np.cos(np.sin(p)))
    np.testing.assert_allclose(E.evaluate(NGL, p, y), ref, rtol=1e-14)
    got = NGL(torch.from_numpy(p), torch.from_numpy(y), namespace="torch")
    assert isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-14)
    assert E.to_infix(NGL) == "exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))"
    assert E.evaluate(CE, np.array([0.25]), np.array([1.0]))[0] == pytest.approx(np.log(4))


def test_constant_expression_broadcasts():
    out = E.evaluate(const(3.0), np.zeros((2, 3)), np.zeros((2, 3)))
    assert out.shape == (2, 3) and (out == 3).all()
    out = E.evaluate(call("mul", 2, P), torch.ones(4), torch.zeros(4))
    assert out.shape == (4,)


def test_protected_ops_finite_at_zero():
    zero = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    for tree in (call("div", Y, P), call("log", P), call("sqrt", P), call("div", 1, call("sub", P, P)),
                 call("log", call("neg", P))):
        out = E.evaluate(tree, zero, torch.ones(3, dtype=torch.float64))
        assert torch.isfinite(out).all(), E.to_infix(tree)
        (g,) = torch.autograd.grad(out.sum(), zero)
        assert torch.isfinite(g).all(), E.to_infix(tree)
    with np.errstate(all="raise"):
        assert E.evaluate(call("log", P), np.zeros(1), np.zeros(1))[0] == pytest.approx(np.log(1e-7))
        assert E.evaluate(call("div", 1, P), np.zeros(1), np.zeros(1))[0] == pytest.approx(1e6)
        assert E.evaluate(call("div", 1, P), np.array([-0.0]), np.zeros(1))[0] == pytest.approx(1e6)
        assert E.evaluate(call("div", 1, P), np.array([-1e-9]), np.zeros(1))[0] == pytest.approx(-1e6)
        assert E.evaluate(call("sqrt", P), np.array([-4.0]), np.zeros(1))[0] == pytest.approx(2.0)


def test_fingerprint_equivalence():
    fp = E.fingerprint
    assert fp(call("mul", P, Y)) == fp(call("mul", Y, P))
    assert fp(call("add", P, P)) == fp(call("mul", 2, P))
    assert fp(E.parse("exp(2.4092 - (p + p*y))")) == fp(E.parse("exp(2.4092 - p*(1+y))"))
    assert fp(call("mul", P, Y)) != fp(call("add", P, Y))
    assert fp(NGL) != fp(CE)
    assert fp(NGL) != fp(E.parse("exp(2.4093 - p * (1 + y)) - cos(cos(sin(p)))"))
    assert len(fp(NGL)) == 16 and fp(NGL) == fp(E.parse(E.to_infix(NGL)))


def test_json_round_trip(tmp_path):
    path = E.save(NGL, tmp_path / "sub" / "ngl.json", fitness=0.93)
    doc = json.loads(path.read_text())
    assert doc["format"] == "ngl.expr" and doc["version"] == 1 and doc["fitness"] == 0.93
    assert doc["infix"] == E.to_infix(NGL)
    assert E.load(path) == NGL
    expr, meta = E.load_document(path)
    assert expr == NGL and meta["fitness"] == 0.93
    assert E.from_json({"infix": "p * y"}) == call("mul", P, Y)
    assert E.from_json(["add", "p", 1]) == call("add", P, 1.0)
    assert not list(tmp_path.joinpath("sub").glob("*.tmp"))


def test_sympy_and_latex():
    sym = E.to_sympy(NGL)
    assert {s.name for s in sym.free_symbols} == {"p", "y"}
    p, y = sorted(sym.free_symbols, key=lambda s: s.name)
    assert float(sym.subs({p: 0.5, y: 1}).evalf()) == pytest.approx(float(E.evaluate(NGL, 0.5, 1.0)))
    latex = E.to_latex(NGL)
    assert ("2.4092" in latex or "11.125" in latex) and "\\cos" in latex and "\\sin" in latex and "p" in latex and "y" in latex
    assert str(E.simplify(E.parse("p + p"))) == "2*p"


# --- malformed and malicious input -----------------------------------------------------------
def write(tmp_path, content, name="spec.json"):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def doc(tree):
    return json.dumps({"format": "ngl.expr", "version": 1, "tree": tree})


def deep_tree(levels):
    tree = "p"
    for _ in range(levels):
        tree = ["neg", tree]
    return tree


def wide_tree(levels):
    """A balanced tree of 2**(levels + 1) - 1 nodes, shallow enough to pass the depth limit."""
    return "p" if levels == 0 else ["add", wide_tree(levels - 1), wide_tree(levels - 1)]


BAD_FILES = {
    "import": (doc(["__import__", "os"]), "unknown primitive '__import__'"),
    "os_system": (doc(["os.system", "p"]), "unknown primitive 'os.system'"),
    "unknown_terminal": (doc(["add", "p", "x"]), "unknown terminal 'x'"),
    "arity_low": (doc(["add", "p"]), "'add' takes 2 argument"),
    "arity_high": (doc(["exp", "p", "y"]), "'exp' takes 1 argument"),
    "nan": ('{"format": "ngl.expr", "version": 1, "tree": ["add", "p", NaN]}', "non-finite constant NaN"),
    "infinity": ('{"tree": ["mul", "p", -Infinity]}', "non-finite constant -Infinity"),
    "overflow_float": ('{"tree": ["mul", "p", 1e999]}', "non-finite constant"),
    "huge_int": ('{"tree": ["mul", "p", 1' + "0" * 400 + ']}', "constant"),
    "boolean": (doc(["add", "p", True]), "boolean"),
    "null": (doc(["add", "p", None]), "malformed tree node"),
    "dict_node": (doc(["add", "p", {"op": "y"}]), "malformed tree node"),
    "empty_list": (doc([]), "malformed tree node"),
    "oversize": (doc(wide_tree(8)), "511 nodes; at most 256"),
    "overdeep": (doc(deep_tree(E.MAX_DEPTH + 2)), "deeper than 48"),
    "json_bomb_depth": ("[" * 100_000 + "]" * 100_000, "nested too deep"),
    "int_digits": ('{"tree": ["mul", "p", 1' + "0" * 5000 + ']}', "not valid JSON|constant"),
    "many_args": (doc(["add"] + ["p"] * 10_000), "'add' takes 2 argument"),
    "not_json": (b"\x80\x81\xfe\xff garbage", "not valid JSON"),
    "truncated": ('{"tree": ["add", "p"', "not valid JSON"),
    "wrong_format": ('{"format": "pickle", "tree": "p"}', "format is 'pickle'"),
    "wrong_version": ('{"format": "ngl.expr", "version": 2, "tree": "p"}', "version 2"),
    "no_tree": ('{"format": "ngl.expr", "version": 1}', "neither 'tree' nor 'infix'"),
    "bad_infix": ('{"infix": "__import__(\'os\').system(\'ls\')"}', "unknown primitive '__import__'"),
    "infix_attr": ('{"infix": "p.__class__"}', "cannot parse"),
    "huge_file": (doc("p") + " " * (E.MAX_FILE_BYTES + 1), "at most 1048576 bytes"),
}


@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_bad_spec_files_rejected(tmp_path, case):
    content, match = BAD_FILES[case]
    path = write(tmp_path, content)
    with pytest.raises(ExprError, match=match) as info:
        E.load(path)
    assert str(path) in str(info.value)            # names the file
    assert len(str(info.value)) < 400               # one readable line
    with pytest.raises(ExprError):
        from_expression(path)
    with pytest.raises(ExprError):
        get_loss(str(path))


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="not found"):
        E.load(tmp_path / "nope.json")


BAD_INFIX = {
    "__import__('os')": "unknown primitive '__import__'",
    "os.system('ls')": "unknown primitive 'os'",
    "exp(p, y)": "'exp' takes 1 argument",
    "add(p)": "'add' takes 2 argument",
    "p +": "unexpected 'end of text'",
    "(p": "expected '\\)'",
    "p y": "unexpected 'y'",
    "p ** 2": "unexpected '\\*'",
    "p; y": "unexpected ';'",
    "nan * p": "unknown primitive 'nan'",
    "": "unexpected 'end of text'",
    "(" * 60 + "p" + ")" * 60: "deeper than 48",
    "-" * 3000 + "p": "deeper than 48",
    "exp(" * 1000 + "p" + ")" * 1000: "deeper than 48",
    " + ".join(["p"] * 300): "characters|nodes",
}


@pytest.mark.parametrize("text", BAD_INFIX, ids=range(len(BAD_INFIX)))
def test_bad_infix_rejected(text):
    with pytest.raises(ExprError, match=BAD_INFIX[text]):
        E.parse(text)
    with pytest.raises(ExprError):
        get_loss("expr:" + text)


def test_node_constructor_validates():
    with pytest.raises(ExprError, match="finite"):
        const(math.nan)
    with pytest.raises(ExprError, match="finite"):
        Expr("const", value=math.inf)
    with pytest.raises(ExprError, match="unknown primitive 'eval'"):
        Expr("eval", (P,))
    with pytest.raises(ExprError, match="takes no arguments"):
        Expr("p", (Y,))
    with pytest.raises(ExprError, match="expected an expression string"):
        E.parse(b"p")
    with pytest.raises(ValueError, match="unknown array namespace"):
        E.evaluate(NGL, np.ones(2), np.ones(2), namespace="tensorflow")


# --- expressions as losses --------------------------------------------------------------------
def test_expression_losses_are_train_ready(tmp_path):
    path = E.save(NGL, tmp_path / "ngl.json")
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(8, 5, generator=g, dtype=torch.float64), torch.randint(0, 5, (8,), generator=g)
    ref = ngl_loss(logits, labels)
    for crit in (from_expression(NGL), from_expression(path), from_expression(str(path)),
                 from_expression(E.to_infix(NGL)), from_expression(E.to_json(NGL)),
                 get_loss(str(path)), get_loss("expr:" + E.to_infix(NGL))):
        assert crit.expression == NGL
        x = logits.clone().requires_grad_(True)
        loss = crit(x, labels)
        torch.testing.assert_close(loss, ref)
        loss.backward()
        assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # a plain float32 training step lowers the loss
    crit = get_loss("expr:" + E.to_infix(NGL))
    x = torch.zeros(8, 5, requires_grad=True)
    opt = torch.optim.SGD([x], lr=50.0)
    before = crit(x, labels).item()
    for _ in range(20):
        opt.zero_grad()
        crit(x, labels).backward()
        opt.step()
    assert crit(x, labels).item() < before
    assert (x.argmax(1) == labels).all()


def test_expression_loss_from_file_without_json_suffix(tmp_path):
    path = E.save(call("mul", -1, call("mul", Y, call("log", P))), tmp_path / "ce.expr")
    crit = get_loss(str(path))
    logits, labels = torch.randn(6, 4, dtype=torch.float64), torch.randint(0, 4, (6,))
    # CE averaged over classes: F.cross_entropy / C
    torch.testing.assert_close(crit(logits, labels), torch.nn.functional.cross_entropy(logits, labels) / 4)


def test_jax_namespace_matches_numpy(rng):
    jnp = pytest.importorskip("jax.numpy")
    p, y = rng.random(20), (rng.random(20) < 0.5).astype(float)
    for tree in (NGL, CE, call("div", Y, P), call("sqrt", call("neg", P))):
        got = np.asarray(E.evaluate(tree, jnp.asarray(p, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.float32)))
        np.testing.assert_allclose(got, E.evaluate(tree, p, y), rtol=2e-5)


def test_fingerprint_folds_signed_zero():
    # -(y*log p) is -0.0 where y = 0, 0 - y*log p is +0.0: the same loss, one cache key
    assert E.fingerprint(E.parse("-(y * log(p))")) == E.fingerprint(E.parse("0 - y * log(p)"))


def test_importing_ngl_expr_does_not_import_torch():
    """``ngl`` is lazy (PEP 562): the expression core stays torch-free, ``ngl.get_loss`` still works."""
    import subprocess
    import sys

    code = ("import sys, ngl.expr; assert 'torch' not in sys.modules, 'torch imported'; "
            "import ngl; print(type(ngl.get_loss('ngl')).__name__, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["NGLLoss", "True"]


def test_tree_prints_itself_without_the_text_module():
    """Printing lives with the tree (no import cycle between tree and text)."""
    from ngl.expr import tree

    assert tree.to_infix(NGL) == str(NGL) == "exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))"
    import ast
    from pathlib import Path

    imported = {node.module for node in ast.walk(ast.parse(Path(tree.__file__).read_text()))
                if isinstance(node, ast.ImportFrom)}
    assert "text" not in imported and "files" not in imported, imported


def test_parser_errors_are_one_line_user_errors():
    from ngl.errors import InputError

    for bad in ["p +", "exp(p", "foo(p)", "p $ y", "(" * 60 + "p" + ")" * 60]:
        with pytest.raises(InputError) as info:
            E.Parser(bad).parse() if len(bad) < 100 else E.parse(bad)
        assert "\n" not in str(info.value)
