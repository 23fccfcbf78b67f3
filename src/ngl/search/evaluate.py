"""The cheap-before-fast evaluation of a generation, and where its fitness runs execute.

:func:`evaluate_candidates` runs the pipeline: canonical-form cache (:func:`ngl.expr.fingerprint`)
-> rejection screen -> (optional successive halving over the step budget) -> parallel fitness on an
executor. Crashes, time-outs and NaN get :data:`~ngl.search.gp.WORST_FITNESS`; every record
carries its :class:`Status` as data and a human-readable ``reason``.

>>> halving_budgets(300, 3, 3)
[33, 100, 300]
>>> round(spearman([1, 2, 3, 4], [10, 20, 40, 30]), 3)
0.8
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from .. import expr as E
from ..runspec import TrainConfig
from .fitness import FITNESS, FitnessFn
from .gp import WORST_FITNESS, Status
from .rejection import screen

__all__ = ["Status", "GenerationStats", "evaluate_candidates", "halving_budgets", "cache_key",
           "spearman", "fitness_task"]


def fitness_task(item: tuple[str, str, TrainConfig, list[int], Any]) -> float:
    """Executor task (module level, picklable): ``item = (key, infix, task, seeds, fn)``; the
    fitness is the mean over one run of ``task`` per seed (common batches across candidates: every
    candidate sees the same seeds)."""
    _, infix, task, seeds, fn = item
    fn = FITNESS.get(fn) if isinstance(fn, str) else fn
    values = [float(fn(infix, dataclasses.replace(task, seed=s))) for s in seeds or [task.seed]]
    value = sum(values) / len(values)
    if not math.isfinite(value):
        raise FloatingPointError(f"fitness is {value}")
    return value


_GRAD_PROBE: list[Any] = []


def _grad_probe() -> tuple[Any, Any]:
    """Fixed logits (a batch at scale 1 and one at scale 4) and one-hot targets, float64."""
    if not _GRAD_PROBE:
        import torch

        gen = torch.Generator().manual_seed(0)
        z = torch.randn(64, 10, generator=gen, dtype=torch.float64)
        z = torch.cat([z, 4 * torch.randn(64, 10, generator=gen, dtype=torch.float64)])
        labels = torch.randint(0, 10, (128,), generator=gen)
        _GRAD_PROBE.append((z, torch.nn.functional.one_hot(labels, 10).to(torch.float64)))
    return _GRAD_PROBE[0]


def cache_key(expr: E.Expr, *, digits: int = 5) -> str:
    """The cache key of a candidate: the direction of its gradient w.r.t. the logits on fixed
    probe batches, so losses that train identically share one key and train once.

    .. math:: k(f) = \mathrm{hash}\Big(\mathrm{round}\big(g / \lVert g \rVert\big)\Big),
              \quad g = \nabla_z \tfrac{1}{BC} \textstyle\sum f(\mathrm{softmax}(z), y)

    Under Adam, ``a * f + b`` (a > 0) trains like ``f``, and on the simplex ``y * (1 - p)`` trains
    like ``(1 - y) * p``: their normalised gradients agree, while their values (:func:`ngl.expr.
    fingerprint`, the fallback for losses without a finite, non-zero gradient) do not.

    >>> cache_key(E.parse("max(p, y)")) == cache_key(E.parse("3 * y * (1.26 - p) + 2"))
    True
    >>> cache_key(E.parse("p * y")) == cache_key(E.parse("(1 - p) * y"))
    False
    """
    import hashlib

    import torch

    z0, y = _grad_probe()
    z = z0.clone().requires_grad_(True)
    try:
        loss = E.evaluate(expr, torch.softmax(z, 1), y, namespace="torch").mean()
        (grad,) = torch.autograd.grad(loss, z, allow_unused=True)
    except (RuntimeError, OverflowError, ZeroDivisionError):
        grad = None
    norm = float(grad.norm()) if grad is not None else 0.0
    if not (math.isfinite(norm) and norm > 1e-12):
        return "v" + E.fingerprint(expr)
    g = (grad / norm).numpy().round(digits) + 0.0            # + 0.0 folds -0.0 into 0.0
    return "g" + hashlib.sha256(g.tobytes()).hexdigest()[:15]


def halving_budgets(max_steps: int, rungs: int, eta: int) -> list[int]:
    """Step budgets of successive halving, shortest first, ending at ``max_steps``."""
    return [max(1, int(round(max_steps / eta ** (rungs - 1 - r)))) for r in range(rungs)]


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):                      # ties share their mean rank
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def spearman(a: list[float], b: list[float]) -> float | None:
    """Spearman rank correlation (Pearson on mid-ranks); ``None`` below 3 pairs or no spread."""
    if len(a) != len(b) or len(a) < 3:
        return None
    ra, rb = _ranks(list(a)), _ranks(list(b))
    ma, mb = sum(ra) / len(ra), sum(rb) / len(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var > 0 else None


@dataclass
class GenerationStats:
    """What one call of :func:`evaluate_candidates` did."""

    requested: int = 0      # candidates needing a fitness
    cache_hits: int = 0     # answered from the cache (incl. duplicates within the call)
    screened: int = 0       # distinct new candidates screened
    rejected: int = 0       # of those, rejected by the screen
    evaluations: int = 0    # fitness (training) runs
    failed: int = 0         # runs that crashed, timed out or gave NaN
    rung_pairs: list[list[list[float]]] = field(default_factory=list)   # per rung r>0: [low, high]


def _record(status: Status, fitness: float, infix: str, budget: int, reason: str | None) -> dict:
    return {"fitness": fitness, "status": status.value, "reason": reason, "infix": infix,
            "budget": budget}


def _screen_new(exprs: list[E.Expr], keys: list[str], cache: dict, stats: GenerationStats,
                screen_kwargs: dict) -> tuple[dict[str, E.Expr], list[str]]:
    todo: dict[str, E.Expr] = {}
    for key, expr in zip(keys, exprs):
        if key in cache or key in todo:
            stats.cache_hits += 1
        else:
            todo[key] = expr
    passed: list[str] = []
    for key, expr in todo.items():
        stats.screened += 1
        res = screen(expr, **screen_kwargs)
        if res.ok:
            passed.append(key)
        else:
            stats.rejected += 1
            cache[key] = _record(Status.REJECTED, WORST_FITNESS, E.to_infix(expr), 0, res.reason)
    return todo, passed


def _run_rung(alive: list[str], todo: dict[str, E.Expr], task: TrainConfig, seeds: list[int],
              fitness: str | FitnessFn, executor: Any, stats: GenerationStats, bar: Any) -> dict:
    results: dict[str, dict] = {}
    budget = task.max_steps or 0
    items = [(k, E.to_infix(todo[k]), task, seeds, fitness) for k in alive]
    for item, outcome in executor.map_unordered(fitness_task, items):
        stats.evaluations += 1
        bar.update(1)
        value = outcome.value if outcome.error is None else None
        if value is None or not math.isfinite(value):
            stats.failed += 1
            results[item[0]] = _record(Status.FAILED, WORST_FITNESS, item[1], budget,
                                       outcome.error or "no fitness value")
        else:
            results[item[0]] = _record(Status.OK, float(value), item[1], budget, None)
    return results


def evaluate_candidates(exprs: list[E.Expr], *, cache: dict[str, dict], fitness: str | FitnessFn,
                        task: TrainConfig, seeds: list[int], executor: Any,
                        screen_kwargs: dict | None = None,
                        rungs: int = 1, eta: int = 3, progress: bool = False
                        ) -> tuple[list[dict], GenerationStats]:
    """Fitness records for ``exprs`` (``fitness``, ``status``, ``reason``, ``infix``, ``budget``).

    Equivalent trees (same fingerprint) are screened and trained once; records enter ``cache``.
    With ``rungs > 1``, new candidates are trained at ``max_steps / eta**k`` steps and only the
    best ``1/eta`` move on to the next, longer budget; each keeps the score of its last rung.
    ``stats.rung_pairs`` holds, per promotion, the promoted candidates' low- and high-rung scores
    (for the proxy's rank correlation).
    """
    from tqdm.auto import tqdm

    stats = GenerationStats(requested=len(exprs))
    keys = [cache_key(e) for e in exprs]
    todo, alive = _screen_new(exprs, keys, cache, stats, screen_kwargs or {})
    budgets = halving_budgets(task.max_steps or 100, rungs, eta) if rungs > 1 else [task.max_steps]
    bar = tqdm(total=sum(math.ceil(len(alive) / eta ** r) for r in range(len(budgets))),
               desc="evaluations", unit="run", leave=False, disable=not progress)
    results: dict[str, dict] = {}
    for rung, budget in enumerate(budgets):
        before = {k: results[k]["fitness"] for k in alive if k in results}
        rung_task = task if budget == task.max_steps else dataclasses.replace(task, max_steps=budget)
        results.update(_run_rung(alive, todo, rung_task, seeds, fitness, executor, stats, bar))
        if before:
            ok = [k for k in before if results[k]["status"] == Status.OK.value]
            stats.rung_pairs.append([[before[k] for k in ok], [results[k]["fitness"] for k in ok]])
        if rung + 1 < len(budgets):
            ranked = sorted(alive, key=lambda k: -results[k]["fitness"])   # stable: ties keep order
            alive = [k for k in ranked[:math.ceil(len(alive) / eta)]
                     if results[k]["status"] == Status.OK.value]
    bar.close()
    cache.update(results)
    return [dict(cache[k]) for k in keys], stats
