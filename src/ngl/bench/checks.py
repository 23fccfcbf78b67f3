"""Checks of a whole grid before its first run: what would make a run fail at once (an unknown
name, a loss that cannot be built with its kwargs) is one line and exit 2 up front, instead of a
grid of failed rows. Each run's settings were checked when the grid expanded
(:meth:`ngl.runspec.TrainConfig.check`)."""
from __future__ import annotations

import json
from typing import Any, Iterable

from ..errors import InputError, UnknownNameError, UserError, one_line
from ..runspec import TrainConfig

__all__ = ["check_names", "check_losses", "check_runs"]


def check_runs(configs: Iterable[TrainConfig]) -> None:
    """:func:`check_names` and :func:`check_losses` of a grid's run specs."""
    configs = list(configs)
    check_names(configs)
    check_losses(configs)


def check_names(configs: list[TrainConfig]) -> None:
    """Every model name is registered or ``auto``; every dataset is registered or a folder:/npz:
    path. The message is the registry's own (close matches, the other accepted spellings)."""
    from ..data.catalog import DATASETS
    from ..models import MODELS

    for name in sorted({c.model for c in configs}, key=str):
        if name != "auto" and name not in MODELS:
            raise InputError(MODELS.unknown_message(name))
    for name in sorted({c.dataset for c in configs}, key=str):
        if name not in DATASETS and not str(name).startswith(("folder:", "npz:")):
            raise InputError(DATASETS.unknown_message(name))


def check_losses(configs: list[TrainConfig]) -> None:
    """Every loss builds with its ``loss_kwargs`` and runs one forward on a tiny batch: an unknown
    keyword of a registered loss is named (with the close match) before anything is built."""
    seen = set()
    for c in configs:
        key = (c.loss, json.dumps(c.loss_kwargs, sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            _check_loss(c.loss, dict(c.loss_kwargs))


def _check_loss(spec: str, kwargs: dict[str, Any]) -> None:
    """Build the loss (which refuses unknown or invalid keywords) and run it on a 4x3 batch."""
    import torch

    from ..losses import get_loss

    try:
        module = get_loss(spec, **kwargs)
        logits = torch.linspace(-1.0, 1.0, 12).reshape(4, 3)
        module(logits, torch.tensor([0, 1, 2, 0]))
    except UnknownNameError:
        raise
    except (UserError, TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"loss {spec!r} with loss_kwargs {kwargs}: {one_line(exc)}") from None
