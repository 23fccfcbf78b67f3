"""Selection that survives noisy fitness: paired scores against CE, lower confidence bounds, and
staged promotion of the best candidates to more seeds (racing).

A search picks the maximum of many noisy scores, so a 2-seed mean crowns the luckiest of the good
candidates (the winner's curse). Here every score is *paired*: within a generation each candidate
trains on the same seeds and CE trains beside them (common random numbers), and a candidate's
score is the mean over every seed it has been trained on of ``acc - acc_CE``, discounted by its
uncertainty (:func:`lower_bound`). After each generation the best fraction of each stage is
promoted to more seeds (2 -> 4 -> 8 -> 16, :func:`plan_promotions`), as NLFE stages its budget,
so a lucky candidate is retrained until its luck runs out, and the hall of fame ranks by the
bound (:func:`rank`), never by a 2-seed mean.

The state is plain JSON (it goes into the search checkpoint), one entry per task::

    race = {"search": {"ce": {"731": 0.912, ...},                     # seed -> CE's accuracy
                       "runs": {"g1a2...": {"731": 0.925, ...}}}}      # cache key -> seed -> accuracy

Seeds are JSON object keys, so strings; every function here also takes int keys. Accuracies and
every score are fractions (multiply by 100 for pp). Seeds come from :func:`draw_seeds`, a pure
function of (search seed, generation, purpose, index), so a resumed search draws exactly the
seeds an uninterrupted one draws.

>>> ce = {1: 0.90, 2: 0.92, 3: 0.91}
>>> s = score({1: 0.93, 2: 0.93, 3: 0.95}, ce, prior_weight=0)
>>> s["n"], round(s["mean"], 4), round(s["lcb"], 4)
(3, 0.0267, 0.01)
"""
from __future__ import annotations

import hashlib
import math
from statistics import fmean, stdev
from typing import Any, Iterable, Mapping, Sequence, TypedDict

from ..errors import InputError

__all__ = ["Score", "DEFAULT_STAGES", "CONFIDENCE", "DEFAULT_PRIOR_SD", "SEED_RANGE", "draw_seeds",
           "merge_runs", "paired_diffs", "lower_bound", "pooled_sd", "score", "scores",
           "multitask_scores", "rank", "plan_promotions", "ce_seeds_needed", "check_race"]

#: seeds per candidate at each stage: every new candidate starts at the first
DEFAULT_STAGES = (2, 4, 8, 16)
#: one-sided confidence of the lower bound
CONFIDENCE = 0.9
#: sd of a paired difference (accuracy) before any candidate has two seeds: the top-5 seed sd of
#: the default task is 1.5 pp (benchmarks/search_quality.json), a difference of two such is more
DEFAULT_PRIOR_SD = 0.02
#: search seeds lie in [low, high): clear of the validation's fresh seeds (1000, 1001, ...)
SEED_RANGE = (10_000, 2**31 - 1)

SeedAcc = Mapping[Any, float]          # seed (int or its string) -> accuracy


class Score(TypedDict, total=False):
    """One candidate's standing (JSON-safe: ``None`` where undefined, never inf or NaN)."""

    n: int                 # paired seeds
    mean: float | None     # mean paired difference to CE
    sd: float | None       # its seed-to-seed sd (None below 2 seeds)
    lcb: float | None      # lower confidence bound of the mean (None: no bound)
    seeds: list[int]       # the seeds it has been trained on
    tasks: dict[str, Any]  # multi-task: the per-task scores


# --------------------------------------------------------------------------------------------
# Seeds and records
# --------------------------------------------------------------------------------------------
def draw_seeds(search_seed: int, generation: int, count: int, *, purpose: str = "base",
               exclude: Iterable[int] = ()) -> list[int]:
    """The first ``count`` seeds of stream (``search_seed``, ``generation``, ``purpose``) that are
    not in ``exclude``: a hash, so the same arguments give the same seeds in any process.

    ``purpose`` separates streams: ``"base"`` for a generation's new candidates (every one gets
    the same seeds), ``"promote"`` for its promotions (a candidate needing ``m`` more seeds takes
    the first ``m`` it lacks, so promotions of one generation share seeds too).

    >>> draw_seeds(0, 3, 2) == draw_seeds(0, 3, 2) != draw_seeds(0, 4, 2)
    True
    """
    low, high = SEED_RANGE
    taken, out, i = {int(s) for s in exclude}, [], 0
    while len(out) < count:
        digest = hashlib.sha256(f"ngl-race/{search_seed}/{generation}/{purpose}/{i}".encode()).digest()
        seed = low + int.from_bytes(digest[:8], "big") % (high - low)
        if seed not in taken and seed not in out:
            out.append(seed)
        i += 1
    return out


def merge_runs(old: SeedAcc, new: SeedAcc) -> dict[str, float]:
    """``old`` with ``new``'s accuracies added (string seed keys, as JSON stores them)."""
    out = {str(int(k)): float(v) for k, v in old.items()}
    out.update({str(int(k)): float(v) for k, v in new.items()})
    return out


def paired_diffs(acc: SeedAcc, ce: SeedAcc) -> list[float]:
    """``acc[s] - ce[s]`` over the seeds both have, in seed order."""
    a = {int(k): float(v) for k, v in acc.items()}
    c = {int(k): float(v) for k, v in ce.items()}
    return [a[s] - c[s] for s in sorted(a.keys() & c.keys())]


# --------------------------------------------------------------------------------------------
# The bound
# --------------------------------------------------------------------------------------------
def lower_bound(diffs: Sequence[float], *, confidence: float = CONFIDENCE, prior_sd: float | None = None,
                prior_weight: float = 1.0) -> float | None:
    """One-sided lower confidence bound of the mean paired difference.

    .. math:: \\mathrm{LCB} = \\bar d - t_{c,\\,\\nu}\\, s_\\ast / \\sqrt n, \\quad
              s_\\ast^2 = \\frac{(n-1) s^2 + w s_0^2}{n - 1 + w}, \\quad \\nu = n - 1 + w

    ``s`` is the sample sd of the ``n`` differences, ``s_0 = prior_sd`` the sd expected of one
    (:func:`pooled_sd` over all candidates) and ``w = prior_weight`` its weight in pseudo-seeds.
    With ``w = 0`` (or no prior) this is the textbook one-sided paired t bound; with ``w > 0`` a
    one-seed candidate gets a bound (``s_* = s_0``) and two seeds that agree by luck cannot claim
    zero spread. ``None`` when there is no bound (no seeds, or one without a prior).

    >>> round(lower_bound([0.01, 0.03], prior_weight=0), 4)      # 0.02 - t(0.9, 1) * 0.01414 / 1.414
    -0.0108
    """
    n = len(diffs)
    w = prior_weight if prior_sd is not None else 0.0
    if n == 0 or n - 1 + w <= 0:
        return None
    from scipy import stats

    var = stdev(diffs) ** 2 if n > 1 else 0.0
    s = math.sqrt(((n - 1) * var + w * (prior_sd or 0.0) ** 2) / (n - 1 + w))
    return fmean(diffs) - float(stats.t.ppf(confidence, n - 1 + w)) * s / math.sqrt(n)


def pooled_sd(runs: Mapping[str, SeedAcc], ce: SeedAcc) -> float | None:
    """The seed-to-seed sd of a paired difference, pooled over every candidate with 2+ seeds:
    ``sqrt(sum((n_i - 1) s_i^2) / sum(n_i - 1))``; ``None`` if no candidate has 2 seeds."""
    num = den = 0.0
    for acc in runs.values():
        d = paired_diffs(acc, ce)
        if len(d) > 1:
            num += (len(d) - 1) * stdev(d) ** 2
            den += len(d) - 1
    return math.sqrt(num / den) if den else None


def score(acc: SeedAcc, ce: SeedAcc, *, confidence: float = CONFIDENCE, prior_sd: float | None = None,
          prior_weight: float = 1.0) -> Score:
    """The :class:`Score` of one candidate: every seed it shares with CE counts."""
    d = paired_diffs(acc, ce)
    return {"n": len(d), "mean": fmean(d) if d else None, "sd": stdev(d) if len(d) > 1 else None,
            "lcb": lower_bound(d, confidence=confidence, prior_sd=prior_sd, prior_weight=prior_weight),
            "seeds": sorted(int(k) for k in acc)}


def scores(runs: Mapping[str, SeedAcc], ce: SeedAcc, *, keys: Iterable[str] | None = None,
           confidence: float = CONFIDENCE, prior_weight: float = 1.0,
           prior_sd: float | None = None) -> dict[str, Score]:
    """:func:`score` of each candidate in ``keys`` (default: all of ``runs``); the prior sd is
    :func:`pooled_sd` over all of ``runs`` (or :data:`DEFAULT_PRIOR_SD` before any has 2 seeds)
    unless given."""
    if prior_sd is None:
        prior_sd = pooled_sd(runs, ce) or DEFAULT_PRIOR_SD
    return {k: score(runs.get(k, {}), ce, confidence=confidence, prior_sd=prior_sd,
                     prior_weight=prior_weight) for k in (runs if keys is None else keys)}


def multitask_scores(race: Mapping[str, Mapping[str, Any]], *, keys: Iterable[str] | None = None,
                     combine: str = "worst", confidence: float = CONFIDENCE,
                     prior_weight: float = 1.0) -> dict[str, Score]:
    """Scores across the tasks of ``race`` (``{task: {"ce": ..., "runs": ...}}``), each task
    paired with its own CE and its own pooled prior: ``lcb`` (and ``mean``) is the ``worst``
    (min, default) or the ``mean`` of the per-task values, ``n`` the fewest seeds of any task,
    ``tasks`` the per-task scores. A candidate without a bound on some task has none."""
    if combine not in ("worst", "mean"):
        raise InputError(f"combine must be 'worst' or 'mean', got {combine!r}")
    if not race:
        raise InputError("multitask_scores needs at least one task")
    keys = list(keys) if keys is not None else sorted({k for t in race.values() for k in t["runs"]})
    per = {name: scores(t["runs"], t["ce"], keys=keys, confidence=confidence, prior_weight=prior_weight)
           for name, t in race.items()}
    agg = min if combine == "worst" else fmean
    out: dict[str, Score] = {}
    for k in keys:
        tasks = {name: per[name][k] for name in race}
        lcbs, means = [s["lcb"] for s in tasks.values()], [s["mean"] for s in tasks.values()]
        out[k] = {"n": min(s["n"] for s in tasks.values()),
                  "mean": None if None in means else agg(means), "sd": None,
                  "lcb": None if None in lcbs else agg(lcbs),
                  "seeds": sorted(set.intersection(*(set(s["seeds"]) for s in tasks.values()))),
                  "tasks": tasks}
    return out


# --------------------------------------------------------------------------------------------
# Ranking and promotion
# --------------------------------------------------------------------------------------------
def rank(table: Mapping[str, Score], *, size: int | None = None, by: str = "lcb") -> list[str]:
    """Keys best first by lower bound (then more seeds, higher mean, key); no bound ranks last.
    This is the hall of fame's order: ``rank(scores(...), size=10)``. ``by="mean"`` orders by
    the mean instead (then the bound): how racing promotes within a stage, so a promising
    candidate whose few seeds disagree earns more seeds rather than losing to a safe one."""
    if by not in ("lcb", "mean"):
        raise InputError(f"rank by 'lcb' or 'mean', got {by!r}")
    first, second = ("lcb", "mean") if by == "lcb" else ("mean", "lcb")

    def order(k: str) -> tuple:
        s = table[k]
        return (s[first] is None, -(s[first] or 0.0), -s["n"], -(s[second] or 0.0), k)

    return sorted(table, key=order)[:size]


def _check_stages(stages: Sequence[int], fraction: float) -> None:
    if not stages or any(b <= a for a, b in zip(stages, stages[1:])) or stages[0] < 1:
        raise InputError(f"stages must be increasing seed counts >= 1, got {list(stages)}")
    if not 0.0 < fraction <= 1.0:
        raise InputError(f"promotion fraction must be in (0, 1], got {fraction}")


def plan_promotions(table: Mapping[str, Score], *, search_seed: int, generation: int,
                    eligible: Iterable[str] | None = None, stages: Sequence[int] = DEFAULT_STAGES,
                    fraction: float = 0.25) -> list[tuple[str, list[int]]]:
    """Which candidates to train on which new seeds after ``generation``.

    Candidates of ``eligible`` (default: all of ``table``; pass the population and the hall of
    fame) are grouped by stage: those with ``stages[i] <= n < stages[i+1]`` seeds. Of each
    group the best ``ceil(fraction * size)`` by mean (:func:`rank` ``by="mean"``) move to
    ``stages[i+1]`` seeds,
    taking the seeds they lack from this generation's ``"promote"`` stream (:func:`draw_seeds`).
    Candidates below the first stage or at the last are left alone. Returns ``[(key, seeds)]``
    in rank order; CE must be trained on :func:`ce_seeds_needed` of it too.
    """
    _check_stages(stages, fraction)
    pool = [k for k in (table if eligible is None else dict.fromkeys(eligible)) if k in table]
    plan: list[tuple[str, list[int]]] = []
    for lo, hi in zip(stages, stages[1:]):
        group = {k: table[k] for k in pool if lo <= table[k]["n"] < hi}
        for k in rank(group, size=math.ceil(fraction * len(group)), by="mean"):
            seeds = draw_seeds(search_seed, generation, hi - table[k]["n"], purpose="promote",
                               exclude=table[k]["seeds"])
            plan.append((k, seeds))
    return plan


def ce_seeds_needed(ce: SeedAcc, seed_lists: Iterable[Iterable[int]]) -> list[int]:
    """The seeds of ``seed_lists`` (a generation's base seeds, a promotion plan's seeds) that CE
    has not been trained on yet, sorted."""
    have = {int(k) for k in ce}
    return sorted({int(s) for seeds in seed_lists for s in seeds} - have)


# --------------------------------------------------------------------------------------------
# Checkpoint check
# --------------------------------------------------------------------------------------------
def _check_accs(where: str, name: str, accs: Any) -> None:
    if not isinstance(accs, dict):
        raise InputError(f"{where}: {name} must be an object of seed -> accuracy")
    for seed, acc in accs.items():
        if not (isinstance(seed, str) and seed.lstrip("-").isdigit()):
            raise InputError(f"{where}: {name} has seed {seed!r}; expected an integer string")
        if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0.0 <= acc <= 1.0:
            raise InputError(f"{where}: {name}[{seed}] must be an accuracy in [0, 1], got {acc!r}")


def check_race(race: Any, where: str = "race") -> None:
    """Check a racing state read from JSON: ``{task: {"ce": {seed: acc}, "runs": {key: {seed:
    acc}}}}`` with integer-string seeds and accuracies in [0, 1]; one-line
    :class:`~ngl.errors.InputError` naming the first bad field."""
    if not isinstance(race, dict):
        raise InputError(f"{where}: must be an object of task -> {{'ce', 'runs'}}")
    for task, entry in race.items():
        if not isinstance(entry, dict) or set(entry) != {"ce", "runs"}:
            raise InputError(f"{where}: task {task!r} must be an object with exactly 'ce' and 'runs'")
        _check_accs(where, f"{task}.ce", entry["ce"])
        if not isinstance(entry["runs"], dict):
            raise InputError(f"{where}: {task}.runs must be an object of cache key -> seeds")
        for key, accs in entry["runs"].items():
            _check_accs(where, f"{task}.runs[{key}]", accs)
