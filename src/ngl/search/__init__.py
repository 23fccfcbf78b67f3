"""GP search for loss functions (``ngl search``): DEAP tree GP over :mod:`ngl.expr`, a rejection
screen and a canonical-form cache before any training, parallel fitness, JSON checkpoints.

>>> from ngl.search import SearchConfig, run_search
>>> result = run_search(SearchConfig(population=10, generations=5, fitness="linear"), "runs/search")
>>> result.hall_of_fame[0]["infix"]
"""
from .engine import CHECKPOINT, SearchConfig, SearchResult, load_checkpoint, run_search
from .fitness import FITNESS_FUNCTIONS, evaluate_candidates, linear_fitness, train_fitness
from .gp import WORST_FITNESS, Individual, from_expr, is_valid, make_pset, make_toolbox, to_expr
from .screen import ScreenResult, screen

__all__ = ["SearchConfig", "SearchResult", "run_search", "load_checkpoint", "CHECKPOINT",
           "FITNESS_FUNCTIONS", "evaluate_candidates", "linear_fitness", "train_fitness",
           "WORST_FITNESS", "Individual", "from_expr", "to_expr", "is_valid", "make_pset",
           "make_toolbox", "ScreenResult", "screen"]
