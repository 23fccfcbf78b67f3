"""GP search for loss functions (``ngl search``): DEAP tree GP over :mod:`ngl.expr`, a rejection
screen and a canonical-form cache before any training, a population kept diverse, parallel
fitness, JSON checkpoints, CMA-ES tuning of the winners' constants, and validation of the winners
on fresh seeds and a transfer task (:mod:`ngl.search.validate`).

>>> import tempfile
>>> from ngl.search import SearchConfig, run_search
>>> cfg = SearchConfig.from_flat({"population": 6, "generations": 1, "fitness": "linear",
...                               "max_steps": 20, "tune_top": 0})
>>> result = run_search(cfg, tempfile.mkdtemp(), progress=False, log=None)
>>> result.finished, -1.0 <= result.hall_of_fame[0]["fitness"] <= 1.0
(True, True)
"""
from importlib import import_module
from typing import Any

#: public name -> submodule; imported on first use, so ``ngl.search.config`` (the CLI's flags)
#: loads without DEAP, the ``search`` extra.
_EXPORTS = {
    "SearchConfig": "config", "SearchResult": "engine", "run_search": "engine",
    "unique_fraction": "engine", "tie_fraction": "engine", "revary_duplicates": "engine", "load_checkpoint": "checkpoint",
    "CHECKPOINT": "checkpoint", "FITNESS": "fitness", "linear_fitness": "fitness",
    "train_fitness": "fitness", "Status": "gp", "evaluate_population": "scoring",
    "WORST_FITNESS": "gp", "Individual": "gp", "from_expr": "gp", "to_expr": "gp",
    "is_valid": "gp", "make_pset": "gp", "make_toolbox": "gp", "ScreenResult": "rejection",
    "screen": "rejection", "validate_search": "validate", "tune_constants": "tune",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ngl.search' has no attribute {name!r}")
    return getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
