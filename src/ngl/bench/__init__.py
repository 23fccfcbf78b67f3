"""The evaluation protocol's grid: expand datasets x models x losses x seeds into keyed run specs,
run them through an executor into a resumable SQLite store (``ngl bench``); :mod:`ngl.report`
turns the store into the paper's table. A run's identity (:func:`~ngl.runspec.run_key`, the
pinned loss) is the run spec's, re-exported here."""
from ..runspec import IGNORED_IN_KEY, dataset_label, pin_config, pin_loss, run_key
from .grid import (AXES, PRESETS, Expansion, Grid, PlannedRun, expand, grid_settings, grid_shape, pin_grid,
                   plan)
from .runner import describe_run, run_grid, train_task
from .store import (FINISHED, SCHEMA_VERSION, STATUSES, ResultStore, StoreError, StoreLockedError,
                    StoreWriteError, open_readonly)

__all__ = ["Grid", "PRESETS", "PlannedRun", "Expansion", "expand", "plan", "grid_settings", "run_key",
           "IGNORED_IN_KEY", "dataset_label", "ResultStore", "open_readonly", "STATUSES", "FINISHED",
           "run_grid", "train_task", "describe_run", "AXES", "grid_shape", "pin_loss", "pin_config",
           "pin_grid", "SCHEMA_VERSION", "StoreError", "StoreLockedError", "StoreWriteError"]
