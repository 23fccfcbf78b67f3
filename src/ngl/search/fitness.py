"""Fitness functions: ``fn(infix, settings) -> accuracy in [0, 1]``, registered in :data:`FITNESS`.

- ``train`` (default): a short training run through the harness, ``ngl.train.train(TrainConfig(
  loss="expr:" + infix, max_steps=..., label_noise=..., ...))``; fitness = the *final* validation
  accuracy on the clean validation split (the best epoch's would be an optimistic max).
- ``linear``: softmax regression on scikit-learn's digits trained full-batch with the loss; a real
  but tiny learning problem (tenths of a second), for tests and quick experiments.

>>> FITNESS.names()
['train', 'linear']
>>> round(linear_fitness("-(y * log(p))", {"max_steps": 30}), 2) > 0.8
True
"""
from __future__ import annotations

import math
from typing import Any, Callable

from .. import expr as E
from ..errors import InputError
from ..registry import Registry

__all__ = ["FITNESS", "FitnessFn", "train_fitness", "linear_fitness", "check_train_settings"]

FitnessFn = Callable[[str, dict], float]

#: Fitness functions by name (``ngl search --fitness``).
FITNESS: Registry[FitnessFn] = Registry("fitness function")


@FITNESS.register("train")
def train_fitness(infix: str, settings: dict) -> float:
    """Final validation accuracy of a short harness run with loss ``expr:<infix>``.

    ``settings`` holds TrainConfig fields (dataset, model, max_steps, label_noise, seed, ...).
    A diverged or failed run raises (the pipeline records it with the worst fitness).
    """
    from ..train import TrainConfig, train

    cfg = TrainConfig.from_dict({**settings, "loss": "expr:" + infix})
    result = train(cfg, progress=False)
    acc = result.val_accuracy
    if result.status != "ok" or acc is None or not math.isfinite(acc):
        raise RuntimeError(result.error or f"training {result.status}")
    return float(acc)


_DIGITS: dict[int, Any] = {}


def _digits(seed: int) -> Any:
    """Digits as flat float32 in [0, 1], split 70/30 stratified (``ngl.data.digits.read_digits``)."""
    if seed not in _DIGITS:
        import numpy as np
        from sklearn.model_selection import train_test_split

        from ..data.digits import read_digits

        raw = read_digits()
        x = (raw["x_train"].reshape(len(raw["x_train"]), -1) / 255.0).astype(np.float32)
        _DIGITS[seed] = train_test_split(x, raw["y_train"], test_size=0.3, stratify=raw["y_train"],
                                         random_state=seed)
    return _DIGITS[seed]


@FITNESS.register("linear")
def linear_fitness(infix: str, settings: dict) -> float:
    """Validation accuracy of softmax regression on digits trained with the loss (Adam, full batch).

    ``settings``: ``max_steps`` (default 100), ``lr`` (default 0.05), ``seed`` (default 0).
    """
    import torch

    from ..losses.expression import expression_loss

    seed = int(settings.get("seed", 0))
    x_tr, x_va, y_tr, y_va = _digits(seed)
    torch.manual_seed(seed)
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=float(settings.get("lr") or 0.05))
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    expr = E.parse(infix)
    for _ in range(int(settings.get("max_steps") or 100)):
        opt.zero_grad(set_to_none=True)
        loss = expression_loss(model(xt), yt, expr)
        if not torch.isfinite(loss):
            raise FloatingPointError("loss is nan/inf")
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_va)).argmax(1).numpy()
    return float((pred == y_va).mean())


def check_train_settings(settings: dict) -> None:
    """Fail before the search starts on a bad harness config, unknown dataset or model."""
    from ..data import get_dataset_info
    from ..models import get_model_info
    from ..train import TrainConfig

    try:
        TrainConfig.from_dict({**{k: v for k, v in settings.items() if k != "seeds"}, "loss": "ce"}).validate()
        get_model_info(settings["model"])
        if ":" not in settings["dataset"]:
            get_dataset_info(settings["dataset"])
    except KeyError as exc:
        raise InputError(exc.args[0]) from None
    except InputError:
        raise
    except ValueError as exc:
        raise InputError(str(exc)) from None
