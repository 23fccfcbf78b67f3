"""ngl.bench: grid expansion and stable keys, the SQLite store, the runner with a fake run function
(failures recorded, finished runs skipped), and resume after killing a grid mid-run."""
from __future__ import annotations

import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ngl.bench import PRESETS, Grid, ResultStore, dataset_label, expand, run_grid, run_key
from ngl.executors import make_executor
from ngl.runspec import TrainConfig

HERE = Path(__file__).resolve().parent


def fake_task(config) -> dict:
    """A deterministic stand-in for the harness (a TrainConfig in): accuracy from (loss, seed);
    'boom' raises; ``NGL_FAKE_DELAY`` seconds per run."""
    if config.loss == "boom":
        raise RuntimeError("exploded on purpose")
    delay = float(os.environ.get("NGL_FAKE_DELAY", 0.0))
    if delay:
        time.sleep(delay)
    log = os.environ.get("NGL_FAKE_LOG")
    if log:
        with open(log, "a") as fh:
            fh.write(run_key(config.to_dict()) + "\n")
    acc = 0.8 + 0.01 * (sum(map(ord, config.loss)) % 7) + 0.001 * config.seed
    status = "diverged" if config.loss == "nan" else "ok"
    return {"status": status, "test_accuracy": acc if status == "ok" else None,
            "history": [{"epoch": 1, "val_accuracy": acc}], "wall_time": delay,
            "error": "diverged at epoch 1 (loss nan)" if status == "diverged" else None}


def test_expand_counts_order_and_keys():
    g = Grid(datasets=("digits",), models=("cnn_small", "mlp"), losses=("ce", "ngl", "focal"),
             seeds=(0, 1), label_noise=(0.0, 0.2), train_fraction=(1.0, 0.5), base={"epochs": 3})
    runs = expand(g)
    assert len(runs) == 1 * 2 * 2 * 2 * 3 * 2
    assert len({r.key for r in runs}) == len(runs)
    assert all(r.key == run_key(r.config.to_dict()) for r in runs)
    assert runs[0].config == TrainConfig(epochs=3, dataset="digits", model="cnn_small", loss="ce", seed=0,
                                         label_noise=0.0, train_fraction=1.0)
    assert [r.config.seed for r in runs[:4]] == [0, 1, 0, 1]
    assert {dataset_label(r.config.to_dict()) for r in runs} == {
        "digits", "digits+noise20", "digits+frac50", "digits+noise20+frac50"}
    assert expand(g) == runs                           # deterministic


def test_run_key_is_stable_and_ignores_where_it_runs():
    a = {"dataset": "digits", "loss": "ce", "seed": 0, "lr": 0.001, "train_fraction": 1.0}
    assert run_key(a) == run_key(dict(reversed(list(a.items()))))
    assert run_key(a) == run_key({**a, "train_fraction": 1})
    assert run_key(a) == run_key({**a, "device": "cuda", "threads": 4, "data_dir": "/x"})
    assert run_key(a) != run_key({**a, "seed": 1}) and run_key(a) != run_key({**a, "lr": 0.01})
    # independent reference: SHA-256 of the sorted, compact JSON with integral floats as ints
    canonical = '{"dataset":"digits","loss":"ce","lr":0.001,"seed":0,"train_fraction":1}'
    assert run_key(a) == hashlib.sha256(canonical.encode()).hexdigest()[:16]


def test_default_preset_covers_every_registered_loss():
    from ngl.losses import list_losses
    cfgs = [r.config for r in expand(PRESETS["default"])]
    assert {c.loss for c in cfgs} == set(list_losses())
    assert {c.seed for c in cfgs} == {0, 1, 2, 3, 4}
    assert {dataset_label(c.to_dict()) for c in cfgs} == {"digits", "digits+noise20"}
    assert len(cfgs) == 2 * len(list_losses()) * 5
    paper = expand(PRESETS["paper"])
    assert len(paper) == 7 * 2 * 5 * 5 and {r.config.epochs for r in paper} == {200}


def test_expand_rejects_bad_axes():
    with pytest.raises(ValueError, match=r"label_noise must be in \[0, 1\)"):
        expand(Grid(losses=("ce",), label_noise=(1.5,)))
    with pytest.raises(ValueError, match="the grid has no seeds"):
        expand(Grid(losses=("ce",), seeds=()))
    dup = expand(Grid(losses=("ce", "ce"), seeds=(0, 0)))
    assert len(dup) == 1


def test_store_rows_are_unique_and_transitions(tmp_path):
    runs = expand(Grid(losses=("ce", "ngl"), seeds=(0, 1)))
    pairs = [(r.key, r.config.to_dict()) for r in runs]
    with ResultStore(tmp_path / "r.sqlite") as s:
        assert s.add(pairs) == 4 and s.add(pairs) == 0 and s.count() == 4
        k = runs[0].key
        s.mark_running(k)
        assert s.status_of([k]) == {k: "running"}
        s.finish(k, {"status": "weird"})
        row = next(r for r in s.rows() if r["key"] == k)
        assert row["status"] == "failed" and "unknown status 'weird'" in row["error"]
        assert row["config"] == runs[0].config.to_dict() and row["attempts"] == 1
        s.mark_running(runs[1].key)
        assert s.reset(["running"]) == 1 and s.count(["pending"]) == 3
        other = sqlite3.connect(tmp_path / "r.sqlite")
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"   # while a bench writes
        other.close()
    mode = sqlite3.connect(tmp_path / "r.sqlite").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "delete"                      # at rest: one self-contained file


def test_store_rejects_non_database(tmp_path):
    bad = tmp_path / "x.sqlite"
    bad.write_text("not a database at all " * 100)
    with pytest.raises(ValueError, match="is not an ngl results database"):
        ResultStore(bad)


def test_runner_records_failures_and_skips_finished(tmp_path):
    cfgs = expand(Grid(losses=("ce", "boom", "nan"), seeds=(0, 1)))
    lines = []
    with ResultStore(tmp_path / "r.sqlite") as s, make_executor("inline") as ex:
        out = run_grid(cfgs, s, executor=ex, task=fake_task, progress=False, echo=lines.append)
        assert out["counts"] == {"ok": 2, "failed": 2, "diverged": 2} and out["ran"] == 6
        rows = {(r["loss"], r["seed"]): r for r in s.rows()}
        assert rows[("boom", 0)]["error"] == "RuntimeError: exploded on purpose"
        assert rows[("nan", 1)]["status"] == "diverged"
        assert rows[("ce", 1)]["test_accuracy"] == pytest.approx(fake_task(cfgs[1].config)["test_accuracy"])
        assert rows[("ce", 0)]["history"] == [{"epoch": 1, "val_accuracy": rows[("ce", 0)]["test_accuracy"]}]
        assert len(lines) == 6 and lines[0].startswith("[1/6] digits cnn_small ce seed 0: ok test")
        again = run_grid(cfgs, s, executor=ex, task=fake_task, progress=False, echo=lines.append)
        assert again["ran"] == 0 and again["skipped"] == 6
        retry = run_grid(cfgs, s, executor=ex, task=fake_task, retry_failed=True, progress=False,
                         echo=lines.append)
        assert retry["ran"] == 2 and s.count() == 6


_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {here!r})
    from test_bench import fake_task
    from ngl.bench import Grid, ResultStore, expand, run_grid
    from ngl.executors import make_executor
    if __name__ == "__main__":
        cfgs = expand(Grid(losses=("ce", "ngl", "focal", "sce"), seeds=(0, 1, 2)))
        with ResultStore({db!r}) as s, make_executor("process", workers=2) as ex:
            run_grid(cfgs, s, executor=ex, task=fake_task, progress=False, echo=print)
""")


@pytest.mark.slow
def test_kill_mid_grid_then_resume(tmp_path):
    db = tmp_path / "r.sqlite"
    script = tmp_path / "grid.py"
    script.write_text(_SCRIPT.format(here=str(HERE), db=str(db)))
    env = {**os.environ, "NGL_FAKE_LOG": str(tmp_path / "phase1.log"), "NGL_FAKE_DELAY": "0.4"}
    proc = subprocess.Popen([sys.executable, str(script)], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    done_at_kill: set[str] = set()
    while time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if db.exists():
            try:
                with sqlite3.connect(db) as c:
                    done_at_kill = {k for (k,) in c.execute("SELECT key FROM runs WHERE status='ok'")}
            except sqlite3.OperationalError:
                continue
            if len(done_at_kill) >= 3:
                break
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.killpg(proc.pid, signal.SIGKILL)               # the grid and its workers, mid-run
    proc.wait()
    with sqlite3.connect(db) as c:
        states = dict(c.execute("SELECT status, COUNT(*) FROM runs GROUP BY status").fetchall())
        done_at_kill = {k for (k,) in c.execute("SELECT key FROM runs WHERE status='ok'")}
    assert states.get("running", 0) >= 1 and 3 <= len(done_at_kill) < 12, states

    env["NGL_FAKE_LOG"] = str(tmp_path / "phase2.log")
    res = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "resuming:" in res.stdout
    with sqlite3.connect(db) as c:
        rows = c.execute("SELECT key, status FROM runs").fetchall()
    assert len(rows) == 12 and {s for _, s in rows} == {"ok"}       # nothing lost, no duplicate rows
    rerun = set((tmp_path / "phase2.log").read_text().split())
    assert not rerun & done_at_kill                                  # finished runs never rerun
    assert rerun == {k for k, _ in rows} - done_at_kill              # everything else ran again once
    assert len((tmp_path / "phase2.log").read_text().split()) == len(rerun)
