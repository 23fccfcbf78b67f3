"""A generation's training, cheap before fast, raced against CE on common seeds.

:func:`screen_new` answers what it can without training: the canonical-form cache
(:func:`cache_key`: equivalent trees train once) and the rejection screen. :func:`train_jobs`
trains ``(task, loss, seed)`` runs: with the ``train`` fitness and a model the population engine
can batch (:mod:`ngl.search.batched`), every task's runs of the generation are one batched model
per worker; otherwise one harness run per job through the executor. :func:`record_results` puts
the accuracies into the race (:mod:`ngl.search.racing`): CE's per (task, seed), the candidates'
per (task, key, seed); a candidate with any failed run is out of the race with its reason.

>>> round(spearman([1, 2, 3, 4], [10, 20, 40, 30]), 3)
0.8
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

from .. import expr as E
from ..errors import InputError
from ..runspec import TrainConfig
from .fitness import FITNESS, FitnessFn
from .gp import WORST_FITNESS, Status
from .rejection import screen

__all__ = ["Status", "GenerationStats", "screen_new", "train_jobs", "record_results", "cache_key",
           "spearman", "fitness_task", "CE_SPEC", "Job"]

#: CE's spec in a job: the registry loss under the ``train`` fitness, its expression otherwise
CE_SPEC = "ce"
Job = tuple[str, str, int]              # (task name, loss spec: "ce" or "expr:<infix>", seed)


def fitness_task(item: tuple[str, str, TrainConfig, list[int], Any]) -> float:
    """Executor task (module level, picklable): ``item = (key, infix, task, seeds, fn)``; the mean
    over one run of ``task`` per seed (``task.seed`` when ``seeds`` is empty)."""
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
    r"""The cache key of a candidate: the direction of its gradient w.r.t. the logits on fixed
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
    """What one generation's evaluation did."""

    requested: int = 0      # individuals of the generation
    cache_hits: int = 0     # answered from the cache (incl. duplicates within the generation)
    screened: int = 0       # distinct new candidates screened
    rejected: int = 0       # of those, rejected by the screen
    evaluations: int = 0    # new candidates trained (on the generation's base seeds, every task)
    promoted: int = 0       # candidates trained on more seeds (racing)
    runs: int = 0           # training runs in all (candidates and CE, every task and seed)
    failed: int = 0         # candidates with a run that crashed, timed out or gave NaN
    batched: bool = False   # the population engine trained them


def screen_new(exprs: list[E.Expr], keys: list[str], cache: dict, stats: GenerationStats,
               screen_kwargs: dict) -> dict[str, E.Expr]:
    """The distinct new candidates that pass the screen (key -> tree); the rejected ones enter
    ``cache`` with the worst fitness and their reason."""
    todo: dict[str, E.Expr] = {}
    for key, expr in zip(keys, exprs):
        if key in cache or key in todo:
            stats.cache_hits += 1
        else:
            todo[key] = expr
    passed: dict[str, E.Expr] = {}
    for key, expr in todo.items():
        stats.screened += 1
        res = screen(expr, **screen_kwargs)
        if res.ok:
            passed[key] = expr
        else:
            stats.rejected += 1
            cache[key] = {"fitness": WORST_FITNESS, "status": Status.REJECTED.value, "reason": res.reason,
                          "infix": E.to_infix(expr)}
    return passed


# --------------------------------------------------------------------------- training
def _batchable(task: TrainConfig, fitness: str | FitnessFn) -> bool:
    if fitness != "train":
        return False
    from .batched import supports

    return supports(task)


def _spec_infix(spec: str) -> str:
    return E.to_infix(E.CE) if spec == CE_SPEC else spec[5:]


def train_jobs(jobs: list[Job], *, tasks: dict[str, TrainConfig], fitness: str | FitnessFn,
               executor: Any, workers: int = 1, progress: Callable[[int], None] | None = None
               ) -> tuple[dict[Job, tuple[float | None, str | None]], bool]:
    """Accuracy (or ``None`` and the reason) of every job, and whether the population engine
    trained any. A task it can batch: one chunk per worker; the others: one run per job."""
    tick = progress or (lambda _n: None)
    names = list(dict.fromkeys(j[0] for j in jobs))
    batched = [n for n in names if _batchable(tasks[n], fitness)]
    out = _train_batched([j for j in jobs if j[0] in batched], tasks, executor, workers, tick)
    out.update(_train_one_by_one([j for j in jobs if j[0] not in batched], tasks, fitness, executor, tick))
    return out, bool(batched)


def _train_batched(jobs: list[Job], tasks: dict[str, TrainConfig], executor: Any, workers: int,
                   tick: Callable[[int], None]) -> dict[Job, tuple[float | None, str | None]]:
    from .batched import population_items, population_task

    out: dict[Job, tuple[float | None, str | None]] = {}
    items = []
    for name in dict.fromkeys(j[0] for j in jobs):
        members = [(spec, seed) for t, spec, seed in jobs if t == name]
        size = max(1, math.ceil(len(members) / max(1, workers)))
        items += [(name, item) for item in population_items(tasks[name], members, chunk_size=size,
                                                              device=tasks[name].device)]
    by_item = {id(item): name for name, item in items}
    for item, outcome in executor.map_unordered(population_task, [it for _, it in items]):
        name = by_item[id(item)]
        for spec, seed in item[1]:
            out[(name, spec, seed)] = (None, outcome.error)
        for r in (outcome.value or []) if outcome.error is None else []:
            ok = r.status == "ok" and r.val_accuracy is not None and math.isfinite(r.val_accuracy)
            out[(name, r.loss, r.seed)] = (r.val_accuracy if ok else None, None if ok else r.reason)
        tick(len(item[1]))
    return out


def _train_one_by_one(jobs: list[Job], tasks: dict[str, TrainConfig], fitness: str | FitnessFn,
                      executor: Any, tick: Callable[[int], None]) -> dict[Job, tuple[float | None, str | None]]:
    out: dict[Job, tuple[float | None, str | None]] = {}
    items = [(job, _spec_infix(job[1]), tasks[job[0]], [job[2]], fitness) for job in jobs]
    for item, outcome in executor.map_unordered(fitness_task, items):
        value = outcome.value if outcome.error is None else None
        ok = value is not None and math.isfinite(value)
        out[item[0]] = (float(value) if ok else None, None if ok else (outcome.error or "no fitness value"))
        tick(1)
    return out


def record_results(race: dict, results: dict[Job, tuple[float | None, str | None]],
                   key_of: dict[str, str]) -> dict[str, str]:
    """Put ``results`` into ``race``; returns ``{key: reason}`` of the candidates with a failed run
    (their runs leave the race). A failed CE run is an error: nothing can be scored without it."""
    failed: dict[str, str] = {}
    for (task, spec, seed), (acc, reason) in results.items():
        entry = race.setdefault(task, {"ce": {}, "runs": {}})
        if spec == CE_SPEC:
            if acc is None:
                raise InputError(f"the CE reference run failed on task {task!r}, seed {seed}: {reason}")
            entry["ce"][str(seed)] = acc
        elif acc is None:
            failed.setdefault(key_of[spec], reason or "failed")
        else:
            entry["runs"].setdefault(key_of[spec], {})[str(seed)] = acc
    for key in failed:
        for entry in race.values():
            entry["runs"].pop(key, None)
    return failed
