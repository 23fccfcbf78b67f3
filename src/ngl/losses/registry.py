"""The loss registry: one entry per loss drives the CLI's choices, the tests and the report rows."""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from .. import expr as E

__all__ = ["LossInfo", "register_loss", "list_losses", "get_loss_info", "get_loss", "loss_label"]


@dataclass(frozen=True)
class LossInfo:
    """A registered loss: its pure function, module class and what the report needs."""

    name: str
    fn: Callable[..., Any]
    module: type[nn.Module]
    label: str                       # as the paper's table names it
    summary: str
    reference: str
    expression: E.Expr | None = None  # the per-class element form, if it has one
    published: bool = False          # part of the paper's comparison
    tags: tuple[str, ...] = field(default=())

    @property
    def hparams(self) -> dict[str, Any]:
        """Keyword hyperparameters of the module with their defaults."""
        out: dict[str, Any] = {}
        for cls in self.module.__mro__:
            if "__init__" not in vars(cls):
                continue
            for name, prm in inspect.signature(cls.__init__).parameters.items():
                if prm.kind is prm.KEYWORD_ONLY and name not in out:
                    out[name] = prm.default
        return out


_REGISTRY: dict[str, LossInfo] = {}


def register_loss(info: LossInfo) -> LossInfo:
    """Add a loss; names are unique."""
    if info.name in _REGISTRY:
        raise ValueError(f"loss {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def list_losses(*, published: bool | None = None) -> list[str]:
    """Registered loss names (``published=True``: those in the paper's comparison)."""
    return [n for n, i in _REGISTRY.items() if published is None or i.published == published]


def get_loss_info(name: str) -> LossInfo:
    if name not in _REGISTRY:
        raise KeyError(f"unknown loss {name!r}; registered losses: {', '.join(_REGISTRY)} "
                       f"(or a .json expression file, or 'expr:<infix>')")
    return _REGISTRY[name]


def is_expression_spec(spec: str) -> bool:
    return spec.startswith("expr:") or spec.endswith(".json") or os.path.isfile(spec)


def get_loss(spec: str, **kwargs: Any) -> nn.Module:
    """A loss module by registry name, expression file path (``*.json``) or ``expr:<infix>``.

    >>> get_loss("ngl")
    >>> get_loss("focal", gamma=1.5)
    >>> get_loss("expr:exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))")
    """
    if spec in _REGISTRY:
        return _REGISTRY[spec].module(**kwargs)
    if is_expression_spec(spec):
        from .expression import ExpressionLoss

        return ExpressionLoss(Path(spec) if not spec.startswith("expr:") else spec, **kwargs)
    get_loss_info(spec)   # raises the KeyError with the list
    raise AssertionError


def loss_label(spec: str) -> str:
    """The paper's label of a registered loss (``f5 (NGL)``); expression files and ``expr:``
    specs print as given."""
    return _REGISTRY[spec].label if spec in _REGISTRY else spec
