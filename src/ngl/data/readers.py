"""Readers for the array formats of the protocol's datasets (CIFAR pickles, IDX, HDF5, npz);
image trees are in :mod:`ngl.data.images`. Nothing is ever downloaded.

Every reader returns a dict of NumPy arrays: ``x_train`` uint8 images ``(N, H, W, C)``,
``y_train`` int64 labels, and ``x_test``/``y_test`` when the dataset has an official test split,
plus ``classes`` (names). Missing or unreadable files raise :class:`DataError` (a
``FileNotFoundError``) with one line that names the expected files and where to get them; files
with the wrong content raise :class:`~ngl.errors.InputError` naming the file and what was expected.

>>> d = read_digits()
>>> d["x_train"].shape, d["x_train"].dtype.name, d["x_train"].max(), len(d["classes"])
((1797, 8, 8, 1), 'uint8', np.uint8(255), 10)
>>> float(read_digits(scale="unit")["x_train"].max())
1.0
"""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Iterable

import numpy as np

from ..errors import InputError, MissingFileError
from .catalog import dataset

__all__ = ["read_cifar", "read_idx", "read_fashion_mnist", "read_pcam", "read_digits", "read_npz",
           "restricted_loads", "DataError", "H5Images", "env_data_dir", "MAX_CLASSES", "check_labels"]

#: the most classes a dataset may have (a label of 2**40 would otherwise build 2**40 class names)
MAX_CLASSES = 100_000


class DataError(MissingFileError):
    """A dataset's files are missing or corrupt (one-line message naming files and source)."""


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


def _missing(what: str, where: Iterable[Path], url: str) -> DataError:
    places = " or ".join(str(p) for p in where)
    return DataError(f"{what} not found or unreadable at {places}; get it from {url} "
                     f"(ngl never downloads) and pass its folder with --data-dir")


@dataset("digits", "scikit-learn's bundled 8x8 handwritten digits, 1,797 images, 10 classes (embedded)",
         "(none: ships with scikit-learn)", "scikit-learn", augment="none", flip_safe=False)
def _digits(_root: Path) -> dict:
    return read_digits()                           # defined below, with the user arrays


# --------------------------------------------------------------------------- restricted unpickling
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a dataset pickle")
        return super().find_class(module, name)


def restricted_loads(data: bytes) -> object:
    """Unpickle ``data`` allowing only NumPy array reconstruction (no arbitrary globals).

    The CIFAR "python version" files are Python 2 pickles of dicts of arrays/lists; this is the
    only pickle ngl reads, and it never resolves any other class or function.
    """
    return _RestrictedUnpickler(io.BytesIO(data), encoding="latin1").load()


# --------------------------------------------------------------------------- CIFAR
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


def read_cifar(root: str | Path, name: str) -> dict:
    """CIFAR-10/100 from ``root/cifar-10-batches-py/`` (or ``cifar-100-python/``) or the original
    ``.tar.gz`` in ``root``, via a restricted unpickler.

    Returns ``x_train (N, 32, 32, 3) uint8, y_train (N,) int64, x_test, y_test, classes``.
    """
    if name not in _CIFAR:
        raise InputError(f"unknown CIFAR name {name!r}; expected 'cifar10' or 'cifar100'")
    folder, archive, train_files, test_files, label_key, meta, names_key, url = _CIFAR[name]
    root = Path(root)
    src, tgz = root / folder, root / archive
    if src.is_dir():
        def read(member: str) -> bytes:
            return (src / member).read_bytes()
    elif tgz.is_file():
        tar = tarfile.open(tgz, "r:gz")

        def read(member: str) -> bytes:
            f = tar.extractfile(f"{folder}/{member}")
            if f is None:
                raise KeyError(member)
            return f.read()
    else:
        raise _missing(f"{name} ({folder}/ or {archive})", [src, tgz], url)

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


def _cifar_batch(read, member: str, label_key: str, *, where: str, url: str) -> tuple[np.ndarray, np.ndarray]:
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


_KRIZ = "https://www.cs.toronto.edu/~kriz/cifar.html"


@dataset("cifar10", "CIFAR-10, 32x32 RGB, 10 classes, 50k/10k",
         "cifar-10-batches-py/ or cifar-10-python.tar.gz", _KRIZ)
def _cifar10(root: Path) -> dict:
    return read_cifar(root, "cifar10")


@dataset("cifar100", "CIFAR-100, 32x32 RGB, 100 classes, 50k/10k",
         "cifar-100-python/ or cifar-100-python.tar.gz", _KRIZ)
def _cifar100(root: Path) -> dict:
    return read_cifar(root, "cifar100")


# --------------------------------------------------------------------------- IDX (Fashion-MNIST)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """An IDX file (``.gz`` or plain): magic ``0 0 type ndim``, big-endian int32 dims, then data."""
    path = Path(path)
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[0] or raw[1] or raw[2] not in _IDX_TYPES:
        raise InputError(f"{path} is not an IDX file (bad magic {raw[:4]!r})")
    ndim = raw[3]
    dims = struct.unpack(f">{ndim}i", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    count = int(np.prod(dims)) if dims else 1
    data = np.frombuffer(raw, dtype=dtype, count=count, offset=4 + 4 * ndim)
    return data.reshape(dims)


def _find(root: Path, names: list[str], subdirs: list[str]) -> Path | None:
    for sub in subdirs:
        for n in names:
            p = root / sub / n
            if p.is_file():
                return p
    return None


@dataset("fashion_mnist", "Fashion-MNIST, 28x28 gray, 10 classes, 60k/10k",
         "{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]", "https://github.com/zalandoresearch/fashion-mnist",
         augment="none")
def read_fashion_mnist(root: str | Path) -> dict:
    """Fashion-MNIST from ``{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` in ``root``,
    ``root/fashion_mnist`` or torchvision's ``root/FashionMNIST/raw``."""
    root = Path(root)
    subdirs = [".", "fashion_mnist", "fashion-mnist", "FashionMNIST/raw"]
    url = "https://github.com/zalandoresearch/fashion-mnist"
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        for kind, stem in (("x", f"{prefix}-images-idx3-ubyte"), ("y", f"{prefix}-labels-idx1-ubyte")):
            p = _find(root, [stem, stem + ".gz"], subdirs)
            try:
                if p is None:
                    raise OSError("missing")
                arr = read_idx(p)
            except (OSError, ValueError, EOFError) as exc:
                raise _missing(f"fashion_mnist file {stem}[.gz] ({exc})", [root / s for s in subdirs[:2]],
                               url) from None
            out[f"{kind}_{split}"] = arr[..., None].astype(np.uint8) if kind == "x" else arr.astype(np.int64)
    for split in ("train", "test"):
        if len(out[f"x_{split}"]) != len(out[f"y_{split}"]):
            raise DataError(f"fashion_mnist {split}: {len(out[f'x_{split}'])} images but "
                            f"{len(out[f'y_{split}'])} labels; re-download from {url}")
    out["classes"] = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                      "Sneaker", "Bag", "Ankle boot"]
    return out


# --------------------------------------------------------------------------- PCam (HDF5)
class H5Images:
    """Lazy NHWC uint8 images in an HDF5 dataset; ``self[idx]`` reads only the rows asked for."""

    def __init__(self, path: Path, key: str = "x", rows: np.ndarray | None = None):
        import h5py

        self.path, self.key = Path(path), key
        with h5py.File(self.path, "r") as f:
            self._shape = f[key].shape
        self.rows = np.arange(self._shape[0]) if rows is None else np.asarray(rows)
        self._file = None

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self._shape[1:])

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, idx: np.ndarray) -> "H5Images":
        return H5Images(self.path, self.key, self.rows[np.asarray(idx)])

    def __getitem__(self, idx) -> np.ndarray:
        import h5py

        if self._file is None:
            self._file = h5py.File(self.path, "r")
        rows = self.rows[np.asarray(idx)]
        order = np.argsort(rows, kind="stable")
        uniq, inverse = np.unique(rows[order], return_inverse=True)
        block = self._file[self.key][uniq]           # h5py needs increasing indices
        out = np.empty((len(rows), *block.shape[1:]), dtype=block.dtype)
        out[order] = block[inverse]
        return out

    def __getstate__(self):
        return {**self.__dict__, "_file": None}


@dataset("pcam", "PatchCamelyon, 96x96 RGB, 2 classes, 262k/33k (lazy HDF5)",
         "camelyonpatch_level_2_split_{train,test}_{x,y}.h5", "https://github.com/basveeling/pcam")
def read_pcam(root: str | Path) -> dict:
    """PatchCamelyon from ``camelyonpatch_level_2_split_{train,test}_{x,y}.h5`` (lazy images)."""
    import h5py

    root = Path(root)
    subdirs = [".", "pcam"]
    url = "https://github.com/basveeling/pcam (camelyonpatch_level_2_split_*.h5)"
    out = {}
    for split in ("train", "test"):
        px = _find(root, [f"camelyonpatch_level_2_split_{split}_x.h5"], subdirs)
        py = _find(root, [f"camelyonpatch_level_2_split_{split}_y.h5"], subdirs)
        try:
            if px is None or py is None:
                raise OSError("missing")
            with h5py.File(py, "r") as f:
                y = np.asarray(f["y"]).reshape(-1).astype(np.int64)
            x = H5Images(px, "x")
            if len(x) != len(y) or len(x.shape) != 4:
                raise InputError(f"{len(x)} images of shape {x.shape} but {len(y)} labels")
        except (OSError, KeyError, ValueError) as exc:
            raise _missing(f"pcam camelyonpatch_level_2_split_{split}_{{x,y}}.h5 ({exc})",
                           [root / s for s in subdirs], url) from None
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    out["classes"] = ["normal", "metastatic"]
    return out


# --------------------------------------------------------------------------- embedded / user arrays
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


_NPZ_WANT = "an .npz with arrays x, y[, x_test, y_test] (np.savez('data.npz', x=images, y=labels))"


def _npz_arrays(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"npz file not found: {path}; expected {_NPZ_WANT}")
    if path.stat().st_size == 0:
        raise InputError(f"{path} is an empty file; expected {_NPZ_WANT}")
    try:
        with np.load(path, allow_pickle=False) as f:
            if not hasattr(f, "files"):
                raise ValueError("a single .npy array, not an .npz archive")
            return {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {path} ({type(exc).__name__}: {exc}); expected {_NPZ_WANT}") from None


def _npz_split(arrays: dict, path: Path, kx: str, ky: str) -> tuple[np.ndarray, np.ndarray]:
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
    return x, y.astype(np.int64)


def read_npz(path: str | Path) -> dict:
    """User arrays from an ``.npz``: ``x``, ``y`` and optionally ``x_test``, ``y_test`` (no pickles).

    Images may be uint8 (scaled to [-1, 1] in training) or float (used as they are). Labels are
    class indices ``0 .. MAX_CLASSES - 1``."""
    path = Path(path)
    arrays = _npz_arrays(path)
    if "x" not in arrays or "y" not in arrays:
        raise InputError(f"{path} holds {sorted(arrays) or 'no arrays'}; expected {_NPZ_WANT}")
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise InputError(f"{path}: give both 'x_test' and 'y_test' or neither")
    out: dict = {}
    for split, (kx, ky) in {"train": ("x", "y"), "test": ("x_test", "y_test")}.items():
        if kx in arrays:
            out[f"x_{split}"], out[f"y_{split}"] = _npz_split(arrays, path, kx, ky)
    n_classes = int(max(out["y_train"].max(), out.get("y_test", out["y_train"]).max())) + 1
    out["classes"] = [str(i) for i in range(n_classes)]
    return out


def env_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir``, else ``$NGL_DATA_DIR``, else ``./data``."""
    return Path(data_dir or os.environ.get("NGL_DATA_DIR") or "data")

