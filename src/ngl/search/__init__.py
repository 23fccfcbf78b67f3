"""GP search for loss functions (``ngl search``): DEAP tree GP over :mod:`ngl.expr`, a rejection
screen and a canonical-form cache before any training, a population kept diverse, parallel
fitness, JSON checkpoints, CMA-ES tuning of the winners' constants, and validation of the winners
on fresh seeds and a transfer task (:mod:`ngl.search.validate`).

>>> import tempfile
>>> from ngl.search import SearchConfig, run_search
>>> cfg = SearchConfig(population=6, generations=1, fitness="linear", max_steps=20, tune_top=0)
>>> result = run_search(cfg, tempfile.mkdtemp(), progress=False, log=None)
>>> result.finished, 0.0 < result.hall_of_fame[0]["fitness"] <= 1.0
(True, True)
"""
from .checkpoint import CHECKPOINT, load_checkpoint
from .config import SearchConfig
from .engine import SearchResult, revary_duplicates, run_search, unique_fraction
from .evaluate import Status, evaluate_candidates
from .fitness import FITNESS, linear_fitness, train_fitness
from .gp import WORST_FITNESS, Individual, from_expr, is_valid, make_pset, make_toolbox, to_expr
from .screen import ScreenResult, screen

__all__ = ["SearchConfig", "SearchResult", "run_search", "load_checkpoint", "CHECKPOINT",
           "FITNESS", "Status", "evaluate_candidates", "linear_fitness", "train_fitness",
           "unique_fraction", "revary_duplicates",
           "WORST_FITNESS", "Individual", "from_expr", "to_expr", "is_valid", "make_pset",
           "make_toolbox", "ScreenResult", "screen"]
