"""Protocol splits on label arrays: stratified hold-outs, training subsets and label noise.

All functions are pure: they take labels and a seed and return index arrays (or new labels), so a
split is reproducible from ``(labels, fraction, seed)`` alone.
"""
from __future__ import annotations

import numpy as np

from ..errors import InputError

__all__ = ["stratified_split", "stratified_subset", "add_label_noise", "PROTOCOL_SEED"]

#: the protocol's fixed ``random_state`` for the validation (and missing test) hold-outs
PROTOCOL_SEED = 42


def _can_stratify(y: np.ndarray, n_holdout: int) -> bool:
    counts = np.bincount(y)
    counts = counts[counts > 0]
    return counts.min() >= 2 and n_holdout >= len(counts) and len(y) - n_holdout >= len(counts)


def stratified_split(y: np.ndarray, fraction: float, *, seed: int = PROTOCOL_SEED
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(keep, holdout)`` with ``round(fraction * n)`` held out, class-stratified.

    Uses scikit-learn's ``train_test_split(stratify=y, random_state=seed)``; falls back to a plain
    seeded shuffle when a class has fewer than two members. Both index arrays are sorted.
    """
    y = np.asarray(y)
    n = len(y)
    if not 0.0 <= fraction < 1.0:
        raise InputError(f"split fraction must be in [0, 1), got {fraction}")
    n_holdout = int(round(fraction * n))
    if n_holdout == 0:
        return np.arange(n), np.arange(0)
    from sklearn.model_selection import train_test_split

    idx = np.arange(n)
    stratify = y if _can_stratify(y, n_holdout) else None
    keep, hold = train_test_split(idx, test_size=n_holdout, stratify=stratify, random_state=seed)
    return np.sort(keep), np.sort(hold)


def stratified_subset(y: np.ndarray, fraction: float, *, seed: int) -> np.ndarray:
    """Sorted indices of a stratified, seeded ``fraction`` of ``y`` (all of it for ``fraction=1``)."""
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"train_fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return np.arange(len(y))
    keep, _ = stratified_split(y, 1.0 - fraction, seed=seed)
    return keep


def add_label_noise(y: np.ndarray, fraction: float, num_classes: int, *, seed: int) -> np.ndarray:
    """Symmetric label noise: ``round(fraction * n)`` labels, chosen uniformly without replacement,
    each replaced by a uniformly random OTHER class. Returns a new array; ``y`` is untouched."""
    from ..runspec import TrainConfig

    TrainConfig(label_noise=fraction).check()      # the one bound, for direct callers too
    y = np.array(y, dtype=np.int64, copy=True)
    n_noisy = int(round(fraction * len(y)))
    if n_noisy == 0 or num_classes < 2:
        return y
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(y), size=n_noisy, replace=False)
    y[idx] = (y[idx] + rng.integers(1, num_classes, size=n_noisy)) % num_classes
    return y
