"""NGL's Keras fast path on every backend, and the Keras target checks: tests/keras_fast_cases.py
runs in a subprocess per backend (TensorFlow and torch in one process crash). Import hygiene of
``ngl.keras`` runs here."""
from __future__ import annotations

import pytest

from test_keras import ROOT, _run

CASES = ROOT / "tests" / "keras_fast_cases.py"


@pytest.mark.slow
@pytest.mark.keras
@pytest.mark.parametrize("backend", ["jax", "tensorflow", "torch"])
def test_keras_fast_path_on_backend(backend):
    proc, wall = _run(["-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", str(CASES)], backend, timeout=900)
    print(f"keras fast path, backend {backend}: {wall:.1f} s")
    assert proc.returncode == 0, f"KERAS_BACKEND={backend}:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout


@pytest.mark.parametrize("backend", ["jax", "tensorflow"])
def test_ngl_keras_modules_import_neither_torch_nor_ngl_losses(backend):
    """ngl.keras's own modules, with the top-level ``ngl/__init__`` bypassed (whatever it loads)."""
    code = ("import sys, types, importlib.util; spec = importlib.util.find_spec('ngl'); "
            "pkg = types.ModuleType('ngl'); pkg.__path__ = list(spec.submodule_search_locations); "
            "sys.modules['ngl'] = pkg; import ngl.keras; "
            "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or m.startswith('ngl.losses')]; "
            "print(bad); sys.exit(1 if bad else 0)")
    proc, _ = _run(["-c", code], backend)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_ngl_keras_does_not_import_torch_on_jax():
    """The whole chain: ``ngl/__init__`` is lazy and nothing under ``ngl.keras`` imports torch."""
    code = "import sys, ngl.keras; print('torch' in sys.modules)"
    proc, _ = _run(["-c", code], "jax")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_keras_registry_imports_no_loss_module():
    """No import cycle: ngl.keras.losses imports the registry, never the other way round (not even
    inside a function)."""
    import ast

    tree = ast.parse((ROOT / "src" / "ngl" / "keras" / "registry.py").read_text())
    imported = [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    imported += [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    assert not [m for m in imported if m.lstrip(".").startswith(("losses", "ngl.keras.losses", "_ngl_fast"))], imported
