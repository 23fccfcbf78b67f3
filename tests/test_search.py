"""Fast tests of the GP loss search: operators, screen, cache, failures, checkpoint/resume, outputs."""
from __future__ import annotations

import csv
import json
import math
import random

import numpy as np
import pytest
import torch

from ngl import expr as E
from ngl.search import (SearchConfig, from_expr, is_valid, make_pset, make_toolbox, run_search, screen,
                        to_expr, WORST_FITNESS)
from ngl.executors import make_executor as make_search_executor
from ngl.runspec import TrainConfig

torch.set_num_threads(1)


def toy_fitness(infix: str, settings: dict) -> float:
    """Cheap deterministic stand-in for training: rewards losses falling in the true-class p."""
    f = E.parse(infix)
    p = np.array([0.1, 0.9])
    v = np.asarray(E.evaluate(f, p, np.array([1.0, 1.0]), namespace="numpy"), dtype=float)
    drop = float(v[0] - v[1])
    return 1.0 / (1.0 + math.exp(-max(min(drop, 50.0), -50.0)))


CALLS: list[str] = []


def counting_fitness(infix: str, settings: dict) -> float:
    CALLS.append(infix)
    return toy_fitness(infix, settings)


def flaky_fitness(infix: str, settings: dict) -> float:
    if "square" in infix:
        raise RuntimeError("worker exploded")
    if "abs" in infix:
        return float("nan")
    return 0.5


# ---------------------------------------------------------------------------------------------
# Representation and operators
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("infix", ["exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))", "-(y * log(p))",
                                   "max(p, (-1.5)) / sqrt(y)"])
def test_tree_round_trip_preserves_expression(infix):
    pset = make_pset()
    expr = E.parse(infix)
    tree = from_expr(expr, pset)
    assert to_expr(tree) == expr
    assert tree.height == expr.height - 1          # DEAP counts a lone leaf as height 0
    p, y = np.linspace(0, 1, 7), np.array([0, 1, 0, 1, 0, 1, 1.0])
    np.testing.assert_allclose(E.evaluate(to_expr(tree), p, y), E.evaluate(expr, p, y))


def test_operators_keep_trees_valid():
    random.seed(3)
    max_height = 6
    pset = make_pset()
    tb = make_toolbox(pset, tournament_size=3, max_height=max_height, init_max_height=4)
    pop = [tb.individual() for _ in range(30)]
    for _ in range(300):
        a, b = random.sample(range(len(pop)), 2)
        kids = list(tb.mate(tb.clone(pop[a]), tb.clone(pop[b]))) + list(tb.mutate(tb.clone(pop[a])))
        for kid in kids:
            expr = to_expr(kid)                    # independent check through ngl.expr
            assert expr.height - 1 <= max_height
            assert expr.symbols == {"p", "y"}
            assert expr.size <= E.MAX_NODES
            assert is_valid(kid, max_height=max_height)
        pop[a], pop[b] = kids[0], kids[2]
    # variation really happens: more than a handful of distinct trees
    assert len({str(t) for t in pop}) > 10


def test_is_valid_rejects_missing_variable_and_height():
    pset = make_pset()
    assert not is_valid(from_expr(E.parse("p * 2"), pset), max_height=10)
    assert not is_valid(from_expr(E.parse("y + 1"), pset), max_height=10)
    deep = from_expr(E.parse("exp(exp(exp(exp(p * y))))"), pset)
    assert not is_valid(deep, max_height=4) and is_valid(deep, max_height=5)


def test_unknown_primitive_is_refused():
    with pytest.raises(ValueError, match="unknown primitive"):
        make_pset(primitives=["add", "frobnicate"])


# ---------------------------------------------------------------------------------------------
# Rejection screen
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("infix,why", [
    ("3 + 0 * p * y", "constant in p"),            # contains p and y, but constant
    ("y * 3 + 1", "missing variable p"),            # p-free
    ("p * 2", "missing variable y"),
    ("p * y", "does not raise"),                    # increasing in the true-class probability
    ("-(y * log(1 - p))", "does not raise"),
    ("exp(p * y)", "does not raise"),
])
def test_screen_rejects_bad_losses(infix, why):
    res = screen(E.parse(infix))
    assert not res.ok and why in res.reason


def test_screen_rejects_non_finite():
    # exp(exp(exp(...))) overflows to inf on the probe grid
    res = screen(E.parse("exp(exp(exp(exp(10 * p)))) * y"))
    assert not res.ok and "non-finite" in res.reason


@pytest.mark.parametrize("expr", [E.CE, E.NGL, E.parse("square(p - y)")])
def test_screen_accepts_good_losses(expr):
    res = screen(expr)
    assert res.ok, res.reason
    assert res.final_p_true > 0.1 + 0.2            # started near 1/classes


def test_screen_minimisation_matches_torch_adam():
    """The screen's written-out Adam equals torch.optim.Adam on the same free logits (NGL, 25 steps)."""
    res = screen(E.NGL, steps=25, lr=0.1, batch=8, classes=5, min_gain=0.99, seed=3)
    gen = torch.Generator().manual_seed(3)
    z = (0.1 * torch.randn(8, 5, generator=gen, dtype=torch.float64)).requires_grad_(True)
    labels = torch.randint(0, 5, (8,), generator=gen)
    onehot = torch.nn.functional.one_hot(labels, 5).double()
    opt = torch.optim.Adam([z], lr=0.1)
    for _ in range(25):
        opt.zero_grad()
        p = torch.softmax(z, 1)
        (torch.exp(2.4092 - p * (1 + onehot)) - torch.cos(torch.cos(torch.sin(p)))).mean().backward()
        opt.step()
    ref = float(torch.softmax(z.detach(), 1).gather(1, labels[:, None]).mean())
    assert res.final_p_true == pytest.approx(ref, rel=1e-9)
    assert not res.ok and "does not raise" in res.reason       # 0.99 gain is out of reach


# ---------------------------------------------------------------------------------------------
# Cache, failures
# ---------------------------------------------------------------------------------------------
def _evaluate(infixes, fitness, state=None, gen=0, **kw):
    """One generation's evaluation of ``infixes`` on the default task alone (no second task)."""
    from types import SimpleNamespace

    from ngl.search.scoring import Context, evaluate_population

    cfg = _cfg(task2_dataset="none", **kw)
    pset = make_pset()
    pop = [from_expr(E.parse(t), pset) for t in infixes]
    st = state or SimpleNamespace(cache={}, race={}, hof=[])
    ctx = Context(cfg, cfg.fitness_tasks(), fitness, make_search_executor("inline"))
    return pop, st, evaluate_population(pop, gen, st, ctx)


def test_cache_trains_equivalent_trees_once_and_races_the_best():
    CALLS.clear()
    infixes = ["-(y * log(p))", "-(log(p) * y)", "0 - y * log(p)", "(1 - p) * y", "y * (1 - p)"]
    pop, st, stats = _evaluate(infixes, counting_fitness)
    # 2 distinct losses x 2 base seeds, and CE (its expression) on the same 2 seeds
    assert len(CALLS) == 2 * 2 + 2 and stats["evaluations"] == 2 and stats["cache_hits"] == 3
    fits = [ind.fitness.values[0] for ind in pop]
    assert fits[0] == fits[1] == fits[2] and fits[3] == fits[4]
    ce_runs = st.race["search"]["ce"]
    assert len(ce_runs) == 2 and all(v == pytest.approx(toy_fitness("-(y * log(p))", None)) for v in ce_runs.values())
    # the next generation trains no new candidate, but promotes the best of the 2-seed stage to 4 seeds
    CALLS.clear()
    _, st, stats2 = _evaluate(infixes[:2] + infixes[3:], counting_fitness, state=st, gen=1)
    assert stats2["evaluations"] == 0 and stats2["screened"] == 0 and stats2["promoted"] == 1
    assert len(CALLS) == 2 + 2                      # 2 more seeds for the promoted one, CE beside it
    assert sorted(h["seeds"] for h in st.hof) == [2, 4]


def test_rejected_and_failed_get_worst_fitness_with_reason():
    pop, st, stats = _evaluate(["p * y", "square(p - y)", "abs(p - y)", "-(y * log(p))"], flaky_fitness)
    rej, crash, nan, ok = ((i.status.value, i.fitness.values[0], i.reason) for i in pop)
    assert rej[0] == "rejected" and rej[1] == WORST_FITNESS and rej[2]
    assert crash[0] == "failed" and "exploded" in crash[2] and crash[1] == WORST_FITNESS
    assert nan[0] == "failed" and nan[1] == WORST_FITNESS
    assert ok[0] == "ok" and WORST_FITNESS < ok[1] <= 0.0   # no gain over CE, itself: a bound below 0
    assert stats["rejected"] == 1 and stats["failed"] == 2 and stats["evaluations"] == 3
    assert all(k not in st.race["search"]["runs"] for k in st.cache if st.cache[k]["status"] != "ok")


# ---------------------------------------------------------------------------------------------
# The loop: determinism, resume, outputs
# ---------------------------------------------------------------------------------------------
def _cfg(**kw) -> SearchConfig:
    base = dict(population=10, generations=4, tournament_size=3, hall_of_fame=5, max_height=6,
                fitness="custom", screen_steps=60, seed=7, tune_top=0)
    return SearchConfig.from_flat({**base, **kw})


def test_same_seed_same_search_and_no_leak_between_searches(tmp_path):
    a = run_search(_cfg(), tmp_path / "a", fitness_fn=toy_fitness, progress=False, log=None)
    run_search(_cfg(seed=1, max_height=4, primitives=["add", "mul", "log", "neg"]), tmp_path / "x",
               fitness_fn=toy_fitness, progress=False, log=None)
    b = run_search(_cfg(), tmp_path / "b", fitness_fn=toy_fitness, progress=False, log=None)
    assert a.hall_of_fame == b.hall_of_fame
    assert [r["best"] for r in a.logbook] == [r["best"] for r in b.logbook]


def lazy_import_fitness():
    """Like toy_fitness, but its first call draws from the global RNG (as a lazy import may)."""
    state = {"first": True}

    def fn(infix: str, settings: dict) -> float:
        if state.pop("first", False):
            random.random()
        return toy_fitness(infix, settings)

    return fn


def random_drawing_fitness(infix: str, settings: dict) -> float:
    random.random()
    np.random.rand()
    torch.rand(1)
    return toy_fitness(infix, settings)


def test_fitness_runs_do_not_move_the_search_rng(tmp_path):
    # a fitness (or a library it imports lazily) drawing from global RNGs must not change the
    # search, or a resumed run (which imports at another time) would diverge
    a = run_search(_cfg(), tmp_path / "a", fitness_fn=toy_fitness, progress=False, log=None)
    b = run_search(_cfg(), tmp_path / "b", fitness_fn=random_drawing_fitness, progress=False, log=None)
    assert a.hall_of_fame == b.hall_of_fame


def test_stop_and_resume_gives_the_same_hall_of_fame(tmp_path):
    full = run_search(_cfg(), tmp_path / "full", fitness_fn=lazy_import_fitness(), progress=False, log=None)
    part = run_search(_cfg(), tmp_path / "part", fitness_fn=lazy_import_fitness(), progress=False, log=None,
                      stop_after=2)
    assert not part.finished and len(part.logbook) == 3
    state = json.loads((tmp_path / "part" / "checkpoint.json").read_text())
    assert state["generation"] == 2 and len(state["population"]) == 10
    random.seed(12345)                               # the resumed run must restore its own RNG state
    resumed = run_search(_cfg(), tmp_path / "part", fitness_fn=lazy_import_fitness(), progress=False,
                         log=None, resume=True)
    assert resumed.finished
    assert resumed.hall_of_fame == full.hall_of_fame
    assert [r["best"] for r in resumed.logbook] == [r["best"] for r in full.logbook]
    with pytest.raises(ValueError, match="differs"):
        run_search(_cfg(seed=8), tmp_path / "part", fitness_fn=toy_fitness, progress=False,
                   log=None, resume=True)


def test_outputs_and_seed_losses(tmp_path):
    res = run_search(_cfg(generations=1, seed_losses=["ce", "ngl"]), tmp_path, fitness_fn=toy_fitness,
                     progress=False, log=None)
    state = json.loads((tmp_path / "checkpoint.json").read_text())
    assert json.loads((tmp_path / "config.json").read_text())["seed_losses"] == ["ce", "ngl"]
    rows = list(csv.DictReader((tmp_path / "generations.csv").open()))
    assert [int(r["generation"]) for r in rows] == [0, 1]
    assert {"best", "median", "rejection_rate", "cache_hit_rate", "evaluations", "wall_time"} <= set(rows[0])
    assert float(rows[-1]["best"]) == pytest.approx(res.hall_of_fame[0]["fitness"])
    assert (tmp_path / "generations.png").stat().st_size > 1000
    hof = sorted((tmp_path / "hall_of_fame").glob("*.json"))
    assert len(hof) == len(res.hall_of_fame) >= 1
    doc = json.loads(hof[0].read_text())
    assert doc["fitness"] == res.hall_of_fame[0]["fitness"] and doc["infix"] and doc["latex"]
    from ngl.losses import from_expression, get_loss

    for loss_fn in (from_expression(hof[0]), get_loss(str(hof[0]))):
        value = loss_fn(torch.randn(4, 10), torch.tensor([0, 1, 2, 3]))
        assert torch.isfinite(value)


def test_seed_losses_enter_generation_zero(tmp_path):
    res = run_search(_cfg(generations=0, seed_losses=["ce", "ngl"]), tmp_path, fitness_fn=toy_fitness,
                     progress=False, log=None)
    pop = json.loads((tmp_path / "checkpoint.json").read_text())["population"]
    assert E.parse(pop[0]["infix"]) == E.CE and E.parse(pop[1]["infix"]) == E.NGL
    assert res.logbook[0]["requested"] == 10
    with pytest.raises(ValueError, match="no expression"):
        run_search(_cfg(generations=0, seed_losses=["label_smoothing_ce"]), tmp_path / "x",
                   fitness_fn=toy_fitness, progress=False, log=None)
    with pytest.raises(ValueError, match="unknown loss"):
        run_search(_cfg(generations=0, seed_losses=["nope"]), tmp_path / "y",
                   fitness_fn=toy_fitness, progress=False, log=None)


@pytest.mark.parametrize("kw,msg", [({"population": 1}, "population"), ({"crossover": 1.5}, "crossover"),
                                    ({"fitness": "magic"}, "fitness"), ({"elites": 10}, "elites")])
def test_bad_config_is_one_clear_error(kw, msg):
    with pytest.raises(ValueError, match=msg):
        _cfg(**kw)


def test_config_round_trip_and_unknown_keys():
    cfg = _cfg(seed_losses=["ce"])
    assert SearchConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown search config key 'bogus'"):
        SearchConfig.from_dict({"bogus": 1})


def test_resume_without_checkpoint_says_so(tmp_path):
    with pytest.raises(FileNotFoundError, match="no search checkpoint"):
        run_search(_cfg(), tmp_path, fitness_fn=toy_fitness, resume=True, progress=False, log=None)


def test_initial_trees_are_redrawn_until_they_pass_the_screen(tmp_path):
    screened = run_search(_cfg(generations=0, init_tries=50), tmp_path / "a", fitness_fn=toy_fitness,
                          progress=False, log=None)
    raw = run_search(_cfg(generations=0, init_tries=1), tmp_path / "b", fitness_fn=toy_fitness,
                     progress=False, log=None)
    assert screened.logbook[0]["rejected"] == 0 and screened.logbook[0]["screened"] >= 1
    assert raw.logbook[0]["rejected"] > 0          # random trees are mostly useless losses


def always_failing_fitness(infix: str, settings: dict) -> float:
    raise FileNotFoundError("dataset files not found at /nowhere")


def test_bad_harness_settings_fail_before_the_search(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        run_search(SearchConfig.from_flat({"fitness": "train", "model": "nope", "generations": 0}), tmp_path, progress=False, log=None)
    with pytest.raises(ValueError, match="the CE reference run failed on task 'search'.*nowhere"):
        run_search(_cfg(generations=2), tmp_path / "x", fitness_fn=always_failing_fitness,
                   progress=False, log=None)


def test_cli_flags_override_the_config_file(tmp_path):
    from ngl.cli import build_parser, parse
    from ngl.commands.search import config_from_args

    path = tmp_path / "search.json"
    path.write_text(json.dumps({"generations": 7, "population": 30, "seed_losses": ["ngl"],
                                "max_steps": 40}))
    args = parse(build_parser(), ["search", "--config", str(path), "--population", "6",
                                  "--seed-losses", "ce,ngl", "--primitives", "add,mul,log",
                                  "--max-steps", "300"])
    cfg = config_from_args(args)
    assert (cfg.generations, cfg.population) == (7, 6)
    assert cfg.seed_losses == ["ce", "ngl"] and cfg.primitives == ["add", "mul", "log"]
    # a flag given explicitly at its default value still overrides the file (300 is the default)
    assert SearchConfig().task.max_steps == 300 and cfg.task.max_steps == 300
    assert config_from_args(parse(build_parser(), ["search", "--config", str(path)])).task.max_steps == 40
    path.write_text(json.dumps({"generations": 7, "nonsense": 1}))
    with pytest.raises(ValueError, match="nonsense"):
        parse(build_parser(), ["search", "--config", str(path)])
    path.write_text(json.dumps({"population": True}))
    with pytest.raises(TypeError, match="population must be int"):
        config_from_args(parse(build_parser(), ["search", "--config", str(path)]))


def test_resume_extends_a_finished_search(tmp_path):
    longer = run_search(_cfg(generations=3), tmp_path / "a", fitness_fn=toy_fitness, progress=False, log=None)
    run_search(_cfg(generations=1), tmp_path / "b", fitness_fn=toy_fitness, progress=False, log=None)
    extended = run_search(_cfg(generations=3), tmp_path / "b", fitness_fn=toy_fitness, progress=False,
                          log=None, resume=True)
    assert [r["generation"] for r in extended.logbook] == [0, 1, 2, 3]
    assert extended.hall_of_fame == longer.hall_of_fame


def test_a_second_search_on_one_folder_is_refused_naming_the_holder(tmp_path):
    from ngl.locking import LockedError
    from ngl.search.engine import lock_folder

    with lock_folder(tmp_path, "ngl search"):
        with pytest.raises(LockedError, match="being written by ngl search pid .* one search or validation"):
            run_search(_cfg(generations=0), tmp_path, fitness_fn=toy_fitness, overwrite=True,
                       progress=False, log=None)
    assert not (tmp_path / "checkpoint.json").exists()     # the refused one wrote nothing


def test_bad_settings_are_refused_before_overwrite_deletes_anything(tmp_path, capsys):
    from ngl.cli import main

    run_search(_cfg(generations=0), tmp_path, fitness_fn=toy_fitness, progress=False, log=None)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    for argv, message in ((["--primitives", "bogus"], "unknown primitive 'bogus'"),
                          (["--seed-losses", "nope"], "unknown loss 'nope'")):
        assert main(["search", "--fitness", "linear", "--out", str(tmp_path), "--overwrite", *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert message in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
