"""The search loop: EvoMAL-style generational GP with elitism, checkpointed every generation.

Defaults follow EvoMAL (Raymond et al., TPAMI 2023; REFERENCE.md section 5): population 25,
50 generations, crossover 0.7, mutation 0.25, tournament 4, max height 10. Each generation:
tournament selection -> DEAP ``varAnd`` (guarded crossover/mutation) -> fitness for the invalid
individuals only -> elites carried over -> hall of fame and logbook updated -> atomic JSON
checkpoint (population, hall of fame, RNG states, cache, logbook). ``resume=True`` continues from
the checkpoint and ends exactly where an uninterrupted run with the same seed ends.
"""
from __future__ import annotations

import os
import random
import statistics
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable

from deap import algorithms, tools

from .. import expr as E
from ..fileio import read_json_object, write_json_atomic
from .fitness import FITNESS_FUNCTIONS, cache_key, check_train_settings, evaluate_candidates, make_search_executor
from .screen import screen
from .gp import Individual, from_expr, is_valid, make_pset, make_toolbox, to_expr

__all__ = ["SearchConfig", "SearchResult", "run_search", "load_checkpoint", "CHECKPOINT"]

CHECKPOINT = "checkpoint.json"
_CKPT_VERSION = 1


@dataclass
class SearchConfig:
    """Everything that determines a search (saved as ``config.json`` and in the checkpoint)."""

    # GP
    population: int = 25
    generations: int = 50
    tournament_size: int = 4
    crossover: float = 0.7
    mutation: float = 0.25
    max_height: int = 10
    init_max_height: int = 4
    init_tries: int = 20                       # random initial trees are redrawn until they pass the screen
    elites: int = 1
    hall_of_fame: int = 10
    const_range: tuple[float, float] = (-3.0, 3.0)
    primitives: list[str] | None = None        # None: all of ngl.expr.PRIMITIVES
    seed_losses: list[str] = field(default_factory=list)
    seed: int = 0
    # fitness
    fitness: str = "train"                     # a FITNESS_FUNCTIONS name
    dataset: str = "digits"
    model: str = "cnn_small"
    data_dir: str | None = None                # harness data folder (None: $NGL_DATA_DIR or ./data)
    max_steps: int = 200
    batch_size: int = 64
    lr: float | None = None                    # None: the fitness function's default
    train_fraction: float = 1.0
    train_seed: int = 0
    device: str = "cpu"
    threads: int | None = 1
    halving_rungs: int = 1                     # >1: successive halving over max_steps
    halving_eta: int = 3
    # rejection screen
    screen_steps: int = 200
    screen_min_gain: float = 0.2
    # execution
    executor: str = "inline"
    workers: int = 1
    timeout: float | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        self.const_range = tuple(float(v) for v in self.const_range)   # type: ignore[assignment]
        checks = [(self.population >= 2, "population must be >= 2"),
                  (self.generations >= 0, "generations must be >= 0"),
                  (1 <= self.tournament_size <= self.population, "tournament_size must be in [1, population]"),
                  (0.0 <= self.crossover <= 1.0, "crossover must be in [0, 1]"),
                  (0.0 <= self.mutation <= 1.0, "mutation must be in [0, 1]"),
                  (2 <= self.max_height <= 40, "max_height must be in [2, 40]"),
                  (1 <= self.init_max_height <= self.max_height, "init_max_height must be in [1, max_height]"),
                  (0 <= self.elites < self.population, "elites must be in [0, population)"),
                  (self.init_tries >= 1, "init_tries must be >= 1"),
                  (self.hall_of_fame >= 1, "hall_of_fame must be >= 1"),
                  (self.const_range[0] < self.const_range[1], "const_range must be (low, high) with low < high"),
                  (self.fitness in FITNESS_FUNCTIONS or self.fitness == "custom",
                   f"fitness must be one of {sorted(FITNESS_FUNCTIONS)}"),
                  (self.max_steps >= 1, "max_steps must be >= 1"),
                  (self.halving_rungs >= 1 and self.halving_eta >= 2, "halving_rungs >= 1 and halving_eta >= 2 required"),
                  (self.workers >= 1, "workers must be >= 1")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"bad search config: {msg}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["const_range"] = list(self.const_range)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SearchConfig":
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown search config key(s): {', '.join(unknown)}")
        return cls(**d)

    def fitness_settings(self) -> dict[str, Any]:
        """The settings handed to the fitness function."""
        if self.fitness == "linear":
            return {"max_steps": self.max_steps, "seed": self.train_seed,
                    **({"lr": self.lr} if self.lr is not None else {})}
        settings = {"dataset": self.dataset, "model": self.model, "max_steps": self.max_steps,
                    "epochs": 10_000, "batch_size": self.batch_size, "seed": self.train_seed,
                    "train_fraction": self.train_fraction, "device": self.device, "threads": self.threads,
                    "data_dir": self.data_dir}
        if self.lr is not None:
            settings["lr"] = self.lr
        return settings


@dataclass
class SearchResult:
    """The hall of fame (best first), the logbook and where the files went."""

    hall_of_fame: list[dict]
    logbook: list[dict]
    out_dir: Path
    finished: bool


# --------------------------------------------------------------------------------------------
# JSON-safe state
# --------------------------------------------------------------------------------------------
def _tree(expr: E.Expr) -> Any:
    if expr.op in E.TERMINALS:
        return expr.op
    if expr.op == "const":
        return expr.value
    return [expr.op, *(_tree(a) for a in expr.args)]


def _rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {"python": [version, list(internal), gauss],
            "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)],
            "torch": torch.get_rng_state().tolist()}


def _set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def _write_json(path: Path, data: Any) -> None:
    write_json_atomic(path, data, indent=None)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and check a search checkpoint (plain JSON; trees are validated by ngl.expr)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no search checkpoint at {path}; run without --resume first")
    state = read_json_object(path, what="search checkpoint")
    if state.get("version") != _CKPT_VERSION:
        raise ValueError(f"{path}: not an ngl search checkpoint (version {_CKPT_VERSION} expected)")
    return state


# --------------------------------------------------------------------------------------------
# Hall of fame: best distinct losses (by fingerprint); ties keep the smaller, then the earlier
# --------------------------------------------------------------------------------------------
def _update_hof(hof: list[dict], population: list[Individual], generation: int, size: int) -> list[dict]:
    seen = {h["fingerprint"] for h in hof}
    for ind in population:
        expr = to_expr(ind)
        key = cache_key(expr)
        if key in seen or ind.fitness.values[0] <= 0.0:
            continue
        seen.add(key)
        hof.append({"fingerprint": key, "tree": _tree(expr), "infix": E.to_infix(expr),
                    "fitness": ind.fitness.values[0], "size": len(ind), "generation": generation})
    hof.sort(key=lambda h: (-h["fitness"], h["size"]))
    return hof[:size]


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def _evaluate(pop: list[Individual], cfg: SearchConfig, cache: dict, executor: Any,
              fitness: str | Callable, progress: bool) -> dict[str, Any]:
    invalid = [ind for ind in pop if not ind.fitness.valid]
    saved = _rng_state()       # fitness runs and lazy imports must not move the search's RNG streams
    records, stats = evaluate_candidates(
        [to_expr(ind) for ind in invalid], cache=cache, fitness=fitness,
        settings=cfg.fitness_settings(), executor=executor,
        screen_kwargs={"steps": cfg.screen_steps, "min_gain": cfg.screen_min_gain},
        rungs=cfg.halving_rungs, eta=cfg.halving_eta, progress=progress)
    for ind, rec in zip(invalid, records):
        ind.fitness.values = (rec["fitness"],)
        ind.note = rec["reason"]
    _set_rng_state(saved)
    return asdict(stats)


def _record(gen: int, pop: list[Individual], stats: dict, wall: float, total: float) -> dict[str, Any]:
    fits = [ind.fitness.values[0] for ind in pop]
    req = stats["requested"]
    return {"generation": gen, "best": max(fits), "median": statistics.median(fits),
            "mean": statistics.fmean(fits), "evaluations": stats["evaluations"],
            "requested": req, "cache_hits": stats["cache_hits"],
            "cache_hit_rate": stats["cache_hits"] / req if req else 0.0,
            "screened": stats["screened"], "rejected": stats["rejected"],
            "rejection_rate": stats["rejected"] / stats["screened"] if stats["screened"] else 0.0,
            "failed": stats["failed"], "mean_size": statistics.fmean(len(i) for i in pop),
            "wall_time": round(wall, 3), "total_time": round(total, 3)}


def _initial_population(cfg: SearchConfig, pset: Any, tb: Any) -> list[Individual]:
    from ..losses import get_loss_info

    pop: list[Individual] = []
    for name in cfg.seed_losses[:cfg.population]:
        expr = get_loss_info(name).expression
        if expr is None:
            raise ValueError(f"loss {name!r} has no expression over p and y; it cannot seed the search")
        ind = from_expr(expr, pset)
        if not is_valid(ind, max_height=cfg.max_height):
            raise ValueError(f"seed loss {name!r} is higher than max_height={cfg.max_height} "
                             f"or lacks p or y")
        pop.append(ind)
    for _ in range(cfg.population - len(pop)):
        for _ in range(cfg.init_tries):          # redraw trees the screen would reject anyway
            ind = tb.individual()
            if cfg.init_tries == 1 or screen(to_expr(ind), steps=cfg.screen_steps,
                                             min_gain=cfg.screen_min_gain).ok:
                break
        pop.append(ind)
    return pop


def run_search(config: SearchConfig, out_dir: str | os.PathLike[str], *, resume: bool = False,
               fitness_fn: Callable[[str, dict], float] | None = None, progress: bool = True,
               stop_after: int | None = None, log: Callable[[str], None] | None = print) -> SearchResult:
    """Run (or resume) a search; writes checkpoint, hall of fame, CSV and plot under ``out_dir``.

    Args:
        config: the search configuration.
        out_dir: output directory (created).
        resume: continue from ``out_dir/checkpoint.json`` (the config must match).
        fitness_fn: a module-level ``fn(infix, settings) -> accuracy`` replacing ``config.fitness``.
        progress: show a tqdm bar over evaluations.
        stop_after: stop after this generation's checkpoint (simulates a kill; for tests).
        log: receives one progress line per generation (``None``: silent).

    Returns:
        :class:`SearchResult`.
    """
    from .output import write_outputs

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / CHECKPOINT
    fitness: str | Callable = fitness_fn if fitness_fn is not None else config.fitness
    if fitness_fn is None and config.fitness not in FITNESS_FUNCTIONS:
        raise ValueError(f"fitness {config.fitness!r} needs a fitness_fn; registered: {sorted(FITNESS_FUNCTIONS)}")
    if fitness == "train":
        check_train_settings(config.fitness_settings())
    pset = make_pset(const_range=config.const_range, primitives=config.primitives)
    tb = make_toolbox(pset, tournament_size=config.tournament_size, max_height=config.max_height,
                      init_max_height=config.init_max_height)
    with closing(make_search_executor(config.executor, workers=config.workers, timeout=config.timeout,
                                      ray_address=config.ray_address, threads=config.threads)) as executor:
        if resume:
            state = load_checkpoint(ckpt)
            saved = dict(state["config"], generations=config.generations)
            if saved != config.to_dict():
                diff = sorted(k for k, v in config.to_dict().items() if saved.get(k) != v)
                raise ValueError(f"--resume: config differs from the checkpoint's in {', '.join(diff)}")
            pop = []
            for rec in state["population"]:
                ind = from_expr(E.from_json(rec["tree"]), pset)
                ind.fitness.values = (rec["fitness"],)
                ind.note = rec["note"]
                pop.append(ind)
            hof, logbook, cache = state["hall_of_fame"], state["logbook"], state["cache"]
            start_gen, elapsed = state["generation"] + 1, state["elapsed"]
            _set_rng_state(state["rng"])
        else:
            random.seed(config.seed)
            import numpy as np
            import torch

            np.random.seed(config.seed)
            torch.manual_seed(config.seed)
            hof, logbook, cache, start_gen, elapsed = [], [], {}, 0, 0.0
            pop = _initial_population(config, pset, tb)
        _write_json(out / "config.json", config.to_dict())
        for gen in range(start_gen, config.generations + 1):
            t0 = time.perf_counter()
            if gen > 0:
                elites = [tb.clone(ind) for ind in tools.selBest(pop, config.elites)]
                offspring = tb.select(pop, len(pop) - config.elites)
                offspring = algorithms.varAnd(offspring, tb, config.crossover, config.mutation)
                pop = elites + offspring
            stats = _evaluate(pop, config, cache, executor, fitness, progress)
            hof = _update_hof(hof, pop, gen, config.hall_of_fame)
            wall = time.perf_counter() - t0
            elapsed += wall
            row = _record(gen, pop, stats, wall, elapsed)
            if gen == 0 and stats["evaluations"] and stats["failed"] == stats["evaluations"]:
                first = next(i.note for i in pop if i.note and i.fitness.values[0] == 0.0
                             and not i.note.startswith(("missing", "non-finite", "constant", "minimising")))
                raise ValueError(f"every fitness run of generation 0 failed; first error: {first}")
            logbook.append(row)
            if log:
                best = hof[0]["infix"] if hof else "-"
                log(f"gen {gen:3d}/{config.generations}  best {row['best']:.4f}  median {row['median']:.4f}  "
                    f"evals {row['evaluations']:3d}  cache {row['cache_hit_rate']:.0%}  "
                    f"rejected {row['rejection_rate']:.0%}  {wall:.1f}s  | {best}")
            _write_json(ckpt, {"version": _CKPT_VERSION, "config": config.to_dict(), "generation": gen,
                               "population": [{"tree": _tree(to_expr(i)), "fitness": i.fitness.values[0],
                                               "note": i.note} for i in pop],
                               "hall_of_fame": hof, "logbook": logbook, "cache": cache,
                               "rng": _rng_state(), "elapsed": elapsed})
            if stop_after is not None and gen >= stop_after and gen < config.generations:
                return SearchResult(hof, logbook, out, finished=False)
    write_outputs(out, hof, logbook, config)
    return SearchResult(hof, logbook, out, finished=True)
