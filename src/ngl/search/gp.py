"""Tree GP over :mod:`ngl.expr`'s primitives with DEAP, without DEAP's ``creator`` globals.

A :class:`Individual` is a ``deap.gp.PrimitiveTree`` (prefix list of nodes) carrying its own
:class:`Fitness`; both classes live here, so two searches in one process share no state. Trees
convert losslessly to and from :class:`ngl.expr.Expr` (:func:`to_expr`, :func:`from_expr`) and
are only ever interpreted by :func:`ngl.expr.evaluate` (never ``gp.compile``).

Variation operators (:func:`make_toolbox`) are DEAP's, guarded so that every child stays valid:
height at most ``max_height`` and both ``p`` and ``y`` present; an invalid child is replaced by
a copy of its parent (DEAP's ``staticLimit`` idea, extended to the variables).
"""
from __future__ import annotations

import copy
import enum
import random
from functools import partial
from typing import Any, Callable

from deap import base, gp, tools

from .. import expr as E
from ..errors import InputError

__all__ = ["Status", "Fitness", "Individual", "make_pset", "to_expr", "from_expr", "is_valid",
           "make_toolbox", "random_constant", "WORST_FITNESS"]

#: Fitness given to rejected, crashed, timed-out and NaN candidates: a fitness is a paired gain of
#: accuracy over CE (:mod:`ngl.search.scoring`), so it is never below -1.
WORST_FITNESS = -1.0
EPHEMERAL = "const"


class Status(str, enum.Enum):
    """What happened to a candidate (stored as its string value in checkpoints)."""

    OK = "ok"                  # trained; fitness is its validation accuracy
    REJECTED = "rejected"      # thrown out by the rejection screen
    FAILED = "failed"          # crashed, timed out, NaN
    SEED = "seed"              # not evaluated yet


class Fitness(base.Fitness):
    """Single objective, maximised: validation accuracy."""

    weights = (1.0,)


class Individual(gp.PrimitiveTree):
    """A loss tree with its fitness, its :class:`Status` and, when not ok, the reason."""

    def __init__(self, content: Any) -> None:
        super().__init__(content)
        self.fitness = Fitness()
        self.status: Status = Status.SEED
        self.reason: str | None = None


def random_constant(low: float, high: float, digits: int = 4) -> float:
    """An ephemeral constant: uniform in [low, high], rounded (readable, exact in JSON)."""
    return round(random.uniform(low, high), digits)


def make_pset(*, const_range: tuple[float, float] = (-3.0, 3.0),
              primitives: list[str] | None = None) -> gp.PrimitiveSet:
    """A fresh primitive set: ``ngl.expr`` primitives, terminals ``p``, ``y`` and constants.

    The callables attached to primitives are placeholders: trees are never compiled.
    """
    names = primitives or list(E.PRIMITIVES)
    unknown = sorted(set(names) - set(E.PRIMITIVES))
    if unknown:
        raise InputError(f"unknown primitive(s) {unknown}; expected names from {sorted(E.PRIMITIVES)}")
    pset = gp.PrimitiveSet("loss", 2)
    pset.renameArguments(ARG0="p", ARG1="y")
    for name in names:
        pset.addPrimitive(_never_called, E.PRIMITIVES[name].arity, name=name)
    pset.addEphemeralConstant(EPHEMERAL, partial(random_constant, float(const_range[0]),
                                                 float(const_range[1])))
    return pset


def _never_called(*_: Any) -> Any:
    raise RuntimeError("ngl search trees are interpreted by ngl.expr.evaluate, never compiled")


# --------------------------------------------------------------------------------------------
# Expr <-> PrimitiveTree
# --------------------------------------------------------------------------------------------
def to_expr(tree: gp.PrimitiveTree) -> E.Expr:
    """The :class:`~ngl.expr.Expr` of a DEAP prefix tree."""
    stack: list[tuple[Any, list[E.Expr]]] = []
    result: E.Expr | None = None
    for node in tree:
        stack.append((node, []))
        while stack and len(stack[-1][1]) == stack[-1][0].arity:
            node, args = stack.pop()
            if isinstance(node, gp.Primitive):
                built = E.Expr(node.name, tuple(args))
            elif node.value in E.TERMINALS:
                built = E.Expr(node.value)
            else:
                built = E.const(float(node.value))
            if stack:
                stack[-1][1].append(built)
            else:
                result = built
    if result is None or stack:
        raise ValueError("malformed prefix tree")
    return result


def from_expr(expr: E.Expr, pset: gp.PrimitiveSet, cls: type = Individual) -> Any:
    """A DEAP tree (``cls``) for ``expr``; constants become mutable ephemerals."""
    eph = pset.mapping[EPHEMERAL]
    nodes: list[Any] = []
    for node in expr.nodes():                       # pre-order == DEAP's prefix order
        if node.op == "const":
            term = object.__new__(eph)
            term.value = float(node.value)
            nodes.append(term)
        elif node.op in E.TERMINALS:
            nodes.append(pset.mapping[node.op])
        elif node.op in pset.mapping:
            nodes.append(pset.mapping[node.op])
        else:
            raise ValueError(f"primitive {node.op!r} is not in this search's primitive set")
    return cls(nodes)


def _symbols(tree: gp.PrimitiveTree) -> set[str]:
    return {n.value for n in tree if isinstance(n, gp.Terminal) and n.value in E.TERMINALS}


def is_valid(tree: gp.PrimitiveTree, *, max_height: int, require: tuple[str, ...] = ("p", "y")) -> bool:
    """Within the limits (DEAP height: a lone leaf is 0) and containing every ``require`` variable."""
    return (tree.height <= max_height and len(tree) <= E.MAX_NODES
            and set(require) <= _symbols(tree))


# --------------------------------------------------------------------------------------------
# Operators
# --------------------------------------------------------------------------------------------
def _guard(op: Callable[..., tuple], *, max_height: int) -> Callable[..., tuple]:
    """Wrap a variation operator: any invalid child is replaced by a copy of its parent."""

    def wrapped(*parents: Any, **kw: Any) -> tuple:
        keep = [copy.deepcopy(ind) for ind in parents]
        children = op(*parents, **kw)
        return tuple(child if is_valid(child, max_height=max_height) else keep[i]
                     for i, child in enumerate(children))

    wrapped.__name__ = getattr(op, "__name__", "op")
    return wrapped


def _mutate(ind: Individual, *, pset: gp.PrimitiveSet, expr_mut: Callable[..., list]) -> tuple:
    """One of DEAP's tree mutations, chosen uniformly: subtree, node, constant, shrink."""
    kind = random.randrange(4)
    if kind == 0:
        return gp.mutUniform(ind, expr=expr_mut, pset=pset)
    if kind == 1:
        return gp.mutNodeReplacement(ind, pset=pset)
    if kind == 2:
        return gp.mutEphemeral(ind, mode="one")
    return gp.mutShrink(ind)


def _init_tree(pset: gp.PrimitiveSet, *, min_height: int, max_height: int, tries: int = 100) -> Individual:
    """Ramped half-and-half until the tree holds both ``p`` and ``y`` (else ``p*y`` filler)."""
    for _ in range(tries):
        ind = Individual(gp.genHalfAndHalf(pset, min_=min_height, max_=max_height))
        if is_valid(ind, max_height=max_height):
            return ind
    return from_expr(E.call("mul", E.P, E.Y), pset)


def make_toolbox(pset: gp.PrimitiveSet, *, tournament_size: int, max_height: int,
                 init_min_height: int = 1, init_max_height: int = 4) -> base.Toolbox:
    """Registers ``individual``, ``select``, ``mate`` and ``mutate`` (all validity-guarded)."""
    tb = base.Toolbox()
    tb.register("individual", _init_tree, pset, min_height=init_min_height,
                max_height=min(init_max_height, max_height))
    tb.register("select", tools.selTournament, tournsize=tournament_size)
    tb.register("expr_mut", gp.genGrow, min_=0, max_=2)
    tb.register("mate", _guard(gp.cxOnePoint, max_height=max_height))
    tb.register("mutate", _guard(partial(_mutate, pset=pset, expr_mut=tb.expr_mut), max_height=max_height))
    return tb
