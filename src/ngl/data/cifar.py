"""CIFAR-10 and CIFAR-100 from their "python version" files (a folder of pickled batches, or the
original ``.tar.gz``), read through the restricted unpickler of :mod:`ngl.data.unpickle`.
Nothing is downloaded.
"""
from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import InputError
from .catalog import dataset
from .checks import DataError, check_labels, missing_error
from .unpickle import restricted_loads

__all__ = ["read_cifar", "check_cifar"]

_KRIZ = "https://www.cs.toronto.edu/~kriz/cifar.html"
_CIFAR = {
    "cifar10": ("cifar-10-batches-py", "cifar-10-python.tar.gz",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], "labels", "batches.meta",
                "label_names", "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"),
    "cifar100": ("cifar-100-python", "cifar-100-python.tar.gz", ["train"], ["test"], "fine_labels",
                 "meta", "fine_label_names", "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"),
}


def _get(d: dict, key: str):
    """``d[key]``, the Python 2 pickles' bytes key ``d[b"key"]``, else ``KeyError(key)``."""
    for k in (key, key.encode()):
        if k in d:
            return d[k]
    raise KeyError(key)


def _layout(name: str) -> tuple:
    if name not in _CIFAR:
        raise InputError(f"unknown CIFAR name {name!r}; expected 'cifar10' or 'cifar100'")
    return _CIFAR[name]


def _source(root: Path, name: str) -> tuple[Path, bool]:
    """``(folder, True)`` or ``(archive, False)``, whichever is in ``root``; else the missing error."""
    folder, archive, *_, url = _layout(name)
    src, tgz = root / folder, root / archive
    if src.is_dir():
        return src, True
    if tgz.is_file():
        return tgz, False
    raise missing_error(f"{name} ({folder}/ or {archive})", [src, tgz], url)


def check_cifar(root: str | Path, name: str) -> None:
    """The files :func:`read_cifar` needs are there: every batch file of the folder, or the archive
    (not opened: listing a ``.tar.gz`` means decompressing it)."""
    folder, _, train_files, test_files, *_, url = _layout(name)
    src, is_dir = _source(Path(root), name)
    for member in train_files + test_files if is_dir else []:
        if not (src / member).is_file():
            raise DataError(f"{name} {folder}/{member} is missing or unreadable (no such file "
                            f"{src / member}); get a fresh copy from {url}")


def read_cifar(root: str | Path, name: str) -> dict:
    """CIFAR-10/100 from ``root/cifar-10-batches-py/`` (or ``cifar-100-python/``) or the original
    ``.tar.gz`` in ``root``, via a restricted unpickler.

    Returns ``x_train (N, 32, 32, 3) uint8, y_train (N,) int64, x_test, y_test, classes``.
    """
    folder, _, train_files, test_files, label_key, meta, names_key, url = _layout(name)
    src, is_dir = _source(Path(root), name)
    if is_dir:
        def read(member: str) -> bytes:
            return (src / member).read_bytes()
    else:
        tar = tarfile.open(src, "r:gz")

        def read(member: str) -> bytes:
            f = tar.extractfile(f"{folder}/{member}")
            if f is None:
                raise KeyError(member)
            return f.read()

    def load(members: list[str]) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        for m in members:
            x, y = _cifar_batch(read, m, label_key, where=f"{name} {folder}/{m}", url=url)
            xs.append(x)
            ys.append(y)
        return np.concatenate(xs).transpose(0, 2, 3, 1).copy(), np.concatenate(ys)

    x_train, y_train = load(train_files)
    x_test, y_test = load(test_files)
    try:
        classes = [c.decode() if isinstance(c, bytes) else str(c)
                   for c in _get(restricted_loads(read(meta)), names_key)]
    except Exception:                              # names are optional: fall back to numbers
        classes = [str(i) for i in range(int(max(y_train.max(), y_test.max())) + 1)]
    return {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test,
            "classes": classes}


def _cifar_batch(read: Callable[[str], bytes], member: str, label_key: str, *, where: str,
                 url: str) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR batch file: a pickled dict with ``data`` (N, 3072) uint8 and labels."""
    try:
        raw = read(member)
    except (KeyError, OSError, EOFError, tarfile.TarError) as exc:
        raise DataError(f"{where} is missing or unreadable ({exc}); get a fresh copy from {url}") from None
    try:
        d = restricted_loads(raw)
    except Exception as exc:                       # truncated, not a pickle, forbidden globals, ...
        raise DataError(f"{where} is not a readable CIFAR pickle ({type(exc).__name__}: {exc}); "
                        f"get a fresh copy from {url}") from None
    if not isinstance(d, dict):
        raise DataError(f"{where} holds a pickled {type(d).__name__}, expected a CIFAR batch dict; "
                        f"get a fresh copy from {url}")
    try:
        data, labels = _get(d, "data"), _get(d, label_key)
    except KeyError as exc:
        raise DataError(f"{where} is not a CIFAR batch: no key {exc}; get a fresh copy from {url}") from None
    try:
        x = np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32)
        y = np.asarray(labels, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{where}: data or labels of the wrong shape or type ({exc}); "
                        f"expected (N, 3072) uint8 and N labels") from None
    if len(x) != len(y):
        raise DataError(f"{where}: {len(x)} images but {len(y)} labels; get a fresh copy from {url}")
    check_labels(y, where)
    return x, y


@dataset("cifar10", "CIFAR-10, 32x32 RGB, 10 classes, 50k/10k",
         "cifar-10-batches-py/ or cifar-10-python.tar.gz", _KRIZ,
         check=lambda root: check_cifar(root, "cifar10"))
def _cifar10(root: Path) -> dict:
    return read_cifar(root, "cifar10")


@dataset("cifar100", "CIFAR-100, 32x32 RGB, 100 classes, 50k/10k",
         "cifar-100-python/ or cifar-100-python.tar.gz", _KRIZ,
         check=lambda root: check_cifar(root, "cifar100"))
def _cifar100(root: Path) -> dict:
    return read_cifar(root, "cifar100")
