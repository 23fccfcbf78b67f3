"""Dataset registry and the protocol's splits: ``list_datasets()``, ``load_dataset(name, ...)``.

Images are kept in memory as uint8 tensors ``(N, C, H, W)`` (PCam stays lazy on disk) so a batch
is one index gather; labels are int64 tensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from . import readers as R
from .images import read_image_tree
from .splits import PROTOCOL_SEED, add_label_noise, stratified_split, stratified_subset

__all__ = ["DatasetInfo", "DataSplits", "register_dataset", "list_datasets", "get_dataset_info",
           "load_dataset", "take"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    read: Callable[[Path], dict]       # data_dir -> reader dict (x_train, y_train[, x_test, y_test], classes)
    summary: str
    files: str                         # the native files expected under --data-dir
    source: str                        # where to get them
    augment: bool = True               # protocol augmentation on by default (flip-safe data)
    test_fraction: float = 0.2         # fixed stratified test hold-out when there is no official split


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
    augment: bool = True

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the stored images."""
        s = self.x_train.shape
        return tuple(s[1:]) if isinstance(self.x_train, Tensor) else (s[3], s[1], s[2])


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    _REGISTRY[info.name] = info
    return info


def list_datasets() -> list[str]:
    """Registered dataset names (``folder:PATH`` and ``npz:PATH`` are accepted too)."""
    return list(_REGISTRY)


def get_dataset_info(name: str) -> DatasetInfo:
    if name.startswith("folder:"):
        path = name[len("folder:"):]
        return DatasetInfo(name, lambda _d: read_image_tree(path, size=64, what=f"folder {path}"),
                           "your class-per-folder image tree (resized to 64x64)",
                           "PATH/<class>/*.png|jpg|...", "your own data")
    if name.startswith("npz:"):
        path = name[len("npz:"):]
        return DatasetInfo(name, lambda _d: R.read_npz(path), "your arrays x, y[, x_test, y_test]",
                           "PATH.npz", "your own data")
    if name not in _REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; registered datasets: {', '.join(_REGISTRY)} "
                       f"(or 'folder:PATH', 'npz:PATH')")
    return _REGISTRY[name]


def _nchw(x) -> object:
    if isinstance(x, R.H5Images):
        return x
    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


def _subset(x, idx: np.ndarray):
    if isinstance(x, R.H5Images):
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
    raw = info.read(R.env_data_dir(data_dir))
    x, y = raw["x_train"], np.asarray(raw["y_train"], dtype=np.int64)
    if "x_test" in raw:
        x_test, y_test = raw["x_test"], np.asarray(raw["y_test"], dtype=np.int64)
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
    num_classes = max(len(raw.get("classes", [])), int(max(y.max(initial=0), y_test.max(initial=0))) + 1)
    y = add_label_noise(y, label_noise, num_classes, seed=seed)
    if len(y) == 0:
        raise ValueError(f"dataset {name!r} has no training samples after the splits")
    return DataSplits(name, _nchw(x), torch.from_numpy(y), _nchw(x_val), torch.from_numpy(y_val),
                      _nchw(x_test), torch.from_numpy(y_test), num_classes,
                      list(raw.get("classes", [])), info.augment)
