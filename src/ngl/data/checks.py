"""What every reader checks before handing arrays on, and its one-line errors: missing files
(:class:`DataError`, a ``FileNotFoundError``), labels out of range, images too large or not
finite, a test split that does not match its training split.

>>> check_image_side((10, 4096, 32, 3), "my.npz x")
Traceback (most recent call last):
...
ngl.errors.InputError: my.npz x: images of shape (10, 4096, 32, 3); at most 2048 px a side are supported
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InputError, MissingFileError

__all__ = ["MAX_CLASSES", "MAX_IMAGE_SIDE", "DataError", "missing_error", "check_labels",
           "check_image_side", "check_finite", "check_test_split"]

#: the most classes a dataset may have (a label of 2**40 would otherwise build 2**40 class names)
MAX_CLASSES = 100_000
#: the largest image side a dataset may hold, in px (``ngl.train.MAX_IMAGE_SIZE``: a larger image
#: is never trained, so it is refused before it is decompressed)
from ..runspec import MAX_IMAGE_SIZE as MAX_IMAGE_SIDE  # noqa: E402  (the one cap)


class DataError(MissingFileError):
    """A dataset's files are missing or corrupt (one-line message naming files and source)."""


def missing_error(what: str, where: Iterable[Path], url: str) -> DataError:
    """The one-line error of a dataset not found: what, the places looked at, where to get it."""
    places = " or ".join(str(p) for p in where)
    return DataError(f"{what} not found or unreadable at {places}; get it from {url} "
                     f"(ngl never downloads) and pass its folder with --data-dir")


def check_labels(y: np.ndarray, what: str) -> None:
    """Refuse labels outside ``0 .. MAX_CLASSES - 1``, naming the first offending one.

    >>> check_labels(np.array([0, 2**40]), "my.npz y")
    Traceback (most recent call last):
    ...
    ngl.errors.InputError: my.npz y: label 1099511627776 is out of bounds; at most 100000 classes (labels 0..99999) are supported
    """
    if len(y) == 0:
        return
    lo, hi = int(y.min()), int(y.max())
    if lo < 0:
        raise InputError(f"{what}: label {lo} is negative; labels must be class indices 0, 1, 2, ...")
    if hi >= MAX_CLASSES:
        raise InputError(f"{what}: label {hi} is out of bounds; at most {MAX_CLASSES} classes "
                         f"(labels 0..{MAX_CLASSES - 1}) are supported")


def check_image_side(shape: tuple[int, ...], what: str) -> None:
    """Refuse images ``(N, ...)`` with an axis over :data:`MAX_IMAGE_SIDE` (any layout: a channel
    axis that large is no image either)."""
    if any(int(s) > MAX_IMAGE_SIDE for s in shape[1:]):
        raise InputError(f"{what}: images of shape {tuple(int(s) for s in shape)}; at most "
                         f"{MAX_IMAGE_SIDE} px a side are supported")


def check_finite(x: np.ndarray, what: str) -> None:
    """Refuse float images holding NaN or infinities, naming how many (they train into NaN).

    >>> check_finite(np.array([[0.5, np.nan], [np.inf, 1.0]]), "my.npz x")
    Traceback (most recent call last):
    ...
    ngl.errors.InputError: my.npz x: 2 of 4 values are not finite (NaN or inf); replace them or drop those images
    """
    if not np.issubdtype(x.dtype, np.floating):
        return
    bad = x.size - int(np.count_nonzero(np.isfinite(x)))
    if bad:
        raise InputError(f"{what}: {bad} of {x.size} values are not finite (NaN or inf); "
                         f"replace them or drop those images")


def check_test_split(name: str, x_train, y_train: np.ndarray, x_test, y_test: np.ndarray) -> None:
    """Refuse an official test split whose images differ in shape from training's, or with labels
    training never has (no model trained on ``y_train`` can predict them)."""
    if tuple(x_train.shape[1:]) != tuple(x_test.shape[1:]):
        raise InputError(f"dataset {name!r}: test images have shape {tuple(x_test.shape[1:])} but "
                         f"training images {tuple(x_train.shape[1:])}; give both splits one image size")
    unseen = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if len(unseen):
        shown = ", ".join(str(int(v)) for v in unseen[:5]) + (", ..." if len(unseen) > 5 else "")
        raise InputError(f"dataset {name!r}: test labels {shown} ({len(unseen)} classes) never occur "
                         f"in training; every test class needs training samples")
