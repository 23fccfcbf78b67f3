"""Checks of a whole grid before its first run: what would make a run fail at once (a bad setting,
an unknown name, a loss that cannot be built with its kwargs) is one line and exit 2 up front,
instead of a grid of failed rows."""
from __future__ import annotations

import difflib
import json
from typing import Any

from ..errors import InputError, UserError, one_line

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


def _unknown(kind: str, name: str, known: list[str], hint: str = "") -> InputError:
    close = difflib.get_close_matches(name, known, n=2)
    did = f" (did you mean {' or '.join(map(repr, close))}?)" if close else ""
    return InputError(f"unknown {kind} {name!r}{did}; registered {kind}s: {', '.join(known)}{hint}")


def check_names(configs: list[dict[str, Any]]) -> None:
    """Every model and dataset name is registered (datasets may also be folder:/npz: paths)."""
    from ..data import list_datasets
    from ..models import list_models

    models, datasets = list_models(), list_datasets()
    for name in sorted({c["model"] for c in configs}):
        if name not in models:
            raise _unknown("model", name, models)
    for name in sorted({c["dataset"] for c in configs}):
        if name not in datasets and not str(name).startswith(("folder:", "npz:")):
            raise _unknown("dataset", name, datasets, " (or folder:PATH, npz:PATH)")


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
    import torch

    from ..losses import get_loss, get_loss_info, list_losses

    if spec in list_losses():
        hparams = get_loss_info(spec).hparams
        known = sorted(hparams() if callable(hparams) else hparams)
        for name in sorted(set(kwargs) - set(known)):
            close = difflib.get_close_matches(name, known, n=1)
            did = f" (did you mean {close[0]!r}?)" if close else ""
            raise InputError(f"loss {spec!r} has no keyword {name!r}{did}; its keywords: "
                             f"{', '.join(known)}")
    try:
        module = get_loss(spec, **kwargs)
        logits = torch.linspace(-1.0, 1.0, 12).reshape(4, 3)
        module(logits, torch.tensor([0, 1, 2, 0]))
    except UserError:
        raise
    except KeyError as exc:                    # an unknown name: its message says it all
        raise InputError(" ".join(str(exc.args[0] if exc.args else exc).split())) from None
    except (TypeError, ValueError, RuntimeError) as exc:
        raise InputError(f"loss {spec!r} with loss_kwargs {kwargs}: {one_line(exc)}") from None
