"""Where a dataset's files are: the data folder (``--data-dir``, else ``$NGL_DATA_DIR``, else
``./data``) and the first of a reader's candidate places in it.

>>> env_data_dir("/mnt/datasets")
PosixPath('/mnt/datasets')
"""
from __future__ import annotations

import os
from pathlib import Path

__all__ = ["env_data_dir", "find_file", "first_existing"]


def env_data_dir(data_dir: str | os.PathLike | None) -> Path:
    """``data_dir``, else ``$NGL_DATA_DIR``, else ``./data``."""
    return Path(data_dir or os.environ.get("NGL_DATA_DIR") or "data")


def find_file(root: Path, names: list[str], subdirs: list[str]) -> Path | None:
    """The first ``root/sub/name`` that is a file (subfolders first, then names), else ``None``."""
    for sub in subdirs:
        for n in names:
            p = root / sub / n
            if p.is_file():
                return p
    return None


def first_existing(root: Path, candidates: list[str]) -> Path | None:
    """The first ``root/candidate`` that exists (a folder or a file), else ``None``."""
    for c in candidates:
        p = root / c
        if p.exists():
            return p
    return None
