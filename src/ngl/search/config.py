"""``SearchConfig``: everything that determines a search. It holds its training tasks whole: the
fitness ``task`` and the validation's ``transfer`` task are :class:`~ngl.runspec.TrainConfig`
objects (their flags are generated from ``TrainConfig``, as ``ngl train``'s are), and where runs
execute is one :class:`~ngl.execution.Execution` (the flags ``ngl bench`` has too).

GP defaults follow EvoMAL (Raymond et al., TPAMI 2023; REFERENCE.md section 5): population 25,
50 generations, crossover 0.7, mutation 0.25, tournament 4, max height 10.

The default fitness task is chosen to *discriminate* (``benchmarks/search_quality.py``): digits
with 40% symmetric label noise on the training split, a clean validation split of 30% (431
images, so one image is 0.23 pp), an MLP trained 300 Adam steps, fitness = the final validation
accuracy (not the best epoch's, which is optimistic), averaged over 2 training seeds (a loss that
trains on one seed and collapses on another scores low).

>>> cfg = SearchConfig(population=8, generations=2)
>>> cfg.task.label_noise, cfg.task.val_fraction, cfg.transfer.model
(0.4, 0.3, 'cnn_small')
>>> SearchConfig(population=1)
Traceback (most recent call last):
...
ngl.errors.InputError: bad search config: population must be >= 2, got 1
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..config import from_mapping, opt
from ..errors import InputError, InputTypeError
from ..execution import Execution
from ..runspec import TrainConfig

__all__ = ["SearchConfig", "DEFAULT_TASK", "DEFAULT_TRANSFER", "TASK_SKIP", "TRANSFER_FIELDS",
           "TRANSFER_PREFIX", "flat_layer"]

_GP, _FIT, _SCREEN, _TUNE, _VAL = ("genetic programming (defaults after EvoMAL)", "fitness",
                                   "rejection screen", "constant tuning (CMA-ES)",
                                   "validation of the winners")

#: the default fitness task (the loss and seed of each run are the search's)
DEFAULT_TASK = TrainConfig(dataset="digits", model="mlp", label_noise=0.4, val_fraction=0.3, epochs=20,
                           max_steps=300, batch_size=64, lr=2e-3, threads=1, device="cpu")
#: the default transfer task of the validation: another noise level and another model
DEFAULT_TRANSFER = TrainConfig(dataset="digits", model="cnn_small", label_noise=0.2, epochs=12,
                               batch_size=64, lr=2e-3, threads=1, device="cpu")
#: TrainConfig fields that get no search flag: the search sets them per run (loss, seed) or takes
#: them from ``--threads`` (execution)
TASK_SKIP = ("loss", "loss_kwargs", "seed", "threads")
#: the transfer task's flags (``--transfer-<field>``)
TRANSFER_FIELDS = ("dataset", "model", "label_noise", "epochs", "max_steps", "batch_size", "lr",
                   "train_fraction", "val_fraction", "data_dir")
TRANSFER_PREFIX = "transfer_"


def _fitness_names() -> list[str]:
    from .fitness import FITNESS
    return FITNESS.names()


def _task(value: Any, what: str) -> TrainConfig:
    if isinstance(value, TrainConfig):
        return value
    if isinstance(value, Mapping):
        return TrainConfig.from_dict(value, what=f"search config {what}")
    raise InputTypeError(f"search config {what} must be a TrainConfig object, got {type(value).__name__}")


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
    fitness: str = opt("train", "train: a short harness run of --dataset/--model...; linear: softmax "
                                "regression on digits (seconds)", group=_FIT, choices=_fitness_names)
    task: TrainConfig = opt(help="the fitness task", factory=lambda: dataclasses.replace(DEFAULT_TASK), flag=False)
    train_seed: int = opt(0, "seed of the first fitness run (common to all candidates)", group=_FIT)
    fitness_seeds: int = opt(2, "training runs per candidate (seeds train_seed, train_seed+1, ...; "
                                "fitness = their mean): a loss that fails on one seed scores low",
                             group=_FIT)
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
    select_seeds: int = opt(5, "fresh seeds on which validation chooses among the top losses (0: the "
                               "search's best is taken as is)", group=_VAL)
    validate_seeds: int = opt(10, "other fresh seeds on which the chosen loss is reported against CE, "
                                  "NGL and SCE", group=_VAL)
    transfer: TrainConfig = opt(help="the validation's transfer task", factory=lambda: dataclasses.replace(DEFAULT_TRANSFER),
                                flag=False)
    execution: Execution = opt(help="where fitness and validation runs execute", factory=Execution,
                               flag=False)

    def __post_init__(self) -> None:
        self.const_range = tuple(float(v) for v in self.const_range)   # type: ignore[assignment]
        self.task = _task(self.task, "task").check()
        self.transfer = _task(self.transfer, "transfer").check()
        if isinstance(self.execution, Mapping):
            self.execution = from_mapping(Execution, self.execution, what="search config execution")
        if not isinstance(self.execution, Execution):
            raise InputTypeError(f"search config execution must be an Execution, got "
                                 f"{type(self.execution).__name__}")
        self.execution.check()
        self._check_primitives()
        for name, ok, want in self._checks():
            if not ok:
                value = getattr(self.task, name[5:]) if name.startswith("task.") else getattr(self, name)
                raise InputError(f"bad search config: {name} must be {want}, got {value!r}")

    def _check_primitives(self) -> None:
        from .. import expr as E

        for name in self.primitives or ():
            if name not in E.PRIMITIVES:
                import difflib
                close = difflib.get_close_matches(str(name), sorted(E.PRIMITIVES), n=1)
                raise InputError(f"bad search config: unknown primitive {name!r}"
                                 + (f" (did you mean {close[0]!r}?)" if close else "")
                                 + f"; expected names from {', '.join(sorted(E.PRIMITIVES))}")

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
                ("task.val_fraction", self.task.val_fraction > 0, "> 0 (the fitness is a validation "
                 "accuracy)"),
                ("task.max_steps", self.task.max_steps is not None or self.halving_rungs == 1,
                 "set when --halving-rungs > 1"),
                ("train_seed", self.train_seed >= 0, ">= 0"),
                ("fitness_seeds", self.fitness_seeds >= 1, ">= 1"),
                ("halving_rungs", self.halving_rungs >= 1, ">= 1"),
                ("halving_eta", self.halving_eta >= 2, ">= 2"),
                ("screen_steps", self.screen_steps >= 1, ">= 1"),
                ("tune_top", self.tune_top >= 0, ">= 0"),
                ("tune_evals", self.tune_evals >= 2, ">= 2"),
                ("validate_top", self.validate_top >= 0, ">= 0"),
                ("select_seeds", self.select_seeds >= 0, ">= 0"),
                ("validate_seeds", self.validate_seeds >= 2, ">= 2")]

    @property
    def fitness_seed_list(self) -> list[int]:
        """The seeds every candidate trains on (common random numbers)."""
        return [self.train_seed + i for i in range(self.fitness_seeds)]

    def fitness_task(self) -> TrainConfig:
        """The fitness task as it runs: the execution's threads."""
        return dataclasses.replace(self.task, threads=self.execution.threads, seed=self.train_seed)

    def transfer_task(self) -> TrainConfig:
        return dataclasses.replace(self.transfer, threads=self.execution.threads)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["const_range"] = list(self.const_range)
        d["task"], d["transfer"] = self.task.to_dict(), self.transfer.to_dict()
        d["execution"] = dataclasses.asdict(self.execution)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchConfig":
        """From a JSON object (file, checkpoint): unknown keys and wrong types are one-line errors."""
        return from_mapping(cls, d, what="search config")

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> "SearchConfig":
        """From flag names, as ``ngl search`` takes them: the search's own fields, the fitness
        task's fields (``max_steps``), the transfer task's with ``transfer_`` (``transfer_model``)
        and the execution's (``workers``); ``threads`` goes to the execution and both tasks.

        >>> SearchConfig.from_flat({"population": 6, "max_steps": 20, "transfer_epochs": 3}).task.max_steps
        20
        """
        own = {f.name for f in dataclasses.fields(cls)} - {"task", "transfer", "execution"}
        task_names = {f.name for f in dataclasses.fields(TrainConfig)} - set(TASK_SKIP)
        exe_names = {f.name for f in dataclasses.fields(Execution)}
        parts: dict[str, dict[str, Any]] = {"own": {}, "task": {}, "transfer": {}, "execution": {}}
        for key, value in flat.items():
            sub = key[len(TRANSFER_PREFIX):] if key.startswith(TRANSFER_PREFIX) else None
            where = ("own" if key in own else "task" if key in task_names else "execution" if key in exe_names
                     else "transfer" if sub in TRANSFER_FIELDS else None)
            if where is None:
                import difflib
                names = sorted(own | task_names | exe_names | {TRANSFER_PREFIX + k for k in TRANSFER_FIELDS})
                close = difflib.get_close_matches(str(key), names, n=1)
                raise InputError(f"unknown search setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            parts[where][sub if where == "transfer" else key] = value
        threads = parts["execution"].get("threads", 1)
        return cls.from_dict({**parts["own"], "execution": parts["execution"],
                              "task": {**DEFAULT_TASK.to_dict(), **parts["task"], "threads": threads},
                              "transfer": {**DEFAULT_TRANSFER.to_dict(), **parts["transfer"], "threads": threads}})


def flat_layer(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A search config file (nested, as ``config.json`` saves it, or flat flag names) as parser
    defaults: ``task.X`` -> ``X``, ``transfer.X`` -> ``transfer_X``, ``execution.X`` -> ``X``.

    >>> flat_layer({"population": 10, "task": {"label_noise": 0.2}, "transfer": {"model": "mlp"}})
    {'population': 10, 'label_noise': 0.2, 'transfer_model': 'mlp'}
    """
    out: dict[str, Any] = {}
    for key, value in doc.items():
        if key in ("task", "execution") and isinstance(value, Mapping):
            out.update({k: v for k, v in value.items() if key != "task" or k not in TASK_SKIP})
        elif key == "transfer" and isinstance(value, Mapping):
            out.update({TRANSFER_PREFIX + k: v for k, v in value.items() if k in TRANSFER_FIELDS})
        else:
            out[key] = value
    return out
