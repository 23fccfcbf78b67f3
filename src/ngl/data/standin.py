"""A stand-in for "a user's own 28x28 handwritten digits": scikit-learn's 8x8 digits, upsampled to
an MNIST-like 20x20 box centred in 28x28 and bent by a random elastic distortion (Simard et al.
2003: a Gaussian-smoothed random displacement field, ``alpha`` pixels, ``sigma`` smoothing) and a
small random rotation.

Train and test images come from disjoint base digits (split first, distorted after), so no test
image is a distortion of a training image. Tests and ``benchmarks/user_data.py`` share it.

>>> d = elastic_digits(n_train=20, n_test=10, seed=0)
>>> d["x"].shape, d["x"].dtype.name, d["x_test"].shape, d["y"].dtype.name
((20, 28, 28), 'uint8', (10, 28, 28), 'int64')
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["elastic_digits", "write_elastic_digits"]


def _distort(img: np.ndarray, rng: np.random.Generator, *, alpha: float, sigma: float,
             max_degrees: float) -> np.ndarray:
    """One random elastic distortion + rotation of a float image (H, W), bilinear, zero fill."""
    from scipy import ndimage

    h, w = img.shape
    dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma) * alpha
    dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (h, w)), sigma) * alpha
    angle = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
    yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing="ij")
    ry = np.cos(angle) * yy - np.sin(angle) * xx + (h - 1) / 2
    rx = np.sin(angle) * yy + np.cos(angle) * xx + (w - 1) / 2
    return ndimage.map_coordinates(img, [ry + dy, rx + dx], order=1, mode="constant", cval=0.0)


def _render(base: np.ndarray, labels: np.ndarray, n: int, rng: np.random.Generator, *, size: int,
            alpha: float, sigma: float, max_degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distorted ``size x size`` uint8 images cycling through the 8x8 ``base`` digits."""
    from scipy import ndimage

    box = round(size * 20 / 28)                      # MNIST: a 20x20 digit box in 28x28
    pad = (size - box) // 2
    order = np.concatenate([rng.permutation(len(base)) for _ in range(-(-n // len(base)))])[:n]
    x = np.empty((n, size, size), dtype=np.uint8)
    for i, j in enumerate(order):
        canvas = np.zeros((size, size))
        canvas[pad:pad + box, pad:pad + box] = ndimage.zoom(base[j] / 16.0, box / 8, order=1)
        out = _distort(canvas, rng, alpha=alpha, sigma=sigma, max_degrees=max_degrees)
        x[i] = np.clip(np.rint(out * 255), 0, 255).astype(np.uint8)
    return x, labels[order].astype(np.int64)


def elastic_digits(*, n_train: int = 4000, n_test: int = 1000, size: int = 28, seed: int = 0,
                   alpha: float = 8.0, sigma: float = 3.0, max_degrees: float = 12.0,
                   test_share: float = 0.3) -> dict[str, np.ndarray]:
    """Arrays ``x, y, x_test, y_test`` (uint8 ``(N, size, size)``, int64 labels) as ``ngl train
    --dataset npz:`` reads them. ``test_share`` of the 1,797 base digits (stratified) feed only the
    test images."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    tr, te = train_test_split(np.arange(len(digits.target)), test_size=test_share,
                              stratify=digits.target, random_state=seed)
    rng = np.random.default_rng(seed)
    kw = dict(size=size, alpha=alpha, sigma=sigma, max_degrees=max_degrees)
    x, y = _render(digits.images[tr], digits.target[tr], n_train, rng, **kw)
    x_test, y_test = _render(digits.images[te], digits.target[te], n_test, rng, **kw)
    return {"x": x, "y": y, "x_test": x_test, "y_test": y_test}


def write_elastic_digits(path: str | Path, **kwargs) -> Path:
    """:func:`elastic_digits` written as an uncompressed ``.npz`` at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **elastic_digits(**kwargs))
    return path
