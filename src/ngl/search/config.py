"""``SearchConfig``: everything that determines a search, one field per ``ngl search`` flag.

GP defaults follow EvoMAL (Raymond et al., TPAMI 2023; REFERENCE.md section 5): population 25,
50 generations, crossover 0.7, mutation 0.25, tournament 4, max height 10.

The default fitness task is chosen to *discriminate* (``benchmarks/search_quality.py``): digits
with 40% symmetric label noise on the training split, a clean validation split of 30% (431
images, so one image is 0.23 pp), an MLP trained 300 Adam steps, fitness = the final validation
accuracy (not the best epoch's, which is optimistic), averaged over 2 training seeds (a loss that
trains on one seed and collapses on another scores low). Noisy labels leave room above CE:
robust losses (SCE, MAE-like) score several points higher, so the search has something to find.

>>> cfg = SearchConfig(population=8, generations=2)
>>> cfg.fitness_settings()["label_noise"], cfg.fitness_settings()["val_fraction"]
(0.4, 0.3)
>>> SearchConfig(population=1)
Traceback (most recent call last):
...
ngl.errors.InputError: bad search config: population must be >= 2, got 1
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from ..config import from_mapping, opt
from ..errors import InputError

__all__ = ["SearchConfig"]

_GP, _FIT, _SCREEN, _TUNE, _VAL, _EXEC = ("genetic programming (defaults after EvoMAL)", "fitness",
                                          "rejection screen", "constant tuning (CMA-ES)",
                                          "validation of the winners", "execution")


def _fitness_names() -> list[str]:
    from .fitness import FITNESS
    return FITNESS.names()


def _executor_names() -> list[str]:
    from ..executors import EXECUTORS
    return ["auto", *EXECUTORS]


@dataclass
class SearchConfig:
    """Everything that determines a search (saved as ``config.json`` and in the checkpoint)."""

    population: int = opt(25, "individuals per generation", group=_GP)
    generations: int = opt(50, "generations after the initial one", group=_GP)
    tournament_size: int = opt(4, "tournament selection size", group=_GP)
    crossover: float = opt(0.7, "crossover probability", group=_GP)
    mutation: float = opt(0.25, "mutation probability", group=_GP)
    max_height: int = opt(10, "maximum tree height (DEAP: a leaf is 0)", group=_GP)
    init_max_height: int = opt(4, "maximum height of initial trees", group=_GP)
    init_tries: int = opt(20, "draws per initial tree until one passes the screen (1: no screening)",
                          group=_GP)
    revary_tries: int = opt(10, "an offspring already in the population is varied again up to this "
                                "many times (0: duplicates allowed)", group=_GP)
    elites: int = opt(1, "best individuals copied unchanged", group=_GP)
    hall_of_fame: int = opt(10, "distinct best losses kept", group=_GP)
    const_range: tuple[float, float] = opt((-3.0, 3.0), "range of random constants", group=_GP,
                                           metavar="LOW,HIGH")
    primitives: list[str] | None = opt(None, "comma-separated subset of operators (default: all)",
                                       group=_GP)
    seed_losses: list[str] = opt(help="registry losses in the initial population, e.g. ce,ngl",
                                 factory=list, group=_GP)
    seed: int = opt(0, "random seed of the search", group=_GP)
    fitness: str = opt("train", "train: short harness run; linear: softmax regression on digits",
                       group=_FIT, choices=_fitness_names)
    dataset: str = opt("digits", "harness dataset (ngl.data.list_datasets())", group=_FIT)
    model: str = opt("mlp", "harness model (ngl.models.list_models())", group=_FIT)
    label_noise: float = opt(0.4, "fraction of training labels flipped (validation stays clean)",
                             group=_FIT)
    val_fraction: float = opt(0.3, "validation hold-out of the training split", group=_FIT)
    data_dir: str | None = opt(None, "folder with the dataset files (harness default if unset)",
                               group=_FIT)
    max_steps: int = opt(300, "optimizer steps per fitness run", group=_FIT)
    batch_size: int = opt(64, "batch size of fitness runs", group=_FIT)
    lr: float | None = opt(2e-3, "learning rate (None: the fitness function's default)", group=_FIT)
    train_fraction: float = opt(1.0, "fraction of training data", group=_FIT)
    train_seed: int = opt(0, "seed of each fitness run (common to all candidates)", group=_FIT)
    fitness_seeds: int = opt(2, "training runs per candidate (seeds train_seed, train_seed+1, ...; "
                                "fitness = their mean): a loss that fails on one seed scores low",
                             group=_FIT)
    device: str = opt("cpu", "auto | cpu | cuda", group=_FIT)
    threads: int | None = opt(1, "torch threads per fitness run", group=_FIT)
    halving_rungs: int = opt(1, "successive halving: >1 trains all new candidates briefly, the "
                                "best 1/eta longer", group=_FIT)
    halving_eta: int = opt(3, "successive-halving factor", group=_FIT)
    screen_steps: int = opt(200, "Adam steps over free logits", group=_SCREEN)
    screen_min_gain: float = opt(0.2, "required rise of the mean true-class probability",
                                 group=_SCREEN)
    tune_top: int = opt(3, "best distinct structures whose constants CMA-ES tunes (0: none)",
                        group=_TUNE)
    tune_evals: int = opt(24, "fitness evaluations per tuned structure", group=_TUNE)
    validate_top: int = opt(3, "hall-of-fame losses retrained on fresh seeds at the end (0: none)",
                            group=_VAL)
    validate_seeds: int = opt(5, "fresh seeds per validation cell", group=_VAL)
    transfer_model: str = opt("cnn_small", "model of the transfer task", group=_VAL)
    transfer_label_noise: float = opt(0.2, "label noise of the transfer task (same dataset)",
                                      group=_VAL)
    transfer_epochs: int = opt(12, "epochs of the transfer task (12: ngl bench's default grid)",
                               group=_VAL)
    executor: str = opt("auto", "where fitness runs go (auto: process if --workers > 1, else "
                                "inline; inline ignores --timeout)", group=_EXEC,
                        choices=_executor_names)
    workers: int = opt(1, "parallel fitness runs", group=_EXEC)
    timeout: float | None = opt(None, "seconds per fitness run (then worst fitness)", group=_EXEC)
    ray_address: str | None = opt(None, "Ray cluster address (default: RAY_ADDRESS or local)",
                                  group=_EXEC)

    def __post_init__(self) -> None:
        self.const_range = tuple(float(v) for v in self.const_range)   # type: ignore[assignment]
        for name, ok, want in self._checks():
            if not ok:
                raise InputError(f"bad search config: {name} must be {want}, "
                                 f"got {getattr(self, name)!r}")

    def _checks(self) -> list[tuple[str, bool, str]]:
        lo, hi = self.const_range if len(self.const_range) == 2 else (1.0, 0.0)
        return [("population", self.population >= 2, ">= 2"),
                ("generations", self.generations >= 0, ">= 0"),
                ("tournament_size", 1 <= self.tournament_size <= self.population, "in [1, population]"),
                ("crossover", 0.0 <= self.crossover <= 1.0, "in [0, 1]"),
                ("mutation", 0.0 <= self.mutation <= 1.0, "in [0, 1]"),
                ("max_height", 2 <= self.max_height <= 40, "in [2, 40]"),
                ("init_max_height", 1 <= self.init_max_height <= self.max_height, "in [1, max_height]"),
                ("elites", 0 <= self.elites < self.population, "in [0, population)"),
                ("init_tries", self.init_tries >= 1, ">= 1"),
                ("revary_tries", self.revary_tries >= 0, ">= 0"),
                ("hall_of_fame", self.hall_of_fame >= 1, ">= 1"),
                ("const_range", lo < hi, "(low, high) with low < high"),
                ("fitness", self.fitness in _fitness_names() or self.fitness == "custom",
                 f"one of {_fitness_names()}"),
                ("label_noise", 0.0 <= self.label_noise < 1.0, "in [0, 1)"),
                ("val_fraction", 0.0 < self.val_fraction < 1.0, "in (0, 1)"),
                ("max_steps", self.max_steps >= 1, ">= 1"),
                ("fitness_seeds", self.fitness_seeds >= 1, ">= 1"),
                ("lr", self.lr is None or self.lr > 0, "> 0"),
                ("halving_rungs", self.halving_rungs >= 1, ">= 1"),
                ("halving_eta", self.halving_eta >= 2, ">= 2"),
                ("screen_steps", self.screen_steps >= 1, ">= 1"),
                ("tune_top", self.tune_top >= 0, ">= 0"),
                ("tune_evals", self.tune_evals >= 2, ">= 2"),
                ("validate_top", self.validate_top >= 0, ">= 0"),
                ("validate_seeds", self.validate_seeds >= 2, ">= 2"),
                ("transfer_label_noise", 0.0 <= self.transfer_label_noise < 1.0, "in [0, 1)"),
                ("transfer_epochs", self.transfer_epochs >= 1, ">= 1"),
                ("workers", self.workers >= 1, ">= 1"),
                ("threads", self.threads is None or self.threads >= 1, ">= 1 or None"),
                ("timeout", self.timeout is None or self.timeout > 0, "> 0 or None")]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["const_range"] = list(self.const_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        """From a JSON object (file, checkpoint): unknown keys and wrong types are one-line errors."""
        return from_mapping(cls, d, what="search config")

    def fitness_settings(self) -> dict[str, Any]:
        """The settings handed to the fitness function."""
        extra: dict[str, Any] = {"lr": self.lr} if self.lr is not None else {}
        if self.fitness_seeds > 1:
            extra["seeds"] = [self.train_seed + i for i in range(self.fitness_seeds)]
        if self.fitness == "linear":
            return {"max_steps": self.max_steps, "seed": self.train_seed, **extra}
        return {"dataset": self.dataset, "model": self.model, "max_steps": self.max_steps,
                "epochs": 10_000, "batch_size": self.batch_size, "seed": self.train_seed,
                "label_noise": self.label_noise, "val_fraction": self.val_fraction,
                "train_fraction": self.train_fraction, "device": self.device,
                "threads": self.threads, "data_dir": self.data_dir, **extra}
