"""Which runs a report shows: one grid of the store (the last one a bench ran, by default), or all
of them; and the line that says what else the store holds.

A store is shared by every bench given the same ``--out``, so it may hold grids of other settings
(``--epochs 1`` beside ``--epochs 3``). A report never averages those together: it shows one grid's
runs by run key, and where the runs it shows differ in a setting (``--grid all``, or a store from
before grids were recorded) the cells of each setting are separate columns (``digits [epochs 1]``).
"""
from __future__ import annotations

import json
from typing import Any

from ..bench.grid import KEY_FIELDS, SETTING_FIELDS, grid_settings
from ..errors import InputError
from ..runspec import TrainConfig, canonical

__all__ = ["GRID_CHOICES", "parse_grid", "select_runs", "split_by_settings", "differences", "notice"]

#: what ``--grid`` takes besides a grid id
GRID_CHOICES = ("last", "all")
#: how an axis field is named when grids are compared ("seeds 0,1")
_AXIS_NAMES = {"dataset": "datasets", "model": "models", "loss": "losses", "seed": "seeds"}


def parse_grid(choice: str | int | None) -> str | int:
    """``"last"`` (also ``None``), ``"all"`` or a grid id (an int >= 1), else one line."""
    if choice is None:
        return "last"
    if isinstance(choice, int) and not isinstance(choice, bool) and choice >= 1:
        return choice
    text = str(choice).strip().lower()
    if text in GRID_CHOICES:
        return text
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise InputError(f"--grid must be a grid id (1, 2, ...), 'last' or 'all', got {choice!r}")


def _show(value: Any) -> str:
    value = canonical(value)
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _values(values: list[Any]) -> str:
    shown = [_show(v) for v in values]
    if len(shown) > 4:
        return ",".join(shown[:3]) + f",... ({len(shown)} values)"
    return ",".join(shown) or "none"


def differences(settings: dict[str, list[Any]], reference: dict[str, list[Any]]) -> str:
    """The settings in which a grid differs from ``reference``, as its values: ``"epochs 1"``,
    ``"seeds 0,1,2; lr 0.01"``; ``"same settings"`` if none.

    >>> differences({"epochs": [1], "seed": [0, 1]}, {"epochs": [3], "seed": [0, 1]})
    'epochs 1'
    """
    parts = [f"{_AXIS_NAMES.get(name, name)} {_values(settings.get(name, []))}" for name in KEY_FIELDS
             if json.dumps(settings.get(name, [])) != json.dumps(reference.get(name, []))]
    return "; ".join(parts) or "same settings"


def split_by_settings(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """``rows`` with each run's report column (``dataset``) tagged by the settings that differ
    among them (:data:`~ngl.bench.grid.SETTING_FIELDS`: epochs, lr, ...; seeds and models are
    averaged over, losses are rows), and those settings' names. Runs of one grid share them all,
    and come back unchanged."""
    settings = grid_settings(r["config"] for r in rows)
    split = [name for name in SETTING_FIELDS if len(settings[name]) > 1]
    if not split:
        return rows, []
    defaults = TrainConfig().to_dict()

    def tag(config: Any) -> str:
        config = config if isinstance(config, dict) else {}
        return ", ".join(f"{name} {_show(config.get(name, defaults[name]))}" for name in split)
    return [{**r, "dataset": f"{r['dataset']} [{tag(r['config'])}]".replace("|", "/")}
            for r in rows], split


def select_runs(store: Any, grid: str | int | None = "last") -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The rows a report of ``store`` shows and what it says about them.

    ``grid``: ``"last"`` (the grid a bench ran last; every run if the store records no grid),
    ``"all"``, or a grid id. Returns ``(rows, selection)``: the rows, their columns split by
    differing settings (:func:`split_by_settings`), and ``{"grid": id or "all", "runs",
    "grids": [ids], "split_by", "others": [{"id", "runs", "differs"}], "outside": {"runs",
    "differs"} or None}`` (``others``/``outside``: the grids and the runs in no grid that the
    report leaves out).

    Raises:
        InputError: the store holds no runs, or no grid of that id.
    """
    choice = parse_grid(grid)
    rows = store.rows()
    if not rows:
        raise InputError(f"no runs in {store.path} yet (run 'ngl bench --out {store.path.parent}' first)")
    grids = store.grids()
    selection: dict[str, Any] = {"grid": "all", "grids": [g["id"] for g in grids], "others": [],
                                 "outside": None}
    if choice == "all" or (choice == "last" and not grids):
        shown = rows
        in_grids = store.grid_keys(None)
        n_outside = sum(r["key"] not in in_grids for r in rows) if grids else 0
        selection["outside"] = {"runs": n_outside, "differs": None} if n_outside else None
    else:
        shown = _one_grid(store, rows, grids, choice, selection)
    shown, selection["split_by"] = split_by_settings(shown)
    selection["runs"] = len(shown)
    return shown, selection


def _one_grid(store: Any, rows: list[dict[str, Any]], grids: list[dict[str, Any]], choice: str | int,
              selection: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows of one grid; ``selection`` gets its id, the other grids and the runs in none."""
    if not grids:
        raise InputError(f"{store.path} records no grids (it was written before ngl recorded them); "
                         f"report every run with --grid all, or leave --grid out")
    by_id = {g["id"]: g for g in grids}
    gid = grids[-1]["id"] if choice == "last" else choice
    if gid not in by_id:
        raise InputError(f"{store.path} has no grid {gid}; it holds grid(s) "
                         f"{', '.join(str(i) for i in sorted(by_id))} (or give --grid all)")
    keys, reference = store.grid_keys(gid), by_id[gid]["settings"]
    selection.update(grid=gid, ran_at=by_id[gid]["ran_at"])
    selection["others"] = [{"id": g["id"], "runs": g["runs"],
                            "differs": differences(g["settings"], reference)}
                           for g in reversed(grids) if g["id"] != gid]
    in_grids = store.grid_keys(None)
    outside = [r for r in rows if r["key"] not in in_grids]
    if outside:
        selection["outside"] = {"runs": len(outside), "differs": differences(
            grid_settings(r["config"] for r in outside), reference)}
    return [r for r in rows if r["key"] in keys]


def notice(selection: dict[str, Any], folder: Any) -> str | None:
    """One line naming what the store holds beside the grid shown (None if nothing):
    ``also in this store: grid 1 (4 runs; epochs 1); ...``."""
    if selection["grid"] == "all":
        return None
    parts = [f"grid {o['id']} ({o['runs']} runs; {o['differs']})" for o in selection["others"][:5]]
    if len(selection["others"]) > 5:
        parts.append(f"{len(selection['others']) - 5} more grid(s)")
    if selection["outside"]:
        out = selection["outside"]
        parts.append(f"{out['runs']} run(s) in no recorded grid ({out['differs']})")
    if not parts:
        return None
    return (f"this report shows grid {selection['grid']} only; also in this store: {', '.join(parts)}. "
            f"'ngl report {folder} --grid ID' reports one, '--grid all' every run, a column per setting")
