"""Run many independent tasks (training runs, fitness evaluations) in-process, in a local pool of
worker processes, or on Ray, with one interface.

>>> with make_executor("inline") as ex:      # or "process" (workers=, timeout=), "ray"
...     for item, outcome in ex.map_unordered(abs, [-2, 3]):   # fn: module level, picklable
...         print(item, outcome.value if outcome.error is None else outcome.error)
-2 2
3 3

A task that raises, runs past ``timeout`` or kills its worker yields an :class:`Outcome` with a
one-line ``error``; the map goes on. Workers run with ``torch.set_num_threads(threads)`` (1 unless
given), so ``workers`` processes use ``workers`` cores.

Limits, checked when the executor is built (before any process starts): ``workers`` and
``threads`` are each at most the machine's CPU count (``os.cpu_count()``; for Ray on a cluster, the
cluster's CPUs), since training is CPU-bound: more processes than CPUs only share them and
multiply the memory. A ``timeout`` always applies: ``inline`` with a timeout runs its tasks in
one worker process, because a task can only be stopped from outside its process.
"""
from __future__ import annotations

import math
import multiprocessing as mp
import operator
import os
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing.connection import wait as _wait
from typing import Any, Callable, Iterable, Iterator

from .errors import InputError, one_line as _one_line, require_extra
from .registry import Registry

__all__ = ["Outcome", "Executor", "InlineExecutor", "ProcessExecutor", "RayExecutor",
           "EXECUTORS", "make_executor", "check_executor_settings", "machine_cpus",
           "check_parallelism"]

#: seconds a worker asked to stop (SIGTERM) gets to exit cleanly before it is killed (SIGKILL)
STOP_GRACE_S = 5.0


@dataclass
class Outcome:
    """What one task produced: its return ``value``, or a one-line ``error``; ``wall_time`` in s."""

    value: Any = None
    error: str | None = None
    wall_time: float = 0.0


#: executor kind -> class, registered next to each class; drives ``--executor`` choices.
EXECUTORS: Registry[type["Executor"]] = Registry("executor")


def machine_cpus() -> int:
    """This machine's CPU count (``os.cpu_count()``, 1 where unknown): the most local workers or
    threads per task an executor accepts."""
    return os.cpu_count() or 1


def check_parallelism(*, workers: int = 1, threads: int | None = None, cpus: int | None = None,
                      where: str = "this machine has") -> None:
    """Refuse ``workers`` or ``threads`` outside ``1 .. cpus`` (default :func:`machine_cpus`) with
    one line saying why.

    >>> check_parallelism(workers=1000, cpus=16)
    Traceback (most recent call last):
    ...
    ngl.errors.InputError: 1000 workers are more than the 16 CPUs this machine has; use at most 16 (tasks are CPU-bound: more processes only share the CPUs and multiply the memory)
    """
    cpus = cpus or machine_cpus()
    workers = _count("workers", workers)
    if workers > cpus:
        raise InputError(f"{workers} workers are more than the {cpus} CPUs {where}; use at most "
                         f"{cpus} (tasks are CPU-bound: more processes only share the CPUs and "
                         f"multiply the memory)")
    if threads is not None and _count("threads", threads) > cpus:
        raise InputError(f"{threads} threads per task are more than the {cpus} CPUs {where}; "
                         f"use 1..{cpus}")


def _count(name: str, value: Any) -> int:
    """``value`` as an int >= 1 (NumPy integers too; a bool is no count), else one line."""
    try:
        n = operator.index(value)
    except TypeError:
        n = 0
    if isinstance(value, bool) or n < 1:
        raise InputError(f"{name} must be >= 1, got {value!r}")
    return n


def _check_timeout(timeout: float | None) -> None:
    if timeout is not None and not (isinstance(timeout, (int, float)) and math.isfinite(timeout)
                                    and timeout > 0):
        raise InputError(f"timeout must be a number of seconds > 0 or None, got {timeout!r}")


def _set_threads(threads: int) -> None:
    """Limit intra-op threads of this process (environment for libraries not imported yet)."""
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(threads)
    try:
        import torch
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    except ImportError:  # pragma: no cover - torch is a dependency
        pass


def _call(fn: Callable, item: Any, threads: int | None = None) -> tuple[Any, str | None, float]:
    """Run ``fn(item)``; return ``(value, error, wall_time)``, never raise an ``Exception``."""
    if threads:
        _set_threads(threads)
    start = time.perf_counter()
    try:
        return fn(item), None, time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - a task's crash is data for the caller
        return None, _one_line(exc), time.perf_counter() - start


class Executor:
    """Base class: ``map_unordered(fn, items)`` yields ``(item, Outcome)`` as tasks finish."""

    @classmethod
    def check_settings(cls, *, workers: int, timeout: float | None, threads: int | None,
                       ray_address: str | None) -> None:
        """Refuse settings this kind would refuse, building nothing (one line, see the module)."""
        check_parallelism(workers=workers, threads=threads)
        _check_timeout(timeout)

    @classmethod
    def create(cls, *, workers: int, timeout: float | None, threads: int | None,
               ray_address: str | None) -> "Executor":
        """The executor :func:`make_executor` builds for this kind from the common settings."""
        return cls(workers=workers, timeout=timeout, threads=threads)

    def map_unordered(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Outcome]]:
        raise NotImplementedError

    def close(self) -> None:
        """Release workers; idempotent."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@EXECUTORS.register("inline")
class InlineExecutor(Executor):
    """Run tasks one after another in this process (debugging, tiny grids); a task that kills the
    interpreter kills the caller. A timeout cannot be enforced in-process, so
    ``make_executor("inline", timeout=...)`` gives a one-worker :class:`ProcessExecutor` instead."""

    def __init__(self, *, threads: int | None = None) -> None:
        check_parallelism(threads=threads)
        self.threads = threads

    @classmethod
    def create(cls, *, workers: int, timeout: float | None, threads: int | None,
               ray_address: str | None) -> Executor:
        cls.check_settings(workers=workers, timeout=timeout, threads=threads, ray_address=None)
        if timeout is not None:
            return ProcessExecutor(workers=1, timeout=timeout, threads=threads)
        return cls(threads=threads)

    def map_unordered(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Outcome]]:
        for item in items:
            value, error, wall = _call(fn, item, self.threads)
            yield item, Outcome(value, error, wall)


def _exit_cleanly(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def _worker_main(conn: Any, threads: int) -> None:
    """Worker process loop: receive ``(fn, item)``, send back ``(value, error, wall)``.

    SIGTERM ends the task with ``SystemExit``, so the interpreter exits normally and releases what
    the task held (a semaphore of tqdm's lock killed with SIGKILL is reported "leaked" at exit)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # the parent handles Ctrl-C and stops us
    signal.signal(signal.SIGTERM, _exit_cleanly)
    _set_threads(threads)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):                # parent gone
            return
        if msg is None:
            return
        fn, item = msg
        try:
            conn.send(("start",))                  # the task's clock starts now, not at spawn
            result = _call(fn, item)
            conn.send(("done", *result))
        except (BrokenPipeError, OSError):
            return
        except Exception as exc:  # noqa: BLE001 - unpicklable return value
            conn.send(("done", None, f"result not picklable: {_one_line(exc)}", result[2]))


class _Worker:
    def __init__(self, ctx: Any, threads: int) -> None:
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker_main, args=(child, threads), daemon=True)
        self.proc.start()
        child.close()
        self.item: Any = None
        self.started: float | None = None       # when the worker began the task
        self.busy = False

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
        self.proc.join(timeout=5)
        self.conn.close()


def _stop(workers: list[_Worker], *, grace: float = STOP_GRACE_S) -> None:
    """Stop ``workers``: idle ones are asked to return, busy ones get SIGTERM (a clean exit), and
    any still alive after ``grace`` seconds is killed."""
    for w in workers:
        try:
            if w.busy:
                w.proc.terminate()
            else:
                w.conn.send(None)
        except (BrokenPipeError, OSError):
            pass
    deadline = time.monotonic() + grace
    for w in workers:
        w.proc.join(timeout=max(0.0, deadline - time.monotonic()))
        w.kill()


@EXECUTORS.register("process")
class ProcessExecutor(Executor):
    """A pool of ``workers`` long-lived processes (``spawn``), one task each at a time.

    Unlike ``concurrent.futures``, a worker that dies or hangs past ``timeout`` is killed and
    replaced and only its task fails; the other tasks and the pool go on. A worker is stopped with
    SIGTERM first (its task unwinds and the process exits normally), and SIGKILL only if it is
    still alive after a grace period: on Ctrl-C, ``close()`` or a consumer that stops early, the
    unfinished tasks are stopped this way and nothing they held is left behind.
    """

    def __init__(self, *, workers: int = 2, timeout: float | None = None, threads: int | None = None,
                 start_method: str = "spawn") -> None:
        check_parallelism(workers=workers, threads=threads)
        _check_timeout(timeout)
        self.workers, self.timeout, self.threads = workers, timeout, threads or 1
        self._ctx = mp.get_context(start_method)
        self._pool: list[_Worker] = []

    def _ensure_pool(self) -> None:
        self._pool = [w for w in self._pool if w.proc.is_alive()]
        while len(self._pool) < self.workers:
            self._pool.append(_Worker(self._ctx, self.threads))

    def _replace(self, worker: _Worker) -> None:
        _stop([worker], grace=1.0)
        self._pool[self._pool.index(worker)] = _Worker(self._ctx, self.threads)

    def map_unordered(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Outcome]]:
        self._ensure_pool()
        todo = iter(items)
        exhausted = False
        try:
            while True:
                for w in self._pool:                       # hand out work to idle workers
                    while not w.busy and not exhausted:
                        try:
                            item = next(todo)
                        except StopIteration:
                            exhausted = True
                            break
                        try:
                            w.conn.send((fn, item))
                        except Exception as exc:  # noqa: BLE001 - fn/item not picklable
                            yield item, Outcome(error=f"task not picklable: {_one_line(exc)}")
                            continue
                        w.item, w.started, w.busy = item, None, True
                busy = [w for w in self._pool if w.busy]
                if not busy:
                    return
                wait_s = None
                running = [w.started for w in busy if w.started is not None]
                if self.timeout is not None and running:
                    wait_s = max(0.0, min(running) + self.timeout - time.monotonic())
                _wait([w.conn for w in busy] + [w.proc.sentinel for w in busy], timeout=wait_s)
                for w in busy:
                    outcome = None
                    try:
                        while outcome is None and w.conn.poll():
                            msg = w.conn.recv()
                            if msg[0] == "start":
                                w.started = time.monotonic()
                            else:
                                outcome = Outcome(*msg[1:])
                    except (EOFError, OSError):
                        pass
                    now = time.monotonic()
                    took = now - (w.started or now)
                    if outcome is None and not w.proc.is_alive():
                        outcome = Outcome(error=f"worker died (exit code {w.proc.exitcode})", wall_time=took)
                        self._replace(w)
                    elif (outcome is None and self.timeout is not None and w.started is not None
                          and took >= self.timeout):
                        outcome = Outcome(error=f"timed out after {self.timeout:g}s", wall_time=took)
                        self._replace(w)
                    if outcome is not None:
                        w.busy, item, w.item = False, w.item, None
                        yield item, outcome
        finally:               # consumer stopped early (Ctrl-C, break): stop unfinished tasks
            busy = [w for w in self._pool if w.busy]
            if busy:
                self._pool = [w for w in self._pool if not w.busy]   # the next map starts new ones
                _stop(busy)

    def close(self) -> None:
        pool, self._pool = self._pool, []
        _stop(pool)


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """Tasks as Ray remote functions (1 CPU each, no retries). Connects to ``ray_address`` or
    ``RAY_ADDRESS``; otherwise starts a local instance with ``num_cpus=workers``."""

    def __init__(self, *, workers: int = 2, timeout: float | None = None, threads: int | None = None,
                 ray_address: str | None = None) -> None:
        self.check_settings(workers=workers, timeout=timeout, threads=threads, ray_address=ray_address)
        address = ray_address or os.environ.get("RAY_ADDRESS")
        ray = require_extra("ray", "ray", what="executor 'ray'")
        self._ray, self.timeout, self.threads = ray, timeout, threads or 1
        self._owns = False
        connected_here = not ray.is_initialized()
        if connected_here:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                # a local instance: workers import what this driver can (tests, scripts' modules)
                path = os.pathsep.join(p for p in sys.path if p)
                ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False,
                         runtime_env={"env_vars": {"OMP_NUM_THREADS": str(self.threads),
                                                   "PYTHONPATH": path}})
                self._owns = True
        self._remote = ray.remote(num_cpus=1, max_retries=0)(_call)
        # at most one task per CPU in flight, so a task's timeout clock starts when it can run
        self.slots = max(1, int(ray.cluster_resources().get("CPU", workers)))
        if address:                       # a cluster: its CPUs are the limit, known only now
            try:
                check_parallelism(workers=workers, threads=threads, cpus=self.slots,
                                  where="the Ray cluster has")
            except InputError:
                if connected_here:
                    ray.shutdown()
                raise

    @classmethod
    def check_settings(cls, *, workers: int, timeout: float | None, threads: int | None,
                       ray_address: str | None) -> None:
        """The timeout; without a cluster address also the local limits (a cluster's CPUs are
        known only once connected, and checked then)."""
        _check_timeout(timeout)
        if not (ray_address or os.environ.get("RAY_ADDRESS")):
            check_parallelism(workers=workers, threads=threads)

    @classmethod
    def create(cls, *, workers: int, timeout: float | None, threads: int | None,
               ray_address: str | None) -> Executor:
        return cls(workers=workers, timeout=timeout, threads=threads, ray_address=ray_address)

    def map_unordered(self, fn: Callable, items: Iterable) -> Iterator[tuple[Any, Outcome]]:
        ray = self._ray
        pending = iter(items)
        refs: dict[Any, tuple[Any, float]] = {}

        def submit() -> None:
            for item in pending:
                refs[self._remote.remote(fn, item, self.threads)] = (item, time.monotonic())
                if len(refs) >= self.slots:
                    return

        try:
            submit()
            while refs:
                wait_s = None
                if self.timeout is not None:
                    wait_s = max(0.0, min(t + self.timeout for _, t in refs.values()) - time.monotonic())
                done, _ = ray.wait(list(refs), num_returns=1, timeout=wait_s)
                now = time.monotonic()
                for ref in done:
                    item, started = refs.pop(ref)
                    try:
                        value, error, wall = ray.get(ref)
                        yield item, Outcome(value, error, wall)
                    except Exception as exc:  # noqa: BLE001 - worker crash, cancellation
                        kind = type(exc).__name__
                        msg = "worker died" if "Crash" in kind or "Died" in kind else _one_line(exc)
                        yield item, Outcome(error=msg, wall_time=now - started)
                if self.timeout is not None:
                    for ref, (item, started) in list(refs.items()):
                        if now - started >= self.timeout:
                            ray.cancel(ref, force=True)
                            refs.pop(ref)
                            yield item, Outcome(error=f"timed out after {self.timeout:g}s",
                                                wall_time=now - started)
                submit()
        finally:
            for ref in refs:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._owns and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns = False


def make_executor(kind: str = "inline", *, workers: int = 1, timeout: float | None = None,
                  ray_address: str | None = None, threads: int | None = None) -> Executor:
    """Build an executor by its name in :data:`EXECUTORS` (the class's ``create``).

    Args:
        kind: ``"inline"`` (this process), ``"process"`` (local pool) or ``"ray"``.
        workers: parallel tasks (processes, or Ray CPUs for a local instance), 1 .. the CPU count.
        timeout: seconds per task before it is killed; ``None`` = no limit. With ``"inline"``, the
            tasks then run in one worker process (a task can only be stopped from outside).
        ray_address: Ray cluster address; default ``RAY_ADDRESS`` or a new local instance.
        threads: intra-op threads per task (default 1), 1 .. the CPU count.
    Returns:
        An :class:`Executor` (also a context manager). Settings out of range raise a one-line
        :class:`~ngl.errors.InputError` before any process starts.
    """
    return EXECUTORS.get(kind).create(workers=workers, timeout=timeout, threads=threads,
                                      ray_address=ray_address)


def check_executor_settings(kind: str = "inline", *, workers: int = 1, timeout: float | None = None,
                            ray_address: str | None = None, threads: int | None = None) -> None:
    """Raise what :func:`make_executor` would raise for these settings, starting nothing (no
    process, no Ray connection): for a command to call before it records anything."""
    EXECUTORS.get(kind).check_settings(workers=workers, timeout=timeout, threads=threads,
                                       ray_address=ray_address)
