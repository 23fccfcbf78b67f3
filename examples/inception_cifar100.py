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
                     by ``ngl.data.readers.read_cifar`` (restricted unpickler, nothing downloaded).
    (none)           scikit-learn's embedded digits (8x8, 10 classes), upsampled 10x to 80x80
                     (InceptionV3 needs >= 75), a tiny budget: runs in under 2 minutes on a CPU.

What this fixes in the reference example:
    - it used ``np`` without ever importing numpy (a NameError); numpy is imported here;
    - its NGL was called with ``scaling=True``, which trains on sigmoid(softmax(z)) and squeezes
      p into [0.5, 0.731]; the default here is the published formula, ``--scaling`` restores the
      reference behaviour;
    - its loss silently broadcast (B, 1) labels against (B, C) predictions; labels are (B,)
      here and ``ngl.keras.NGL`` rejects a label column with a clear error.

Examples:
    KERAS_BACKEND=torch python examples/inception_cifar100.py                 # digits, ~1 min
    python examples/inception_cifar100.py --backend jax --data-dir ~/data --epochs 200 --out runs/inc
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np   # the reference example forgot this import

MIN_SIDE = 75   # InceptionV3's smallest input


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


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Without --data-dir: tiny digits run (defaults in brackets "
                                        "are for CIFAR-100 / digits).")
    data = ap.add_argument_group("data")
    data.add_argument("--data-dir", help="folder holding cifar-100-python/ (or the .tar.gz); "
                                         "omit for the embedded digits data")
    data.add_argument("--max-train", type=int, help="use at most N training images, stratified "
                                                    "[all / 400]")
    data.add_argument("--max-test", type=int, help="evaluate on at most N test images [all / 200]")
    data.add_argument("--upsample", type=int, help="nearest-neighbour upsampling factor [8 / 10]")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction, default=None,
                      help="zoom/shift/flip augmentation [on / off]")
    train = ap.add_argument_group("training")
    train.add_argument("--epochs", type=int, help="epochs [200 / 1]")
    train.add_argument("--batch-size", type=int, default=None, help="batch size [128 / 32]")
    train.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (1e-3)")
    train.add_argument("--scaling", action="store_true",
                       help="sigmoid on the softmax outputs, as the reference Keras example")
    train.add_argument("--seed", type=int, default=0, help="random seed (0)")
    train.add_argument("--backend", choices=("tensorflow", "jax", "torch"),
                       help="Keras backend (default: $KERAS_BACKEND, else Keras' default)")
    ap.add_argument("--out", help="write history.json, result.json and model.keras here")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    cifar = args.data_dir is not None
    for key, big, tiny in [("max_train", None, 400), ("max_test", None, 200), ("upsample", 8, 10),
                           ("augment", True, False), ("epochs", 200, 1), ("batch_size", 128, 32)]:
        if getattr(args, key) is None:
            setattr(args, key, big if cifar else tiny)
    for key in ("epochs", "batch_size", "upsample"):
        if getattr(args, key) < 1:
            ap.error(f"--{key.replace('_', '-')} must be >= 1, got {getattr(args, key)}")
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
    """CIFAR-100 (fine labels) from ``args.data_dir`` via ``ngl.data.readers.read_cifar``."""
    from ngl.data.readers import read_cifar

    d = read_cifar(args.data_dir, "cifar100")
    return _split("cifar100", 100, d["x_train"], np.asarray(d["y_train"], np.int64), d["x_test"],
                  np.asarray(d["y_test"], np.int64), args)


def load_data(args: argparse.Namespace) -> Data:
    return load_cifar100_data(args) if args.data_dir else load_digits_data(args)


def build_model(input_shape: tuple[int, int, int], classes: int, *, upsample: int, augment: bool):
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
    x = layers.UpSampling2D(upsample)(x)
    base = keras.applications.InceptionV3(include_top=False, weights=None,
                                          input_shape=(side, side, input_shape[2]), pooling="max")
    x = base(x)
    for layer in [layers.Flatten(), layers.BatchNormalization(), layers.Dense(128, activation="relu"),
                  layers.Dropout(0.5), layers.BatchNormalization(), layers.Dense(64, activation="relu"),
                  layers.Dropout(0.5), layers.BatchNormalization(),
                  layers.Dense(classes, activation="softmax")]:
        x = layer(x)
    return keras.Model(inputs, x, name="inception_v3_ngl")


def _write_json(path: Path, obj: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.backend:
        if "keras" in sys.modules and os.environ.get("KERAS_BACKEND") != args.backend:
            raise SystemExit("--backend must be chosen before keras is imported")
        os.environ["KERAS_BACKEND"] = args.backend
    data = load_data(args)   # before keras: bad data fails fast
    import keras

    import ngl.keras

    keras.utils.set_random_seed(args.seed)
    model = build_model(data.x_train.shape[1:], data.classes, upsample=args.upsample,
                        augment=args.augment)
    model.compile(optimizer=keras.optimizers.Adam(args.lr),
                  loss=ngl.keras.NGL(scaling=args.scaling),     # probabilities in: from_logits=False
                  metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
    verbose = 0 if args.quiet else 1
    print(f"{data.name}: train {len(data.y_train)}, val {len(data.y_val)}, test {len(data.y_test)}, "
          f"{data.classes} classes, input {data.x_train.shape[1]}x{data.x_train.shape[2]} -> "
          f"{data.x_train.shape[1] * args.upsample}, backend {keras.backend.backend()}")
    start = time.perf_counter()
    hist = model.fit(data.x_train, data.y_train, batch_size=args.batch_size, epochs=args.epochs,
                     validation_data=(data.x_val, data.y_val), verbose=verbose, shuffle=True,
                     callbacks=[keras.callbacks.ReduceLROnPlateau(
                         monitor="val_accuracy", factor=0.2, patience=5, min_lr=1e-4)])
    test_loss, test_acc = model.evaluate(data.x_test, data.y_test, batch_size=args.batch_size,
                                         verbose=0)
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    result = {"dataset": data.name, "backend": keras.backend.backend(), "test_loss": float(test_loss),
              "test_accuracy": float(test_acc), "epochs": args.epochs,
              "wall_time": round(time.perf_counter() - start, 2),
              "config": {k: v for k, v in vars(args).items() if k != "quiet"}}
    print(f"test accuracy {test_acc:.4f}, test NGL {test_loss:.4f} ({result['wall_time']:.0f} s)")
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "history.json", history)
        _write_json(out / "result.json", result)
        model.save(out / "model.keras")
    return 0 if np.isfinite(test_loss) else 1


if __name__ == "__main__":
    sys.exit(main())
