"""``ngl bench`` / ``ngl report`` / ``ngl demo`` end to end with the real harness on a tiny grid."""
from __future__ import annotations

import csv
import json
import sqlite3

import pytest
import torch

from ngl.cli import main


def test_bench_rejects_unknown_names_before_running(tmp_path, capsys):
    assert main(["bench", "--losses", "ce,nope", "--out", str(tmp_path), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "unknown loss 'nope'" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "results.sqlite").exists()
    assert main(["bench", "--models", "vgg99", "--out", str(tmp_path)]) == 2
    assert "unknown model 'vgg99'" in capsys.readouterr().err


def test_dry_run_lists_the_default_grid(capsys):
    from ngl.losses import list_losses
    assert main(["bench", "--dry-run"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1] == f"{2 * 5 * len(list_losses())} runs"
    first = json.loads(out[0].split(" ", 1)[1])
    assert first["dataset"] == "digits" and first["model"] == "cnn_small" and first["seed"] == 0


@pytest.mark.slow
def test_bench_then_report_with_real_harness(tmp_path, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "b"
    argv = ["bench", "--preset", "smoke", "--losses", "ce,ngl", "--seeds", "0,1", "--workers", "1",
            "--out", str(out), "--quiet", "--no-plots"]
    assert main(argv) == 0
    md = capsys.readouterr().out
    assert "| CE | " in md and "| f5 (NGL) | " in md
    with sqlite3.connect(out / "results.sqlite") as c:
        rows = c.execute("SELECT loss, seed, status, test_accuracy, history FROM runs").fetchall()
    assert len(rows) == 4 and {r[2] for r in rows} == {"ok"}
    assert all(0.0 <= r[3] <= 1.0 and json.loads(r[4]) for r in rows)
    table = list(csv.DictReader(open(out / "report" / "report.csv")))
    ce = next(r for r in table if r["loss"] == "ce" and r["dataset"] == "digits")
    accs = [r[3] for r in rows if r[0] == "ce"]
    assert float(ce["mean_accuracy"]) == pytest.approx(100 * sum(accs) / len(accs))
    # rerun: everything finished, nothing runs again, identical rows
    assert main(argv) == 0
    with sqlite3.connect(out / "results.sqlite") as c:
        assert c.execute("SELECT loss, seed, status, test_accuracy, history FROM runs").fetchall() == rows
    assert main(["report", str(out), "--published", "--quiet", "--no-plots"]) == 0
    rep = json.loads((out / "report" / "report.json").read_text())
    assert rep["runs"]["ok"] == 4 and rep["losses"] == ["ce", "ngl"]
