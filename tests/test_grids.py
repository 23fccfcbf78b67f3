"""Issue 20, bench and report side: a store shared by benches of other settings reports exactly the
grid asked for (by run key) and names the others; ``--grid`` selects; stores from before grids were
recorded still report, never averaging runs of different settings; an empty store is one line that
creates nothing; a dry run checks each axis value once and streams."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from statistics import mean

import pytest

import ngl.bench.runner
from ngl.bench import SCHEMA_VERSION, Expansion, Grid, ResultStore, expand, grid_settings, open_readonly
from ngl.cli import main
from ngl.runspec import TrainConfig, run_key

BENCH = ["bench", "--models", "mlp", "--datasets", "digits", "--losses", "ce,ngl", "--seeds", "0,1",
         "--workers", "1", "--no-plots", "--quiet"]


def epoch_task(config) -> dict:
    """Stand-in for training whose accuracy says which settings trained it."""
    acc = 0.80 + 0.03 * config.epochs + (0.01 if config.loss == "ngl" else 0.0) + 0.001 * config.seed
    return {"status": "ok", "test_accuracy": acc, "history": [], "wall_time": 0.0}


def expected_mean(loss: str, epochs: int, seeds=(0, 1)) -> float:
    return mean(100 * epoch_task(TrainConfig(loss=loss, epochs=epochs, seed=s))["test_accuracy"] for s in seeds)


@pytest.fixture
def fake_training(monkeypatch):
    monkeypatch.setattr(ngl.bench.runner, "train_task", epoch_task)


def _report_json(folder: Path) -> dict:
    return json.loads((folder / "report" / "report.json").read_text())


# -- item 1: one grid per report -----------------------------------------------------------------
def test_a_report_shows_the_grid_it_reports_never_a_mix(tmp_path, capsys, fake_training):
    out = tmp_path / "mixA"
    for epochs in (3, 1, 3):                   # the reproduction
        assert main([*BENCH, "--epochs", str(epochs), "--out", str(out)]) == 0
    md = capsys.readouterr().out.split("# ngl benchmark report")[-1]      # the last bench's report
    rep = _report_json(out)
    assert rep["runs"]["total"] == 4 and "Runs: 4 " in md
    assert rep["cells"]["ce"]["digits"]["mean"] == pytest.approx(expected_mean("ce", 3))
    assert rep["cells"]["ngl"]["digits"]["n"] == 2
    assert rep["selection"]["grid"] == 1 and rep["selection"]["others"] == [
        {"id": 2, "runs": 4, "differs": "epochs 1"}]
    assert "grid 2 (4 runs; epochs 1)" in md
    # ngl report: the last grid by default (the 3-epoch one, run again last), --grid picks another
    assert main(["report", str(out), "--no-plots", "--quiet"]) == 0
    assert "grid 2 (4 runs; epochs 1)" in capsys.readouterr().err
    assert _report_json(out)["cells"]["ce"]["digits"]["mean"] == pytest.approx(expected_mean("ce", 3))
    assert main(["report", str(out), "--no-plots", "--quiet", "--grid", "2"]) == 0
    rep = _report_json(out)
    assert rep["runs"]["total"] == 4 and rep["cells"]["ce"]["digits"]["mean"] == pytest.approx(expected_mean("ce", 1))


def test_grid_all_puts_each_setting_in_its_own_column(tmp_path, capsys, fake_training):
    out = tmp_path / "b"
    for epochs in (3, 1):
        assert main([*BENCH, "--epochs", str(epochs), "--out", str(out)]) == 0
    assert main(["report", str(out), "--no-plots", "--grid", "all"]) == 0
    md = capsys.readouterr().out
    rep = _report_json(out)
    assert rep["datasets"] == ["digits [epochs 1]", "digits [epochs 3]"] and rep["runs"]["total"] == 8
    for epochs in (1, 3):
        cells = {loss: rep["cells"][loss][f"digits [epochs {epochs}]"] for loss in ("ce", "ngl")}
        assert cells["ce"]["mean"] == pytest.approx(expected_mean("ce", epochs)) and cells["ce"]["n"] == 2
        assert cells["ngl"]["delta"] == pytest.approx(expected_mean("ngl", epochs) - expected_mean("ce", epochs))
    assert "differ in epochs" in md and "| digits [epochs 1] | 2/2 |" in md


@pytest.mark.parametrize("grid, message", [
    ("7", "has no grid 7; it holds grid(s) 1, 2"), ("x", "--grid must be a grid id"),
    ("0", "--grid must be a grid id")])
def test_an_unknown_grid_is_one_line_and_writes_nothing(tmp_path, capsys, fake_training, grid, message):
    out = tmp_path / "b"
    for epochs in (1, 2):
        assert main([*BENCH, "--epochs", str(epochs), "--out", str(out), "--no-report"]) == 0
    capsys.readouterr()
    assert main(["report", str(out), "--grid", grid, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and not (tmp_path / "r").exists()


def test_the_store_records_each_grid_once_with_its_settings(tmp_path):
    runs = expand(Grid(losses=("ce", "ngl"), seeds=(0, 1), base={"epochs": 2}))
    settings = grid_settings(r.config for r in runs)
    with ResultStore(tmp_path / "r.sqlite") as s:
        s.add((r.key, r.config.to_dict()) for r in runs)
        first = s.record_grid([r.key for r in runs], settings)
        other = s.record_grid([runs[0].key], grid_settings([runs[0].config]))
        again = s.record_grid([r.key for r in reversed(runs)], settings)      # same set of keys
        assert (first, other, again) == (1, 2, 1)
        assert [g["id"] for g in s.grids()] == [2, 1]                        # the last run last
        assert s.grid_keys(1) == {r.key for r in runs} and s.grid_keys(2) == {runs[0].key}
    with open_readonly(tmp_path / "r.sqlite") as r:
        g = r.grids()[-1]
        assert g["runs"] == 4 and g["settings"]["epochs"] == [2] and g["settings"]["seed"] == [0, 1]
        assert g["settings"]["loss"] == ["ce", "ngl"]


# -- stores written before grids were recorded -----------------------------------------------------
_V1 = """
CREATE TABLE runs (key TEXT PRIMARY KEY, config TEXT NOT NULL, dataset TEXT NOT NULL, model TEXT NOT NULL,
    loss TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, history TEXT, test_accuracy REAL,
    val_accuracy REAL, best_val_accuracy REAL, epochs_run INTEGER, steps INTEGER, wall_time REAL,
    error TEXT, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL, updated_at REAL NOT NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _old_store(path: Path, *, version: int, last_grid_epochs: int | None) -> None:
    """A store as ngl wrote it before grids: runs of epochs 1 and 3 for the same (loss, seed), and
    (version 1) a ``last_grid`` meta entry holding the keys of one of them."""
    keys = {1: [], 3: []}
    with sqlite3.connect(path) as c:
        c.executescript(_V1)
        for epochs in (1, 3):
            for run in expand(Grid(losses=("ce", "ngl"), seeds=(0, 1), base={"epochs": epochs})):
                cfg = run.config.to_dict()
                c.execute("INSERT INTO runs (key, config, dataset, model, loss, seed, status, test_accuracy, "
                          "history, created_at, updated_at) VALUES (?, ?, 'digits', ?, ?, ?, 'ok', ?, '[]', ?, ?)",
                          (run.key, json.dumps(cfg), cfg["model"], cfg["loss"], cfg["seed"],
                           epoch_task(run.config)["test_accuracy"], epochs, epochs))
                keys[epochs].append(run.key)
        if last_grid_epochs:
            c.execute("INSERT INTO meta VALUES ('last_grid', ?)", (json.dumps(keys[last_grid_epochs]),))
        c.execute(f"PRAGMA user_version={version}")
    c.close()


def test_a_version_1_store_reports_its_last_grid_and_is_upgraded(tmp_path, capsys):
    db = tmp_path / "results.sqlite"
    _old_store(db, version=1, last_grid_epochs=1)
    for upgraded in (False, True):
        assert main(["report", str(tmp_path), "--no-plots", "--quiet"]) == 0
        assert "4 run(s) in no recorded grid (epochs 3)" in capsys.readouterr().err
        rep = _report_json(tmp_path)
        assert rep["runs"]["total"] == 4 and rep["selection"]["grid"] == 1
        assert rep["cells"]["ce"]["digits"]["mean"] == pytest.approx(expected_mean("ce", 1))
        if not upgraded:                       # the reader changed nothing; a writer upgrades it
            assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 1
            ResultStore(db).close()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
        assert c.execute("SELECT id, runs FROM grids").fetchall() == [(1, 4)]
        assert c.execute("SELECT COUNT(*) FROM meta WHERE name='last_grid'").fetchone()[0] == 0
    c.close()


def test_a_store_without_grids_reports_every_run_settings_apart(tmp_path, capsys):
    db = tmp_path / "results.sqlite"
    _old_store(db, version=0, last_grid_epochs=None)
    assert main(["report", str(db), "--no-plots", "--quiet"]) == 0
    rep = _report_json(tmp_path)
    assert rep["selection"]["grid"] == "all" and rep["selection"]["split_by"] == ["epochs"]
    assert rep["cells"]["ce"]["digits [epochs 3]"]["mean"] == pytest.approx(expected_mean("ce", 3))
    assert rep["cells"]["ce"]["digits [epochs 1]"]["mean"] == pytest.approx(expected_mean("ce", 1))
    assert main(["report", str(db), "--grid", "1", "--quiet"]) == 2
    assert "records no grids" in capsys.readouterr().err


# -- item 3 (minor): an empty store ----------------------------------------------------------------
@pytest.mark.parametrize("make", ["store", "zero_bytes"])
def test_report_on_an_empty_store_is_one_line_and_creates_nothing(tmp_path, capsys, make):
    db = tmp_path / "results.sqlite"
    if make == "store":
        ResultStore(db).close()
    else:
        db.write_bytes(b"")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"no runs in {db} yet" in err and "damaged" not in err and len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == before        # no report/ folder


# -- item 4 (minor): a dry run checks each axis value once and streams ---------------------------
def test_expansion_checks_each_value_once_not_each_run(monkeypatch):
    calls = []
    real = TrainConfig.check
    monkeypatch.setattr(TrainConfig, "check", lambda self: calls.append(1) or real(self))
    grid = Grid(losses=("ce", "ngl", "expr:p*y"), seeds=tuple(range(300)), label_noise=(0.0, 0.2))
    runs = expand(grid)
    assert len(runs) == 3 * 300 * 2
    assert len(calls) <= 1 + 1 + 2 + 1 + 1 + 3 + 300          # the first run, then each axis value
    # the cheap construction gives what building each run the slow way gives
    for r in runs[::97]:
        slow = TrainConfig.from_dict(r.config.to_dict()).check()
        assert r.config == slow and r.key == run_key(slow.to_dict())
    runs[0].config.loss_kwargs["x"] = 1                   # every run owns its settings
    assert runs[1].config.loss_kwargs == {}


@pytest.mark.parametrize("axis, values, message", [
    ("seeds", (0, 1, -1), "seed must be >= 0, got -1"),
    ("label_noise", (0.0, 0.2, 1.0), r"label_noise must be in \[0, 1\), got 1.0"),
    ("train_fraction", (1.0, 0.0), r"train_fraction must be in \(0, 1\], got 0.0"),
    ("models", ("mlp", ""), "model must be a model name"),
    ("losses", ("ce", "expr:p *"), "loss 'expr:p \\*'"),
])
def test_a_bad_value_anywhere_on_an_axis_fails_before_any_run(axis, values, message):
    with pytest.raises(ValueError, match=message):
        expand(Grid(**{"losses": ("ce",), axis: values}))


def test_a_dry_run_streams_its_runs(tmp_path, capsys, monkeypatch):
    made = []
    real = Expansion.__iter__

    def spy(self):
        for run in real(self):
            made.append(run.key)
            yield run
    monkeypatch.setattr(Expansion, "__iter__", spy)
    monkeypatch.setattr("ngl.bench.expand", lambda grid: pytest.fail("a dry run holds every run"))
    seeds = ",".join(map(str, range(500)))
    assert main(["bench", "--datasets", "digits", "--losses", "ce,ngl", "--seeds", seeds, "--dry-run",
                 "--out", str(tmp_path / "o")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-1] == "1000 runs" and [ln.split()[0] for ln in lines[:-1]] == made
    assert len(set(made)) == 1000 and not (tmp_path / "o").exists()
