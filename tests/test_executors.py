"""ngl.executors: every kind returns each item once with its value; raising, hanging and dying
tasks become errors while the rest of the map goes on."""
from __future__ import annotations

import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ngl.errors import InputError
from ngl.executors import (EXECUTORS, InlineExecutor, Outcome, ProcessExecutor, check_executor_settings,
                           make_executor)


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


# ----------------------------------------------------------------------------- issue 20: limits, timeout, Ctrl-C
def test_make_executor_builds_any_registered_kind(monkeypatch):
    """The kind is looked up in EXECUTORS (no if/elif): a kind registered there is built by name."""
    class Echo(InlineExecutor):
        pass

    monkeypatch.setitem(EXECUTORS._entries, "echo", Echo)      # restored after the test
    with make_executor("echo", threads=1) as ex:
        assert type(ex) is Echo
        assert [o.value for _, o in ex.map_unordered(_square, [3])] == [9]


@pytest.mark.parametrize("kind", ["inline", "process", "ray"])
def test_workers_and_threads_are_capped_at_the_cpu_count_before_any_work(kind, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    cpus = os.cpu_count() or 1
    before = len(mp.active_children())
    with pytest.raises(InputError, match=rf"^1000 workers are more than the {cpus} CPUs this machine "
                                         rf"has; use at most {cpus} \(tasks are CPU-bound"):
        make_executor(kind, workers=1000)
    with pytest.raises(InputError, match=rf"^100000 threads per task are more than the {cpus} CPUs "
                                         rf"this machine has; use 1\.\.{cpus}$"):
        make_executor(kind, threads=100_000)
    for bad in dict(workers=cpus + 1), dict(threads=cpus + 1), dict(threads=0), dict(timeout=float("inf")):
        with pytest.raises(InputError):
            check_executor_settings(kind, **bad)
    assert len(mp.active_children()) == before                    # no process was started
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
    check_executor_settings(kind, workers=cpus, threads=cpus, timeout=5)    # the limit itself is fine


def test_the_cap_follows_the_machine(monkeypatch):
    import ngl.executors as E

    monkeypatch.setattr(E, "machine_cpus", lambda: 64)
    check_executor_settings("process", workers=64, threads=64)
    with pytest.raises(InputError, match="65 workers are more than the 64 CPUs"):
        E.ProcessExecutor(workers=65)


@pytest.mark.slow
def test_inline_with_a_timeout_runs_in_a_worker_that_can_be_stopped():
    with make_executor("inline", timeout=2) as ex:
        assert isinstance(ex, ProcessExecutor) and ex.workers == 1
        start = time.monotonic()
        out = dict(ex.map_unordered(time.sleep, [30.0, 0.0]))
    assert out[30.0].error == "timed out after 2s" and out[0.0].error is None
    assert time.monotonic() - start < 25
    with make_executor("inline") as ex:                           # no timeout: in this process
        assert type(ex) is InlineExecutor


_HOLDER = '''
import multiprocessing, pathlib, time

def hold_a_lock(marker):
    lock = multiprocessing.RLock()      # what tqdm's bars make in a worker: a named semaphore
    pathlib.Path(marker).touch()
    time.sleep(120)
'''

_DRIVER = '''
import sys
from ngl.executors import make_executor
from holder import hold_a_lock

if __name__ == "__main__":
    try:
        with make_executor("process", workers=2) as ex:
            list(ex.map_unordered(hold_a_lock, [sys.argv[1] + "/a", sys.argv[1] + "/b"]))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
'''


@pytest.mark.slow
def test_ctrl_c_stops_workers_without_leaking_their_semaphores(tmp_path):
    """As ``ngl bench --workers 2`` then Ctrl-C: only the one line, no resource_tracker warning
    about semaphores the killed workers held."""
    (tmp_path / "holder.py").write_text(_HOLDER)
    (tmp_path / "driver.py").write_text(_DRIVER)
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), src])}
    # SIGINT at its default in the driver: an xdist worker ignores it, and a child would inherit that
    proc = subprocess.Popen([sys.executable, str(tmp_path / "driver.py"), str(tmp_path)], env=env,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 90
    while not ((tmp_path / "a").exists() and (tmp_path / "b").exists()):
        assert time.monotonic() < deadline and proc.poll() is None, "workers never started their tasks"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    start = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert err.strip() == "interrupted", err       # no "leaked semaphore" lines after it
    assert time.monotonic() - start < 15
