"""Validation of a search's winners: Holm-corrected paired tests, the bench store end to end,
interrupt and resume, deltas recorded in the hall-of-fame files."""
from __future__ import annotations

import json

import pytest
import torch

from ngl.search import SearchConfig, run_search
from ngl.search.validate import summarize_validation, validate_search, validation_losses

from test_search import toy_fitness

torch.set_num_threads(1)


def test_paired_deltas_and_holm_against_hand_computed_values():
    ce = {1: 0.90, 2: 0.92, 3: 0.91}
    acc = {("search", "ce"): ce,
           ("search", "expr:a"): {1: 0.93, 2: 0.95, 3: 0.95},      # diffs 3, 3, 4 pp
           ("search", "ngl"): {1: 0.91, 2: 0.92, 3: 0.93}}         # diffs 1, 0, 2 pp
    rows = summarize_validation(acc, {"ce": "ce", "ngl": "ngl", "#0": "expr:a"}, ["search"])
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


def test_losses_to_validate_include_tuned_versions_that_changed():
    result = {"hall_of_fame": [{"infix": "p - y"}, {"infix": "square(p - y)"}],
              "tuned": [{"rank": 0, "improved": True, "infix": "1.5 * p - y"},
                        {"rank": 1, "improved": False, "infix": "square(p - y)"}]}
    assert validation_losses(result, 2) == {"ce": "ce", "ngl": "ngl", "sce": "sce", "#0": "expr:p - y",
                                            "#0 tuned": "expr:1.5 * p - y", "#1": "expr:square(p - y)"}


class Interrupt(Exception):
    pass


@pytest.mark.slow
def test_validation_end_to_end_with_interrupt_and_resume(tmp_path):
    cfg = SearchConfig.from_flat(dict(
        population=6, generations=1, fitness="custom", screen_steps=60, tune_top=0, max_steps=8,
        validate_top=1, validate_seeds=2, model="mlp", transfer_model="cnn_small",
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
    total = 2 * 2 * 4                          # tasks x seeds x (ce, ngl, sce, #0)
    assert report["run"]["total"] == total and report["run"]["skipped"] == 5
    assert report["run"]["ran"] == total - 5
    again = validate_search(tmp_path)
    assert again["run"]["ran"] == 0 and again["rows"] == report["rows"]
    rows = {(r["task"], r["label"]): r for r in report["rows"]}
    assert {t for t, _ in rows} == {"search", "transfer"} and all(r["n"] == 2 for r in rows.values())
    md = (tmp_path / "validation" / "report.md").read_text()
    assert "Holm" in md and "## transfer task" in md and report["headline"] in md
    doc = json.loads((tmp_path / "hall_of_fame" / "00.json").read_text())
    assert doc["validation"]["search"]["delta_pp"] == pytest.approx(rows[("search", "#0")]["delta_pp"])
    assert set(json.loads((tmp_path / "validation" / "report.json").read_text())) >= {"rows", "headline"}
