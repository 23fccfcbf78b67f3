"""The published Keras example (examples/inception_cifar100.py): its CIFAR-100 mode keeps the
published setup and reads tiny files in the native Python-2 pickle format; its no-data mode
learns the embedded digits (NGL >= 80%) and prints CE beside it."""
from __future__ import annotations

import importlib.util
import io
import os
import pickle
import re
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
    pytest.importorskip("ngl.data.cifar", reason="ngl.data.cifar.read_cifar not merged yet")
    made = write_tiny_cifar100(tmp_path)
    ex = _example()
    args = ex.parse_args(["--data-dir", str(tmp_path), "--max-test", "10"])
    # the published setup: 200 epochs of batch 128, x8 to 256x256, augmentation, Adam 1e-3, and
    # NGL on sigmoid(softmax) (scaling=True) as the reference Keras example trained it
    assert (args.epochs, args.batch_size, args.upsample, args.augment, args.lr) == (200, 128, 8, True, 1e-3)
    assert (args.losses, args.scaling, args.bn_momentum) == (["ngl"], True, 0.99)
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


@pytest.mark.keras
def test_published_model_and_loss():
    """The CIFAR-100 mode's model: 32x32 inputs upsampled x8 to InceptionV3 at 256x256, 100-way
    softmax; its NGL applies the reference's sigmoid (scaling=True)."""
    keras = pytest.importorskip("keras")
    ex = _example()
    args = ex.parse_args(["--data-dir", "unused"])
    model = ex.build_model((32, 32, 3), 100, upsample=args.upsample, augment=args.augment,
                           bn_momentum=args.bn_momentum, interpolation=args.interpolation)
    base = next(layer for layer in model.layers if layer.name == "inception_v3")
    assert base.input_shape == (None, 256, 256, 3) and model.output_shape == (None, 100)
    assert [type(layer).__name__ for layer in model.layers[1:4]] == \
        ["RandomFlip", "RandomTranslation", "RandomZoom"]
    assert {layer.momentum for layer in ex._batch_norms(model)} == {0.99}
    upsampling = [layer for layer in model.layers if isinstance(layer, keras.layers.UpSampling2D)]
    assert [(u.size, u.interpolation) for u in upsampling] == [((8, 8), "nearest")]   # published
    loss = ex.make_loss("ngl", scaling=args.scaling)
    assert loss.scaling is True and loss.from_logits is False


def test_missing_cifar_dir_names_the_expected_path(tmp_path):
    pytest.importorskip("ngl.data.cifar", reason="ngl.data.cifar.read_cifar not merged yet")
    ex = _example()
    with pytest.raises(FileNotFoundError, match="cifar-100-python"):
        ex.load_data(ex.parse_args(["--data-dir", str(tmp_path)]))


def test_digits_data_and_upsampling_guard():
    ex = _example()
    args = ex.parse_args([])
    assert (args.upsample, args.augment, args.max_train, args.scaling) == (10, False, None, False)
    assert (args.epochs, args.batch_size, args.lr, args.bn_momentum) == (4, 48, 2e-3, 0.9)
    assert args.interpolation == "bilinear"
    assert args.losses == ["ngl", "ce"]
    data = ex.load_data(args)
    assert data.x_train.shape[1:] == (8, 8, 3) and data.x_train.max() == 255
    assert (len(data.y_train), len(data.y_val), len(data.y_test)) == (1293, 144, 360)
    assert set(np.unique(data.y_val)) == set(range(10))       # stratified hold-out
    with pytest.raises(ValueError, match="at least 75x75"):
        ex.build_model((8, 8, 3), 10, upsample=8, augment=False)


def test_example_has_numpy_and_says_what_it_fixes():
    text = EXAMPLE.read_text()
    assert "\nimport numpy as np" in text                        # the reference forgot it
    assert "without ever importing numpy" in text                # and the docstring says so


def test_bad_options_are_refused_with_one_line(capsys):
    ex = _example()
    for argv, expected in ((["--losses", "ngl,nope"], "--losses: unknown nope"),
                           (["--bn-momentum", "1"], "--bn-momentum must be in [0, 1)"),
                           (["--epochs", "0"], "--epochs must be >= 1"),
                           (["--lr=-0.001"], "--lr must be > 0"), (["--lr", "nan"], "--lr must be > 0"),
                           (["--lr", "inf"], "--lr must be > 0 and finite")):
        with pytest.raises(SystemExit):
            ex.parse_args(argv)
        assert expected in capsys.readouterr().err


def test_bn_momentum_reaches_every_batch_norm():
    pytest.importorskip("keras")
    ex = _example()
    model = ex.build_model((8, 8, 3), 10, upsample=10, augment=False, bn_momentum=0.9)
    momenta = [layer.momentum for layer in ex._batch_norms(model)]
    assert len(momenta) == 94 + 3 and set(momenta) == {0.9}   # InceptionV3's 94 and the head's 3


@pytest.mark.slow
@pytest.mark.keras
def test_digits_mode_learns_and_prints_ce_beside_ngl():
    """The documented no-data command on Keras' default backend (tensorflow): NGL and CE must each
    reach 80% test accuracy on the digits (chance is 10%), printed in one table. About 3 minutes
    on 2 cores (examples/README.md)."""
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3",
           "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(EXAMPLE), "--quiet"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = {name: float(acc) / 100
            for name, acc in re.findall(r"^(NGL|CE)\s+([\d.]+)%", proc.stdout, flags=re.M)}
    assert set(rows) == {"NGL", "CE"}, proc.stdout
    assert rows["NGL"] >= 0.80 and rows["CE"] >= 0.80, proc.stdout


_EPOCHS_OF_BATCHES = """
import sys, numpy as np
sys.path.insert(0, sys.argv[1])
import inception_cifar100 as ex
args = ex.parse_args(["--max-train", "100"])
data = ex.load_data(args)
arrays = ex.training_inputs(data, args, "jax")
assert arrays["x"] is data.x_train and arrays["shuffle"] and arrays["batch_size"] == 48
fit = ex.training_inputs(data, args, "tensorflow")
assert fit["x"].options().autotune.enabled is False
rows = {x.tobytes(): int(y) for x, y in zip(data.x_train, data.y_train)}
batches = iter(fit["x"])
orders = []
for epoch in range(3):
    xs, ys = zip(*(next(batches) for _ in range(fit["steps_per_epoch"])))
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert sorted(rows) == sorted(img.tobytes() for img in x)       # each image once an epoch
    assert all(rows[img.tobytes()] == int(lab) for img, lab in zip(x, y))
    orders.append(tuple(y))
assert len(set(orders)) == 3                                          # reshuffled every epoch
print("ok", fit["steps_per_epoch"], [len(b) for b in ys])
"""


@pytest.mark.keras
def test_tensorflow_training_input_is_one_unautotuned_pipeline_that_reshuffles():
    """On TensorFlow the example feeds one repeated tf.data pipeline with autotuning off (freeing
    Keras' per-epoch autotuned iterator cost 5-7 s idle an epoch); it must still show every image
    once per epoch with its own label, in a new order each epoch. Other backends get the arrays."""
    pytest.importorskip("tensorflow")
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", _EPOCHS_OF_BATCHES, str(EXAMPLE.parent)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split()[:2] == ["ok", "2"]          # 90 training images: batches of 48 and 42
