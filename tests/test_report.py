"""ngl.report against a hand-built results database: the table arithmetic (CE absolute, deltas in
pp, Mean), verdicts exactly at +-0.5, the paired t-test vs closed forms, missing cells, failed and
diverged runs, and Markdown/CSV/JSON outputs that parse."""
from __future__ import annotations

import csv
import io
import json
import math

import pytest

from ngl.bench import ResultStore, run_key
from ngl.report import paired_test, summarize, to_csv, to_json, to_markdown, verdict, write_report
from ngl.report.published import PUBLISHED, compare_markdown

# test accuracies (fractions) per (dataset, loss) for seeds 0, 1, 2 of model "m"
ACC = {
    ("A", "ce"): [0.900, 0.910, 0.920],     # mean 91.0 %
    ("A", "ngl"): [0.905, 0.915, 0.925],    # +0.5 pp exactly (in decimal) -> same
    ("A", "sce"): [0.895, 0.905, 0.915],    # -0.5 pp -> same
    ("A", "focal"): [0.9151, 0.9251, None], # seed 2 failed; mean 92.01 - 91.0 = +1.01 -> better
    ("B", "ce"): [0.800, 0.800, 0.800],
    ("B", "ngl"): [0.7949, 0.7949, 0.7949], # -0.51 -> worse
    ("B", "focal"): [0.800, 0.810, None],   # seed 2 diverged
    # ("B", "sce"): no runs at all -> missing cell
}


def _build(path) -> list[dict]:
    rows = []
    with ResultStore(path) as store:
        for (ds, loss), accs in ACC.items():
            for seed, a in enumerate(accs):
                cfg = {"dataset": ds, "model": "m", "loss": loss, "seed": seed, "label_noise": 0.0,
                       "train_fraction": 1.0, "epochs": 2}
                key = run_key(cfg)
                store.add([(key, cfg)])
                store.mark_running(key)
                if a is None:
                    status = "failed" if ds == "A" else "diverged"
                    store.finish(key, {"status": status, "error": f"{status} on purpose | x"})
                else:
                    store.finish(key, {"status": "ok", "test_accuracy": a, "wall_time": 1.0,
                                       "history": [{"epoch": 1, "val_accuracy": a - 0.1},
                                                   {"epoch": 2, "val_accuracy": a}]})
        rows = store.rows()
    return rows


@pytest.fixture
def rows(tmp_path):
    return _build(tmp_path / "results.sqlite")


def test_verdict_band_is_inclusive():
    assert verdict(0.5) == verdict(-0.5) == verdict(0.0) == "same"
    assert verdict((0.905 - 0.900) * 100) == "same"          # 0.5000000000000004 in floats
    assert verdict(0.5001) == "better" and verdict(-0.5001) == "worse"
    assert verdict(None) is None
    assert verdict(1.0, band=1.0) == "same" and verdict(1.01, band=1.0) == "better"


def test_table_arithmetic(rows):
    s = summarize(rows)
    assert s["datasets"] == ["A", "B"]
    assert s["losses"][0] == "ce" and set(s["losses"]) == {"ce", "ngl", "sce", "focal"}
    c = s["cells"]
    assert c["ce"]["A"]["mean"] == pytest.approx(91.0)
    assert c["ce"]["B"]["mean"] == pytest.approx(80.0)
    assert c["ngl"]["A"]["delta"] == pytest.approx(0.5) and c["ngl"]["A"]["verdict"] == "same"
    assert c["sce"]["A"]["delta"] == pytest.approx(-0.5) and c["sce"]["A"]["verdict"] == "same"
    assert c["focal"]["A"]["delta"] == pytest.approx(92.01 - 91.0) and c["focal"]["A"]["verdict"] == "better"
    assert c["ngl"]["B"]["delta"] == pytest.approx(-0.51) and c["ngl"]["B"]["verdict"] == "worse"
    assert c["focal"]["B"]["delta"] == pytest.approx(80.5 - 80.0)
    # seed spread: sample SD over seeds, in pp
    assert c["ce"]["A"]["std"] == pytest.approx(1.0)
    assert c["ce"]["B"]["std"] == pytest.approx(0.0)
    # Mean column: CE absolute mean over datasets; others mean of deltas over the datasets they have
    assert s["mean"]["ce"]["value"] == pytest.approx(85.5)
    assert s["mean"]["ngl"]["value"] == pytest.approx((0.5 - 0.51) / 2)
    assert s["mean"]["ngl"]["verdict"] == "same"
    assert s["mean"]["sce"]["value"] == pytest.approx(-0.5) and s["mean"]["sce"]["datasets"] == 1
    assert s["mean"]["sce"]["of"] == 2


def test_missing_cells_and_failed_runs(rows):
    s = summarize(rows)
    assert s["cells"]["sce"]["B"]["n"] == 0 and s["cells"]["sce"]["B"]["delta"] is None
    missing = {(m["dataset"], m["loss"]): m for m in s["missing"]}
    assert missing[("B", "sce")]["runs_missing"] == 3
    assert missing[("A", "focal")]["which"] == ["m/seed2"]
    assert missing[("B", "focal")]["which"] == ["m/seed2"]
    assert set(missing) == {("B", "sce"), ("A", "focal"), ("B", "focal")}
    failed = {(f["dataset"], f["loss"], f["seed"]): f for f in s["failed"]}
    assert failed[("A", "focal", 2)]["status"] == "failed"
    assert failed[("B", "focal", 2)]["status"] == "diverged"
    assert failed[("B", "focal", 2)]["error"] == "diverged on purpose | x"
    assert s["runs"] == {"total": 21, "ok": 19, "failed": 1, "diverged": 1, "unfinished": 0}


def test_paired_test_against_closed_forms():
    # df = 1: the t distribution is Cauchy, two-sided p = 1 - 2/pi * atan(|t|)
    d = [1.0, 3.0]
    r = paired_test(d)
    t = 2.0 / (math.sqrt(2.0) / math.sqrt(2.0))
    assert r["t"] == pytest.approx(t)
    assert r["p_value"] == pytest.approx(1 - 2 / math.pi * math.atan(t))
    # 95% CI half-width with df=1: tan(pi * 0.475) * se
    half = math.tan(math.pi * 0.475) * 1.0
    assert (r["ci_low"], r["ci_high"]) == pytest.approx((2 - half, 2 + half))
    # df = 2: two-sided p = 1 - |t| / sqrt(2 + t^2)
    d = [0.5, 1.0, 2.0]
    m, sd = sum(d) / 3, math.sqrt(sum((x - sum(d) / 3) ** 2 for x in d) / 2)
    t = m / (sd / math.sqrt(3))
    assert paired_test(d)["p_value"] == pytest.approx(1 - t / math.sqrt(2 + t * t))
    assert paired_test([0.3, 0.3, 0.3])["p_value"] == 0.0
    assert paired_test([0.0, 0.0])["p_value"] == 1.0
    assert paired_test([1.0])["p_value"] is None


def test_paired_test_pairs_match_by_seed(rows):
    s = summarize(rows)
    t = s["cells"]["focal"]["A"]["test"]          # seeds 0, 1 only: diffs 1.51, 1.51
    assert t["n"] == 2 and t["mean"] == pytest.approx(1.51) and t["p_value"] == 0.0
    t = s["cells"]["ngl"]["A"]["test"]
    assert t["n"] == 3 and t["p_value"] == 0.0    # constant +0.5 difference


def test_outputs_parse(rows, tmp_path):
    s = summarize(rows)
    data = json.loads(to_json(s))
    assert data["cells"]["ngl"]["B"]["verdict"] == "worse"
    table = list(csv.DictReader(io.StringIO(to_csv(s))))
    assert len(table) == 4 * 2 + 4                      # cells + one Mean row per loss
    row = next(r for r in table if r["loss"] == "ngl" and r["dataset"] == "A")
    assert float(row["delta_pp"]) == pytest.approx(0.5) and row["verdict"] == "same"
    assert row["label"] == "f5 (NGL)"
    md = to_markdown(s)
    lines = [ln for ln in md.splitlines() if ln.startswith("| ")]
    header = lines[0].split("|")[1:-1]
    assert [h.strip() for h in header] == ["Loss", "A", "B", "Mean", "Verdict"]
    first = {ln.split("|")[1].strip(): [c.strip() for c in ln.split("|")[2:-1]] for ln in lines[2:6]}
    assert first["CE"] == ["91.00", "80.00", "85.50", "baseline"]
    # constant differences over seeds: p = 0, significant after Holm too (marked *)
    assert first["f5 (NGL)"][:2] == ["+0.50*", "-0.51*"] and first["f5 (NGL)"][3] == "same"
    assert float(first["f5 (NGL)"][2]) == pytest.approx(-0.005, abs=0.0051)
    assert first["SCE"][:2] == ["-0.50*", "n/a"]
    assert "\\* the paired t-test vs CE is significant after Holm's correction" in md
    assert "diverged on purpose / x" in md            # '|' escaped in the table
    assert "SCE on B: 3 of 3 without a result" in md


def test_write_report_files_and_published(tmp_path):
    db = tmp_path / "results.sqlite"
    _build(db)
    rep = write_report(db, tmp_path / "rep", plots=True, published=True)
    for name in ("deltas", "learning_curves", "loss_shapes"):
        assert open(rep["files"][name], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert json.loads(open(rep["files"]["json"]).read())["band"] == 0.5
    assert "No dataset in common" in rep["markdown"] and "| f5 (NGL) | -0.27 | +7.07" in rep["markdown"]


def test_published_side_by_side_where_datasets_match(rows):
    for r in rows:
        r["dataset"] = {"A": "cifar10", "B": "mystery"}[r["dataset"]]
    md = compare_markdown(summarize(rows))
    assert "| Loss | cifar10 |" in md and "mystery" not in md.split("Cells:")[1]
    assert f"| CE | {PUBLISHED['CE'][3]:.2f} / 91.00 |" in md
    assert "| f5 (NGL) | +0.12 / +0.50 |" in md


def test_empty_or_missing_db(tmp_path):
    with pytest.raises(FileNotFoundError, match="no results database"):
        write_report(tmp_path / "nope.sqlite", tmp_path)
    ResultStore(tmp_path / "empty.sqlite").close()
    with pytest.raises(ValueError, match="no runs in .*empty.sqlite yet"):
        write_report(tmp_path / "empty.sqlite", tmp_path)


def _rows(cells: dict) -> list[dict]:
    return [{"dataset": "D", "model": "m", "loss": loss, "seed": seed, "status": "ok",
             "test_accuracy": acc, "error": None}
            for loss, accs in cells.items() for seed, acc in enumerate(accs)]


def test_headline_marks_only_holm_significant_deltas():
    # df = 1 (two seeds): p = 1 - 2/pi * atan(|t|), t = mean / (|d1 - d2| / 2)
    rows = _rows({"ce": [0.80, 0.80], "ngl": [0.810, 0.811], "focal": [0.810, 0.8112]})
    p_raw = {"ngl": 1 - 2 / math.pi * math.atan(1.05 / 0.05),
             "focal": 1 - 2 / math.pi * math.atan(1.06 / 0.06)}
    assert max(p_raw.values()) < 0.05                       # each significant alone ...
    s = summarize(rows)
    holm_p = min(1.0, 2 * min(p_raw.values()))              # ... not after Holm over 2 tests
    for loss in ("ngl", "focal"):
        t = s["cells"][loss]["D"]["test"]
        assert t["p_value"] == pytest.approx(p_raw[loss])
        assert t["p_holm"] == pytest.approx(holm_p) and s["cells"][loss]["D"]["significant"] is False
    md = to_markdown(s)
    assert "| f5 (NGL) | +1.05 |" in md and "+1.05*" not in md and "across the table's 2 tests" in md
    # a third, clearly significant cell (constant difference, p = 0) is marked, the others are not
    rows += _rows({"sce": [0.83, 0.83]})
    s = summarize(rows)
    assert s["cells"]["sce"]["D"]["significant"] is True
    assert s["cells"]["ngl"]["D"]["test"]["p_holm"] == pytest.approx(min(1.0, 2 * p_raw["ngl"]))
    md = to_markdown(s)
    assert "| SCE | +3.00* |" in md and "+1.05*" not in md
    row = next(r for r in csv.DictReader(io.StringIO(to_csv(s))) if r["loss"] == "sce")
    assert row["significant"] == "True" and float(row["p_holm"]) == 0.0
