"""ngl: the Next Generation Loss (arXiv 2404.12948), its baselines, the GP search that finds such
losses, and the paper's evaluation protocol.

Imports are lazy (PEP 562): ``import ngl.expr`` and ``import ngl.keras`` do not import torch;
``ngl.get_loss`` and the other PyTorch names load :mod:`ngl.losses` on first use, and a subpackage
such as ``ngl.losses`` or ``ngl.data`` is imported when first named after ``import ngl``.

>>> import ngl
>>> ngl.get_loss("ngl")
NGLLoss(alpha=2.4092, from_logits=True, scaling=False, ignore_index=-100, fast=None)
>>> str(ngl.expr.NGL)
'exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))'
>>> 'ngl' in ngl.losses.list_losses() and 'cifar10' in ngl.data.list_datasets()
True
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"
__all__ = ["expr", "get_loss", "list_losses", "ngl_loss", "from_expression", "__version__"]

_FROM_LOSSES = ("get_loss", "list_losses", "ngl_loss", "from_expression")
#: subpackages and modules that ``ngl.<name>`` imports on first use
_SUBMODULES = ("expr", "losses", "keras", "data", "models", "train", "bench", "report", "search",
               "executors", "errors", "registry", "config", "fileio")


def __getattr__(name: str) -> Any:
    if name in _FROM_LOSSES:
        return getattr(importlib.import_module(".losses", __name__), name)
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'ngl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
