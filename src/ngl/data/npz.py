"""Your own arrays from an ``.npz``: ``x``, ``y`` and optionally ``x_test``, ``y_test`` (no pickles).

The shapes are read from the archive's ``.npy`` headers first, so an archive that would decompress
into images over :data:`~ngl.data.checks.MAX_IMAGE_SIDE` px a side, or into more bytes than the
machine's memory, is refused before anything is decompressed (as Pillow's decompression-bomb check
does for image files). Float images with NaN or infinities are refused when read.

>>> import io, numpy as np
>>> buf = io.BytesIO(); np.savez(buf, x=np.zeros((2, 3000, 8), np.uint8), y=np.arange(2))
>>> _ = buf.seek(0); npz_shapes(buf)["x"]
((2, 3000, 8), dtype('uint8'))
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import IO

import numpy as np

from ..errors import InputError
from .checks import DataError, check_finite, check_image_side, check_labels

__all__ = ["read_npz", "check_npz", "npz_shapes"]

_WANT = "an .npz with arrays x, y[, x_test, y_test] (np.savez('data.npz', x=images, y=labels))"
_SPLITS = {"train": ("x", "y"), "test": ("x_test", "y_test")}
_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0,
                   (2, 0): np.lib.format.read_array_header_2_0,
                   (3, 0): np.lib.format.read_array_header_2_0}   # 3.0: 2.0's layout, utf-8 names


def npz_shapes(source: str | Path | IO[bytes]) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``{name: (shape, dtype)}`` of every array of an ``.npz``, from the ``.npy`` headers only."""
    out = {}
    with zipfile.ZipFile(source) as z:
        for info in z.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with z.open(info) as fh:
                version = np.lib.format.read_magic(fh)
                if version not in _HEADER_READERS:
                    raise ValueError(f"{info.filename}: .npy format version {version} is not supported")
                shape, _, dtype = _HEADER_READERS[version](fh)
            out[info.filename[:-4]] = (tuple(int(s) for s in shape), dtype)
    return out


def _memory_bytes() -> int | None:
    """This machine's physical memory in bytes (``None`` where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_npz(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """The headers of the arrays :func:`read_npz` will read, checked: the file is there and an
    ``.npz`` holding ``x`` and ``y`` (and both or neither of ``x_test``, ``y_test``), images at most
    :data:`~ngl.data.checks.MAX_IMAGE_SIDE` px a side, all of them fitting in memory."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"npz file not found: {path}; expected {_WANT}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is an empty file; expected {_WANT}")
    try:
        shapes = npz_shapes(path)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {path} ({type(exc).__name__}: {exc}); expected {_WANT}") from None
    if "x" not in shapes or "y" not in shapes:
        raise InputError(f"{path} holds {sorted(shapes) or 'no arrays'}; expected {_WANT}")
    if ("x_test" in shapes) != ("y_test" in shapes):
        raise InputError(f"{path}: give both 'x_test' and 'y_test' or neither")
    wanted = {k: shapes[k] for pair in _SPLITS.values() for k in pair if k in shapes}
    for key in ("x", "x_test"):
        if key in wanted:
            check_image_side(wanted[key][0], f"{path} {key}")
    need = sum(int(np.prod(s)) * d.itemsize for s, d in wanted.values())
    memory = _memory_bytes()
    if memory and need > memory:
        raise InputError(f"{path}: its arrays would take {need / 1e9:.1f} GB decompressed, more than "
                         f"this machine's {memory / 1e9:.1f} GB of memory")
    return wanted


def _to_nhwc(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.ndim == 3:
        return x[..., None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3, 4):
            return x
        if x.shape[1] in (1, 3, 4):
            return x.transpose(0, 2, 3, 1)
    raise InputError(f"{path}: array {key!r} has shape {x.shape}; expected images (N, H, W), "
                     f"(N, H, W, C) or (N, C, H, W) with C in 1, 3, 4")


def _load(path: Path, keys: list[str]) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {path} ({type(exc).__name__}: {exc}); expected {_WANT}") from None


def _split(arrays: dict, path: Path, kx: str, ky: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _to_nhwc(arrays[kx], path, kx), arrays[ky].reshape(-1)
    if len(x) == 0:
        raise InputError(f"{path}: {kx!r} holds no images (shape {arrays[kx].shape}); expected at least one")
    if len(x) != len(y):
        raise InputError(f"{path}: {kx} has {len(x)} samples but {ky} has {len(y)}")
    if not np.issubdtype(y.dtype, np.integer):
        raise InputError(f"{path}: {ky} must hold integer class labels, got dtype {y.dtype}")
    check_labels(y, f"{path} {ky}")
    if x.dtype != np.uint8:
        if not (np.issubdtype(x.dtype, np.number) and not np.issubdtype(x.dtype, np.complexfloating)):
            raise InputError(f"{path}: {kx} must hold numbers, got dtype {x.dtype}")
        x = x.astype(np.float32)
        check_finite(x, f"{path} {kx}")
    return x, y.astype(np.int64)


def read_npz(path: str | Path) -> dict:
    """User arrays from an ``.npz``: ``x``, ``y`` and optionally ``x_test``, ``y_test`` (no pickles;
    other arrays in the file are not read).

    Images may be uint8 (scaled to [-1, 1] in training) or float (used as they are, and every value
    must be finite). Labels are class indices ``0 .. MAX_CLASSES - 1``."""
    path = Path(path)
    arrays = _load(path, list(check_npz(path)))
    out: dict = {}
    for split, (kx, ky) in _SPLITS.items():
        if kx in arrays:
            out[f"x_{split}"], out[f"y_{split}"] = _split(arrays, path, kx, ky)
    n_classes = int(max(out["y_train"].max(), out.get("y_test", out["y_train"]).max())) + 1
    out["classes"] = [str(i) for i in range(n_classes)]
    return out
