"""Checks of a whole grid before its first run: what would make a run fail at once (a bad setting,
an unknown name, a loss that cannot be built with its kwargs) is one line and exit 2 up front,
instead of a grid of failed rows."""
from __future__ import annotations

import json
from typing import Any

from ..errors import InputError, UnknownNameError, UserError, one_line

__all__ = ["check_train_config", "check_train_configs", "check_names", "check_losses"]


def check_train_config(config: dict[str, Any]) -> Any:
    """``TrainConfig`` of ``config``: keys and types checked (:func:`ngl.config.from_mapping`: no
    unknown key, bool is not a number, no NaN), then ``validate()`` (ranges); one line if not."""
    from ..config import from_mapping
    from ..train import TrainConfig

    cfg = from_mapping(TrainConfig, config, what="run setting")
    try:
        cfg.validate()
    except UserError:
        raise
    except (TypeError, ValueError) as exc:
        raise InputError(" ".join(str(exc).split())) from None
    return cfg


def check_train_configs(configs: list[dict[str, Any]]) -> None:
    """:func:`check_train_config` for every run (each distinct config once)."""
    seen = set()
    for c in configs:
        text = json.dumps(c, sort_keys=True, default=str)
        if text not in seen:
            seen.add(text)
            check_train_config(c)


def check_names(configs: list[dict[str, Any]]) -> None:
    """Every model name is registered or ``auto``; every dataset is registered or a folder:/npz:
    path. The message is the registry's own (close matches, the other accepted spellings)."""
    from ..data.catalog import DATASETS
    from ..models import MODELS

    for name in sorted({c["model"] for c in configs}, key=str):
        if name != "auto" and name not in MODELS:
            raise InputError(MODELS.unknown_message(name))
    for name in sorted({c["dataset"] for c in configs}, key=str):
        if name not in DATASETS and not str(name).startswith(("folder:", "npz:")):
            raise InputError(DATASETS.unknown_message(name))


def check_losses(configs: list[dict[str, Any]]) -> None:
    """Every loss builds with its ``loss_kwargs`` and runs one forward on a tiny batch: an unknown
    keyword of a registered loss is named (with the close match) before anything is built."""
    seen = set()
    for c in configs:
        spec, kwargs = c["loss"], dict(c.get("loss_kwargs") or {})
        key = (spec, json.dumps(kwargs, sort_keys=True, default=str))
        if key not in seen:
            seen.add(key)
            _check_loss(spec, kwargs)


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