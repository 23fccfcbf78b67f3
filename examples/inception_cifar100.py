#!/usr/bin/env python
"""Train InceptionV3 with the Next Generation Loss in Keras 3: the paper's published example.

The protocol of Akhmedova & Körber (arXiv 2404.12948) for InceptionV3: weights=None, global max
pooling, a 9-layer head (Flatten, BatchNorm, Dense(128, relu), Dropout(0.5), BatchNorm,
Dense(64, relu), Dropout(0.5), BatchNorm, Dense(classes, softmax)), images upsampled by
nearest-neighbour repetition (CIFAR 32x32 -> 256x256, as the reference's three UpSampling2D(2)),
Inception preprocessing (scale to [-1, 1]), Adam, 10% of train held out for validation
(stratified, random_state 42), ReduceLROnPlateau on val accuracy (factor 0.2, patience 5,
min_lr 1e-4), augmentation zoom 0.2 / shift 0.1 / horizontal flip.

Data:
    --data-dir DIR   CIFAR-100 from your own copy: DIR/cifar-100-python/ (or the .tar.gz), read
                     by ``ngl.data.cifar.read_cifar`` (restricted unpickler, nothing downloaded),
                     with the published settings: 200 epochs, batch 128, x8 upsampling to
                     256x256, augmentation, NGL with ``scaling=True`` as the reference trained it.
    (none)           scikit-learn's embedded digits (8x8, 10 classes; 1,293 train / 144 val /
                     360 test), upsampled x10 (bilinear) to 80x80 (InceptionV3 needs >= 75),
                     4 epochs of batch 48 at Adam 2e-3: NGL and CE trained in turn from the
                     same seed and printed side by side, within 3 minutes on 2 CPU cores with
                     TensorFlow (examples/README.md has the measurements).

What this fixes in the reference example:
    - it used ``np`` without ever importing numpy (a NameError); numpy is imported here;
    - its loss silently broadcast (B, 1) labels against (B, C) predictions; labels are (B,)
      here and ``ngl.keras.NGL`` rejects a label column with a clear error.
The reference trained NGL on sigmoid(softmax(z)) (``scaling=True``), which squeezes p into
[0.5, 0.731]; the CIFAR-100 mode keeps that, ``--no-scaling`` gives the paper's formula (the
digits mode's default).

Examples:
    python examples/inception_cifar100.py      # digits: NGL vs CE table (Keras' default backend)
    python examples/inception_cifar100.py --backend jax --data-dir ~/data --out runs/inc
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np   # the reference example forgot this import

MIN_SIDE = 75   # InceptionV3's smallest input
DIGITS_EPOCHS, DIGITS_BATCH, DIGITS_LR = 4, 48, 2e-3   # the no-data budget (examples/README.md)
LOSSES = {"ngl": "NGL", "ce": "CE"}   # --losses name: the table's label


@dataclass
class Data:
    name: str
    classes: int
    x_train: np.ndarray   # (N, H, W, 3) uint8
    y_train: np.ndarray   # (N,) int64
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


# option: (CIFAR-100 default, digits default); the digits budget is measured in examples/README.md
DEFAULTS = {"max_train": (None, None), "max_test": (None, None), "upsample": (8, 10),
            "interpolation": ("nearest", "bilinear"), "augment": (True, False),
            "epochs": (200, DIGITS_EPOCHS), "batch_size": (128, DIGITS_BATCH), "lr": (1e-3, DIGITS_LR),
            "losses": ("ngl", "ngl,ce"), "scaling": (True, False), "bn_momentum": (0.99, 0.9)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Defaults in brackets are [CIFAR-100 / digits].")
    data = ap.add_argument_group("data")
    data.add_argument("--data-dir", help="folder holding cifar-100-python/ (or the .tar.gz); "
                                         "omit for the embedded digits data")
    data.add_argument("--max-train", type=int, help="use at most N training images, stratified [all]")
    data.add_argument("--max-test", type=int, help="evaluate on at most N test images [all]")
    data.add_argument("--upsample", type=int, help="upsampling factor [8 / 10]")
    data.add_argument("--interpolation", choices=("nearest", "bilinear"),
                      help="upsampling interpolation: nearest as published, bilinear so that 8x8 "
                           "digits are not 10x10 flat blocks [nearest / bilinear]")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                      help="zoom/shift/flip augmentation [on / off]")
    train = ap.add_argument_group("training")
    train.add_argument("--losses", help="comma-separated, trained in turn from the same seed: "
                                        f"{', '.join(LOSSES)} [ngl / ngl,ce]")
    train.add_argument("--epochs", type=int, help=f"epochs [200 / {DIGITS_EPOCHS}]")
    train.add_argument("--batch-size", type=int, help=f"batch size [128 / {DIGITS_BATCH}]")
    train.add_argument("--lr", type=float, help=f"Adam learning rate [1e-3 / {DIGITS_LR:g}]")
    train.add_argument("--scaling", action=argparse.BooleanOptionalAction, default=None,
                       help="NGL on sigmoid(softmax), as the reference Keras example [on / off]")
    train.add_argument("--bn-momentum", type=float, help="BatchNormalization momentum: Keras' 0.99, "
                       "or 0.9 so that a short run's moving statistics settle [0.99 / 0.9]")
    train.add_argument("--seed", type=int, default=0, help="random seed (0)")
    train.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                       help="Keras backend (default: $KERAS_BACKEND, else Keras' default)")
    ap.add_argument("--out", help="write OUT/results.json and, per loss, history.json, "
                                  "result.json and model.keras under OUT/<loss>/")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    cifar = args.data_dir is not None
    for key, (big, tiny) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, big if cifar else tiny)
    for key in ("epochs", "batch_size", "upsample"):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
    if not 0 < args.lr < float("inf"):
        ap.error(f"--lr must be > 0 and finite, got {args.lr}")
    if not 0 <= args.bn_momentum < 1:
        ap.error(f"--bn-momentum must be in [0, 1), got {args.bn_momentum}")
    args.losses = [name.strip() for name in args.losses.split(",") if name.strip()]
    unknown = [name for name in args.losses if name not in LOSSES]
    if unknown or not args.losses:
        ap.error(f"--losses: unknown {', '.join(unknown) or '(none given)'}; "
                 f"expected a comma-separated list of {', '.join(LOSSES)}")
    return args


def _subset(x: np.ndarray, y: np.ndarray, n: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    if n is None or n >= len(y):
        return x, y
    from sklearn.model_selection import train_test_split

    classes = len(np.unique(y))
    strat = y if n >= classes and min(np.bincount(y)) >= 2 else None
    x, _, y, _ = train_test_split(x, y, train_size=n, random_state=seed, stratify=strat)
    return x, y


def _split(name: str, classes: int, x: np.ndarray, y: np.ndarray, x_test: np.ndarray,
           y_test: np.ndarray, args: argparse.Namespace) -> Data:
    """Subset (seeded), then hold out 10% of train for validation (stratified, random_state 42)."""
    from sklearn.model_selection import train_test_split

    x, y = _subset(x, y, args.max_train, args.seed)
    x_test, y_test = _subset(x_test, y_test, args.max_test, args.seed)
    counts = np.bincount(y)
    strat = y if counts[counts > 0].min() >= 2 and len(y) // 10 >= len(counts[counts > 0]) else None
    x_tr, x_val, y_tr, y_val = train_test_split(x, y, test_size=0.1, random_state=42, stratify=strat)
    return Data(name, classes, x_tr, y_tr, x_val, y_val, x_test, y_test)


def load_digits_data(args: argparse.Namespace) -> Data:
    """sklearn digits as (N, 8, 8, 3) uint8 images (gray repeated), 80/20 train/test split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    images = np.repeat((x.reshape(-1, 8, 8, 1) * (255 / 16)).round().astype(np.uint8), 3, axis=-1)
    x_tr, x_te, y_tr, y_te = train_test_split(images, y.astype(np.int64), test_size=0.2,
                                              random_state=42, stratify=y)
    return _split("digits", 10, x_tr, y_tr, x_te, y_te, args)


def load_cifar100_data(args: argparse.Namespace) -> Data:
    """CIFAR-100 (fine labels) from ``args.data_dir`` via ``ngl.data.cifar.read_cifar``."""
    from ngl.data.cifar import read_cifar

    d = read_cifar(args.data_dir, "cifar100")
    return _split("cifar100", 100, d["x_train"], np.asarray(d["y_train"], np.int64), d["x_test"],
                  np.asarray(d["y_test"], np.int64), args)


def load_data(args: argparse.Namespace) -> Data:
    return load_cifar100_data(args) if args.data_dir else load_digits_data(args)


def build_model(input_shape: tuple[int, int, int], classes: int, *, upsample: int, augment: bool,
                bn_momentum: float = 0.99, interpolation: str = "nearest"):
    """Augmentation -> [-1, 1] scaling -> upsampling -> InceptionV3 (max pooling) -> 9-layer head."""
    side = input_shape[0] * upsample
    if side < MIN_SIDE:
        raise ValueError(f"InceptionV3 needs images of at least {MIN_SIDE}x{MIN_SIDE}: "
                         f"{input_shape[0]} x --upsample {upsample} = {side}; raise --upsample")
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = inputs
    if augment:
        x = layers.RandomFlip("horizontal")(x)
        x = layers.RandomTranslation(0.1, 0.1)(x)
        x = layers.RandomZoom(0.2)(x)
    x = layers.Rescaling(1 / 127.5, offset=-1.0)(x)          # inception_v3.preprocess_input
    x = layers.UpSampling2D(upsample, interpolation=interpolation)(x)
    base = keras.applications.InceptionV3(include_top=False, weights=None,
                                          input_shape=(side, side, input_shape[2]), pooling="max")
    x = base(x)
    for layer in [layers.Flatten(), layers.BatchNormalization(), layers.Dense(128, activation="relu"),
                  layers.Dropout(0.5), layers.BatchNormalization(), layers.Dense(64, activation="relu"),
                  layers.Dropout(0.5), layers.BatchNormalization(),
                  layers.Dense(classes, activation="softmax")]:
        x = layer(x)
    model = keras.Model(inputs, x, name="inception_v3_ngl")
    for layer in _batch_norms(model):
        layer.momentum = bn_momentum
    return model


def _batch_norms(model):
    import keras

    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _batch_norms(layer)
        elif isinstance(layer, keras.layers.BatchNormalization):
            yield layer


def make_loss(name: str, *, scaling: bool):
    """The model ends in a softmax, so both losses take probabilities (``from_logits=False``)."""
    import keras

    import ngl.keras

    if name == "ngl":
        return ngl.keras.NGL(scaling=scaling)
    return keras.losses.SparseCategoricalCrossentropy()


def training_inputs(data: Data, args: argparse.Namespace, backend: str) -> dict:
    """``model.fit`` arguments for the training set, reshuffled every epoch.

    On TensorFlow, a ``tf.data`` pipeline without autotuning. For NumPy arrays Keras builds an
    autotuned pipeline and a new iterator every epoch, and freeing an iterator waits for the
    autotuning thread to wake (its sleep grows to 60 s): beside InceptionV3 here, 5 to 7 s with
    the CPU idle at every epoch and up to 30 s at the end of ``fit``, a third of the digits mode's
    time. Other backends take the arrays as they are.
    """
    if backend != "tensorflow":
        return {"x": data.x_train, "y": data.y_train, "batch_size": args.batch_size, "shuffle": True}
    import tensorflow as tf

    n = len(data.y_train)
    batches = (tf.data.Dataset.from_tensor_slices((data.x_train, data.y_train))
               .shuffle(n, seed=args.seed, reshuffle_each_iteration=True)
               .batch(args.batch_size).repeat().prefetch(2))
    options = tf.data.Options()
    options.autotune.enabled = False
    return {"x": batches.with_options(options), "steps_per_epoch": -(-n // args.batch_size)}


def train_one(loss: str, data: Data, args: argparse.Namespace) -> tuple[dict, dict, object]:
    """Train from ``args.seed`` (same weights and batch order for every loss); test the result."""
    import keras

    keras.utils.set_random_seed(args.seed)
    model = build_model(data.x_train.shape[1:], data.classes, upsample=args.upsample,
                        augment=args.augment, bn_momentum=args.bn_momentum,
                        interpolation=args.interpolation)
    model.compile(optimizer=keras.optimizers.Adam(args.lr), loss=make_loss(loss, scaling=args.scaling),
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    # Adam's slots made now, not inside the first step: TensorFlow would trace that step twice
    model.optimizer.build(model.trainable_variables)
    start = time.perf_counter()
    hist = model.fit(**training_inputs(data, args, keras.backend.backend()), epochs=args.epochs,
                     validation_data=(data.x_val, data.y_val), verbose=0 if args.quiet else 2,
                     callbacks=[keras.callbacks.ReduceLROnPlateau(
                         monitor="val_accuracy", factor=0.2, patience=5, min_lr=1e-4)])
    test_loss, test_acc = model.evaluate(data.x_test, data.y_test, batch_size=128, verbose=0)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    result = {"loss": loss, "dataset": data.name, "backend": keras.backend.backend(),
              "test_accuracy": float(test_acc), "test_loss": float(test_loss), "epochs": args.epochs,
              "wall_time": round(time.perf_counter() - start, 2),
              "config": {k: v for k, v in vars(args).items() if k != "quiet"}}
    return result, history, model


def print_table(results: list[dict]) -> None:
    print(f"{'loss':<6}{'test accuracy':>15}{'test loss':>11}{'time':>8}")
    for r in results:
        print(f"{LOSSES[r['loss']]:<6}{100 * r['test_accuracy']:14.1f}%{r['test_loss']:11.4f}"
              f"{r['wall_time']:7.0f}s")


def save(out: Path, result: dict, history: dict, model) -> None:
    from ngl.fileio import write_json_atomic

    folder = out / result["loss"]
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "history.json", history)
    write_json_atomic(folder / "result.json", result)
    model.save(folder / "model.keras")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
            raise SystemExit("--backend must be chosen before keras is imported")
        os.environ["KERAS_BACKEND"] = args.backend
    data = load_data(args)   # before keras: bad data fails fast
    import keras

    side = data.x_train.shape[1] * args.upsample
    print(f"{data.name}: train {len(data.y_train)}, val {len(data.y_val)}, test {len(data.y_test)}, "
          f"{data.classes} classes, {data.x_train.shape[1]}x{data.x_train.shape[2]} -> {side}x{side}; "
          f"{args.epochs} epochs of batch {args.batch_size}, seed {args.seed}, "
          f"backend {keras.backend.backend()}", flush=True)
    results = []
    for loss in args.losses:
        result, history, model = train_one(loss, data, args)
        results.append(result)
        print(f"{LOSSES[loss]}: test accuracy {result['test_accuracy']:.4f} "
              f"({result['wall_time']:.0f} s)", flush=True)
        if args.out:
            save(Path(args.out), result, history, model)
    print_table(results)
    if args.out:
        from ngl.fileio import write_json_atomic

        write_json_atomic(Path(args.out) / "results.json", results)
    return 0 if all(np.isfinite(r["test_loss"]) for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
