"""The published Keras example (examples/inception_cifar100.py): its CIFAR-100 data path on tiny
files in the native Python-2 pickle format, and a tiny end-to-end run on the embedded digits."""
from __future__ import annotations

import importlib.util
import io
import json
import os
import pickle
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "inception_cifar100.py"


def _example():
    spec = importlib.util.spec_from_file_location("inception_cifar100", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module          # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


class _Py2Pickler(pickle._Pickler):
    """Writes what Python 2's cPickle wrote for CIFAR: byte strings as py2 ``str`` (BINSTRING)
    and numpy arrays through ``numpy.core.multiarray._reconstruct``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj: bytes) -> None:
        n = len(obj)
        self.write(pickle.SHORT_BINSTRING + bytes([n]) + obj if n < 256
                   else pickle.BINSTRING + struct.pack("<i", n) + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str

    def save_global(self, obj, name=None) -> None:
        module = getattr(obj, "__module__", "")
        if module.startswith("numpy._core"):
            module = module.replace("numpy._core", "numpy.core")
            self.write(pickle.GLOBAL + module.encode() + b"\n" + obj.__name__.encode() + b"\n")
            self.memoize(obj)
            return
        super().save_global(obj, name)


def _py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    _Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def write_tiny_cifar100(root: Path, n_train: int = 60, n_test: int = 20, seed: int = 0) -> dict:
    """root/cifar-100-python/{train,test,meta} as the official archive lays them out."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True)
    made = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images = rng.integers(0, 256, size=(n, 32, 32, 3), dtype=np.uint8)
        fine = rng.integers(0, 100, size=n)
        doc = {b"filenames": [f"img_{i}.png".encode() for i in range(n)], b"batch_label": split.encode(),
               b"fine_labels": [int(v) for v in fine], b"coarse_labels": [int(v) // 5 for v in fine],
               b"data": np.ascontiguousarray(images.transpose(0, 3, 1, 2)).reshape(n, 3072)}
        (folder / split).write_bytes(_py2_pickle(doc))
        made[split] = (images, fine)
    (folder / "meta").write_bytes(_py2_pickle({b"fine_label_names": [b"c%d" % i for i in range(100)],
                                               b"coarse_label_names": [b"s%d" % i for i in range(20)]}))
    return made


def test_fixture_is_the_native_layout(tmp_path):
    made = write_tiny_cifar100(tmp_path)
    with open(tmp_path / "cifar-100-python" / "train", "rb") as fh:   # our own file: safe to unpickle
        doc = pickle.load(fh, encoding="latin1")
    assert doc["data"].shape == (60, 3072) and doc["data"].dtype == np.uint8
    np.testing.assert_array_equal(doc["data"].reshape(60, 3, 32, 32).transpose(0, 2, 3, 1), made["train"][0])


def test_cifar100_data_path_reads_native_pickles(tmp_path):
    pytest.importorskip("ngl.data.readers", reason="ngl.data.readers.read_cifar not merged yet")
    made = write_tiny_cifar100(tmp_path)
    ex = _example()
    args = ex.parse_args(["--data-dir", str(tmp_path), "--max-test", "10"])
    assert (args.epochs, args.batch_size, args.upsample, args.augment) == (200, 128, 8, True)
    data = ex.load_data(args)
    assert data.name == "cifar100" and data.classes == 100
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (54, 6, 10)
    assert data.x_train.shape[1:] == (32, 32, 3) and data.x_train.dtype == np.uint8
    # every image keeps its own label through subsetting and the validation split
    lookup = {img.tobytes(): int(lab) for img, lab in zip(*made["train"])}
    for x, y in ((data.x_train, data.y_train), (data.x_val, data.y_val)):
        assert [lookup[img.tobytes()] for img in x] == [int(v) for v in y]
    test_lookup = {img.tobytes(): int(lab) for img, lab in zip(*made["test"])}
    assert all(test_lookup[img.tobytes()] == int(v) for img, v in zip(data.x_test, data.y_test))


def test_missing_cifar_dir_names_the_expected_path(tmp_path):
    pytest.importorskip("ngl.data.readers", reason="ngl.data.readers.read_cifar not merged yet")
    ex = _example()
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        ex.load_data(ex.parse_args(["--data-dir", str(tmp_path)]))


def test_digits_data_and_upsampling_guard():
    ex = _example()
    args = ex.parse_args([])
    assert (args.epochs, args.upsample, args.augment, args.max_train) == (1, 10, False, 400)
    data = ex.load_data(args)
    assert data.x_train.shape[1:] == (8, 8, 3) and data.x_train.max() == 255
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (360, 40, 200)
    assert set(np.unique(data.y_val)) == set(range(10))       # stratified hold-out
    with pytest.raises(ValueError, match="at least 75x75"):
        ex.build_model((8, 8, 3), 10, upsample=8, augment=False)


def test_example_has_numpy_and_says_what_it_fixes():
    text = EXAMPLE.read_text()
    assert "\nimport numpy as np" in text                        # the reference forgot it
    assert "without ever importing numpy" in text                # and the docstring says so


@pytest.mark.slow
@pytest.mark.keras
def test_example_tiny_run(tmp_path):
    env = {**os.environ, "KERAS_BACKEND": "torch", "OMP_NUM_THREADS": "2", "TF_CPP_MIN_LOG_LEVEL": "3"}
    cmd = [sys.executable, str(EXAMPLE), "--max-train", "32", "--max-test", "8", "--batch-size", "16",
           "--epochs", "1", "--quiet", "--out", str(tmp_path)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    history = json.loads((tmp_path / "history.json").read_text())
    assert result["dataset"] == "digits" and result["backend"] == "torch"
    assert 0.0 <= result["test_accuracy"] <= 1.0 and np.isfinite(result["test_loss"])
    # NGL of a softmax output lies between its extremes (about 9.2 and 10.6 for 10 classes)
    assert 8.5 < history["loss"][0] < 10.6 and len(history["val_accuracy"]) == 1
    assert (tmp_path / "model.keras").is_file()
