"""The benchmark grid: datasets (with label-noise / train-fraction variants) x models x losses x
seeds, expanded into resolved training configs, each with a stable key that makes resume exact."""
from __future__ import annotations

import copy
import dataclasses
import itertools
import json
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

from ..config import opt
from ..errors import InputError
from ..runspec import IGNORED_IN_KEY, TrainConfig, canonical, pin_loss, run_key

__all__ = ["Grid", "PRESETS", "PlannedRun", "Expansion", "expand", "plan", "AXES", "grid_shape", "pin_grid",
           "grid_settings", "KEY_FIELDS", "SETTING_FIELDS"]

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


#: each axis: (Grid field, TrainConfig field, conversion), in expansion order
_AXIS_FIELDS = (("datasets", "dataset", str), ("label_noise", "label_noise", float),
                ("train_fraction", "train_fraction", float), ("models", "model", str),
                ("losses", "loss", str), ("seeds", "seed", int))


class Expansion:
    """The runs of a grid, checked up front and made on demand.

    Building it checks every setting a run can have: the first run (``grid.base`` and each axis's
    first value) and then each value of each axis in that run, once
    (:meth:`~ngl.runspec.TrainConfig.check` bounds each field on its own, so a combination is valid
    when each of its values is). A bad value on any axis is one line here, before any run.
    Iterating makes each run's config from plain dicts and keys it once (:func:`run_key`), in a fixed
    order (dataset variant, model, loss, seed); ``len`` is the number of runs (repeated axis values
    count once). Only the keys seen are held, so a dry run of 200,000 runs streams.

    >>> e = Expansion(Grid(losses=("ce", "ngl"), seeds=(0, 1, 1)))
    >>> len(e), [r.config.loss for r in e][:3]
    (4, ['ce', 'ce', 'ngl'])
    """

    def __init__(self, grid: Grid) -> None:
        losses = _losses(grid)
        _check_axes(grid, losses)
        values = {"datasets": grid.datasets, "label_noise": grid.label_noise,
                  "train_fraction": grid.train_fraction, "models": grid.models,
                  "losses": tuple(pin_loss(spec)[0] for spec in losses), "seeds": grid.seeds}
        head = {name: kind(values[axis][0]) for axis, name, kind in _AXIS_FIELDS}
        first = TrainConfig.from_dict({**grid.base, **head}, what="run setting").check()
        self.base = first.to_dict()
        self.axes: dict[str, list[Any]] = {}
        self.samples: list[TrainConfig] = []      # one checked run per axis value
        for axis, name, kind in _AXIS_FIELDS:
            checked = {}
            for raw in values[axis]:
                cfg = dataclasses.replace(first, **{name: kind(raw)}).check()
                if getattr(cfg, name) not in checked:
                    checked[getattr(cfg, name)] = cfg
            self.axes[name] = list(checked)
            self.samples += checked.values()

    def __len__(self) -> int:
        n = 1
        for vals in self.axes.values():
            n *= len(vals)
        return n

    def __iter__(self) -> Iterator[PlannedRun]:
        names = list(self.axes)
        kwargs = self.base["loss_kwargs"]      # each run gets its own copy
        seen: set[str] = set()
        for combo in itertools.product(*self.axes.values()):
            d = {**self.base, **dict(zip(names, combo)), "loss_kwargs": copy.deepcopy(kwargs) if kwargs else {}}
            key = run_key(d)
            if key not in seen:
                seen.add(key)
                yield PlannedRun(key, TrainConfig(**d))


def expand(grid: Grid) -> list[PlannedRun]:
    """All runs of ``grid`` (:class:`Expansion`), each built, checked and keyed once.

    Empty ``losses`` means every registered loss (``ngl.losses.list_losses``); an expression-file
    loss is pinned to its content (:func:`~ngl.runspec.pin_loss`), read once per spec. Every
    setting of ``grid.base`` must be a :class:`~ngl.runspec.TrainConfig` field (checked: one line
    naming it). Duplicate runs (same key) are dropped.

    >>> [r.config.loss for r in expand(Grid(losses=("ce", "expr:p*y"), seeds=(0,)))]
    ['ce', 'expr:p * y']
    """
    return list(Expansion(grid))


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


#: the run-key fields a report does not already split or average over: where two sets of runs
#: differ in one of these, their cells are different experiments
SETTING_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig)
                       if f.name not in IGNORED_IN_KEY
                       and f.name not in ("dataset", "label_noise", "train_fraction", "model", "loss", "seed"))
#: the TrainConfig fields of a run key, in field order
KEY_FIELDS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.name not in IGNORED_IN_KEY)


def _value_id(value: Any) -> tuple[str, Any]:
    """A hashable identity of a setting's value: ``1`` and ``1.0`` are one, ``True`` is not ``1``."""
    if isinstance(value, bool) or value is None:
        return "b", value
    if isinstance(value, (int, float)):
        return "n", value
    if isinstance(value, str):
        return "s", value
    return "j", json.dumps(canonical(value), sort_keys=True)


def grid_settings(configs: Iterable[Any]) -> dict[str, list[Any]]:
    """``{field: sorted distinct values}`` over run configs (mappings or TrainConfigs) for each field
    of a run key (:data:`KEY_FIELDS`; a field missing from a stored config counts as its default):
    the summary a store keeps of a grid and compares grids by.

    >>> s = grid_settings(r.config for r in expand(Grid(losses=("ce", "ngl"), seeds=(1, 0))))
    >>> s["loss"], s["seed"], s["epochs"]
    (['ce', 'ngl'], [0, 1], [20])
    """
    defaults = TrainConfig().to_dict()
    seen: dict[str, dict[tuple[str, Any], Any]] = {name: {} for name in KEY_FIELDS}
    for c in configs:
        d = c.to_dict() if isinstance(c, TrainConfig) else c
        for name in KEY_FIELDS:
            v = canonical(d.get(name, defaults[name]))
            seen[name].setdefault(_value_id(v), v)
    return {name: [vals[k] for k in sorted(vals, key=_order)] for name, vals in seen.items()}


def _order(value_id: tuple[str, Any]) -> tuple[str, Any]:
    kind, v = value_id                   # None < False < True; numbers; text
    return (kind, -1 if v is None else int(v)) if kind == "b" else (kind, v)
