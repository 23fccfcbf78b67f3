"""scikit-learn's bundled 8x8 handwritten digits: the dataset that needs no files.

>>> d = read_digits()
>>> d["x_train"].shape, d["x_train"].dtype.name, d["x_train"].max(), len(d["classes"])
((1797, 8, 8, 1), 'uint8', np.uint8(255), 10)
>>> float(read_digits(scale="unit")["x_train"].max())
1.0
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .catalog import dataset

__all__ = ["read_digits"]


def read_digits(*, scale: str = "uint8") -> dict:
    """scikit-learn's bundled 8x8 digits (values 0..16), ``(1797, 8, 8, 1)``: the one digits loader.

    ``scale="uint8"``: uint8 in 0..255 (what training stores); ``"unit"``: float32 ``value / 16``
    in [0, 1], exact (for NumPy models such as the GP's quick fitness).
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    if scale == "uint8":
        x = np.clip(np.rint(d.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[..., None]
    elif scale == "unit":
        x = (d.images / 16.0).astype(np.float32)[..., None]
    else:
        raise InputError(f"read_digits scale must be 'uint8' or 'unit', got {scale!r}")
    return {"x_train": x, "y_train": d.target.astype(np.int64), "classes": [str(c) for c in range(10)]}


@dataset("digits", "scikit-learn's bundled 8x8 handwritten digits, 1,797 images, 10 classes (embedded)",
         "(none: ships with scikit-learn)", "scikit-learn", augment="none", flip_safe=False)
def _digits(_root: Path) -> dict:
    return read_digits()
