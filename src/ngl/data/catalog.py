"""The dataset registry itself: :class:`DatasetInfo` and :data:`DATASETS`. Readers register their
dataset next to their definition with :func:`dataset` (as timm's ``register_model``); splits and
loading live in :mod:`ngl.data.loading`.

>>> DATASETS.get("cifar10").flip_safe, DATASETS.get("digits").augment
(True, 'none')
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..registry import Registry
from .augment import PROTOCOL_AUGMENT

__all__ = ["DatasetInfo", "DATASETS", "register_dataset", "dataset", "USER_DATA_SOURCE"]

#: ``DatasetInfo.source`` of ``npz:`` / ``folder:`` data (data ngl does not know)
USER_DATA_SOURCE = "your own data"


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    read: Callable[[Path], dict]       # data_dir -> reader dict (x_train, y_train[, x_test, y_test], classes)
    summary: str
    files: str                         # the native files expected under --data-dir
    source: str                        # where to get them
    augment: str = PROTOCOL_AUGMENT    # default augmentation parts ("none" for none)
    flip_safe: bool = True             # a horizontal flip never changes a label
    test_fraction: float = 0.2         # fixed stratified test hold-out when there is no official split
    check: Callable[[Path], object] | None = None  # data_dir -> raise if files lack (no decoding)

    @property
    def augment_why(self) -> str:
        """Why :attr:`augment` is this dataset's default (one phrase, for ``ngl train``'s output)."""
        if self.source == USER_DATA_SOURCE:
            return (f"{self.name} is data ngl does not know: no augmentation by default, never flips "
                    f"(they change digits, text, handedness); --augment shift,zoom to add some")
        if self.augment == "none":
            return f"{self.name}'s default: none; --augment shift,zoom to add some"
        return f"{self.name}'s default: the protocol's; flips are safe for it"


#: every named dataset; ``folder:PATH`` and ``npz:PATH`` are accepted besides
DATASETS: Registry[DatasetInfo] = Registry("dataset", hint="or folder:PATH, npz:PATH")


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add ``info`` to :data:`DATASETS` under ``info.name`` (a name already taken is an error)."""
    return DATASETS.add(info.name, info)


def dataset(name: str, summary: str, files: str, source: str, **kwargs) -> Callable:
    """Decorator: register the reader ``fn(data_dir) -> dict`` below it as dataset ``name``."""
    def deco(fn: Callable[[Path], dict]) -> Callable[[Path], dict]:
        register_dataset(DatasetInfo(name, fn, summary, files, source, **kwargs))
        return fn
    return deco
