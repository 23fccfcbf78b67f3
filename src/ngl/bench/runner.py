"""Run a grid through an executor into a :class:`~ngl.bench.store.ResultStore`, resumably:
finished runs are skipped, interrupted ones (left ``running`` by a crash) run again, and every
finished run, whatever its fate, is one committed row."""
from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, Callable, Iterator

from tqdm.auto import tqdm

from ..executors import Executor
from .grid import dataset_label, pin_config, run_key
from .store import ResultStore

__all__ = ["train_task", "resolve_config", "run_grid", "describe_run"]


def resolve_config(config: dict[str, Any]) -> dict[str, Any]:
    """Fill the harness' defaults: ``TrainConfig(**config).to_dict()`` after checking it (unknown
    keys, wrong types, out-of-range values: :class:`~ngl.errors.InputError`, a ``ValueError``,
    naming the field). Keys of resolved configs do not depend on how a run was spelled."""
    from .checks import check_train_config
    return check_train_config(config).to_dict()


def train_task(config: dict[str, Any]) -> dict[str, Any]:
    """Executor task (module level, picklable): one training run, ``RunResult.to_dict()``."""
    from ..train import TrainConfig, train
    return train(TrainConfig.from_dict(config), progress=False).to_dict()


def describe_run(config: dict[str, Any]) -> str:
    return f"{dataset_label(config)} {config.get('model')} {config.get('loss')} seed {config.get('seed')}"


def _line(done: int, total: int, config: dict[str, Any], result: dict[str, Any]) -> str:
    status = result.get("status", "failed")
    acc = result.get("test_accuracy")
    what = f"test {100 * acc:.2f}%" if status == "ok" and acc is not None else (result.get("error") or "")
    wall = result.get("wall_time") or 0.0
    return f"[{done}/{total}] {describe_run(config)}: {status} {what} ({wall:.1f}s)"


def _result(outcome: Any) -> dict[str, Any]:
    """An executor's :class:`~ngl.executors.Outcome` as the row to store."""
    if outcome.error is not None:
        return {"status": "failed", "error": outcome.error, "wall_time": outcome.wall_time}
    if not isinstance(outcome.value, dict):
        return {"status": "failed", "wall_time": outcome.wall_time,
                "error": f"task returned {type(outcome.value).__name__}, expected a RunResult dict"}
    return outcome.value


def run_grid(configs: list[dict[str, Any]], store: ResultStore, *, executor: Executor,
             task: Callable[[dict[str, Any]], dict[str, Any]] = train_task, retry_failed: bool = False,
             progress: bool = True, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every config of ``configs`` that the store has not finished.

    Args:
        configs: resolved run configs (:func:`~ngl.bench.grid.expand`).
        store: the results database; new configs are added as pending.
        executor: where runs execute (:func:`ngl.executors.make_executor`).
        task: module-level ``config -> RunResult.to_dict()``; default :func:`train_task`.
        retry_failed: also rerun runs that finished with status ``failed``.
        progress: show one overall tqdm bar (runs done / total, ETA).
        echo: called with a one-line summary per finished run (default: written above the bar).
    Returns:
        ``{"total", "skipped", "ran", "interrupted", "wall_time", "counts": {status: n}}``.
    Raises:
        StoreWriteError: a write failed after retries (full disk); every run finished before it
            is in the store, and rerunning resumes.
    """
    start = time.perf_counter()
    configs = [pin_config(c) for c in configs]      # what runs is what the key says
    store.add(configs)
    interrupted = store.reset(["running"])
    if retry_failed:
        store.reset(["failed"])
    keys = [run_key(c) for c in configs]
    status = store.status_of(keys)
    todo = [c for c, k in zip(configs, keys) if status.get(k) == "pending"]
    total, skipped = len(configs), len(configs) - len(todo)
    bar = tqdm(total=total, initial=skipped, unit="run", desc="bench", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    say = echo or (lambda text: tqdm.write(text, file=sys.stderr))
    if interrupted:
        say(f"resuming: {interrupted} interrupted run(s) will run again, {skipped} finished run(s) skipped")

    def feed() -> Iterator[dict[str, Any]]:
        for cfg in todo:                    # marked as the executor takes it
            store.mark_running(run_key(cfg))
            yield cfg

    counts: Counter[str] = Counter()
    done = skipped
    try:
        for cfg, outcome in executor.map_unordered(task, feed()):
            result, key = _result(outcome), run_key(cfg)
            store.finish(key, result)
            counts[store.status_of([key])[key]] += 1
            done += 1
            bar.update(1)
            say(_line(done, total, cfg, result))
    finally:
        bar.close()
    return {"total": total, "skipped": skipped, "ran": sum(counts.values()), "interrupted": interrupted,
            "wall_time": time.perf_counter() - start, "counts": dict(counts)}

