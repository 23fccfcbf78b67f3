"""The search loop: EvoMAL-style generational GP with elitism, checkpointed every generation.

Each generation (:func:`_generation`): tournament selection -> DEAP ``varAnd`` (guarded crossover
and mutation) -> offspring whose fingerprint is already in the population are mutated again (up
to ``revary_tries`` times), so the population stays diverse -> fitness for the invalid
individuals only -> elites carried over -> hall of fame and logbook -> atomic JSON checkpoint
(:mod:`ngl.search.checkpoint`). After the last generation the best structures' constants are tuned
(:mod:`ngl.search.tune`). ``resume=True`` continues from the checkpoint and ends exactly where an
uninterrupted run with the same seed ends; without it an existing checkpoint is never replaced
unless ``overwrite=True``.
"""
from __future__ import annotations

import os
import random
import statistics
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from deap import algorithms, tools

from .. import expr as E
from ..errors import InputError
from .checkpoint import (CHECKPOINT, load_checkpoint, rng_state, save_checkpoint,
                         set_rng_state)
from .config import SearchConfig
from .evaluate import cache_key
from .fitness import FITNESS, check_task
from .gp import WORST_FITNESS, Individual, Status, from_expr, is_valid, make_pset, make_toolbox, to_expr
from .rejection import screen

__all__ = ["SearchResult", "run_search", "unique_fraction", "tie_fraction", "revary_duplicates",
           "lock_folder"]


@dataclass
class SearchResult:
    """The hall of fame (best first), the logbook and where the files went."""

    hall_of_fame: list[dict]
    logbook: list[dict]
    out_dir: Path
    finished: bool
    tuned: list[dict] = field(default_factory=list)


@dataclass
class _State:
    """What a generation reads and writes (and the checkpoint holds)."""

    pop: list[Individual]
    hof: list[dict] = field(default_factory=list)
    logbook: list[dict] = field(default_factory=list)
    cache: dict[str, dict] = field(default_factory=dict)
    race: dict[str, dict] = field(default_factory=dict)   # ngl.search.racing's state
    generation: int = -1            # the last finished generation
    elapsed: float = 0.0
    tuned: list[dict] | None = None


# --------------------------------------------------------------------------------------------
# Diversity
# --------------------------------------------------------------------------------------------
def unique_fraction(population: list[Any]) -> float:
    """Distinct fingerprints / population size (1.0: no two individuals compute the same loss)."""
    keys = {cache_key(to_expr(ind)) for ind in population}
    return len(keys) / len(population) if population else 0.0


def tie_fraction(fitnesses: list[float], resolution: float) -> float:
    """Fraction of ``fitnesses`` within ``resolution`` (one validation sample: 1/n_val) of the
    best: how many candidates the fitness cannot tell from the winner.

    >>> tie_fraction([0.5, 0.9, 0.899, 1.0], 0.01)
    0.25
    """
    if not fitnesses:
        return 0.0
    best = max(fitnesses)
    return sum(f >= best - resolution + 1e-12 for f in fitnesses) / len(fitnesses)


def revary_duplicates(offspring: list[Individual], keep: list[Individual], tb: Any,
                      tries: int) -> int:
    """Vary again each offspring whose fingerprint is already taken by ``keep`` or an earlier
    offspring: up to ``tries`` mutations, then up to ``tries`` fresh random trees (small trees
    often mutate into themselves or into invalid trees). Replaces in place; returns the count."""
    taken = {cache_key(to_expr(ind)) for ind in keep}
    revaried = 0
    for i, ind in enumerate(offspring):
        key = cache_key(to_expr(ind))
        if key in taken and tries > 0:
            revaried += 1
            draws = [lambda cur: tb.mutate(tb.clone(cur))[0]] * tries + [lambda _: tb.individual()] * tries
            for draw in draws:
                ind = draw(ind)
                key = cache_key(to_expr(ind))
                if key not in taken:
                    break
            del ind.fitness.values
            offspring[i] = ind
        taken.add(key)
    return revaried


#: folders a search writes (removed by ``overwrite=True``)
_OUTPUT_DIRS = ("hall_of_fame", "validation")
#: settings a resume may change (they do not change what the generations compute)
_FREE_ON_RESUME = ("generations", "validate_top", "select_seeds", "validate_seeds", "transfer", "execution")


def _say_unbatched(config: SearchConfig, log: Callable[[str], None] | None) -> None:
    """One line per fitness task the population engine cannot train: it trains one run at a time."""
    from .batched import unsupported

    for name, task in config.fitness_tasks().items():
        why = unsupported(task)
        if why and log:
            log(f"{name} task: one training run at a time, not batched ({why})")


def lock_folder(out: Path, owner: str) -> Any:
    """One ``ngl search`` or ``ngl search validate`` per folder at a time (:mod:`ngl.locking`)."""
    from ..locking import FolderLock

    return FolderLock(out / ".ngl-search.lock", owner=owner, what=str(out),
                      refusal="one search or validation per folder at a time: wait for it to finish, "
                              "or give this search another --out")


# --------------------------------------------------------------------------------------------
# Start: a fresh population, or the checkpoint's
# --------------------------------------------------------------------------------------------
def _seed_individuals(cfg: SearchConfig, pset: Any) -> list[Individual]:
    """The ``--seed-losses`` as trees; one line for a loss that cannot seed the search."""
    from ..losses import get_loss_info

    pop: list[Individual] = []
    for name in cfg.seed_losses[:cfg.population]:
        try:
            expr = get_loss_info(name).expression
        except KeyError as exc:
            raise InputError(str(exc)) from None
        if expr is None:
            raise InputError(f"loss {name!r} has no expression over p and y; it cannot seed the search")
        ind = from_expr(expr, pset)
        if not is_valid(ind, max_height=cfg.max_height):
            raise InputError(f"seed loss {name!r} is higher than max_height={cfg.max_height} "
                             f"or lacks p or y")
        pop.append(ind)
    return pop


def _initial_population(cfg: SearchConfig, pset: Any, tb: Any) -> list[Individual]:
    pop = _seed_individuals(cfg, pset)
    while len(pop) < cfg.population:
        for _ in range(cfg.init_tries):          # redraw trees the screen would reject anyway
            ind = tb.individual()
            if cfg.init_tries == 1 or screen(to_expr(ind), steps=cfg.screen_steps,
                                             min_gain=cfg.screen_min_gain).ok:
                break
        pop.append(ind)
    return pop


def _resume(config: SearchConfig, ckpt: Path, pset: Any) -> _State:
    state = load_checkpoint(ckpt)
    from ..runspec import IGNORED_IN_KEY

    saved = dict(state["config"], generations=config.generations)
    new = config.to_dict()
    for d in (saved, new):                      # where a task runs does not change what it computes
        for name in ("task", "task2"):
            d[name] = {k: v for k, v in (d.get(name) or {}).items() if k not in IGNORED_IN_KEY}
    diff = sorted(k for k in new if k not in _FREE_ON_RESUME
                  and saved.get(k) != new[k])
    if diff:
        raise InputError(f"--resume: config differs from the checkpoint's in {', '.join(diff)}")
    if state["generation"] > config.generations:
        raise InputError(f"--resume: the checkpoint is at generation {state['generation']}, "
                         f"beyond --generations {config.generations}")
    pop = []
    for rec in state["population"]:
        ind = from_expr(E.parse(rec["infix"]), pset)
        ind.fitness.values = (rec["fitness"],)
        ind.status, ind.reason = Status(rec["status"]), rec.get("reason")
        pop.append(ind)
    set_rng_state(state["rng"])
    tuned = state.get("tuned") if state["generation"] == config.generations else None
    return _State(pop, state["hall_of_fame"], state["logbook"], state["cache"], state["race"],
                  state["generation"], state["elapsed"], tuned)


def _start(config: SearchConfig, out: Path, pset: Any, tb: Any, *, resume: bool,
           overwrite: bool) -> _State:
    ckpt = out / CHECKPOINT
    if resume:
        return _resume(config, ckpt, pset)
    if ckpt.exists() and not overwrite:
        raise InputError(f"{ckpt} exists: pass --resume to continue that search or --overwrite "
                         f"to start over (or choose another --out)")
    if overwrite:                                # start over: no stale outputs of the old search
        import shutil

        for name in _OUTPUT_DIRS:
            shutil.rmtree(out / name, ignore_errors=True)
        for name in (CHECKPOINT, "result.json", "generations.csv", "generations.png"):
            (out / name).unlink(missing_ok=True)
    import numpy as np
    import torch

    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    return _State(_initial_population(config, pset, tb))


# --------------------------------------------------------------------------------------------
# One generation
# --------------------------------------------------------------------------------------------
def _evaluate(pop: list[Individual], gen: int, st: _State, ctx: Any) -> dict[str, Any]:
    from .scoring import evaluate_population

    saved = rng_state()       # fitness runs and lazy imports must not move the search's RNG streams
    stats = evaluate_population(pop, gen, st, ctx)
    set_rng_state(saved)
    return stats


def _row(gen: int, pop: list[Individual], stats: dict, revaried: int, wall: float,
         total: float, hof: list[dict]) -> dict[str, Any]:
    fits = [ind.fitness.values[0] for ind in pop if ind.status is Status.OK] or [WORST_FITNESS]
    req, scr = stats["requested"], stats["screened"]
    best = hof[0] if hof else {}
    return {"generation": gen, "best": best.get("fitness", max(fits)), "best_mean_gain": best.get("mean_gain"),
            "best_seeds": best.get("seeds"), "median": statistics.median(fits), "mean": statistics.fmean(fits),
            "unique_fraction": unique_fraction(pop), "revaried": revaried, "evaluations": stats["evaluations"],
            "promoted": stats["promoted"], "runs": stats["runs"], "batched": stats["batched"], "requested": req,
            "cache_hits": stats["cache_hits"], "cache_hit_rate": stats["cache_hits"] / req if req else 0.0,
            "screened": scr, "rejected": stats["rejected"],
            "rejection_rate": stats["rejected"] / scr if scr else 0.0, "failed": stats["failed"],
            "mean_size": statistics.fmean(len(i) for i in pop), "wall_time": round(wall, 3),
            "total_time": round(total, 3)}


def _check_first_generation(pop: list[Individual], stats: dict) -> None:
    if stats["evaluations"] and stats["failed"] == stats["evaluations"]:
        first = next((i.reason for i in pop if i.status is Status.FAILED), "unknown")
        raise InputError(f"every fitness run of generation 0 failed; first error: {first}")


def _generation(gen: int, st: _State, config: SearchConfig, tb: Any, run_eval: Callable) -> dict:
    t0 = time.perf_counter()
    revaried = 0
    if gen > 0:
        elites = [tb.clone(ind) for ind in tools.selBest(st.pop, config.elites)]
        offspring = tb.select(st.pop, len(st.pop) - config.elites)
        offspring = algorithms.varAnd(offspring, tb, config.crossover, config.mutation)
        revaried = revary_duplicates(offspring, elites, tb, config.revary_tries)
        st.pop = elites + offspring
    stats = run_eval(st.pop, gen)
    if gen == 0:
        _check_first_generation(st.pop, stats)
    wall = time.perf_counter() - t0
    st.elapsed += wall
    st.generation = gen
    row = _row(gen, st.pop, stats, revaried, wall, st.elapsed, st.hof)
    st.logbook.append(row)
    return row


def _save(out: Path, config: SearchConfig, st: _State) -> None:
    save_checkpoint(out / CHECKPOINT, {
        "config": config.to_dict(), "generation": st.generation,
        "population": [{"infix": E.to_infix(to_expr(i)), "fitness": i.fitness.values[0],
                        "status": i.status.value, "reason": i.reason} for i in st.pop],
        "hall_of_fame": st.hof, "logbook": st.logbook, "cache": st.cache, "race": st.race, "rng": rng_state(),
        "elapsed": st.elapsed, "tuned": st.tuned})


def _log_line(row: dict, config: SearchConfig, hof: list[dict]) -> str:
    best = E.readable_infix(hof[0]["infix"]) if hof else "-"
    gain = "-" if row["best_mean_gain"] is None else f"{100 * row['best_mean_gain']:+.2f}"
    return (f"gen {row['generation']:3d}/{config.generations}  best LCB {100 * row['best']:+.2f} pp "
            f"(mean {gain} pp, {row['best_seeds'] or 0} seeds)  unique {row['unique_fraction']:.0%}  "
            f"new {row['evaluations']:2d}  promoted {row['promoted']:2d}  runs {row['runs']:3d}  "
            f"rejected {row['rejection_rate']:.0%}  {row['wall_time']:.1f}s  | {best}")


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------
def run_search(config: SearchConfig, out_dir: str | os.PathLike[str], *, resume: bool = False,
               overwrite: bool = False, fitness_fn: Callable[[str, Any], float] | None = None,
               progress: bool = True, stop_after: int | None = None,
               log: Callable[[str], None] | None = print) -> SearchResult:
    """Run (or resume) a search; writes checkpoint, hall of fame, CSV and plot under ``out_dir``.

    Args:
        config: the search configuration.
        out_dir: output directory (created).
        resume: continue from ``out_dir/checkpoint.json`` (the config must match).
        overwrite: start over even if ``out_dir`` holds a checkpoint (else that is an error).
        fitness_fn: a module-level ``fn(infix, task) -> accuracy`` replacing ``config.fitness``.
        progress: show a tqdm bar over evaluations.
        stop_after: stop after this generation's checkpoint (simulates a kill; for tests).
        log: receives one progress line per generation (``None``: silent).

    Returns:
        :class:`SearchResult`.
    """
    from .output import write_outputs
    from .tune import tune_hall_of_fame

    out = Path(out_dir)
    if fitness_fn is None:
        FITNESS.get(config.fitness)              # an unknown name: one line with close matches
    fitness: str | Callable = fitness_fn if fitness_fn is not None else config.fitness
    if fitness == "train":
        from ..data import check_datasets_available

        for task in config.fitness_tasks().values():
            check_task(task)
        check_datasets_available((t.dataset, t.data_dir) for t in config.fitness_tasks().values())
        _say_unbatched(config, log)
    pset = make_pset(const_range=config.const_range, primitives=config.primitives)
    tb = make_toolbox(pset, tournament_size=config.tournament_size, max_height=config.max_height,
                      init_max_height=config.init_max_height)
    _seed_individuals(config, pset)              # everything checked before anything is deleted
    with lock_folder(out, "ngl search"), closing(config.execution.make()) as ex:
        st = _start(config, out, pset, tb, resume=resume, overwrite=overwrite)
        from ..fileio import write_json_atomic
        from .scoring import Context
        write_json_atomic(out / "config.json", config.to_dict(), indent=2)
        ctx = Context(config, config.fitness_tasks(), fitness, ex, progress)
        run_eval = lambda pop, gen: _evaluate(pop, gen, st, ctx)  # noqa: E731
        for gen in range(st.generation + 1, config.generations + 1):
            row = _generation(gen, st, config, tb, run_eval)
            if log:
                log(_log_line(row, config, st.hof))
            _save(out, config, st)
            if stop_after is not None and stop_after <= gen < config.generations:
                return SearchResult(st.hof, st.logbook, out, finished=False)
        if st.tuned is None:
            st.tuned = tune_hall_of_fame(st.hof, ctx, log=log)
            _save(out, config, st)
    write_outputs(out, st.hof, st.logbook, config, st.tuned)
    return SearchResult(st.hof, st.logbook, out, finished=True, tuned=st.tuned)
