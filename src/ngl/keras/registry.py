"""The Keras loss registry, keyed by the names of :func:`ngl.losses.list_losses`.

Each class registers itself next to its definition in :mod:`ngl.keras.losses`
(``@_register("ngl")``), in the order of the PyTorch registry.
"""
from __future__ import annotations

import os
from typing import Any

import keras

from ..errors import InputTypeError
from ..runspec import is_expression_spec
from ..registry import Registry

__all__ = ["LOSSES", "list_losses", "get_loss", "from_expression", "is_expression_spec"]

#: registry name -> Keras loss class (the names are those of the PyTorch registry).
LOSSES: Registry[type] = Registry(
    "Keras loss", hint="or 'ngl>ClassName', a .json expression file, or 'expr:<infix>'")


def list_losses() -> list[str]:
    """Names of the Keras losses, in the order of the PyTorch registry.

    >>> list_losses()
    ['ce', 'ce_l2', 'focal', 'sce', 'ngl', 'poly1', 'label_smoothing_ce']
    """
    return LOSSES.names()


def get_loss(spec: str, **kwargs: Any) -> Any:
    """A Keras loss by registry name (``"ngl"``), Keras registered name (``"ngl>NGL"``),
    expression file (``*.json``) or ``"expr:<infix>"``; ``kwargs`` go to the constructor.

    >>> get_loss("focal", gamma=1.5, from_logits=True)
    Focal(from_logits=True, gamma=1.5, alpha=0.25)
    >>> get_loss("ngl>NGL")
    NGL(from_logits=False, alpha=2.4092, scaling=False)

    Raises:
        UnknownNameError: an unknown name (the message names close matches).
    """
    if not isinstance(spec, str):
        raise InputTypeError(f"loss spec must be a string, got {type(spec).__name__}")
    if spec in LOSSES:
        return LOSSES.get(spec)(**kwargs)
    if spec.startswith("ngl>"):
        cls = keras.saving.get_registered_object(spec)
        if cls is not None:
            return cls(**kwargs)
    if is_expression_spec(spec, registered=LOSSES):
        return from_expression(spec, **kwargs)
    return LOSSES.get(spec)(**kwargs)   # an unknown name: UnknownNameError naming close matches


def from_expression(spec: Any, **kwargs: Any) -> Any:
    """A Keras loss from an expression: an ``Expr``, a saved ``.json`` file (e.g. from the GP
    search's hall of fame), its JSON document, or infix text. ``kwargs``: ``from_logits``,
    ``reduction``, ``name``.

    >>> from_expression("square(p - y)", from_logits=True)
    Expression('square(p - y)', from_logits=True)
    """
    from .losses import Expression

    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    return Expression(spec, **kwargs)
