"""Fitness of a candidate loss, and the cheap-before-fast evaluation of a generation.

A fitness function maps ``(infix, settings)`` to a validation accuracy in [0, 1]. Registered:

- ``train``: a short training run through the harness, ``ngl.train.train(TrainConfig(loss="expr:"
  + infix, max_steps=..., ...))``; fitness = best validation accuracy (default).
- ``linear``: softmax regression on scikit-learn's digits trained full-batch with the loss;
  a real but tiny learning problem (tenths of a second), for tests and quick experiments.

:func:`evaluate_candidates` runs the pipeline: canonical-form cache (:func:`ngl.expr.fingerprint`)
-> rejection screen -> (optional successive halving over the step budget) -> parallel fitness on an
executor. Crashes, time-outs and NaN get :data:`~ngl.search.gp.WORST_FITNESS` and a reason.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, Callable, Iterable, Iterator

from .. import expr as E
from .gp import WORST_FITNESS
from .screen import screen

__all__ = ["FITNESS_FUNCTIONS", "check_train_settings", "train_fitness", "linear_fitness", "evaluate_candidates",
           "GenerationStats", "make_search_executor", "halving_budgets", "cache_key"]

FitnessFn = Callable[[str, dict], float]


def train_fitness(infix: str, settings: dict) -> float:
    """Best validation accuracy of a short harness run with loss ``expr:<infix>``.

    ``settings`` holds TrainConfig fields (dataset, model, max_steps, batch_size, lr, seed, ...).
    A diverged or failed run scores :data:`WORST_FITNESS`.
    """
    from ..train import TrainConfig, train

    cfg = TrainConfig.from_dict({**settings, "loss": "expr:" + infix})
    result = train(cfg, progress=False)
    acc = result.best_val_accuracy if result.best_val_accuracy is not None else result.val_accuracy
    if result.status != "ok" or acc is None or not math.isfinite(acc):
        raise RuntimeError(result.error or f"training {result.status}")
    return float(acc)


_DIGITS: dict[int, Any] = {}


def _digits(seed: int) -> Any:
    if seed not in _DIGITS:
        import numpy as np
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        x, y = load_digits(return_X_y=True)
        x = (x / 16.0).astype(np.float32)
        _DIGITS[seed] = train_test_split(x, y, test_size=0.3, stratify=y, random_state=seed)
    return _DIGITS[seed]


def linear_fitness(infix: str, settings: dict) -> float:
    """Validation accuracy of softmax regression on digits trained with the loss (Adam, full batch).

    ``settings``: ``max_steps`` (default 100), ``lr`` (default 0.05), ``seed`` (default 0).
    """
    import torch

    from ..losses.expression import expression_loss

    seed = int(settings.get("seed", 0))
    x_tr, x_va, y_tr, y_va = _digits(seed)
    torch.manual_seed(seed)
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=float(settings.get("lr", 0.05)))
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    expr = E.parse(infix)
    for _ in range(int(settings.get("max_steps") or 100)):
        opt.zero_grad(set_to_none=True)
        loss = expression_loss(model(xt), yt, expr)
        if not torch.isfinite(loss):
            raise FloatingPointError("loss is nan/inf")
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_va)).argmax(1).numpy()
    return float((pred == y_va).mean())


def check_train_settings(settings: dict) -> None:
    """Fail before the search starts on a bad harness config, unknown dataset or model."""
    from ..data import get_dataset_info
    from ..models import get_model_info
    from ..train import TrainConfig

    TrainConfig.from_dict({**settings, "loss": "ce"}).validate()
    try:
        get_model_info(settings["model"])
        if ":" not in settings["dataset"]:
            get_dataset_info(settings["dataset"])
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


#: Fitness functions by name (``ngl search --fitness``).
FITNESS_FUNCTIONS: dict[str, FitnessFn] = {"train": train_fitness, "linear": linear_fitness}


def _fitness_task(item: tuple[str, str, dict, Any]) -> float:
    """Executor task (module level, picklable): ``item = (key, infix, settings, fn)``."""
    _, infix, settings, fn = item
    fn = FITNESS_FUNCTIONS[fn] if isinstance(fn, str) else fn
    value = float(fn(infix, settings))
    if not math.isfinite(value):
        raise FloatingPointError(f"fitness is {value}")
    return value


class _InlineExecutor:
    """Fallback used only while ``ngl.executors`` is unavailable: runs tasks in this process."""

    def map_unordered(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Any]]:
        for item in items:
            start = time.perf_counter()
            try:
                out = SimpleNamespace(value=fn(item), error=None)
            except Exception as exc:  # noqa: BLE001 - a candidate's crash is data, not a bug
                out = SimpleNamespace(value=None, error=f"{type(exc).__name__}: {exc}".splitlines()[0])
            out.wall_time = time.perf_counter() - start
            yield item, out

    def close(self) -> None:
        pass


def make_search_executor(kind: str = "inline", *, workers: int = 1, timeout: float | None = None,
                         ray_address: str | None = None, threads: int | None = None) -> Any:
    """``ngl.executors.make_executor`` (inline / process / ray); ``threads`` per task."""
    try:
        from ..executors import make_executor
    except ModuleNotFoundError:
        if kind != "inline":
            raise ValueError(f"executor {kind!r} needs ngl.executors, which is not installed") from None
        return _InlineExecutor()
    extra = {"threads": threads} if threads else {}
    return make_executor(kind, workers=workers, timeout=timeout, ray_address=ray_address, **extra)


def cache_key(expr: E.Expr) -> str:
    """The cache key of a candidate: :func:`ngl.expr.fingerprint` (values on the probe grid, signed
    zeros folded), so equivalent trees train once."""
    return E.fingerprint(expr)


def halving_budgets(max_steps: int, rungs: int, eta: int) -> list[int]:
    """Step budgets of successive halving, shortest first, ending at ``max_steps``."""
    return [max(1, int(round(max_steps / eta ** (rungs - 1 - r)))) for r in range(rungs)]


@dataclass
class GenerationStats:
    """What one call of :func:`evaluate_candidates` did."""

    requested: int = 0      # candidates needing a fitness
    cache_hits: int = 0     # answered from the cache (incl. duplicates within the call)
    screened: int = 0       # distinct new candidates screened
    rejected: int = 0       # of those, rejected by the screen
    evaluations: int = 0    # fitness (training) runs
    failed: int = 0         # runs that crashed, timed out or gave NaN


def evaluate_candidates(exprs: list[E.Expr], *, cache: dict[str, dict], fitness: str | FitnessFn,
                        settings: dict, executor: Any, screen_kwargs: dict | None = None,
                        rungs: int = 1, eta: int = 3, progress: bool = False) -> tuple[list[dict], GenerationStats]:
    """Fitness records for ``exprs`` (``fitness``, ``status``, ``reason``, ``infix``, ``budget``).

    Equivalent trees (same fingerprint) are screened and trained once; records enter ``cache``.
    With ``rungs > 1``, new candidates are trained at ``max_steps / eta**k`` steps and only the
    best ``1/eta`` move on to the next, longer budget; each keeps the score of its last rung.
    """
    from tqdm.auto import tqdm

    stats = GenerationStats(requested=len(exprs))
    keys = [cache_key(e) for e in exprs]
    todo: dict[str, E.Expr] = {}
    for key, expr in zip(keys, exprs):
        if key in cache or key in todo:
            stats.cache_hits += 1
            continue
        todo[key] = expr
    passed: list[str] = []
    for key, expr in todo.items():
        stats.screened += 1
        res = screen(expr, **(screen_kwargs or {}))
        if res.ok:
            passed.append(key)
        else:
            stats.rejected += 1
            cache[key] = {"fitness": WORST_FITNESS, "status": "rejected", "reason": res.reason,
                          "infix": E.to_infix(expr), "budget": 0}
    max_steps = int(settings.get("max_steps") or 100)
    budgets = halving_budgets(max_steps, rungs, eta) if rungs > 1 else [max_steps]
    results: dict[str, dict] = {}
    alive = passed
    bar = tqdm(total=sum(math.ceil(len(passed) / eta ** r) for r in range(len(budgets))),
               desc="evaluations", unit="run", leave=False, disable=not progress)
    for rung, budget in enumerate(budgets):
        items = [(key, E.to_infix(todo[key]), {**settings, "max_steps": budget}, fitness) for key in alive]
        for item, outcome in executor.map_unordered(_fitness_task, items):
            key = item[0]
            stats.evaluations += 1
            bar.update(1)
            value = outcome.value if outcome.error is None else None
            if value is None or not math.isfinite(value):
                stats.failed += 1
                results[key] = {"fitness": WORST_FITNESS, "status": "failed",
                                "reason": outcome.error or "no fitness value", "infix": item[1], "budget": budget}
            else:
                results[key] = {"fitness": float(value), "status": "ok", "reason": None,
                                "infix": item[1], "budget": budget}
        if rung + 1 < len(budgets):
            ranked = sorted(alive, key=lambda k: -results[k]["fitness"])   # stable: ties keep order
            alive = [k for k in ranked[:math.ceil(len(alive) / eta)] if results[k]["status"] == "ok"]
    bar.close()
    cache.update(results)
    return [dict(cache[k]) for k in keys], stats
