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
>>> cfg.task.label_noise, cfg.task.val_fraction, cfg.task2.dataset, cfg.transfer.dataset
(0.4, 0.3, 'digits28', 'shapes28')
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

__all__ = ["SearchConfig", "DEFAULT_TASK", "DEFAULT_TASK2", "DEFAULT_TRANSFER", "TASK_SKIP",
           "SUBTASK_FIELDS", "SUBTASKS", "flat_layer"]

_GP, _FIT, _SCREEN, _TUNE, _VAL = ("genetic programming (defaults after EvoMAL)", "fitness",
                                   "rejection screen", "constant tuning (CMA-ES)",
                                   "validation of the winners")

#: the default fitness task (the loss and seed of each run are the search's)
DEFAULT_TASK = TrainConfig(dataset="digits", model="mlp", label_noise=0.4, val_fraction=0.3, epochs=20,
                           max_steps=300, batch_size=64, lr=2e-3, threads=1, device="cpu")
#: the second fitness task: MNIST-sized inputs and an epoch budget at the protocol's learning rate,
#: where bounded losses that win on the 8x8 task under-fit
DEFAULT_TASK2 = TrainConfig(dataset="digits28", model="mlp", label_noise=0.4, val_fraction=0.2,
                            train_fraction=0.5, epochs=3, batch_size=64, lr=1e-3, threads=1, device="cpu")
#: the default transfer task of the validation: a dataset the fitness never saw (synthetic shapes)
DEFAULT_TRANSFER = TrainConfig(dataset="shapes28", model="mlp", label_noise=0.2, val_fraction=0.2, epochs=6,
                               batch_size=64, lr=1e-3, threads=1, device="cpu")
#: TrainConfig fields that get no search flag: the search sets them per run (loss, seed) or takes
#: them from ``--threads`` (execution)
TASK_SKIP = ("loss", "loss_kwargs", "seed", "threads")
#: the second fitness task's and the transfer task's flags (``--task2-<field>``, ``--transfer-<field>``)
SUBTASK_FIELDS = ("dataset", "model", "label_noise", "epochs", "max_steps", "batch_size", "lr",
                  "train_fraction", "val_fraction", "data_dir")
#: the sub-tasks' field -> flag prefix; ``--task2-dataset none`` drops the second fitness task
SUBTASKS = {"task2": "task2_", "transfer": "transfer_"}


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
    task: TrainConfig = opt(help="the fitness task", factory=lambda: dataclasses.replace(DEFAULT_TASK),
                            flag=False)
    task2: TrainConfig | None = opt(help="a second fitness task that breaks losses differently",
                                    factory=lambda: dataclasses.replace(DEFAULT_TASK2), flag=False)
    combine: str = opt("worst", "a candidate's score over the fitness tasks: worst (the smallest paired "
                                "gain over CE) or mean", group=_FIT, choices=lambda: ["worst", "mean"])
    race_stages: list[int] = opt(help="seeds per candidate at each racing stage: new candidates train on "
                                      "the first, the best fraction of each stage moves to the next",
                                 factory=lambda: [2, 4, 8, 16], group=_FIT)
    promote_fraction: float = opt(0.25, "fraction of each racing stage promoted per generation", group=_FIT)
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
    validate_seeds: int = opt(20, "other fresh seeds on which the chosen loss is reported against CE, "
                                  "NGL and SCE (20: the power to show a +1.5 pp gain after Holm's "
                                  "correction across the report's cells)", group=_VAL)
    transfer: TrainConfig = opt(help="the validation's transfer task", factory=lambda: dataclasses.replace(DEFAULT_TRANSFER),
                                flag=False)
    execution: Execution = opt(help="where fitness and validation runs execute", factory=Execution,
                               flag=False)

    def __post_init__(self) -> None:
        self.const_range = tuple(float(v) for v in self.const_range)   # type: ignore[assignment]
        self.task = _task(self.task, "task").check()
        if self.task2 is not None:
            self.task2 = _task(self.task2, "task2").check()
            if self.task2.val_fraction <= 0:
                raise InputError("bad search config: task2.val_fraction must be > 0")
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
                ("combine", self.combine in ("worst", "mean"), "'worst' or 'mean'"),
                ("race_stages", bool(self.race_stages) and self.race_stages[0] >= 1
                 and all(b > a for a, b in zip(self.race_stages, self.race_stages[1:])),
                 "increasing seed counts >= 1, e.g. 2,4,8,16"),
                ("promote_fraction", 0 < self.promote_fraction <= 1, "in (0, 1]"),
                ("screen_steps", self.screen_steps >= 1, ">= 1"),
                ("tune_top", self.tune_top >= 0, ">= 0"),
                ("tune_evals", self.tune_evals >= 2, ">= 2"),
                ("validate_top", self.validate_top >= 0, ">= 0"),
                ("select_seeds", self.select_seeds >= 0, ">= 0"),
                ("validate_seeds", self.validate_seeds >= 2, ">= 2")]

    def fitness_tasks(self) -> dict[str, TrainConfig]:
        """The fitness tasks as they run (the execution's threads): ``search`` and ``task2`` (the
        ``linear`` fitness has one fixed problem, so one task)."""
        tasks = {"search": self.task, "task2": self.task2 if self.fitness != "linear" else None}
        return {name: dataclasses.replace(t, threads=self.execution.threads, loss="ce")
                for name, t in tasks.items() if t is not None}

    def fitness_task(self) -> TrainConfig:
        """The first fitness task as it runs."""
        return self.fitness_tasks()["search"]

    def transfer_task(self) -> TrainConfig:
        return dataclasses.replace(self.transfer, threads=self.execution.threads)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["const_range"] = list(self.const_range)
        d["task"], d["transfer"] = self.task.to_dict(), self.transfer.to_dict()
        d["task2"] = self.task2.to_dict() if self.task2 is not None else None
        d["execution"] = dataclasses.asdict(self.execution)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "SearchConfig":
        """From a JSON object (file, checkpoint): unknown keys and wrong types are one-line errors."""
        return from_mapping(cls, d, what="search config")

    @classmethod
    def from_flat(cls, flat: Mapping[str, Any]) -> "SearchConfig":
        """From flag names, as ``ngl search`` takes them: the search's own fields, the fitness
        task's fields (``max_steps``), the second task's and the transfer task's with ``task2_`` and
        ``transfer_`` (``transfer_model``; ``task2_dataset="none"`` drops the second task) and the
        execution's (``workers``); ``threads`` goes to the execution and every task.

        >>> SearchConfig.from_flat({"population": 6, "max_steps": 20, "transfer_epochs": 3}).task.max_steps
        20
        """
        own = {f.name for f in dataclasses.fields(cls)} - {"task", "task2", "transfer", "execution"}
        task_names = {f.name for f in dataclasses.fields(TrainConfig)} - set(TASK_SKIP)
        exe_names = {f.name for f in dataclasses.fields(Execution)}
        parts: dict[str, dict[str, Any]] = {"own": {}, "task": {}, "task2": {}, "transfer": {}, "execution": {}}
        for key, value in flat.items():
            sub = next(((name, key[len(pre):]) for name, pre in SUBTASKS.items()
                        if key.startswith(pre) and key[len(pre):] in SUBTASK_FIELDS), None)
            if key in own:
                parts["own"][key] = value
            elif key in task_names:
                parts["task"][key] = value
            elif key in exe_names:
                parts["execution"][key] = value
            elif sub is not None:
                parts[sub[0]][sub[1]] = value
            else:
                raise InputError(_unknown(key, own | task_names | exe_names))
        threads = parts["execution"].get("threads", 1)
        task2 = None if parts["task2"].get("dataset") in ("none", "") else \
            {**DEFAULT_TASK2.to_dict(), **parts["task2"], "threads": threads}
        return cls.from_dict({**parts["own"], "execution": parts["execution"], "task2": task2,
                              "task": {**DEFAULT_TASK.to_dict(), **parts["task"], "threads": threads},
                              "transfer": {**DEFAULT_TRANSFER.to_dict(), **parts["transfer"], "threads": threads}})


def _unknown(key: str, names: set[str]) -> str:
    import difflib

    names = names | {pre + f for pre in SUBTASKS.values() for f in SUBTASK_FIELDS}
    close = difflib.get_close_matches(str(key), sorted(names), n=1)
    return f"unknown search setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")


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
        elif key in SUBTASKS and isinstance(value, Mapping):
            out.update({SUBTASKS[key] + k: v for k, v in value.items() if k in SUBTASK_FIELDS})
        elif key in SUBTASKS and value is None:
            out[SUBTASKS[key] + "dataset"] = "none"
        else:
            out[key] = value
    return out
