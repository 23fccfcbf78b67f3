"""Tuning the numeric constants of a found structure with CMA-ES (Hansen's ``cma``), as GLO does
(Gonzalez & Miikkulainen 2020): the tree is fixed, its constants ``c`` are a vector, and CMA-ES
maximises the same fitness through the same executors.

.. math:: c^\\star = \\arg\\max_c \\; \\mathrm{fitness}(f_c), \\quad c_0 = \\text{the found constants}

Each CMA-ES population is scored as one batch (:func:`ngl.search.scoring.score_specs`: the mean
worst-task paired gain over CE on the tuning seeds, CE trained once per seed). The fitness after
tuning is the best of the CMA-ES evaluations on those seeds, so it is biased upward like any
selected score; ``ngl search validate`` retrains the tuned loss on fresh seeds to say whether
tuning helped.

>>> e = E.parse("y * square(p - 2.5) + 0.1 * p")
>>> constants(e)
[2.5, 0.1]
>>> E.to_infix(with_constants(e, [1.0, 0.0]))
'y * square(p - 1) + 0 * p'
"""
from __future__ import annotations

import math
from typing import Any, Callable

from .. import expr as E
from ..errors import require_extra
from .gp import Status

__all__ = ["constants", "with_constants", "tune_constants", "tune_hall_of_fame"]


def constants(expr: E.Expr) -> list[float]:
    """The constants of ``expr`` in pre-order."""
    return [float(n.value) for n in expr.nodes() if n.op == "const"]


def with_constants(expr: E.Expr, values: list[float]) -> E.Expr:
    """``expr`` with its constants (pre-order) replaced by ``values``."""
    it = iter(values)

    def rebuild(node: E.Expr) -> E.Expr:
        if node.op == "const":
            return E.const(float(next(it)))
        if not node.args:
            return node
        return E.Expr(node.op, tuple(rebuild(a) for a in node.args))

    return rebuild(expr)


def tune_constants(infix: str, *, score: Callable[[list[str]], list[float]],
                   evaluations: int = 24, sigma: float = 1.0, popsize: int = 6, seed: int = 0,
                   start_fitness: float | None = None) -> dict[str, Any]:
    """CMA-ES over the constants of ``infix``; returns the best found and the fitness before/after.

    Args:
        infix: the structure with its starting constants.
        score: infixes -> their fitness, one call per CMA-ES population (a batch).
        evaluations: fitness evaluations in all (``popsize`` per CMA-ES generation).
        sigma: initial CMA-ES step size; popsize: candidates per CMA-ES generation.
        start_fitness: the structure's known fitness (else evaluated first).
    Returns:
        ``{"infix_before", "constants_before", "fitness_before", "infix", "constants", "fitness",
        "evaluations", "improved"}``.
    """
    cma = require_extra("cma", "search", what="constant tuning")
    expr = E.parse(infix)
    c0 = constants(expr)
    spent = 0                                  # CMA-ES evaluations (the start is scored apart)
    if start_fitness is None:
        start_fitness = score([infix])[0]
    best = {"infix": infix, "constants": c0, "fitness": float(start_fitness)}
    if c0:
        es = cma.CMAEvolutionStrategy(c0, sigma, {"popsize": popsize, "seed": seed + 1,
                                                  "verbose": -9, "maxfevals": evaluations})
        while spent + popsize <= evaluations and not es.stop():
            cands = [[round(float(v), 4) for v in x] for x in es.ask()]
            infixes = [E.to_infix(with_constants(expr, c)) for c in cands]
            scores = score(infixes)
            spent += len(cands)
            es.tell([list(map(float, c)) for c in cands], [-s for s in scores])
            for c, text, s in zip(cands, infixes, scores):
                if s > best["fitness"]:
                    best = {"infix": text, "constants": c, "fitness": s}
    return {"infix_before": infix, "constants_before": c0, "fitness_before": float(start_fitness),
            **best, "evaluations": spent, "improved": best["fitness"] > start_fitness}


def tune_hall_of_fame(hof: list[dict], ctx: Any, *, log: Callable[[str], None] | None = None) -> list[dict]:
    """Tune the best ``tune_top`` structures of ``hof`` that have constants, each CMA-ES population
    one batch on the tuning seeds (drawn from the search seed; the start is scored on them too)."""
    from . import racing
    from .scoring import score_specs

    cfg, ce, out = ctx.cfg, {}, []
    seeds = racing.draw_seeds(cfg.seed, cfg.generations + 1, cfg.race_stages[0], purpose="tune")
    score = lambda infixes: score_specs(infixes, seeds, ctx, ce)  # noqa: E731
    for rank, entry in enumerate(hof[:cfg.tune_top]):
        if not constants(E.parse(entry["infix"])):
            out.append({"rank": rank, "infix_before": entry["infix"], "fitness_before": None,
                        "infix": entry["infix"], "fitness": None, "constants": [],
                        "constants_before": [], "evaluations": 0, "improved": False,
                        "status": "no constants"})
            continue
        res = tune_constants(entry["infix"], score=score, evaluations=cfg.tune_evals, seed=cfg.seed)
        out.append({"rank": rank, **res, "seeds": seeds, "status": Status.OK.value})
        if log:
            log(f"tuned #{rank}: {100 * res['fitness_before']:+.2f} -> {100 * res['fitness']:+.2f} pp "
                f"| {E.readable_infix(res['infix'])}")
    return out
