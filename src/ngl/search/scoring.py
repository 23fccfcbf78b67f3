"""A generation's fitness, raced: every candidate is scored by its paired gain over CE on common
seeds, on every fitness task, and the best are retrained on more seeds as the search goes.

Per generation (:func:`evaluate_population`): new candidates pass the cache and the screen
(:func:`~ngl.search.evaluate.screen_new`), then train on the generation's base seeds
(:func:`~ngl.search.racing.draw_seeds`) on every task, CE beside them; the best fraction of each
racing stage of the population and the hall of fame trains on more seeds
(:func:`~ngl.search.racing.plan_promotions`, 2 -> 4 -> 8 -> 16). A candidate's fitness is the
mean over every seed it has been trained on of its worst-task (or mean-task) paired gain over CE
(:func:`~ngl.search.racing.multitask_scores`): a fraction of accuracy that can be negative and
that changes as its seeds accumulate, so a lucky first draw does not stay. Selection and
promotion use that mean (exploring); the hall of fame ranks by its lower 90% confidence bound
(:func:`hall_of_fame`), so what the search keeps is what many seeds agree on.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

from tqdm.auto import tqdm

from .. import expr as E
from ..runspec import TrainConfig
from . import racing
from .evaluate import CE_SPEC, GenerationStats, Job, cache_key, record_results, screen_new, train_jobs
from .gp import WORST_FITNESS, Individual, Status, to_expr

__all__ = ["Context", "evaluate_population", "hall_of_fame", "score_specs", "scores_of"]


@dataclass
class Context:
    """What a generation's evaluation reads: the config, its tasks, the fitness and the executor."""
    cfg: Any                                    # SearchConfig
    tasks: dict[str, TrainConfig]
    fitness: str | Callable
    executor: Any
    progress: bool = False


def _spec(infix: str) -> str:
    return "expr:" + infix


def _train(jobs: list[Job], ctx: Context, stats: GenerationStats, desc: str) -> dict:
    bar = tqdm(total=len(jobs), desc=desc, unit="run", leave=False, disable=not ctx.progress)
    results, batched = train_jobs(jobs, tasks=ctx.tasks, fitness=ctx.fitness, executor=ctx.executor,
                                  workers=ctx.cfg.execution.workers, progress=bar.update)
    bar.close()
    stats.runs += len(jobs)
    stats.batched = stats.batched or batched
    return results


def scores_of(race: dict, keys: list[str], combine: str) -> dict[str, racing.Score]:
    """The racing scores of ``keys`` that are in the race (trained, no failed run)."""
    keys = [k for k in keys if all(k in t["runs"] for t in race.values())]
    return racing.multitask_scores(race, keys=keys, combine=combine) if keys and race else {}


def _ce_jobs(race: dict, tasks: dict, seed_lists: list[list[int]]) -> list[Job]:
    return [(name, CE_SPEC, s) for name in tasks
            for s in racing.ce_seeds_needed(race.get(name, {}).get("ce", {}), seed_lists)]


def evaluate_population(pop: list[Individual], gen: int, st: Any, ctx: Context) -> dict[str, Any]:
    """Score every individual of ``pop`` (see the module's docstring); updates ``st.cache``,
    ``st.race`` and each individual's fitness, status and reason. Returns the generation's stats."""
    cfg = ctx.cfg
    stats = GenerationStats(requested=len(pop))
    exprs = [to_expr(ind) for ind in pop]
    keys = [cache_key(e) for e in exprs]
    new = screen_new(exprs, keys, st.cache, stats, {"steps": cfg.screen_steps, "min_gain": cfg.screen_min_gain})
    for key, expr in new.items():
        st.cache[key] = {"fitness": WORST_FITNESS, "status": Status.OK.value, "reason": None,
                         "infix": E.to_infix(expr), "generation": gen}
    base = racing.draw_seeds(cfg.seed, gen, cfg.race_stages[0], purpose="base")
    eligible = [k for k in dict.fromkeys([*keys, *(h["fingerprint"] for h in st.hof)])
                if st.cache.get(k, {}).get("status") == Status.OK.value and k not in new]
    plan = racing.plan_promotions(scores_of(st.race, eligible, cfg.combine), search_seed=cfg.seed,
                                  generation=gen, stages=cfg.race_stages, fraction=cfg.promote_fraction)
    key_of = {_spec(st.cache[k]["infix"]): k for k in [*new, *(k for k, _ in plan)]}
    jobs = [(t, _spec(st.cache[k]["infix"]), s) for k in new for t in ctx.tasks for s in base]
    jobs += [(t, _spec(st.cache[k]["infix"]), s) for k, seeds in plan for t in ctx.tasks for s in seeds]
    jobs = _ce_jobs(st.race, ctx.tasks, [base if new else [], *(s for _, s in plan)]) + jobs
    failed = record_results(st.race, _train(jobs, ctx, stats, f"generation {gen}"), key_of)
    stats.evaluations, stats.promoted, stats.failed = len(new), len(plan), len(failed)
    for key, reason in failed.items():
        st.cache[key].update(status=Status.FAILED.value, reason=reason, fitness=WORST_FITNESS)
    table = scores_of(st.race, [k for k in dict.fromkeys([*keys, *(h["fingerprint"] for h in st.hof)])
                                if st.cache.get(k, {}).get("status") == Status.OK.value], cfg.combine)
    for key, s in table.items():
        st.cache[key]["fitness"] = s["mean"] if s["mean"] is not None else WORST_FITNESS
        st.cache[key]["lcb"] = s["lcb"]
    for ind, key in zip(pop, keys):
        rec = st.cache[key]
        ind.fitness.values = (rec["fitness"],)
        ind.status, ind.reason = Status(rec["status"]), rec["reason"]
    st.hof = hall_of_fame(st, cfg.hall_of_fame, cfg.combine)
    return asdict(stats)


def hall_of_fame(st: Any, size: int, combine: str) -> list[dict]:
    """The ``size`` best distinct trained losses by the lower bound of their paired gain."""
    trained = [k for k, rec in st.cache.items() if rec["status"] == Status.OK.value]
    table = scores_of(st.race, trained, combine)
    out = []
    for key in racing.rank(table, size=size):
        s, rec = table[key], st.cache[key]
        out.append({"fingerprint": key, "infix": rec["infix"],
                    "fitness": s["lcb"] if s["lcb"] is not None else WORST_FITNESS, "mean_gain": s["mean"],
                    "lcb": s["lcb"],
                    "seeds": s["n"], "tasks": {t: v["mean"] for t, v in s["tasks"].items()},
                    "size": sum(1 for _ in E.parse(rec["infix"]).nodes()), "generation": rec.get("generation", 0)})
    return out


def score_specs(infixes: list[str], seeds: list[int], ctx: Context, ce: dict) -> list[float]:
    """The mean worst-task (or mean) paired gain over CE of each infix on ``seeds`` (CE trained
    once per (task, seed) and kept in ``ce``); a failed candidate scores the worst fitness. Used by
    CMA-ES constant tuning: one batch per CMA-ES population."""
    race = {t: {"ce": ce.setdefault(t, {}), "runs": {}} for t in ctx.tasks}
    key_of = {_spec(i): str(n) for n, i in enumerate(infixes)}
    jobs = _ce_jobs(race, ctx.tasks, [seeds])
    jobs += [(t, _spec(i), s) for i in dict.fromkeys(infixes) for t in ctx.tasks for s in seeds]
    failed = record_results(race, _train(jobs, ctx, GenerationStats(), "tuning"), key_of)
    out = []
    for n, _ in enumerate(infixes):
        key = key_of[_spec(infixes[n])]
        if key in failed:
            out.append(WORST_FITNESS)
            continue
        gains = [sum(race[t]["runs"][key][str(s)] - race[t]["ce"][str(s)] for s in seeds) / len(seeds)
                 for t in ctx.tasks]
        value = min(gains) if ctx.cfg.combine == "worst" else sum(gains) / len(gains)
        out.append(value if math.isfinite(value) else WORST_FITNESS)
    return out
