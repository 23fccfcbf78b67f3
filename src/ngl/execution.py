"""Where many runs execute: :class:`Execution`, the one definition of the executor flags that
``ngl bench``, ``ngl search`` and ``ngl search validate`` share (``--executor``, ``--workers``,
``--threads``, ``--timeout``, ``--ray-address``). Imports no torch; it builds an executor of
:mod:`ngl.executors` on demand.

>>> Execution(workers=2).kind
'process'
>>> Execution(workers=0).check()
Traceback (most recent call last):
...
ngl.errors.InputError: --workers must be >= 1, got 0
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from .config import opt
from .errors import InputError
from .runspec import MAX_THREADS

__all__ = ["Execution", "EXEC_GROUP"]

EXEC_GROUP = "execution"


def _executor_names() -> list[str]:
    from .executors import EXECUTORS
    return ["auto", *EXECUTORS]


@dataclass
class Execution:
    """How a batch of independent runs executes; never part of a run's key."""

    executor: str = opt("auto", "auto: process if --workers > 1, else inline; inline: this process; "
                        "process: a local pool of --workers; ray: RAY_ADDRESS or a local Ray instance",
                        group=EXEC_GROUP, choices=_executor_names)
    workers: int = opt(1, "parallel runs, 1 to the machine's CPU count (a Ray cluster's CPUs with "
                          "--executor ray)", group=EXEC_GROUP)
    threads: int = opt(1, "torch threads per run, 1 to the machine's CPU count", group=EXEC_GROUP)
    timeout: float | None = opt(None, "seconds per run before it is stopped and recorded as failed; with "
                                      "one worker the runs then go to one worker process (a run can only "
                                      "be stopped from outside its process)", group=EXEC_GROUP)
    ray_address: str | None = opt(None, "Ray cluster address (default: RAY_ADDRESS or a local instance)",
                                  group=EXEC_GROUP)

    @property
    def kind(self) -> str:
        """The executor kind ``auto`` resolves to."""
        if self.executor != "auto":
            return self.executor
        return "process" if self.workers > 1 else "inline"

    def check(self) -> "Execution":
        """``self``, or one line naming the bad setting."""
        if not isinstance(self.workers, int) or isinstance(self.workers, bool) or self.workers < 1:
            raise InputError(f"--workers must be >= 1, got {self.workers}")
        if not isinstance(self.threads, int) or isinstance(self.threads, bool) \
                or not 1 <= self.threads <= MAX_THREADS:
            raise InputError(f"--threads must be in 1..{MAX_THREADS}, got {self.threads}")
        if self.timeout is not None and not (isinstance(self.timeout, (int, float))
                                             and math.isfinite(self.timeout) and self.timeout > 0):
            raise InputError(f"--timeout must be a number of seconds > 0, got {self.timeout}")
        if self.executor not in _executor_names():
            from .executors import EXECUTORS
            raise InputError(EXECUTORS.unknown_message(self.executor))
        if self.kind == "ray":
            from .errors import require_extra
            require_extra("ray", "ray", what="--executor ray")
        from .executors import check_executor_settings

        check_executor_settings(self.kind, workers=self.workers, timeout=self.timeout,
                                ray_address=self.ray_address, threads=self.threads)
        return self

    def make(self) -> Any:
        """The executor (a context manager): :func:`ngl.executors.make_executor`."""
        from .executors import make_executor

        return make_executor(self.check().kind, workers=self.workers, timeout=self.timeout,
                             ray_address=self.ray_address, threads=self.threads)
