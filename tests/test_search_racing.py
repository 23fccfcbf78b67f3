"""Racing (ngl.search.racing): paired lower bounds against CE, staged promotion to more seeds, the
hall of fame by the bound, JSON state, deterministic seeds."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import zlib

import numpy as np
import pytest
from scipy import stats

from ngl.errors import InputError
from ngl.search import racing as R

SEARCH_SEED = 7


# --------------------------------------------------------------------------------------------
# A hand-made noisy fitness: accuracy = 0.85 + seed effect (shared by all, CE included) + gain
# + 1 pp of candidate noise, plus a bonus on the seeds a candidate was lucky on.
# --------------------------------------------------------------------------------------------
def _unit_noise(*parts: object) -> float:
    return float(np.random.default_rng(zlib.crc32("/".join(map(str, parts)).encode())).normal())


def make_fitness(gains: dict[str, float], lucky: dict[str, set[int]], bonus: float = 0.04):
    def fitness(key: str, seed: int) -> float:
        acc = 0.85 + 0.02 * _unit_noise("seed", seed) + 0.01 * _unit_noise(key, seed)
        acc += gains.get(key, 0.0) + (bonus if seed in lucky.get(key, ()) else 0.0)
        return min(max(acc, 0.0), 1.0)
    return fitness


def train(task: dict, fitness, todo: list[tuple[str, list[int]]]) -> None:
    """Train the (key, seeds) of ``todo`` and CE on every seed it lacks (as the engine would)."""
    for seed in R.ce_seeds_needed(task["ce"], [seeds for _, seeds in todo]):
        task["ce"][str(seed)] = fitness("ce", seed)
    for key, seeds in todo:
        task["runs"][key] = R.merge_runs(task["runs"].get(key, {}), {s: fitness(key, s) for s in seeds})


def race_generations(race: dict, fitness, keys: list[str], generations: range) -> list[list[str]]:
    """Generation 0 trains ``keys`` on its base seeds; every generation then promotes. Returns the
    hall of fame (top 5 by bound) after each generation."""
    task, hofs = race["search"], []
    for gen in generations:
        if gen == 0:
            base = R.draw_seeds(SEARCH_SEED, 0, R.DEFAULT_STAGES[0])
            train(task, fitness, [(k, base) for k in keys])
        table = R.scores(task["runs"], task["ce"])
        train(task, fitness, R.plan_promotions(table, search_seed=SEARCH_SEED, generation=gen))
        hofs.append(R.rank(R.scores(task["runs"], task["ce"]), size=5))
    return hofs


def noisy_setup():
    crowd = {f"c{i:02d}": g for i, g in enumerate(np.linspace(-0.03, 0.005, 20))}
    gains = {**crowd, "good": 0.015, "lucky": 0.0}
    lucky = {"lucky": set(R.draw_seeds(SEARCH_SEED, 0, R.DEFAULT_STAGES[0]))}     # its first two seeds
    return gains, make_fitness(gains, lucky)


def test_a_lucky_candidate_leaves_the_top_and_a_consistently_better_one_stays():
    gains, fitness = noisy_setup()
    race = {"search": {"ce": {}, "runs": {}}}
    task = race["search"]
    train(task, fitness, [(k, R.draw_seeds(SEARCH_SEED, 0, 2)) for k in sorted(gains)])
    first = R.scores(task["runs"], task["ce"])
    assert R.rank(first)[0] == "lucky"                   # on its 2 lucky seeds it leads
    task["runs"], task["ce"] = {}, {}
    hofs = race_generations(race, fitness, sorted(gains), range(6))   # the same, then racing
    final = R.scores(task["runs"], task["ce"])
    assert final["lucky"]["n"] == 16 and final["good"]["n"] == 16        # raced to the last stage
    assert hofs[-1][0] == "good" and hofs[-2][0] == "good"               # the good one stays on top
    assert R.rank(final).index("lucky") > 0 and final["lucky"]["lcb"] < final["good"]["lcb"]
    assert final["lucky"]["mean"] < first["lucky"]["mean"] - 0.02       # its luck washed out
    assert final["good"]["mean"] > 0.0                                   # true gain +1.5 pp, 16 noisy seeds
    assert sum(s["n"] for s in final.values()) <= 0.55 * 22 * 16          # 178 runs, not 16 seeds each


def test_promotion_is_staged_by_group_and_shares_seeds_within_a_generation():
    gains, fitness = noisy_setup()
    race = {"search": {"ce": {}, "runs": {}}}
    race_generations(race, fitness, sorted(gains), range(1))
    table = R.scores(race["search"]["runs"], race["search"]["ce"])
    counts = sorted(s["n"] for s in table.values())
    assert counts.count(4) == math.ceil(0.25 * 22) and counts.count(2) == 22 - 6
    plan = R.plan_promotions(table, search_seed=SEARCH_SEED, generation=1)
    by_n = {}
    for key, seeds in plan:
        by_n.setdefault(table[key]["n"], []).append(seeds)
    assert len(by_n[2]) == 4 and len(by_n[4]) == 2           # ceil(0.25 * 16), ceil(0.25 * 6)
    assert all(s == by_n[2][0] for s in by_n[2]) and all(len(s) == 2 for s in by_n[2])
    assert all(s == by_n[4][0] for s in by_n[4]) and all(len(s) == 4 for s in by_n[4])
    assert by_n[4][0][:2] == by_n[2][0]                      # one promotion stream per generation
    for key, seeds in plan:
        assert not set(seeds) & set(table[key]["seeds"])     # only seeds it lacks
    ranked = R.rank({k: table[k] for k in table if table[k]["n"] == 2}, by="mean")   # promotion explores
    assert [k for k, _ in plan if table[k]["n"] == 2] == ranked[:4]
    assert R.plan_promotions(table, search_seed=SEARCH_SEED, generation=1, eligible=["c00", "good"]) == [
        (k, s) for k, s in R.plan_promotions({k: table[k] for k in ("c00", "good")}, search_seed=SEARCH_SEED,
                                             generation=1)]


def test_lower_bound_matches_the_t_distribution_by_hand():
    d = [0.01, -0.005, 0.02, 0.012]
    n, m, s = len(d), np.mean(d), np.std(d, ddof=1)
    textbook = m - stats.t.ppf(0.9, n - 1) * s / np.sqrt(n)
    assert R.lower_bound(d, prior_weight=0) == pytest.approx(textbook, rel=1e-12)
    assert R.lower_bound(d) == pytest.approx(textbook, rel=1e-12)            # no prior sd given
    assert R.lower_bound(d, confidence=0.95, prior_weight=0) == pytest.approx(
        m - stats.t.ppf(0.95, 3) * s / 2, rel=1e-12)
    s0, w = 0.03, 1.5                                        # with a prior: pooled variance, df + w
    s_star = np.sqrt(((n - 1) * s ** 2 + w * s0 ** 2) / (n - 1 + w))
    assert R.lower_bound(d, prior_sd=s0, prior_weight=w) == pytest.approx(
        m - stats.t.ppf(0.9, n - 1 + w) * s_star / np.sqrt(n), rel=1e-12)
    assert R.lower_bound([0.02], prior_sd=s0) == pytest.approx(0.02 - stats.t.ppf(0.9, 1) * s0, rel=1e-12)
    assert R.lower_bound([0.02]) is None and R.lower_bound([], prior_sd=s0) is None
    same = [0.01, 0.01]                                      # two seeds agreeing by luck
    assert R.lower_bound(same, prior_weight=0) == pytest.approx(0.01)
    assert R.lower_bound(same, prior_sd=s0) < 0.01 - 0.02


def test_paired_scores_and_pooled_sd_by_hand():
    ce = {"1": 0.90, "2": 0.80, "3": 0.85, "9": 0.5}
    runs = {"a": {"1": 0.92, "2": 0.83, "3": 0.86}, "b": {1: 0.91, 2: 0.79}, "c": {"3": 0.80}}
    assert R.paired_diffs(runs["a"], ce) == pytest.approx([0.02, 0.03, 0.01])
    da, db = [0.02, 0.03, 0.01], [0.01, -0.01]
    pooled = np.sqrt((2 * np.var(da, ddof=1) + 1 * np.var(db, ddof=1)) / 3)
    assert R.pooled_sd(runs, ce) == pytest.approx(pooled)
    table = R.scores(runs, ce)
    assert table["c"]["n"] == 1 and table["c"]["lcb"] == pytest.approx(-0.05 - stats.t.ppf(0.9, 1) * pooled)
    assert table["a"]["seeds"] == [1, 2, 3] and table["a"]["mean"] == pytest.approx(0.02)
    assert R.scores({}, ce, keys=["x"])["x"] == {"n": 0, "mean": None, "sd": None, "lcb": None, "seeds": []}
    assert R.scores({"c": runs["c"]}, ce)["c"]["lcb"] == pytest.approx(
        -0.05 - stats.t.ppf(0.9, 1) * R.DEFAULT_PRIOR_SD)   # nobody has 2 seeds yet


def test_the_hall_of_fame_ranks_by_the_bound_not_the_mean():
    rng = np.random.default_rng(3)
    many = 0.015 + 0.014 * rng.standard_normal(16)
    many += 0.015 - many.mean()
    ce = {str(s): 0.85 for s in range(16)}
    runs = {"many": {str(s): 0.85 + d for s, d in enumerate(many)},
            "few": {"0": 0.85 + 0.0195, "1": 0.85 + 0.0205}}          # 2 seeds agreeing by luck
    table = R.scores(runs, ce, prior_sd=0.014)
    assert table["few"]["mean"] > table["many"]["mean"]
    assert R.rank(table) == ["many", "few"]
    assert R.rank(R.scores(runs, ce, prior_weight=0)) == ["few", "many"]   # the textbook bound trusts them
    unbounded = {"n": 0, "mean": None, "sd": None, "lcb": None, "seeds": []}
    assert R.rank({**table, "none": unbounded})[-1] == "none"


def test_multitask_score_is_the_worst_task_by_default_each_with_its_own_ce():
    seeds = [1, 2, 3, 4]
    race = {"noisy": {"ce": {str(s): 0.80 for s in seeds},
                      "runs": {"a": {str(s): 0.90 + 0.002 * s for s in seeds},
                               "b": {str(s): 0.82 + 0.002 * s for s in seeds}}},
            "big": {"ce": {str(s): 0.95 for s in seeds},
                    "runs": {"a": {str(s): 0.90 + 0.002 * s for s in seeds},
                             "b": {str(s): 0.95 + 0.002 * s for s in seeds}}}}
    worst = R.multitask_scores(race)
    for key in "ab":
        per = {t: R.scores(race[t]["runs"], race[t]["ce"])[key]["lcb"] for t in race}
        assert worst[key]["lcb"] == pytest.approx(min(per.values()))
        assert worst[key]["tasks"]["big"]["lcb"] == pytest.approx(per["big"])
    assert worst["a"]["mean"] == pytest.approx(0.905 - 0.95)
    assert R.rank(worst) == ["b", "a"]                       # a fails on the big task
    assert R.rank(R.multitask_scores(race, combine="mean")) == ["a", "b"]
    assert worst["a"]["n"] == 4 and worst["a"]["seeds"] == seeds
    with pytest.raises(InputError, match="combine"):
        R.multitask_scores(race, combine="median")


def test_race_state_round_trips_through_json_and_resumes_exactly():
    gains, fitness = noisy_setup()
    whole = {"search": {"ce": {}, "runs": {}}}
    hof_whole = race_generations(whole, fitness, sorted(gains), range(5))
    part = {"search": {"ce": {}, "runs": {}}}
    race_generations(part, fitness, sorted(gains), range(2))
    text = json.dumps(part, allow_nan=False)                 # the checkpoint
    resumed = json.loads(text)
    R.check_race(resumed)
    assert resumed == part
    hof_resumed = race_generations(resumed, fitness, sorted(gains), range(2, 5))
    assert resumed == whole and hof_resumed == hof_whole[2:]
    table = R.scores(whole["search"]["runs"], whole["search"]["ce"])
    assert json.loads(json.dumps(table, allow_nan=False)) == table


@pytest.mark.parametrize("bad, match", [
    ([], "must be an object"), ({"t": {"ce": {}}}, "exactly 'ce' and 'runs'"),
    ({"t": {"ce": {"x": 0.5}, "runs": {}}}, "integer string"),
    ({"t": {"ce": {"1": 1.5}, "runs": {}}}, r"t.ce\[1\] must be an accuracy"),
    ({"t": {"ce": {}, "runs": {"k": {"2": "0.9"}}}}, r"t.runs\[k\]\[2\]"),
    ({"t": {"ce": {}, "runs": []}}, "cache key")])
def test_check_race_names_the_bad_field(bad, match):
    with pytest.raises(InputError, match=match):
        R.check_race(bad, "ckpt.json")


def test_seed_schedule_is_deterministic_and_clear_of_validation_seeds():
    base = R.draw_seeds(SEARCH_SEED, 3, 16)
    assert base == R.draw_seeds(SEARCH_SEED, 3, 16) and len(set(base)) == 16
    assert base[:2] == R.draw_seeds(SEARCH_SEED, 3, 2)                 # a stream: prefixes agree
    assert base != R.draw_seeds(SEARCH_SEED + 1, 3, 16) != R.draw_seeds(SEARCH_SEED, 4, 16)
    assert set(base).isdisjoint(R.draw_seeds(SEARCH_SEED, 3, 16, purpose="promote"))
    assert all(R.SEED_RANGE[0] <= s < R.SEED_RANGE[1] for s in base)   # not 1000, 1001, ...
    assert R.draw_seeds(SEARCH_SEED, 3, 2, exclude=base[:1]) == base[1:3]
    code = "from ngl.search.racing import draw_seeds; print(draw_seeds(7, 3, 16))"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert json.loads(out.stdout) == base                              # the same in another process


def test_bad_stages_and_fractions_are_one_line_errors():
    with pytest.raises(InputError, match="increasing"):
        R.plan_promotions({}, search_seed=0, generation=0, stages=(4, 2))
    with pytest.raises(InputError, match="fraction"):
        R.plan_promotions({}, search_seed=0, generation=0, fraction=0.0)
