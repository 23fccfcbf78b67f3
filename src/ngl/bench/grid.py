"""The benchmark grid: datasets (with label-noise / train-fraction variants) x models x losses x
seeds, expanded into resolved training configs, each with a stable key that makes resume exact."""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Iterable

from ..config import opt
from ..errors import InputError
from ..runspec import TrainConfig, pin_loss, run_key

__all__ = ["Grid", "PRESETS", "PlannedRun", "expand", "plan", "AXES", "grid_shape", "pin_grid"]

#: the grid's axes in expansion order, as ``ngl bench`` prints its shape
AXES = ("datasets", "variants", "models", "losses", "seeds")

GRID_GROUP = "grid (a flag replaces that axis of --config and the preset)"


@dataclass(frozen=True)
class Grid:
    """A grid of runs. ``label_noise`` and ``train_fraction`` are axes too: each value is a dataset
    variant with its own column in the report (``digits+noise20``). ``base`` holds the other
    ``TrainConfig`` fields shared by every run (epochs, batch_size, lr, ...). ``ngl bench``'s grid
    flags are generated from these fields (:func:`ngl.config.add_config_arguments`)."""

    datasets: tuple[str, ...] = opt(("digits",), "comma-separated ngl.data names, folder:PATH or "
                                    "npz:PATH (default: the preset's)", group=GRID_GROUP)
    models: tuple[str, ...] = opt(("cnn_small",), "comma-separated ngl.models names (default: the "
                                  "preset's)", group=GRID_GROUP)
    losses: tuple[str, ...] = opt((), "comma-separated registry names, *.json expression files or "
                                  "expr:<infix>; include ce, the baseline (default: the preset's; "
                                  "empty = every registered loss)", group=GRID_GROUP)
    seeds: tuple[int, ...] = opt((0, 1, 2, 3, 4), "comma-separated seeds, e.g. 0,1,2 (default: the "
                                 "preset's)", group=GRID_GROUP)
    label_noise: tuple[float, ...] = opt((0.0,), "comma-separated training label-noise fractions; each "
                                         "is a dataset variant (default: the preset's; 0 when "
                                         "--datasets is given)", group=GRID_GROUP)
    train_fraction: tuple[float, ...] = opt((1.0,), "comma-separated training-set fractions; each is a "
                                            "dataset variant (default: the preset's; 1 when "
                                            "--datasets is given)", group=GRID_GROUP)
    base: dict[str, Any] = opt(factory=dict, flag=False)

    def replace(self, **changes: Any) -> "Grid":
        data = {**self.__dict__, **{k: v for k, v in changes.items() if v is not None}}
        return Grid(**data)


#: name -> Grid. ``default``: what ``ngl bench`` runs with no arguments (under 10 min on 2 cores);
#: ``paper``: the published protocol (needs the datasets and GPUs); ``smoke``: seconds, for checks.
PRESETS: dict[str, Grid] = {
    "default": Grid(datasets=("digits",), label_noise=(0.0, 0.2), seeds=(0, 1, 2, 3, 4),
                    base={"epochs": 12, "batch_size": 64, "lr": 2e-3}),
    "paper": Grid(datasets=("malaria", "pcam", "colorectal_histology", "cifar10", "fashion_mnist",
                            "cifar100", "caltech101"),
                  models=("resnet50", "inception_v3"),
                  losses=("ce", "ce_l2", "focal", "sce", "ngl"), seeds=(0, 1, 2, 3, 4),
                  base={"epochs": 200, "batch_size": 128, "lr": 1e-3}),
    "smoke": Grid(datasets=("digits",), seeds=(0,), base={"epochs": 1, "max_steps": 5}),
}


def _losses(grid: Grid) -> tuple[str, ...]:
    if grid.losses:
        return tuple(grid.losses)
    from ..losses import list_losses
    return tuple(list_losses())


def _check_axes(grid: Grid, losses: tuple[str, ...]) -> None:
    for name, values in (("seeds", grid.seeds), ("losses", losses), ("models", grid.models),
                         ("datasets", grid.datasets), ("label_noise", grid.label_noise),
                         ("train_fraction", grid.train_fraction)):
        if not values:
            raise InputError(f"the grid has no {name}; give at least one")


def grid_shape(grid: Grid) -> dict[str, int]:
    """Values per axis (:data:`AXES`; ``variants`` = label-noise x train-fraction values).

    >>> grid_shape(Grid(datasets=("digits",), losses=("ce", "ngl"), seeds=(0, 1)))
    {'datasets': 1, 'variants': 1, 'models': 1, 'losses': 2, 'seeds': 2}
    """
    return {"datasets": len(grid.datasets),
            "variants": len(grid.label_noise) * len(grid.train_fraction),
            "models": len(grid.models), "losses": len(_losses(grid)), "seeds": len(grid.seeds)}


@dataclass(frozen=True)
class PlannedRun:
    """One run of a grid: its checked, loss-pinned :class:`~ngl.runspec.TrainConfig` and its key,
    computed once (:func:`expand`) and carried to the store and the executor."""
    key: str
    config: TrainConfig


def expand(grid: Grid) -> list[PlannedRun]:
    """All runs of ``grid``, in a fixed order (dataset variant, model, loss, seed), each built,
    checked and keyed once.

    Empty ``losses`` means every registered loss (``ngl.losses.list_losses``); an expression-file
    loss is pinned to its content (:func:`~ngl.runspec.pin_loss`), read once per spec. Every
    setting of ``grid.base`` must be a :class:`~ngl.runspec.TrainConfig` field (checked: one line
    naming it). Duplicate runs (same key) are dropped.

    >>> [r.config.loss for r in expand(Grid(losses=("ce", "expr:p*y"), seeds=(0,)))]
    ['ce', 'expr:p * y']
    """
    losses = _losses(grid)
    _check_axes(grid, losses)
    pinned = tuple(pin_loss(spec)[0] for spec in losses)
    base = TrainConfig.from_dict(grid.base, what="run setting").to_dict()
    combos = itertools.product(grid.datasets, grid.label_noise, grid.train_fraction, grid.models, pinned,
                               grid.seeds)
    configs = (TrainConfig.from_dict({**base, "dataset": ds, "model": model, "loss": loss, "seed": int(seed),
                                      "label_noise": float(noise), "train_fraction": float(frac)},
                                     what="run setting")
               for ds, noise, frac, model, loss, seed in combos)
    return plan(configs, pin=False)


def plan(configs: Iterable[TrainConfig], *, pin: bool = True) -> list[PlannedRun]:
    """Each config checked, its loss pinned (:meth:`~ngl.runspec.TrainConfig.pinned`; ``pin=False``:
    the caller pinned the specs already) and keyed, once; duplicates (same key) dropped, order kept."""
    runs, seen = [], set()
    for cfg in configs:
        cfg = cfg.check().pinned() if pin else cfg.check()
        key = run_key(cfg.to_dict())
        if key not in seen:
            seen.add(key)
            runs.append(PlannedRun(key, cfg))
    return runs


def pin_grid(grid: Grid) -> tuple[Grid, dict[str, list[str]]]:
    """``grid`` with every loss pinned to its content (each file read once), and
    ``{pinned spec: [expression files it was read from]}`` for the report."""
    pinned, sources = [], {}
    for spec in _losses(grid):
        spec, source = pin_loss(spec)
        pinned.append(spec)
        if source is not None and source not in sources.setdefault(spec, []):
            sources[spec].append(source)
    return grid.replace(losses=tuple(pinned)), sources
