"""Fitness functions: ``fn(infix, task) -> accuracy in [0, 1]``, registered in :data:`FITNESS`;
``task`` is the search's :class:`~ngl.runspec.TrainConfig` (its seed set per run).

- ``train`` (default): a short training run through the harness, ``ngl.train.train(task)`` with
  loss ``expr:<infix>``; fitness = the *final* validation accuracy on the clean validation split
  (the best epoch's would be an optimistic max).
- ``linear``: softmax regression on scikit-learn's digits trained full-batch with the loss for
  ``task.max_steps`` steps at ``task.lr``; a real but tiny learning problem (tenths of a second),
  for tests and quick experiments.

>>> FITNESS.names()
['train', 'linear']
>>> round(linear_fitness("-(y * log(p))", TrainConfig(max_steps=30, lr=0.05)), 2) > 0.8
True
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

from .. import expr as E
from ..errors import InputError
from ..registry import Registry
from ..runspec import TrainConfig

__all__ = ["FITNESS", "FitnessFn", "train_fitness", "linear_fitness", "check_task"]

FitnessFn = Callable[[str, TrainConfig], float]

#: Fitness functions by name (``ngl search --fitness``).
FITNESS: Registry[FitnessFn] = Registry("fitness function")


@FITNESS.register("train")
def train_fitness(infix: str, task: TrainConfig) -> float:
    """Final validation accuracy of a short harness run of ``task`` with loss ``expr:<infix>``.
    A diverged or failed run raises (the pipeline records it with the worst fitness)."""
    from ..train import train

    result = train(dataclasses.replace(task, loss="expr:" + infix, loss_kwargs={}), progress=False)
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
def linear_fitness(infix: str, task: TrainConfig) -> float:
    """Validation accuracy of softmax regression on digits trained with the loss (Adam, full batch,
    ``task.max_steps`` steps (100 if unset) at ``task.lr``, seed ``task.seed``)."""
    import torch

    from ..losses.expression import expression_loss

    seed = task.seed
    x_tr, x_va, y_tr, y_va = _digits(seed)
    torch.manual_seed(seed)
    model = torch.nn.Linear(64, 10)
    opt = torch.optim.Adam(model.parameters(), lr=task.lr)
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    expr = E.parse(infix)
    for _ in range(task.max_steps or 100):
        opt.zero_grad(set_to_none=True)
        loss = expression_loss(model(xt), yt, expr)
        if not torch.isfinite(loss):
            raise FloatingPointError("loss is nan/inf")
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = model(torch.from_numpy(x_va)).argmax(1).numpy()
    return float((pred == y_va).mean())


def check_task(task: TrainConfig) -> None:
    """Fail before the search starts on a bad task setting, an unknown dataset or model."""
    from ..data import get_dataset_info
    from ..models import get_model_info

    task.check()
    try:
        get_model_info(task.model)
        if ":" not in task.dataset:
            get_dataset_info(task.dataset)
    except KeyError as exc:                    # UnknownNameError: the registry's one line
        raise InputError(str(exc)) from None
