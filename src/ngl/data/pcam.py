"""PatchCamelyon from its HDF5 files, kept lazy on disk (:class:`H5Images` reads only the rows a
batch asks for). Nothing is downloaded.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError
from .catalog import dataset
from .checks import missing_error
from .paths import find_file

__all__ = ["H5Images", "read_pcam", "check_pcam"]

_URL = "https://github.com/basveeling/pcam (camelyonpatch_level_2_split_*.h5)"
_SUBDIRS = [".", "pcam"]


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


def _split_files(root: Path, split: str) -> tuple[Path, Path]:
    """The ``x`` and ``y`` files of one split, else the one-line missing error."""
    px = find_file(root, [f"camelyonpatch_level_2_split_{split}_x.h5"], _SUBDIRS)
    py = find_file(root, [f"camelyonpatch_level_2_split_{split}_y.h5"], _SUBDIRS)
    if px is None or py is None:
        raise _missing(root, split, "missing")
    return px, py


def _missing(root: Path, split: str, why: object):
    return missing_error(f"pcam camelyonpatch_level_2_split_{split}_{{x,y}}.h5 ({why})",
                         [root / s for s in _SUBDIRS], _URL)


def check_pcam(root: str | Path) -> None:
    """The four HDF5 files of PCam are there (not opened)."""
    for split in ("train", "test"):
        _split_files(Path(root), split)


@dataset("pcam", "PatchCamelyon, 96x96 RGB, 2 classes, 262k/33k (lazy HDF5)",
         "camelyonpatch_level_2_split_{train,test}_{x,y}.h5", "https://github.com/basveeling/pcam",
         check=check_pcam)
def read_pcam(root: str | Path) -> dict:
    """PatchCamelyon from ``camelyonpatch_level_2_split_{train,test}_{x,y}.h5`` (lazy images)."""
    import h5py

    root = Path(root)
    out: dict = {}
    for split in ("train", "test"):
        px, py = _split_files(root, split)
        try:
            with h5py.File(py, "r") as f:
                y = np.asarray(f["y"]).reshape(-1).astype(np.int64)
            x = H5Images(px, "x")
            if len(x) != len(y) or len(x.shape) != 4:
                raise InputError(f"{len(x)} images of shape {x.shape} but {len(y)} labels")
        except (OSError, KeyError, ValueError) as exc:
            raise _missing(root, split, exc) from None
        out[f"x_{split}"], out[f"y_{split}"] = x, y
    out["classes"] = ["normal", "metastatic"]
    return out
