"""A stand-in for "a user's own 28x28 handwritten digits": scikit-learn's 8x8 digits, upsampled to
an MNIST-like 20x20 box centred in 28x28 and bent by a random elastic distortion (Simard et al.
2003: a Gaussian-smoothed random displacement field, ``alpha`` pixels, ``sigma`` smoothing) and a
small random rotation.

Train and test images come from disjoint base digits (split first, distorted after), so no test
image is a distortion of a training image. Tests, ``benchmarks/user_data.py`` and the embedded
dataset ``digits28`` (:mod:`ngl.data.synthetic`) share it.

>>> d = elastic_digits(n_train=20, n_test=10, seed=0)
>>> d["x"].shape, d["x"].dtype.name, d["x_test"].shape, d["y"].dtype.name
((20, 28, 28), 'uint8', (10, 28, 28), 'int64')
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["elastic_digits", "write_elastic_digits"]


def _distortions(n: int, size: int, rng: np.random.Generator, *, alpha: float, sigma: float,
                 max_degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """Sampling rows and columns ``(n, size, size)`` of ``n`` random elastic distortions + rotations
    (drawn image by image: a ``dx`` field, a ``dy`` field, an angle, as one loop over images would)."""
    from scipy import ndimage

    def field(a: np.ndarray) -> np.ndarray:          # each image's own 2-D filter, none across images
        return ndimage.gaussian_filter(-1 + 2 * a.reshape(n, size, size), (0, sigma, sigma)) * alpha

    hw = size * size
    u = rng.random((n, 2 * hw + 1))                  # = rng.uniform(-1, 1, ...) per image, in order
    dx, dy = field(u[:, :hw]), field(u[:, hw:2 * hw])
    angle = np.deg2rad(-max_degrees + 2 * max_degrees * u[:, -1])[:, None, None]
    c = (size - 1) / 2
    yy, xx = np.meshgrid(np.arange(size) - c, np.arange(size) - c, indexing="ij")
    ry = np.cos(angle) * yy - np.sin(angle) * xx + c
    rx = np.sin(angle) * yy + np.cos(angle) * xx + c
    return ry + dy, rx + dx


def _render(base: np.ndarray, n: int, rng: np.random.Generator, *, size: int, alpha: float,
            sigma: float, max_degrees: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` distorted ``size x size`` uint8 images cycling through the 8x8 ``base`` digits, and the
    index into ``base`` of each (vectorised: one Gaussian filter, one bilinear resampling)."""
    from scipy import ndimage

    box = round(size * 20 / 28)                      # MNIST: a 20x20 digit box in 28x28
    pad = (size - box) // 2
    order = np.concatenate([rng.permutation(len(base)) for _ in range(-(-n // len(base)))])[:n]
    canvas = np.zeros((len(base), size, size))
    canvas[:, pad:pad + box, pad:pad + box] = ndimage.zoom(base / 16.0, (1, box / 8, box / 8), order=1)
    rows, cols = _distortions(n, size, rng, alpha=alpha, sigma=sigma, max_degrees=max_degrees)
    which = np.broadcast_to(np.arange(n, dtype=float)[:, None, None], rows.shape)
    out = ndimage.map_coordinates(canvas[order], [which, rows, cols], order=1, mode="constant", cval=0.0)
    return np.clip(np.rint(out * 255), 0, 255).astype(np.uint8), order


def elastic_digits(*, n_train: int = 4000, n_test: int = 1000, size: int = 28, seed: int = 0,
                   alpha: float = 8.0, sigma: float = 3.0, max_degrees: float = 12.0,
                   test_share: float = 0.3, bases: bool = False) -> dict[str, np.ndarray]:
    """Arrays ``x, y, x_test, y_test`` (uint8 ``(N, size, size)``, int64 labels) as ``ngl train
    --dataset npz:`` reads them. ``test_share`` of the 1,797 base digits (stratified) feed only the
    test images; ``bases=True`` adds ``base, base_test``: each image's index in ``load_digits()``."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    tr, te = train_test_split(np.arange(len(digits.target)), test_size=test_share,
                              stratify=digits.target, random_state=seed)
    rng = np.random.default_rng(seed)
    kw = dict(size=size, alpha=alpha, sigma=sigma, max_degrees=max_degrees)
    x, order = _render(digits.images[tr], n_train, rng, **kw)
    x_test, order_test = _render(digits.images[te], n_test, rng, **kw)
    base, base_test = tr[order], te[order_test]
    out = {"x": x, "y": digits.target[base].astype(np.int64), "x_test": x_test,
           "y_test": digits.target[base_test].astype(np.int64)}
    return {**out, "base": base, "base_test": base_test} if bases else out


def write_elastic_digits(path: str | Path, **kwargs) -> Path:
    """:func:`elastic_digits` written as an uncompressed ``.npz`` at ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **elastic_digits(**kwargs))
    return path
