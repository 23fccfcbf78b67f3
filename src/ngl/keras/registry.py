"""The Keras loss registry, keyed by the names of :func:`ngl.losses.list_losses`.

Each class registers itself next to its definition in :mod:`ngl.keras.losses`
(``@_register("ngl")``), in the order of the PyTorch registry; :func:`ngl.keras.losses.get_loss`
builds a loss from a name. This module imports none of the losses (no import cycle).
"""
from __future__ import annotations

from ..registry import Registry

__all__ = ["LOSSES", "list_losses"]

#: registry name -> Keras loss class (the names are those of the PyTorch registry).
LOSSES: Registry[type] = Registry(
    "Keras loss", hint="or 'ngl>ClassName', a .json expression file, or 'expr:<infix>'")


def list_losses() -> list[str]:
    """Names of the Keras losses, in the order of the PyTorch registry.

    >>> list_losses()
    ['ce', 'ce_l2', 'focal', 'sce', 'ngl', 'poly1', 'label_smoothing_ce']
    """
    return LOSSES.names()
