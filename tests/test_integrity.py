"""Results you can trust (issue 11, bench and report side): a changed loss file makes new runs, the
report only reads, one writer per store, a versioned schema, a grid checked before its first run,
damaged or hostile input as one line, and a failing disk that loses no finished row."""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ngl.bench import (SCHEMA_VERSION, Grid, ResultStore, StoreError, StoreLockedError, StoreWriteError,
                       expand, open_readonly, pin_grid, run_grid, run_key)
from ngl.cli import main
from ngl.executors import make_executor
from ngl.report import write_report

SRC = str(Path(__file__).resolve().parents[1] / "src")
CALLS: list = []


def recording_task(config) -> dict:
    """Stand-in for training (a TrainConfig in): records what it was asked to train; accuracy from
    the loss text."""
    CALLS.append(config)
    acc = 0.5 + (int(hashlib.sha1(config.loss.encode()).hexdigest(), 16) % 400) / 1000
    return {"status": "ok", "test_accuracy": acc, "history": [], "wall_time": 0.0}


def _bench(db: Path, losses: tuple[str, ...], seeds=(0,)) -> dict:
    grid, sources = pin_grid(Grid(losses=losses, seeds=seeds))
    with ResultStore(db) as store, make_executor("inline") as ex:
        store.record_sources(sources)
        return run_grid(expand(grid), store, executor=ex, task=recording_task, progress=False,
                        echo=lambda _: None)


def _error(capsys) -> str:
    """The one error line of a command (other stderr lines, like the grid's shape, are not errors)."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    lines = [ln for ln in err.splitlines() if ": error: " in ln]
    assert len(lines) == 1, err
    return lines[0]


def _db_digest(path: Path) -> tuple[str, list[str]]:
    """The file's bytes and the names in its folder: what a read-only reader must not change."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), sorted(os.listdir(path.parent))


# -- item 1: stale rows ---------------------------------------------------------------------------
def test_edited_loss_file_runs_the_new_loss_and_is_labelled_apart(tmp_path):
    found = tmp_path / "found.json"
    found.write_text(json.dumps({"infix": "exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))"}))
    db = tmp_path / "results.sqlite"
    CALLS.clear()
    assert _bench(db, ("ce", str(found)))["ran"] == 2
    assert CALLS[-1].loss == "expr:exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))"   # its content
    found.write_text(json.dumps({"infix": "-(y * log(p))"}))                          # a new search
    CALLS.clear()
    again = _bench(db, ("ce", str(found)))
    assert again["ran"] == 1 and again["skipped"] == 1                               # not "0 runs"
    assert [c.loss for c in CALLS] == ["expr:-(y * log(p))"]                       # the new loss ran
    rep = write_report(db, tmp_path / "rep", plots=False)
    labels = [ln.split("|")[1].strip() for ln in rep["markdown"].splitlines()
              if ln.startswith("| ") and "Loss" not in ln and ":---" not in ln][:3]
    # labels are the readable forms (constants to 4 significant digits); the exact infix is the spec
    assert labels == ["CE", "-(y * log(p))", "exp(2.409 - p * (1 + y)) - cos(cos(sin(p)))"]
    assert str(found) not in rep["markdown"]                                         # no file paths
    assert rep["summary"]["sources"] == {"expr:-(y * log(p))": [str(found)],
                                         "expr:exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))": [str(found)]}
    assert json.loads(Path(rep["files"]["json"]).read_text())["sources"] == rep["summary"]["sources"]


def test_run_key_of_a_loss_file_is_its_content(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"infix": "p*y"}))
    b.write_text(json.dumps({"infix": "p * y"}))
    cfg = {"dataset": "digits", "seed": 0}
    assert run_key({**cfg, "loss": str(a)}) == run_key({**cfg, "loss": str(b)}) \
        == run_key({**cfg, "loss": "expr:p*y"})
    before = run_key({**cfg, "loss": str(a)})
    a.write_text(json.dumps({"infix": "p*y + 1"}))
    assert run_key({**cfg, "loss": str(a)}) != before
    # registered names keep their keys (stores written before stay valid)
    ref = '{"dataset":"digits","loss":"ce","seed":0}'
    assert run_key({**cfg, "loss": "ce"}) == hashlib.sha256(ref.encode()).hexdigest()[:16]


# -- item 4: the report only reads -----------------------------------------------------------------
def test_report_on_a_foreign_database_changes_nothing(tmp_path, capsys):
    db = tmp_path / "other.sqlite"
    with sqlite3.connect(db) as c:
        c.execute("CREATE TABLE people (name TEXT)")
        c.execute("INSERT INTO people VALUES ('ada')")
    c.close()
    before = _db_digest(db)
    assert main(["report", str(db), "--out", str(tmp_path / "rep"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not an ngl results database" in err and len(err.splitlines()) == 1
    assert _db_digest(db) == before                                   # no tables, no WAL, no lock
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
        assert [r[0] for r in c.execute("SELECT name FROM sqlite_master")] == ["people"]


def _finished_store(folder: Path) -> Path:
    db = folder / "results.sqlite"
    with ResultStore(db) as store:
        store.add((r.key, r.config.to_dict()) for r in expand(Grid(losses=("ce", "ngl"), seeds=(0, 1))))
        for row in store.rows():
            store.finish(row["key"], {"status": "ok", "test_accuracy": 0.9, "history": []})
    return db


def test_report_reads_a_store_on_read_only_storage(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    db = _finished_store(ro)
    os.remove(ro / "results.sqlite.lock")
    before = _db_digest(db)
    db.chmod(0o444)
    ro.chmod(0o555)
    try:
        assert main(["report", str(ro), "--out", str(tmp_path / "rep"), "--quiet", "--no-plots"]) == 0
        assert _db_digest(db) == before            # same bytes; no -wal, -shm or lock file made
        assert json.loads((tmp_path / "rep" / "report.json").read_text())["runs"]["ok"] == 4
        # the default output folder (next to the store) cannot be made: one line naming --out
        (tmp_path / "ro2").mkdir()
        db2 = _finished_store(tmp_path / "ro2")
        (tmp_path / "ro2" / "report").write_text("a file where the report folder would go")
        capsys.readouterr()
        assert main(["report", str(db2), "--quiet", "--no-plots"]) == 2
        err = capsys.readouterr().err.strip()
        assert "cannot write to" in err and "give --out" in err and len(err.splitlines()) == 1
    finally:
        ro.chmod(0o755)


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write a 0555 folder")
def test_report_default_folder_not_writable(tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    _finished_store(ro)
    ro.chmod(0o555)
    try:
        assert main(["report", str(ro), "--quiet", "--no-plots"]) == 2
        assert "give --out" in capsys.readouterr().err
    finally:
        ro.chmod(0o755)


# -- item 5: one writer at a time ------------------------------------------------------------------
def test_second_writer_is_refused_with_one_line(tmp_path, capsys):
    db = tmp_path / "results.sqlite"
    with ResultStore(db):
        with pytest.raises(StoreLockedError, match=f"being written by ngl bench pid {os.getpid()}"):
            ResultStore(db)
        argv = ["bench", "--preset", "smoke", "--losses", "ce", "--out", str(tmp_path), "--quiet",
                "--no-report", "--workers", "1"]
        assert main(argv) == 2
        err = _error(capsys)
        assert "is being written by" in err and "another --out" in err
        with open_readonly(db) as reader:                       # readers are never blocked
            assert reader.count() == 0
    with ResultStore(db) as again:                              # released on close
        assert again.count() == 0


def test_lock_is_held_across_processes_and_released_by_a_kill(tmp_path):
    db = tmp_path / "results.sqlite"
    holder = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(f"""
            import sys, time
            sys.path.insert(0, {SRC!r})
            from ngl.bench import ResultStore
            s = ResultStore({str(db)!r})
            print("locked", flush=True)
            time.sleep(120)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(StoreLockedError, match=f"pid {holder.pid}"):
            ResultStore(db)
    finally:
        holder.kill()
        holder.wait()
    ResultStore(db).close()                                     # kill -9 leaves no stale lock


# -- item 6: schema version ------------------------------------------------------------------------
_V0 = """CREATE TABLE runs (key TEXT PRIMARY KEY, config TEXT NOT NULL, dataset TEXT NOT NULL,
    model TEXT NOT NULL, loss TEXT NOT NULL, seed INTEGER NOT NULL, status TEXT NOT NULL, history TEXT,
    test_accuracy REAL, val_accuracy REAL, best_val_accuracy REAL, epochs_run INTEGER, steps INTEGER,
    wall_time REAL, error TEXT, attempts INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);"""


def test_schema_version_recorded_checked_and_migrated(tmp_path, capsys):
    new = tmp_path / "new.sqlite"
    ResultStore(new).close()
    assert sqlite3.connect(new).execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    # a store of the unversioned format (before this change): read as is, upgraded by a writer
    old = tmp_path / "old.sqlite"
    cfg = {"dataset": "digits", "model": "cnn_small", "loss": "ce", "seed": 0}
    with sqlite3.connect(old) as c:
        c.executescript(_V0)
        c.execute("INSERT INTO runs (key, config, dataset, model, loss, seed, status, test_accuracy, "
                  "created_at, updated_at) VALUES (?, ?, 'digits', 'cnn_small', 'ce', 0, 'ok', 0.9, 0, 0)",
                  (run_key(cfg), json.dumps(cfg)))
    c.close()
    with open_readonly(old) as r:
        assert r.rows()[0]["test_accuracy"] == 0.9
    assert sqlite3.connect(old).execute("PRAGMA user_version").fetchone()[0] == 0
    with ResultStore(old) as w:
        assert w.status_of([run_key(cfg)]) == {run_key(cfg): "ok"}
    with sqlite3.connect(old) as c:          # upgraded in place: the grids tables added, rows kept
        assert c.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in c.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"runs", "meta", "grids", "grid_runs"} <= tables
        assert c.execute("SELECT test_accuracy FROM runs").fetchall() == [(0.9,)]
    c.close()
    # a newer one: one line naming both versions
    future = tmp_path / "future.sqlite"
    with sqlite3.connect(future) as c:
        c.executescript(_V0)
        c.execute("PRAGMA user_version=7")
    c.close()
    with pytest.raises(StoreError, match=r"schema version 7; this ngl reads versions up to 2"):
        ResultStore(future)
    assert main(["report", str(future), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "version 7" in err and "up to 2" in err and len(err.splitlines()) == 1


# -- item 9: the whole grid is checked before the first run ---------------------------------------
@pytest.mark.parametrize("flags, message", [
    (["--epochs", "-1"], "epochs must be >= 1, got -1"),
    (["--lr", "nan"], "lr must be float, got nan"),
    (["--set", "epochs=abc"], "epochs must be int, got 'abc'"),
    (["--set", "epochs=true"], "epochs must be int, got True"),
    (["--set", "epochz=3"], "unknown run setting key 'epochz' (did you mean 'epochs'?)"),
    (["--losses", "focal", "--set", 'loss_kwargs={"gama": 1}'],
     "unknown keyword 'gama' (did you mean 'gamma'?)"),
    (["--losses", "focal", "--set", 'loss_kwargs={"gamma": "x"}'], "loss 'focal' with loss_kwargs"),
])
def test_bad_run_settings_fail_before_any_run(tmp_path, capsys, flags, message):
    argv = ["bench", "--preset", "smoke", "--losses", "ce", "--out", str(tmp_path), "--quiet", *flags]
    assert main(argv) == 2
    err = _error(capsys)
    assert message in err, err
    assert not (tmp_path / "results.sqlite").exists()            # nothing recorded as failed


# -- item 10: hostile input is one line, exit 2 ----------------------------------------------------
def _damaged_store(tmp_path: Path) -> Path:
    db = tmp_path / "results.sqlite"
    with ResultStore(db) as store:
        store.add((r.key, {**r.config.to_dict(), "note": "x" * 400}) for r in expand(
            Grid(losses=("ce", "ngl", "focal", "sce"), seeds=tuple(range(40)))))
    os.remove(tmp_path / "results.sqlite.lock")
    data = bytearray(db.read_bytes())
    assert len(data) > 16 * 4096
    middle = len(data) // 2 // 4096 * 4096
    data[middle:middle + 4096] = os.urandom(4096)               # garbage over one page in the middle
    db.write_bytes(bytes(data))
    return db


def test_damaged_store_is_one_line_for_bench_and_report(tmp_path, capsys):
    db = _damaged_store(tmp_path)
    assert main(["report", str(db), "--out", str(tmp_path / "rep"), "--quiet", "--no-plots"]) == 2
    err = capsys.readouterr().err.strip()
    assert f"{db} is damaged" in err, err
    assert len(err.splitlines()) == 1
    argv = ["bench", "--preset", "smoke", "--losses", "ce", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 2
    err = _error(capsys)
    assert f"{db} is damaged" in err


@pytest.mark.parametrize("make, message", [
    (lambda p: p.write_text('{"a": ' * 100_000 + "1" + "}" * 100_000), "nested too deeply"),
    (lambda p: p.write_text('{"losses": [5]}'), "Grid.losses[0] must be str, got 5"),
    (lambda p: p.write_text('{"seeds": [0.5]}'), "Grid.seeds[0] must be int, got 0.5"),
    (lambda p: p.write_text('{"label_noise": [NaN]}'), "label_noise[0] must be float, got nan"),
    (lambda p: p.write_text('{"lossses": ["ce"]}'), "'lossses' (did you mean 'losses'?)"),
    (lambda p: p.write_text('["ce"]'), "must hold a JSON object"),
])
def test_bad_config_files(tmp_path, capsys, make, message):
    cfg = tmp_path / "grid.json"
    make(cfg)
    assert main(["bench", "--config", str(cfg), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("argv, message", [
    (["bench", "--workers", "-1"], "--workers must be >= 1, got -1"),
    (["bench", "--threads", "0"], "--threads must be in 1..1024"),
    (["bench", "--timeout", "nan"], "--timeout must be a number of seconds > 0"),
    (["report", "--band", "nan"], "--band must be a number >= 0"),
    (["report", "--band", "-1"], "--band must be a number >= 0"),
])
def test_out_of_range_options(tmp_path, capsys, argv, message):
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_out_pointing_at_a_file(tmp_path, capsys):
    f = tmp_path / "taken"
    f.write_text("mine")
    assert main(["bench", "--preset", "smoke", "--losses", "ce", "--out", str(f), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "is a file; expected a folder" in err and len(err.splitlines()) == 1
    assert f.read_text() == "mine"


# -- fault injection: a failing disk loses no finished row -----------------------------------------
def test_disk_io_error_loses_no_finished_row(tmp_path, monkeypatch):
    db = tmp_path / "results.sqlite"
    configs = expand(Grid(losses=("ce", "ngl", "focal"), seeds=(0, 1)))
    real_write = ResultStore._write
    finishes = {"n": 0}

    def failing_write(self, sql, params, many):
        if sql.startswith("UPDATE runs SET status=?, history=?"):      # the 4th finished run's write
            finishes["n"] += 1
            if finishes["n"] >= 4:
                raise sqlite3.OperationalError("disk I/O error")
        return real_write(self, sql, params, many)

    monkeypatch.setattr(ResultStore, "_write", failing_write)
    monkeypatch.setattr("ngl.bench.store.WRITE_RETRIES", (0.0,))
    CALLS.clear()
    with ResultStore(db) as store, make_executor("inline") as ex:
        with pytest.raises(StoreWriteError, match="disk I/O error.*every run finished before"):
            run_grid(configs, store, executor=ex, task=recording_task, progress=False, echo=lambda _: None)
    monkeypatch.setattr(ResultStore, "_write", real_write)
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        saved = dict(c.execute("SELECT key, test_accuracy FROM runs WHERE status='ok'").fetchall())
    c.close()
    assert len(saved) == 3                                        # the three written before the fault
    expected = {r.key: recording_task(r.config)["test_accuracy"] for r in configs}
    assert all(saved[k] == expected[k] for k in saved)
    CALLS.clear()
    with ResultStore(db) as store, make_executor("inline") as ex:  # rerun: resume, finished rows kept
        out = run_grid(configs, store, executor=ex, task=recording_task, progress=False, echo=lambda _: None)
        rows = {r["key"]: r for r in store.rows()}
    assert out["skipped"] == 3 and out["ran"] == 3 and len(rows) == 6
    assert {c.key() for c in CALLS}.isdisjoint(saved)              # finished runs not run again
    assert all(rows[k]["test_accuracy"] == v for k, v in saved.items())


def test_full_disk_while_writing_the_report_is_one_line(tmp_path, monkeypatch, capsys):
    import errno

    import ngl.report

    db = _finished_store(tmp_path)

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ngl.report, "write_atomic", full)
    assert main(["report", str(db), "--out", str(tmp_path / "rep"), "--quiet", "--no-plots"]) == 2
    err = _error(capsys)
    assert "cannot write the report" in err and "No space left on device" in err
    assert not list((tmp_path / "rep").glob("*"))                 # nothing half-written


def test_a_file_that_is_not_sqlite_is_named_so(tmp_path, capsys):
    junk = tmp_path / "results.sqlite"
    junk.write_bytes(b"PK\x03\x04 a zip, not a database " * 200)
    before = junk.read_bytes()
    for argv in (["report", str(junk), "--out", str(tmp_path / "r"), "--quiet"],
                 ["bench", "--preset", "smoke", "--losses", "ce", "--out", str(tmp_path), "--quiet"]):
        assert main(argv) == 2
        assert f"{junk} is not an ngl results database" in _error(capsys)
    assert junk.read_bytes() == before
