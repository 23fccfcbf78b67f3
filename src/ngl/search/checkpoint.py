"""The search checkpoint: one JSON file, written atomically after every generation, versioned, and
checked field by field against its config before a resume trusts it (optuna's storages do the
same with ``SCHEMA_VERSION``).

>>> check_version({"format": FORMAT, "version": 1}, "ckpt.json")
Traceback (most recent call last):
...
ngl.errors.InputError: ckpt.json: search checkpoint format version 1; this ngl reads version 3 (start over with --overwrite)
"""
from __future__ import annotations

import math
import os
import random
from pathlib import Path
from typing import Any

from .. import expr as E
from ..errors import InputError, MissingFileError
from ..fileio import read_json_object, write_json_atomic
from .config import SearchConfig

__all__ = ["CHECKPOINT", "FORMAT", "VERSION", "load_checkpoint", "save_checkpoint", "check_version",
           "check_state", "rng_state", "set_rng_state"]

CHECKPOINT = "checkpoint.json"
FORMAT = "ngl.search.checkpoint"
#: 1: trees as nested lists, no format tag or candidate status; 2: infix, status, tuning, unique;
#: 3: the config holds its tasks and execution as objects; fitness is a paired gain over CE raced
#: on common seeds (the race's state is saved).
VERSION = 3
_STATUSES = ("ok", "rejected", "failed", "seed")


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch RNG states as JSON-safe lists."""
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state().tolist()}


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def save_checkpoint(path: Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tagged with format and version) atomically."""
    return write_json_atomic(path, {"format": FORMAT, "version": VERSION, **state}, indent=None)


def check_version(state: dict[str, Any], where: str | os.PathLike[str]) -> None:
    """One line naming both versions when the checkpoint is not this ngl's format."""
    version = state.get("version")
    if state.get("format", FORMAT if version == 1 else None) != FORMAT:
        raise InputError(f"{where}: not an ngl search checkpoint (no format {FORMAT!r})")
    if version != VERSION:
        raise InputError(f"{where}: search checkpoint format version {version}; this ngl reads "
                         f"version {VERSION} (start over with --overwrite)")


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a search checkpoint and check its version and every field (see :func:`check_state`)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"no search checkpoint at {path}; run without --resume first")
    state = read_json_object(path, what="search checkpoint")
    check_version(state, path)
    check_state(state, path)
    return state


def _fail(where: Any, what: str) -> None:
    raise InputError(f"{where}: bad search checkpoint: {what}")


def _fitness_ok(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value) and -1.0 <= value <= 1.0


def _check_records(where: Any, name: str, records: Any, *, size: int | None, at_most: int | None,
                   keys: tuple[str, ...]) -> None:
    if not isinstance(records, list):
        _fail(where, f"{name} must be a list")
    if size is not None and len(records) != size:
        _fail(where, f"{name} has {len(records)} entries, the config says {size}")
    if at_most is not None and len(records) > at_most:
        _fail(where, f"{name} has {len(records)} entries, the config allows {at_most}")
    for i, rec in enumerate(records):
        if not isinstance(rec, dict) or any(k not in rec for k in keys):
            _fail(where, f"{name}[{i}] must be an object with {', '.join(keys)}")
        if not _fitness_ok(rec["fitness"]):
            _fail(where, f"{name}[{i}].fitness must be a paired gain over CE in [-1, 1], got {rec['fitness']!r}")
        if "status" in rec and rec["status"] not in _STATUSES:
            _fail(where, f"{name}[{i}].status must be one of {_STATUSES}, got {rec['status']!r}")
        if not isinstance(rec["infix"], str):
            _fail(where, f"{name}[{i}].infix must be a string")


def check_state(state: dict[str, Any], where: Any = "checkpoint") -> SearchConfig:
    """Check every field against the saved config and its range; returns the saved config."""
    if not isinstance(state.get("config"), dict):
        _fail(where, "no config object")
    try:
        cfg = SearchConfig.from_dict(state["config"])
    except (InputError, TypeError, ValueError) as exc:
        _fail(where, f"config: {exc}")
    gen = state.get("generation")
    if not isinstance(gen, int) or isinstance(gen, bool) or not 0 <= gen <= cfg.generations:
        _fail(where, f"generation must be an integer in [0, {cfg.generations}], got {gen!r}")
    _check_records(where, "population", state.get("population"), size=cfg.population, at_most=None,
                   keys=("infix", "fitness", "status"))
    _check_records(where, "hall_of_fame", state.get("hall_of_fame"), size=None,
                   at_most=cfg.hall_of_fame, keys=("infix", "fitness", "fingerprint"))
    cache = state.get("cache")
    if not isinstance(cache, dict):
        _fail(where, "cache must be an object")
    _check_records(where, "cache", list(cache.values()), size=None, at_most=None,
                   keys=("infix", "fitness", "status"))
    from .racing import check_race

    check_race(state.get("race"), f"{where}: race")
    logbook = state.get("logbook")
    if not isinstance(logbook, list) or len(logbook) != gen + 1:
        _fail(where, f"logbook must hold {gen + 1} generation rows")
    elapsed = state.get("elapsed")
    if not isinstance(elapsed, (int, float)) or not math.isfinite(elapsed) or elapsed < 0:
        _fail(where, f"elapsed must be seconds >= 0, got {elapsed!r}")
    rng = state.get("rng")
    if not isinstance(rng, dict) or set(rng) != {"python", "numpy", "torch"}:
        _fail(where, "rng must hold the python, numpy and torch states")
    for i, rec in enumerate(state["population"]):
        try:
            E.parse(rec["infix"])
        except ValueError as exc:
            _fail(where, f"population[{i}].infix: {exc}")
    return cfg
