"""ngl.executors: every kind returns each item once with its value; raising, hanging and dying
tasks become errors while the rest of the map goes on."""
from __future__ import annotations

import os
import time

import pytest

from ngl.executors import EXECUTORS, Outcome, make_executor


def _square(x: int) -> int:
    return x * x


def _misbehave(x: int) -> int:
    if x == 1:
        raise RuntimeError("boom\nsecond line")
    if x == 2:
        os._exit(7)                      # the worker process dies
    if x == 3:
        time.sleep(60)                   # hangs past the timeout
    return x * 10


def _threads(_: int) -> int:
    import torch
    return torch.get_num_threads()


def test_inline_values_and_errors():
    with make_executor("inline") as ex:
        got = dict(ex.map_unordered(_square, range(5)))
    assert {k: v.value for k, v in got.items()} == {i: i * i for i in range(5)}
    assert all(isinstance(v, Outcome) and v.error is None and v.wall_time >= 0 for v in got.values())
    with make_executor("inline") as ex:
        out = dict(ex.map_unordered(_misbehave, [0, 1, 4]))
    assert out[1].error == "RuntimeError: boom second line" and out[1].value is None
    assert out[0].value == 0 and out[4].value == 40


def test_unknown_kind_and_bad_workers():
    with pytest.raises(KeyError, match="unknown executor 'gpu'; registered: inline, process, ray"):
        make_executor("gpu")
    with pytest.raises(KeyError, match="did you mean 'process'"):
        make_executor("proces")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        make_executor("process", workers=0)
    assert set(EXECUTORS) == {"inline", "process", "ray"}


@pytest.mark.slow
def test_process_pool_survives_crash_death_and_hang():
    with make_executor("process", workers=2, timeout=4) as ex:
        start = time.monotonic()
        out = dict(ex.map_unordered(_misbehave, [0, 1, 2, 3, 4, 5, 6]))
        assert time.monotonic() - start < 40
        assert sorted(out) == [0, 1, 2, 3, 4, 5, 6]
        assert out[1].error == "RuntimeError: boom second line"
        assert out[2].error == "worker died (exit code 7)"
        assert out[3].error == "timed out after 4s"
        assert [out[i].value for i in (0, 4, 5, 6)] == [0, 40, 50, 60]
        # the pool is whole again after the deaths: a second map works and workers use 1 thread
        again = dict(ex.map_unordered(_threads, range(4)))
    assert {v.value for v in again.values()} == {1}


@pytest.mark.slow
def test_process_pool_runs_in_parallel():
    with make_executor("process", workers=2) as ex:
        list(ex.map_unordered(_square, range(2)))           # warm up: workers started
        start = time.monotonic()
        out = list(ex.map_unordered(time.sleep, [1.0, 1.0]))
        elapsed = time.monotonic() - start
    assert all(o.error is None for _, o in out)
    assert elapsed < 1.8, elapsed


@pytest.mark.slow
def test_ray_local_instance():
    pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.pop("RAY_ADDRESS", None)
    with make_executor("ray", workers=2, timeout=120) as ex:
        out = dict(ex.map_unordered(_misbehave, [0, 1, 2, 4]))
    assert sorted(out) == [0, 1, 2, 4]
    assert out[0].value == 0 and out[4].value == 40
    assert out[1].error == "RuntimeError: boom second line"
    assert out[2].error is not None and out[2].value is None
