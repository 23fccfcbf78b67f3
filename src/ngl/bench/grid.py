"""The benchmark grid: datasets (with label-noise / train-fraction variants) x models x losses x
seeds, expanded into resolved training configs, each with a stable key that makes resume exact."""
from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, field
from typing import Any

from ..config import opt
from ..errors import InputError

__all__ = ["Grid", "PRESETS", "expand", "run_key", "dataset_label", "IGNORED_IN_KEY", "pin_loss",
           "pin_config", "AXES", "grid_shape", "pin_grid"]

#: the grid's axes in expansion order, as ``ngl bench`` prints its shape
AXES = ("datasets", "variants", "models", "losses", "seeds")

#: config fields that do not change a run's result (where or how fast it runs): not part of its key.
IGNORED_IN_KEY = frozenset({"device", "threads", "data_dir"})


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


def _canonical(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)                     # 1.0 and 1 are the same setting
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return value


def _is_expression_file(spec: str) -> bool:
    if spec.endswith(".json"):
        return True
    if not os.path.isfile(spec):
        return False
    from ..losses import list_losses          # a registered name wins over a file of that name
    return spec not in list_losses()


def pin_loss(spec: Any) -> tuple[Any, str | None]:
    """An expression loss as its content: ``(spec, source)``.

    A ``*.json`` expression file becomes ``"expr:<canonical infix>"`` of the tree it holds now, and
    ``source`` is its path; an ``expr:`` spec is brought to the same canonical infix (source
    ``None``); anything else (a registered name) is returned unchanged. A run's key, its stored row
    and what it trains are then the file's content, so editing the file makes new runs instead of
    reusing the old rows.

    >>> pin_loss("expr:y*(p - 1)")
    ('expr:y * (p - 1)', None)
    >>> pin_loss("ngl")
    ('ngl', None)
    """
    if not isinstance(spec, str):
        return spec, None
    is_expr = spec.startswith("expr:")
    if not is_expr and not _is_expression_file(spec):
        return spec, None
    from .. import expr as E

    try:
        tree = E.parse(spec[5:]) if is_expr else E.load(spec)
    except (OSError, ValueError) as exc:      # ExprError is a ValueError; a missing file an OSError
        raise InputError(f"loss {spec!r}: {' '.join(str(exc).split())}") from None
    return "expr:" + E.to_infix(tree), (None if is_expr else str(spec))


def pin_config(config: dict[str, Any]) -> dict[str, Any]:
    """``config`` with its loss pinned to its content (:func:`pin_loss`); a new dict if changed."""
    spec, _ = pin_loss(config.get("loss"))
    return config if spec == config.get("loss") else {**config, "loss": spec}


def run_key(config: dict[str, Any]) -> str:
    """A stable 16-hex-digit key of a resolved config: SHA-256 of its canonical JSON, leaving out
    :data:`IGNORED_IN_KEY`. Equal configs give equal keys across processes and sessions. An
    expression-file loss counts by its content (:func:`pin_loss`), not by its path."""
    kept = {k: v for k, v in pin_config(config).items() if k not in IGNORED_IN_KEY}
    text = json.dumps(_canonical(kept), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dataset_label(config: dict[str, Any]) -> str:
    """The report column of a run: ``digits``, ``digits+noise20``, ``digits+frac50``."""
    label = str(config.get("dataset", "?"))
    noise = float(config.get("label_noise") or 0.0)
    frac = float(config.get("train_fraction", 1.0) or 1.0)
    if noise:
        label += f"+noise{round(noise * 100):d}"
    if frac < 1.0:
        label += f"+frac{round(frac * 100):d}"
    return label


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
    for noise in grid.label_noise:
        if not 0.0 <= noise < 1.0:
            raise InputError(f"label noise must be in [0, 1), got {noise}")
    for frac in grid.train_fraction:
        if not 0.0 < frac <= 1.0:
            raise InputError(f"train fraction must be in (0, 1], got {frac}")


def grid_shape(grid: Grid) -> dict[str, int]:
    """Values per axis (:data:`AXES`; ``variants`` = label-noise x train-fraction values).

    >>> grid_shape(Grid(datasets=("digits",), losses=("ce", "ngl"), seeds=(0, 1)))
    {'datasets': 1, 'variants': 1, 'models': 1, 'losses': 2, 'seeds': 2}
    """
    return {"datasets": len(grid.datasets),
            "variants": len(grid.label_noise) * len(grid.train_fraction),
            "models": len(grid.models), "losses": len(_losses(grid)), "seeds": len(grid.seeds)}


def expand(grid: Grid, *, resolve: Any = None) -> list[dict[str, Any]]:
    """All runs of ``grid`` as config dicts, in a fixed order (dataset variant, model, loss, seed).

    Args:
        grid: the grid; empty ``losses`` means every registered loss (``ngl.losses.list_losses``).
            An expression-file loss is pinned to its content (:func:`pin_loss`).
        resolve: optional ``dict -> dict`` that fills defaults (``TrainConfig.from_dict(d).to_dict()``),
            so keys depend on the resolved config, not on how it was spelled.
    Returns:
        One dict per run; duplicates (same key) are dropped.
    """
    losses = _losses(grid)
    _check_axes(grid, losses)
    pinned = tuple(pin_loss(spec)[0] for spec in losses)
    configs, seen = [], set()
    for ds, noise, frac, model, loss, seed in itertools.product(
            grid.datasets, grid.label_noise, grid.train_fraction, grid.models, pinned, grid.seeds):
        cfg = {**grid.base, "dataset": ds, "model": model, "loss": loss, "seed": int(seed),
               "label_noise": float(noise), "train_fraction": float(frac)}
        if resolve is not None:
            cfg = resolve(cfg)
        key = run_key(cfg)
        if key not in seen:
            seen.add(key)
            configs.append(cfg)
    return configs


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
