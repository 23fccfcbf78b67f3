"""The evaluation protocol's grid: expand datasets x models x losses x seeds, run them through an
executor into a resumable SQLite store (``ngl bench``); :mod:`ngl.report` turns the store into the
paper's table."""
from .grid import (AXES, IGNORED_IN_KEY, PRESETS, Grid, dataset_label, expand, grid_shape, pin_config,
                   pin_grid, pin_loss, run_key)
from .runner import describe_run, resolve_config, run_grid, train_task
from .store import (FINISHED, SCHEMA_VERSION, STATUSES, ResultStore, StoreError, StoreLockedError,
                    StoreWriteError, open_readonly)

__all__ = ["Grid", "PRESETS", "IGNORED_IN_KEY", "expand", "run_key", "dataset_label", "ResultStore",
           "open_readonly", "STATUSES", "FINISHED", "run_grid", "train_task", "resolve_config",
           "describe_run", "AXES", "grid_shape", "pin_loss", "pin_config", "pin_grid", "SCHEMA_VERSION",
           "StoreError", "StoreLockedError", "StoreWriteError"]
