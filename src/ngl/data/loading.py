"""Loading a dataset under the protocol (``list_datasets()``, ``load_dataset(name, ...)``), splits.

Images are kept in memory as uint8 tensors ``(N, C, H, W)`` (PCam stays lazy on disk) so a batch
is one index gather; labels are int64 tensors in ``0 .. MAX_CLASSES - 1``, with at least two
classes.

>>> d = load_dataset("digits", seed=0)          # scikit-learn's bundled 8x8 digits
>>> tuple(d.x_train.shape), d.x_train.dtype, d.num_classes, d.augment
((1294, 1, 8, 8), torch.uint8, 10, 'none')
>>> get_dataset_info("npz:my.npz").augment       # data ngl does not know: nothing by default
'none'
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from . import digits, cifar, idx, pcam, images  # noqa: F401  (each registers its datasets, in this order)
from .augment import PROTOCOL_AUGMENT, USER_DATA_AUGMENT
from .catalog import DATASETS, USER_DATA_SOURCE, DatasetInfo, register_dataset
from .checks import MAX_CLASSES, check_labels, check_test_split
from .images import check_image_tree, read_image_tree
from .npz import check_npz, read_npz
from .paths import env_data_dir
from .pcam import H5Images
from .splits import PROTOCOL_SEED, add_label_noise, stratified_split, stratified_subset

__all__ = ["DatasetInfo", "DataSplits", "DATASETS", "register_dataset", "list_datasets",
           "get_dataset_info", "load_dataset", "take", "MAX_CLASSES", "check_labels"]


@dataclass
class DataSplits:
    """Train/val/test tensors of one dataset under one protocol configuration."""
    name: str
    x_train: object                    # uint8/float Tensor (N, C, H, W) or a lazy H5Images
    y_train: Tensor
    x_val: object
    y_val: Tensor
    x_test: object
    y_test: Tensor
    num_classes: int
    classes: list[str] = field(default_factory=list)
    augment: str = PROTOCOL_AUGMENT    # the dataset's default augmentation parts
    augment_why: str = ""
    flip_safe: bool = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the stored images."""
        s = self.x_train.shape
        return tuple(s[1:]) if isinstance(self.x_train, Tensor) else (s[3], s[1], s[2])


def list_datasets() -> list[str]:
    """Registered dataset names (``folder:PATH`` and ``npz:PATH`` are accepted too)."""
    return DATASETS.names()


def get_dataset_info(name: str) -> DatasetInfo:
    if name.startswith("folder:"):
        path = name[len("folder:"):]
        what = f"folder {path}"
        return DatasetInfo(name, lambda _d: read_image_tree(path, size=64, what=what),
                           "your class-per-folder image tree (resized to 64x64)",
                           "PATH/<class>/*.png|jpg|...", USER_DATA_SOURCE, augment=USER_DATA_AUGMENT,
                           flip_safe=False, check=lambda _d: check_image_tree(path, what=what))
    if name.startswith("npz:"):
        path = name[len("npz:"):]
        return DatasetInfo(name, lambda _d: read_npz(path), "your arrays x, y[, x_test, y_test]",
                           "PATH.npz", USER_DATA_SOURCE, augment=USER_DATA_AUGMENT, flip_safe=False,
                           check=lambda _d: check_npz(path))
    return DATASETS.get(name)


def _nchw(x) -> object:
    if isinstance(x, H5Images):
        return x
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _subset(x, idx: np.ndarray):
    if isinstance(x, H5Images):
        return x.subset(idx)
    return x[idx]


def take(x, idx: Tensor) -> Tensor:
    """Rows ``idx`` of stored images as an NCHW tensor (one gather; lazy sources read from disk)."""
    if isinstance(x, Tensor):
        return x.index_select(0, idx.to(x.device))
    return torch.from_numpy(np.ascontiguousarray(x[idx.numpy()].transpose(0, 3, 1, 2)))


def load_dataset(name: str, *, data_dir: str | Path | None = None, seed: int = 0,
                 val_fraction: float = 0.1, train_fraction: float = 1.0,
                 label_noise: float = 0.0) -> DataSplits:
    """Read a dataset and apply the protocol's splits.

    Test: the official split, else a stratified ``info.test_fraction`` hold-out (random_state 42).
    Validation: ``val_fraction`` of train, stratified, random_state 42 (independent of ``seed``).
    Then a stratified ``train_fraction`` subset and symmetric ``label_noise``, both seeded by ``seed``.
    """
    info = get_dataset_info(name)
    raw = info.read(env_data_dir(data_dir))
    x, y = raw["x_train"], np.asarray(raw["y_train"], dtype=np.int64)
    check_labels(y, f"dataset {name!r}")
    _require_two_classes(name, y)
    if "x_test" in raw:
        x_test, y_test = raw["x_test"], np.asarray(raw["y_test"], dtype=np.int64)
        check_labels(y_test, f"dataset {name!r} (test split)")
        check_test_split(name, x, y, x_test, y_test)
    else:
        keep, hold = stratified_split(y, info.test_fraction, seed=PROTOCOL_SEED)
        x_test, y_test = _subset(x, hold), y[hold]
        x, y = _subset(x, keep), y[keep]
    keep, hold = stratified_split(y, val_fraction, seed=PROTOCOL_SEED)
    x_val, y_val = _subset(x, hold), y[hold]
    x, y = _subset(x, keep), y[keep]
    sub = stratified_subset(y, train_fraction, seed=seed)
    if len(sub) < len(y):
        x, y = _subset(x, sub), y[sub]
    top = max(int(a.max(initial=0)) for a in (y, y_val, y_test))
    num_classes = max(len(raw.get("classes", [])), top + 1)
    y = add_label_noise(y, label_noise, num_classes, seed=seed)
    if len(y) == 0:
        raise InputError(f"dataset {name!r} has no training samples after the splits")
    return DataSplits(name, _nchw(x), torch.from_numpy(y), _nchw(x_val), torch.from_numpy(y_val),
                      _nchw(x_test), torch.from_numpy(y_test), num_classes,
                      list(raw.get("classes", [])), info.augment, info.augment_why, info.flip_safe)


def _require_two_classes(name: str, y: np.ndarray) -> None:
    present = np.unique(y)
    if len(present) < 2:
        only = f"only label {int(present[0])}" if len(present) else "no labels"
        raise InputError(f"dataset {name!r} has a single class ({only}); a classifier needs at least 2")
