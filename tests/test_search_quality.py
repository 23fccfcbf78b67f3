"""Search quality: diversity (re-variation of duplicates, unique fraction), tie accounting, CMA-ES
constant tuning, checkpoint safety (no silent overwrite, versions, field checks), proxy
calibration, and the CLI without DEAP."""
from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
import torch

from ngl import expr as E
from ngl.errors import InputError
from ngl.search import (SearchConfig, from_expr, make_pset, make_toolbox, revary_duplicates,
                        run_search, tie_fraction, to_expr, unique_fraction)
from ngl.executors import make_executor as make_search_executor
from ngl.runspec import TrainConfig
from ngl.search import WORST_FITNESS
from ngl.search.evaluate import cache_key, spearman

from test_search import toy_fitness

torch.set_num_threads(1)


def _cfg(**kw) -> SearchConfig:
    base = dict(population=10, generations=3, tournament_size=3, hall_of_fame=5, max_height=6,
                fitness="custom", screen_steps=60, seed=7, tune_top=0)
    return SearchConfig.from_flat({**base, **kw})


# ---------------------------------------------------------------------------------------------
# Diversity and ties on hand-made populations
# ---------------------------------------------------------------------------------------------
def test_unique_fraction_counts_equivalent_trees_once():
    pset = make_pset()
    pop = [from_expr(E.parse(t), pset) for t in ["p * y", "y * p", "-(y * log(p))",
                                                 "0 - y * log(p)", "(1 - p) * y"]]
    assert unique_fraction(pop) == pytest.approx(3 / 5)


def test_tie_fraction_counts_candidates_within_one_validation_sample():
    # 1/431 = 0.00232: 0.9977 is within one sample of 1.0, 0.9970 is not
    fits = [1.0, 0.9977, 0.9970, 0.5, 0.0, 1.0, 0.95, 0.9, 0.99, 0.98]
    assert tie_fraction(fits, 1 / 431) == pytest.approx(3 / 10)
    assert tie_fraction([0.7] * 4, 0.01) == 1.0 and tie_fraction([], 0.1) == 0.0


def test_duplicates_of_the_population_are_varied_again():
    random.seed(3)
    pset = make_pset()
    tb = make_toolbox(pset, tournament_size=3, max_height=6)
    keep = [from_expr(E.CE, pset)]
    offspring = [from_expr(E.CE, pset), from_expr(E.parse("-(log(p) * y)"), pset),
                 from_expr(E.parse("(1 - p) * y"), pset), from_expr(E.parse("y * (1 - p)"), pset)]
    for ind in offspring:
        ind.fitness.values = (0.5,)
    assert unique_fraction(keep + offspring) == pytest.approx(2 / 5)     # before: 3 copies of CE
    copies = [tb.clone(i) for i in offspring]
    assert revary_duplicates(copies, keep, tb, tries=0) == 0 and copies == offspring
    revaried = revary_duplicates(offspring, keep, tb, tries=10)
    assert revaried >= 3                                   # CE twice (vs keep), y*(1-p) once
    keys = [cache_key(to_expr(i)) for i in keep + offspring]
    assert len(set(keys)) == 5
    assert sum(not i.fitness.valid for i in offspring) == revaried   # re-varied ones are re-scored
    assert not offspring[0].fitness.valid and not offspring[1].fitness.valid


def test_population_stays_diverse_and_csv_reports_it(tmp_path):
    div = run_search(_cfg(generations=4), tmp_path / "a", fitness_fn=toy_fitness, progress=False, log=None)
    dup = run_search(_cfg(generations=4, revary_tries=0), tmp_path / "b", fitness_fn=toy_fitness,
                     progress=False, log=None)
    after = [r["unique_fraction"] for r in div.logbook[1:]]
    assert min(after) >= 0.8
    assert sum(r["unique_fraction"] for r in dup.logbook[1:]) < sum(after)
    header = (tmp_path / "a" / "generations.csv").read_text().splitlines()[0].split(",")
    assert "unique_fraction" in header and "revaried" in header


# ---------------------------------------------------------------------------------------------
# Constant tuning
# ---------------------------------------------------------------------------------------------
def test_cma_tuning_fixes_a_deliberately_bad_constant():
    from ngl.search.fitness import linear_fitness
    from ngl.search.tune import tune_constants

    bad = "y * square(p - -1.5)"        # pulls the true-class p towards -1.5: training unlearns
    settings = TrainConfig(max_steps=40, lr=0.05)
    before = linear_fitness(bad, settings)
    score = lambda infixes: [linear_fitness(i, settings) for i in infixes]   # noqa: E731
    res = tune_constants(bad, score=score, evaluations=24, sigma=1.5, seed=0)
    assert before < 0.3 and res["fitness_before"] == pytest.approx(before)
    assert res["improved"] and res["fitness"] > before + 0.4
    assert res["constants"][0] > 0.0                        # now pulls p towards a positive target
    assert linear_fitness(res["infix"], settings) == pytest.approx(res["fitness"])


def test_search_exports_tuned_constants_with_fitness_before_and_after(tmp_path):
    run_search(_cfg(generations=1, tune_top=2, tune_evals=6, seed_losses=["ngl"]), tmp_path,
               fitness_fn=toy_fitness, progress=False, log=None)
    docs = [json.loads(p.read_text()) for p in sorted((tmp_path / "hall_of_fame").glob("*.json"))[:2]]
    for doc in docs:
        t = doc["tuning"]
        if t["status"] == "ok":                 # scored on the tuning seeds, the start included
            assert t["fitness"] >= t["fitness_before"] > WORST_FITNESS
            assert len(t["constants"]) == len(t["constants_before"]) >= 1 and t["evaluations"] == 6


# ---------------------------------------------------------------------------------------------
# Checkpoints: no silent overwrite, version, field checks
# ---------------------------------------------------------------------------------------------
def test_existing_checkpoint_is_never_replaced_without_resume_or_overwrite(tmp_path):
    run_search(_cfg(generations=1), tmp_path, fitness_fn=toy_fitness, progress=False, log=None)
    before = (tmp_path / "checkpoint.json").read_bytes()
    with pytest.raises(InputError, match="--resume.*--overwrite"):
        run_search(_cfg(generations=1, seed=3), tmp_path, fitness_fn=toy_fitness, progress=False, log=None)
    assert (tmp_path / "checkpoint.json").read_bytes() == before
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / "results.sqlite").write_text("the old search's validation")
    res = run_search(_cfg(generations=1, seed=3), tmp_path, fitness_fn=toy_fitness, progress=False,
                     log=None, overwrite=True)
    assert res.finished and json.loads((tmp_path / "config.json").read_text())["seed"] == 3
    assert not (tmp_path / "validation").exists()          # no stale outputs of the old search


def _tamper(tmp_path, **changes):
    path = tmp_path / "checkpoint.json"
    state = json.loads(path.read_text())
    for key, fn in changes.items():
        state[key] = fn(state[key])
    path.write_text(json.dumps(state))


@pytest.mark.parametrize("key,fn,msg", [
    ("version", lambda v: 1, "format version 1; this ngl reads version 3"),
    ("population", lambda pop: pop * 2000, "population has 20000 entries, the config says 10"),
    ("generation", lambda g: 10 ** 9, r"generation must be an integer in \[0, 3\]"),
    ("generation", lambda g: -5, r"generation must be an integer in \[0, 3\]"),
    ("population", lambda pop: [{**pop[0], "fitness": 1e9}] + pop[1:], r"fitness must be a paired gain over CE"),
    ("hall_of_fame", lambda h: h * 10, "hall_of_fame has"),
    ("elapsed", lambda e: -1, "elapsed"),
    ("rng", lambda r: {}, "rng"),
    ("population", lambda pop: [{**pop[0], "infix": "p +* y"}] + pop[1:], "population.0..infix"),
])
def test_bad_checkpoint_fields_are_one_line_errors(tmp_path, key, fn, msg):
    run_search(_cfg(generations=3), tmp_path, fitness_fn=toy_fitness, progress=False, log=None,
               stop_after=1)
    _tamper(tmp_path, **{key: fn})
    with pytest.raises(InputError, match=msg) as info:
        run_search(_cfg(generations=3), tmp_path, fitness_fn=toy_fitness, progress=False, log=None,
                   resume=True)
    assert "\n" not in str(info.value)


def test_version_one_checkpoint_names_both_versions_in_the_cli(tmp_path, capsys):
    from ngl.cli import main

    (tmp_path / "checkpoint.json").write_text(json.dumps({"version": 1, "config": {}, "generation": 0}))
    code = main(["search", "--out", str(tmp_path), "--resume", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "version 1" in err and "version 3" in err


# ---------------------------------------------------------------------------------------------
# Proxy calibration
# ---------------------------------------------------------------------------------------------
def test_spearman_against_hand_computed_values():
    assert spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(0.8207826816681233)
    assert spearman([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert spearman([1, 1, 1], [1, 2, 3]) is None


# ---------------------------------------------------------------------------------------------
# The CLI without the search extra
# ---------------------------------------------------------------------------------------------
_NO_DEAP = """
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "deap" or name.startswith("deap."):
            raise ModuleNotFoundError("No module named 'deap'", name="deap")
sys.meta_path.insert(0, Block())
from ngl.cli import build_parser, main
build_parser()
assert "deap" not in sys.modules
sys.exit(main(sys.argv[1:]))
"""


def test_parser_builds_without_deap_and_search_says_which_extra(tmp_path):
    ok = subprocess.run([sys.executable, "-c", _NO_DEAP, "losses"], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([sys.executable, "-c", _NO_DEAP, "search", "--out", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "ngl search: error: ngl search needs the optional package 'deap': "
        "pip install 'next-generation-loss[search]'"]


def seed_fitness(infix: str, task) -> float:
    return task.seed / 10


def test_fitness_is_the_mean_over_the_training_seeds():
    from ngl.search.evaluate import fitness_task

    assert fitness_task(("k", "p * y", TrainConfig(seed=9), [1, 3], seed_fitness)) == pytest.approx(0.2)
    assert fitness_task(("k", "p * y", TrainConfig(seed=9), [], seed_fitness)) == pytest.approx(0.9)

