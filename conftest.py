"""Root pytest configuration: docstring examples under src/ngl run as tests (--doctest-modules).

Importing TensorFlow (Keras' default backend) and torch's compiler into one process crashes, so
Keras code only ever runs in subprocesses, one per backend (tests/test_keras*.py). Hence the Keras
modules and the Keras case files are never imported by a plain collection: their doctests run in
those subprocesses, and a case file is collected only when named on the command line.
"""
from __future__ import annotations

from pathlib import Path

_KERAS_ONLY = ("src/ngl/keras/", "tests/keras_cases.py", "tests/keras_fast_cases.py")


def pytest_ignore_collect(collection_path: Path, config) -> bool | None:
    path = collection_path.as_posix()
    if not any(part in path + ("/" if collection_path.is_dir() else "") for part in _KERAS_ONLY):
        return None
    here = collection_path.resolve()
    given = [a.split("::")[0] for a in config.invocation_params.args if not a.startswith("-")]
    named = [Path(a).resolve() for a in given if Path(a).exists()]
    return not any(here == n or n in here.parents for n in named)
