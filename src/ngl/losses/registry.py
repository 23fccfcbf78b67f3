"""The loss registry: one entry per loss drives the CLI's choices, the tests and the report rows.

Each loss registers next to its definition with the :func:`register_loss` class decorator:

>>> from ngl.losses import get_loss_info, list_losses
>>> list_losses(published=True)
['ce', 'ce_l2', 'focal', 'sce', 'ngl']
>>> get_loss_info("ngl").label
'f5 (NGL)'
>>> get_loss_info("nlg")
Traceback (most recent call last):
...
ngl.errors.UnknownNameError: unknown loss 'nlg' (did you mean 'ngl'?); registered: ce, ce_l2, focal, sce, ngl, poly1, label_smoothing_ce; or a .json expression file, or 'expr:<infix>'
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import nn

from .. import expr as E
from ..errors import InputTypeError
from ..runspec import is_expression_spec
from ..registry import Registry

__all__ = ["LossInfo", "LOSSES", "register_loss", "list_losses", "get_loss_info", "get_loss",
           "loss_label"]


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


#: Every registered loss by name, in registration order (the paper's comparison first).
LOSSES: Registry[LossInfo] = Registry("loss", hint="or a .json expression file, or 'expr:<infix>'")


def register_loss(name: str, *, label: str, summary: str, reference: str,
                  expression: E.Expr | None = None, published: bool = False,
                  tags: tuple[str, ...] = ()) -> Callable[[type], type]:
    """Class decorator: register a loss module (its ``fn`` is the pure function) under ``name``."""
    def deco(cls: type) -> type:
        LOSSES.add(name, LossInfo(name, cls.fn, cls, label, summary, reference, expression,
                                  published, tuple(tags)))
        return cls
    return deco


def list_losses(*, published: bool | None = None) -> list[str]:
    """Registered loss names (``published=True``: those in the paper's comparison)."""
    return [n for n, i in LOSSES.items() if published is None or i.published == published]


def get_loss_info(name: str) -> LossInfo:
    """The registry entry of ``name``; an unknown name is a one-line ``UnknownNameError``."""
    return LOSSES.get(name)


def get_loss(spec: str, **kwargs: Any) -> nn.Module:
    """A loss module by registry name, expression file path (``*.json``) or ``expr:<infix>``.

    >>> get_loss("ngl")
    NGLLoss(alpha=2.4092, from_logits=True, scaling=False, ignore_index=-100, fast=None)
    >>> get_loss("focal", gamma=1.5)
    FocalLoss(gamma=1.5, alpha=0.25, from_logits=True, ignore_index=-100)
    >>> get_loss("expr:exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))")
    ExpressionLoss('exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))')
    >>> get_loss("focal", gama=1)
    Traceback (most recent call last):
    ...
    ngl.errors.InputError: FocalLoss: unknown keyword 'gama' (did you mean 'gamma'?); valid: gamma, alpha, from_logits, ignore_index, weight, reduction
    """
    if not isinstance(spec, str):
        raise InputTypeError(f"a loss is named by a string (registry name, *.json path or "
                             f"'expr:<infix>'), got {type(spec).__name__}")
    if is_expression_spec(spec, registered=LOSSES):
        from .expression import ExpressionLoss

        return ExpressionLoss(Path(spec) if not spec.startswith("expr:") else spec, **kwargs)
    return LOSSES.get(spec).module(**kwargs)   # an unknown name: UnknownNameError with close matches


def loss_label(spec: str) -> str:
    """The paper's label of a registered loss (``f5 (NGL)``); expression files and ``expr:``
    specs print as given."""
    return LOSSES.get(spec).label if spec in LOSSES else spec
