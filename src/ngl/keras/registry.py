"""The Keras loss registry, keyed by the names of :func:`ngl.losses.list_losses`."""
from __future__ import annotations

import os
from types import MappingProxyType
from typing import Any, Mapping

import keras

from ..expr import is_expression_spec
from ._common import NGLKerasLoss
from .losses import CE, CEL2, NGL, SCE, Expression, Focal, LabelSmoothingCE, Poly1

__all__ = ["LOSSES", "list_losses", "get_loss", "from_expression"]

#: registry name -> Keras loss class (read-only; the names are those of the PyTorch registry).
LOSSES: Mapping[str, type[NGLKerasLoss]] = MappingProxyType({
    "ce": CE, "ce_l2": CEL2, "focal": Focal, "sce": SCE, "ngl": NGL, "poly1": Poly1,
    "label_smoothing_ce": LabelSmoothingCE,
})


def list_losses() -> list[str]:
    """Names of the Keras losses, in the order of the PyTorch registry."""
    from ..losses import list_losses as torch_names

    names = [n for n in torch_names() if n in LOSSES]
    return names + [n for n in LOSSES if n not in names]


def get_loss(spec: str, **kwargs: Any) -> NGLKerasLoss:
    """A Keras loss by registry name (``"ngl"``), Keras registered name (``"ngl>NGL"``),
    expression file (``*.json``) or ``"expr:<infix>"``; ``kwargs`` go to the constructor.

    >>> get_loss("focal", gamma=1.5, from_logits=True)
    """
    if not isinstance(spec, str):
        raise TypeError(f"loss spec must be a string, got {type(spec).__name__}")
    if spec in LOSSES:
        return LOSSES[spec](**kwargs)
    if spec.startswith("ngl>"):
        cls = keras.saving.get_registered_object(spec)
        if cls is not None:
            return cls(**kwargs)
    if is_expression_spec(spec):
        return Expression(spec, **kwargs)
    raise KeyError(f"unknown Keras loss {spec!r}; registered losses: {', '.join(LOSSES)} "
                   f"(or 'ngl>ClassName', a .json expression file, or 'expr:<infix>')")


def from_expression(spec: Any, **kwargs: Any) -> Expression:
    """A Keras loss from an expression: an ``Expr``, a saved ``.json`` file (e.g. from the GP
    search's hall of fame), its JSON document, or infix text. ``kwargs``: ``from_logits``,
    ``reduction``, ``name``.

    >>> loss = from_expression("runs/search/hall_of_fame/0.json")
    """
    if isinstance(spec, os.PathLike):
        spec = os.fspath(spec)
    return Expression(spec, **kwargs)
