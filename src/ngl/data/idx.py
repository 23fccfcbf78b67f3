"""IDX files (the MNIST family's format: ``0 0 type ndim``, big-endian int32 dims, then the data),
plain or ``.gz``, and Fashion-MNIST read from them. Nothing is downloaded.
"""
from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

from ..errors import InputError
from .catalog import dataset
from .checks import DataError, check_image_side, missing_error
from .paths import find_file

__all__ = ["read_idx", "read_idx_header", "read_fashion_mnist", "check_fashion_mnist"]

_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_FMNIST_URL = "https://github.com/zalandoresearch/fashion-mnist"
_FMNIST_SUBDIRS = [".", "fashion_mnist", "fashion-mnist", "FashionMNIST/raw"]


def _open(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def _parse_header(head: bytes, path: Path) -> tuple[np.dtype, tuple[int, ...]]:
    if len(head) < 4 or head[0] or head[1] or head[2] not in _IDX_TYPES:
        raise InputError(f"{path} is not an IDX file (bad magic {head[:4]!r})")
    ndim = head[3]
    if len(head) < 4 + 4 * ndim:
        raise InputError(f"{path} is not an IDX file (header cut short)")
    return np.dtype(_IDX_TYPES[head[2]]), struct.unpack(f">{ndim}i", head[4:4 + 4 * ndim])


def read_idx_header(path: str | Path) -> tuple[np.dtype, tuple[int, ...]]:
    """``(dtype, dims)`` of an IDX file from its first bytes (a ``.gz`` is not decompressed whole)."""
    path = Path(path)
    with _open(path) as fh:
        head = fh.read(4)
        head += fh.read(4 * head[3]) if len(head) == 4 else b""
    return _parse_header(head, path)


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (``.gz`` or plain) as an array of its dims."""
    path = Path(path)
    with _open(path) as fh:
        raw = fh.read()
    dtype, dims = _parse_header(raw[:4 + 4 * raw[3]] if len(raw) >= 4 else raw, path)
    count = int(np.prod(dims)) if dims else 1
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=4 + 4 * len(dims))
    return data.reshape(dims)


def _fmnist_files(root: Path) -> dict[str, Path]:
    """``{"x_train": path, ...}`` of the four files, each checked by its IDX header; else the
    one-line missing error naming the file."""
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        for kind, stem in (("x", f"{prefix}-images-idx3-ubyte"), ("y", f"{prefix}-labels-idx1-ubyte")):
            p = find_file(root, [stem, stem + ".gz"], _FMNIST_SUBDIRS)
            try:
                if p is None:
                    raise OSError("missing")
                _, dims = read_idx_header(p)
            except (OSError, ValueError, EOFError) as exc:
                raise missing_error(f"fashion_mnist file {stem}[.gz] ({exc})",
                                    [root / s for s in _FMNIST_SUBDIRS[:2]], _FMNIST_URL) from None
            if kind == "x":
                check_image_side(dims, str(p))
            out[f"{kind}_{split}"] = p
    return out


def check_fashion_mnist(root: str | Path) -> None:
    """The four IDX files of Fashion-MNIST are there with valid headers (nothing decompressed)."""
    _fmnist_files(Path(root))


@dataset("fashion_mnist", "Fashion-MNIST, 28x28 gray, 10 classes, 60k/10k",
         "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]", _FMNIST_URL, augment="none",
         check=check_fashion_mnist)
def read_fashion_mnist(root: str | Path) -> dict:
    """Fashion-MNIST from ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in ``root``,
    ``root/fashion_mnist`` or torchvision's ``root/FashionMNIST/raw``."""
    root = Path(root)
    out: dict = {}
    for key, p in _fmnist_files(root).items():
        try:
            arr = read_idx(p)
        except (OSError, ValueError, EOFError) as exc:
            raise missing_error(f"fashion_mnist file {p.name} ({exc})",
                                [root / s for s in _FMNIST_SUBDIRS[:2]], _FMNIST_URL) from None
        out[key] = arr[..., None].astype(np.uint8) if key[0] == "x" else arr.astype(np.int64)
    for split in ("train", "test"):
        if len(out[f"x_{split}"]) != len(out[f"y_{split}"]):
            raise DataError(f"fashion_mnist {split}: {len(out[f'x_{split}'])} images but "
                            f"{len(out[f'y_{split}'])} labels; re-download from {_FMNIST_URL}")
    out["classes"] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"]
    return out
