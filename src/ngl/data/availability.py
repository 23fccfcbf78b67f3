"""Is a dataset there? A cheap look (files, headers, listings; nothing decoded) that raises the
same one-line error loading would, so a grid of runs can refuse missing data before its first run.

>>> check_dataset_available("digits", None)                # embedded: needs no files
>>> check_datasets_available([("digits", None), ("cifar10", "/nowhere"), ("pcam", "/nowhere")])
... # doctest: +ELLIPSIS
Traceback (most recent call last):
...
ngl.data.availability.DatasetsMissingError: 2 datasets are not available:
  cifar10: cifar10 (cifar-10-batches-py/ or cifar-10-python.tar.gz) not found or unreadable at /nowhere/cifar-10-batches-py or ...
  pcam: pcam camelyonpatch_level_2_split_train_{x,y}.h5 (missing) not found or unreadable at /nowhere or /nowhere/pcam; ...
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable

from ..errors import InputError, MissingFileError, UserError, one_line
from .loading import get_dataset_info
from .paths import env_data_dir

__all__ = ["check_dataset_available", "check_datasets_available", "DatasetsMissingError"]


class DatasetsMissingError(MissingFileError):
    """Several datasets are missing: a first line, then one line per dataset (``problems``)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        n = len(problems)
        head = f"{n} dataset{'s are' if n > 1 else ' is'} not available:"
        super().__init__("\n".join([head] + [f"  {name}: {why}" for name, why in problems]))


def check_dataset_available(name: str, data_dir: str | os.PathLike | None) -> None:
    """Raise what :func:`~ngl.data.load_dataset` would raise first for files that are missing (or
    whose headers are wrong), without decoding any: an unknown name, a
    :class:`~ngl.errors.MissingFileError` naming the expected paths, an
    :class:`~ngl.errors.InputError` for a bad ``npz:`` header. ``digits`` needs nothing (nor does
    a dataset registered without a ``check``).
    ``data_dir`` is ``--data-dir`` (``None``: ``$NGL_DATA_DIR``, else ``./data``)."""
    info = get_dataset_info(name)
    if info.check is not None:
        info.check(env_data_dir(data_dir))


def check_datasets_available(pairs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """:func:`check_dataset_available` for each distinct ``(name, data_dir)``; all problems in ONE
    error, one line each: :class:`DatasetsMissingError` when every problem is a missing file, else
    an :class:`~ngl.errors.InputError` with the same lines."""
    problems: list[tuple[str, str]] = []
    only_missing = True
    seen = set()
    for name, data_dir in pairs:
        key = (name, str(Path(data_dir)) if data_dir is not None else None)
        if key in seen:
            continue
        seen.add(key)
        try:
            check_dataset_available(name, data_dir)
        except UserError as exc:
            problems.append((name, one_line(exc)))
            only_missing = only_missing and isinstance(exc, MissingFileError)
    if not problems:
        return
    error = DatasetsMissingError(problems)
    if not only_missing:
        raise InputError(str(error))
    raise error
