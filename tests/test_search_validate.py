"""Validation of a search's winners: Holm-corrected paired tests, selection on one set of seeds and
report on another, what the files hold is what is validated, the chosen loss exported as 00.json,
interrupt and resume, one validation per folder, and no rows of another validation mixed in."""
from __future__ import annotations

import json

import pytest
import torch

from ngl.search import SearchConfig, run_search
from ngl.search.engine import lock_folder
from ngl.search.validate import Candidate, candidates, choose, load_search, validate_search
from ngl.search.validation_report import headline, summarize

from test_search import toy_fitness

torch.set_num_threads(1)


def test_paired_deltas_and_holm_against_hand_computed_values():
    ce = {1: 0.90, 2: 0.92, 3: 0.91}
    acc = {("search", "ce"): ce,
           ("search", "expr:a"): {1: 0.93, 2: 0.95, 3: 0.95},      # diffs 3, 3, 4 pp
           ("search", "ngl"): {1: 0.91, 2: 0.92, 3: 0.93}}         # diffs 1, 0, 2 pp
    rows = summarize(acc, {"ce": "ce", "ngl": "ngl", "#0": "expr:a"}, ["search"])
    by = {r["label"]: r for r in rows}
    assert by["#0"]["delta_pp"] == pytest.approx(10 / 3) and by["ngl"]["delta_pp"] == pytest.approx(1.0)
    # paired t: #0 mean 3.333, sd 0.5774 -> t = 10.0, df 2 -> p = 0.009852;
    # ngl mean 1, sd 1 -> t = 1.732 -> p = 0.2254. Holm with m = 2: 2 x 0.009852, 1 x 0.2254
    assert by["#0"]["p_value"] == pytest.approx(0.009852, abs=2e-6)
    assert by["ngl"]["p_value"] == pytest.approx(0.22540, abs=2e-5)
    assert by["#0"]["p_holm"] == pytest.approx(2 * 0.009852, abs=4e-6)
    assert by["ngl"]["p_holm"] == pytest.approx(0.22540, abs=2e-5)
    assert by["#0"]["significant"] and not by["ngl"]["significant"]
    assert by["ce"]["p_holm"] is None and by["ce"]["mean_accuracy"] == pytest.approx(0.91)
    text, met = headline(rows, "#0", "a")
    assert met and "+3.33 pp on the search task" in text and "meets the goal" in text


def test_the_goal_is_not_met_by_a_loss_worse_elsewhere():
    rows = [{"task": "search", "label": "#0", "loss": "expr:a", "delta_pp": 2.0, "ci_low": 1.0, "ci_high": 3.0,
             "p_holm": 0.01, "significant": True},
            {"task": "transfer", "label": "#0", "loss": "expr:a", "delta_pp": -0.8, "ci_low": -2.0,
             "ci_high": 0.4, "p_holm": 0.3, "significant": False}]
    text, met = headline(rows, "#0", "a")
    assert not met and "worse than CE by more than 0.5 pp on a task" in text


def test_choice_is_the_best_worst_task_gain_not_the_best_search_rank():
    found = [Candidate("#0", "expr:a", 0, ""), Candidate("#1", "expr:b", 1, "")]
    acc = {("s", "ce"): {1: .80, 2: .80}, ("t", "ce"): {1: .80, 2: .80},
           ("s", "expr:a"): {1: .95, 2: .95}, ("t", "expr:a"): {1: .70, 2: .70},   # great, then collapses
           ("s", "expr:b"): {1: .82, 2: .82}, ("t", "expr:b"): {1: .81, 2: .81}}   # small, everywhere
    assert choose(acc, found, ["s", "t"]).label == "#1"


def _fake_search(tmp_path, infixes=("p - y", "square(p - y)")):
    from ngl import expr as E

    (tmp_path / "hall_of_fame").mkdir(parents=True)
    for rank, infix in enumerate(infixes):
        E.save(E.parse(infix), tmp_path / "hall_of_fame" / f"{rank:02d}.json", rank=rank, search_rank=rank)
    result = {"config": SearchConfig().to_dict(), "hall_of_fame": [{"infix": i} for i in infixes],
              "tuned": [{"rank": 0, "improved": True, "infix": "1.5 * p - y"},
                        {"rank": 1, "improved": False, "infix": "square(p - y)"}]}
    (tmp_path / "result.json").write_text(json.dumps(result))
    return result


def test_candidates_are_what_the_files_hold(tmp_path):
    from ngl import expr as E

    result = _fake_search(tmp_path)
    found = candidates(tmp_path, result, 2)
    assert [(c.label, c.spec, c.edited) for c in found] == [
        ("#0", "expr:p - y", False), ("#0 tuned", "expr:1.5 * p - y", False),
        ("#1", "expr:square(p - y)", False)]
    # validation exported the tuned version as 00.json: not an edit, the same candidates
    E.save(E.parse("1.5 * p - y"), tmp_path / "hall_of_fame" / "00.json", rank=0, search_rank=0)
    assert [(c.label, c.spec, c.edited) for c in candidates(tmp_path, result, 2)] == [
        (c.label, c.spec, c.edited) for c in found]
    E.save(E.parse("p * y"), tmp_path / "hall_of_fame" / "00.json", rank=0, search_rank=0)   # edited
    said: list[str] = []
    found = candidates(tmp_path, result, 2, echo=said.append)
    assert found[0].spec == "expr:p * y" and found[0].edited and found[0].label == "#0"
    assert all(c.label != "#0 tuned" for c in found)     # the tuning was of another loss
    assert len(said) == 1 and "no longer holds the search's loss #0" in said[0]


@pytest.mark.parametrize("result, message", [
    ({}, "has no search config"),
    ({"config": {}, "hall_of_fame": "abc"}, "hall_of_fame must be a list"),
    ({"config": {"population": True}, "hall_of_fame": []}, "population must be int"),
])
def test_a_broken_result_json_is_one_line(tmp_path, capsys, result, message):
    pytest.importorskip("deap")
    from ngl.cli import main

    (tmp_path / "result.json").write_text(json.dumps(result))
    assert main(["search", "validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err, err


def test_a_second_validation_of_one_folder_is_refused_naming_the_holder(tmp_path, capsys):
    pytest.importorskip("deap")
    from ngl.cli import main

    _fake_search(tmp_path)
    with lock_folder(tmp_path, "ngl search validate"):
        assert main(["search", "validate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is being written by ngl search validate pid" in err
    assert "bench" not in err and "one search or validation per folder" in err
    with lock_folder(tmp_path, "ngl search"):             # nor during the search itself
        with pytest.raises(ValueError, match="being written by ngl search pid"):
            load_search(tmp_path) and validate_search(tmp_path)


@pytest.mark.slow
def test_validation_end_to_end_with_interrupt_and_resume(tmp_path):
    cfg = SearchConfig.from_flat(dict(
        population=6, generations=1, fitness="custom", screen_steps=60, tune_top=0, max_steps=8,
        validate_top=2, select_seeds=2, validate_seeds=2, model="mlp", transfer_model="cnn_small",
        transfer_label_noise=0.0, transfer_epochs=1, seed_losses=["ce"]))
    run_search(cfg, tmp_path, fitness_fn=toy_fitness, progress=False, log=None)
    lines: list[str] = []

    def die_after_five(line: str) -> None:
        lines.append(line)
        if len(lines) == 5:
            raise KeyboardInterrupt            # as Ctrl-C (or a kill) in the middle of the grid

    with pytest.raises(KeyboardInterrupt):
        validate_search(tmp_path, echo=die_after_five)
    assert not (tmp_path / "validation" / "report.md").exists()
    report = validate_search(tmp_path, echo=lines.append)
    sel, rep = report["run"]["selection"], report["run"]["report"]
    assert sel["total"] == 3 * 2 * 3 and sel["skipped"] == 5       # tasks x seeds x (ce, #0, #1)
    assert rep["total"] == 3 * 2 * 4                                # (ce, ngl, sce, chosen) on new seeds
    again = validate_search(tmp_path)
    assert again["run"]["selection"]["ran"] == 0 and again["run"]["report"]["ran"] == 0
    assert again["rows"] == report["rows"]
    rows = {(r["task"], r["label"]): r for r in report["rows"]}
    chosen = report["chosen"]
    assert {t for t, _ in rows} == {"search", "task2", "transfer"} and all(r["n"] == 2 for r in rows.values())
    assert report["seeds"] == [2000, 2001] and report["select_seeds"] == [1000, 1001]
    md = (tmp_path / "validation" / "report.md").read_text()
    assert "Holm" in md and "## transfer task" in md and report["headline"] in md and "## Selection" in md
    doc = json.loads((tmp_path / "hall_of_fame" / "00.json").read_text())
    assert doc["chosen_by_validation"] and doc["search_rank"] == chosen["search_rank"]
    assert doc["infix"] == chosen["loss"][5:]
    assert doc["validation"]["report"]["search"]["delta_pp"] == pytest.approx(
        rows[("search", chosen["label"])]["delta_pp"])
    # another validation with other seeds in the same store: its own rows only
    other = validate_search(tmp_path, seeds=3, select_seeds=0)
    assert all(r["n"] == 3 for r in other["rows"]) and other["seeds"] == [2000, 2001, 2002]
    saved = json.loads((tmp_path / "validation" / "report.json").read_text())
    assert all(r["n"] == 3 for r in saved["rows"])
