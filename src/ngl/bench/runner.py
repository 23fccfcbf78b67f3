"""Run a grid through an executor into a :class:`~ngl.bench.store.ResultStore`, resumably:
finished runs are skipped, interrupted ones (left ``running`` by a crash) run again, and every
finished run, whatever its fate, is one committed row."""
from __future__ import annotations

import functools
import sys
import time
from collections import Counter
from typing import Any, Callable, Iterator

from tqdm.auto import tqdm

from ..executors import Executor
from ..runspec import TrainConfig, dataset_label
from .grid import PlannedRun
from .store import ResultStore

__all__ = ["train_task", "run_grid", "describe_run"]


def train_task(config: TrainConfig) -> dict[str, Any]:
    """Executor task (module level, picklable): one training run, ``RunResult.to_dict()``."""
    from ..train import train
    return train(config, progress=False).to_dict()


def _apply(task: Callable[[TrainConfig], dict[str, Any]], run: PlannedRun) -> dict[str, Any]:
    return task(run.config)


def describe_run(config: TrainConfig) -> str:
    return f"{dataset_label(config.to_dict())} {config.model} {config.loss} seed {config.seed}"


def _line(done: int, total: int, config: TrainConfig, result: dict[str, Any]) -> str:
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


def run_grid(runs: list[PlannedRun], store: ResultStore, *, executor: Executor,
             task: Callable[[TrainConfig], dict[str, Any]] | None = None, retry_failed: bool = False,
             progress: bool = True, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run every run of ``runs`` that the store has not finished.

    Args:
        runs: keyed run specs (:func:`~ngl.bench.grid.expand`).
        store: the results database; new runs are added as pending.
        executor: where runs execute (:func:`ngl.executors.make_executor`).
        task: module-level ``TrainConfig -> RunResult.to_dict()``; default (None) :func:`train_task`.
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
    task = train_task if task is None else task
    store.add((r.key, r.config.to_dict()) for r in runs)
    interrupted = store.reset(["running"])
    if retry_failed:
        store.reset(["failed"])
    status = store.status_of(r.key for r in runs)
    todo = [r for r in runs if status.get(r.key) == "pending"]
    total, skipped = len(runs), len(runs) - len(todo)
    bar = tqdm(total=total, initial=skipped, unit="run", desc="bench", disable=not progress,
               dynamic_ncols=True, file=sys.stderr)
    say = echo or (lambda text: tqdm.write(text, file=sys.stderr))
    if interrupted:
        say(f"resuming: {interrupted} interrupted run(s) will run again, {skipped} finished run(s) skipped")

    def feed() -> Iterator[PlannedRun]:
        for run in todo:                    # marked as the executor takes it
            store.mark_running(run.key)
            yield run

    counts: Counter[str] = Counter()
    done = skipped
    try:
        for run, outcome in executor.map_unordered(functools.partial(_apply, task), feed()):
            result = _result(outcome)
            store.finish(run.key, result)
            counts[store.status_of([run.key])[run.key]] += 1
            done += 1
            bar.update(1)
            say(_line(done, total, run.config, result))
    finally:
        bar.close()
    return {"total": total, "skipped": skipped, "ran": sum(counts.values()), "interrupted": interrupted,
            "wall_time": time.perf_counter() - start, "counts": dict(counts)}

