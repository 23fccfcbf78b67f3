"""Keras losses on every backend: tests/keras_cases.py runs in a subprocess per backend with
``KERAS_BACKEND`` set (a process can hold only one backend). Import hygiene runs here."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "keras_cases.py"


def _run(args: list[str], backend: str, timeout: float = 300) -> tuple[subprocess.CompletedProcess, float]:
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "3",
           "OMP_NUM_THREADS": "1", "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)
    return proc, time.perf_counter() - start


def test_import_ngl_does_not_import_keras():
    code = ("import sys, ngl, ngl.losses; bad = [m for m in ('keras', 'tensorflow', 'jax') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    proc, _ = _run(["-c", code], "tensorflow")
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.parametrize("backend", ["torch", "jax", "tensorflow"])
def test_keras_losses_on_backend(backend):
    proc, wall = _run(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(CASES)], backend)
    print(f"keras backend {backend}: {wall:.1f} s")
    assert proc.returncode == 0, f"KERAS_BACKEND={backend}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


@pytest.mark.keras
def test_keras_docstring_examples_run():
    """The Keras modules' docstring examples, in their own process (see the root conftest)."""
    proc, _ = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "--doctest-modules",
                    "src/ngl/keras"], "jax")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout
