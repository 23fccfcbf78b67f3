"""The results database: one SQLite row per run (stdlib ``sqlite3``, WAL journal). Every write is
one transaction, so a killed bench never leaves a half-written row."""
from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterable

from .grid import dataset_label, run_key

__all__ = ["ResultStore", "STATUSES", "FINISHED", "open_readonly"]

#: pending: queued; running: handed to a worker (left so by a crash = interrupted);
#: ok / diverged / failed: finished.
STATUSES = ("pending", "running", "ok", "diverged", "failed")
FINISHED = ("ok", "diverged", "failed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    key TEXT PRIMARY KEY,
    config TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    loss TEXT NOT NULL,
    seed INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending','running','ok','diverged','failed')),
    history TEXT,
    test_accuracy REAL,
    val_accuracy REAL,
    best_val_accuracy REAL,
    epochs_run INTEGER,
    steps INTEGER,
    wall_time REAL,
    error TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
_COLUMNS = ("key", "config", "dataset", "model", "loss", "seed", "status", "history", "test_accuracy",
            "val_accuracy", "best_val_accuracy", "epochs_run", "steps", "wall_time", "error",
            "attempts", "created_at", "updated_at")


class ResultStore:
    """Runs of a benchmark in ``path`` (created with its schema if missing).

    ``dataset`` is the report column (:func:`~ngl.bench.grid.dataset_label`), so noise and
    train-fraction variants are their own datasets. Only one bench should write a store at a time.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise ValueError(f"{self.path} is not an ngl results database ({exc})") from None

    # -- writing ---------------------------------------------------------------------------
    def _tx(self, sql: str, params: Iterable[Any] | Iterable[Iterable[Any]], many: bool = False) -> None:
        with self._db:                                   # BEGIN ... COMMIT (ROLLBACK on error)
            self._db.execute("BEGIN IMMEDIATE")
            (self._db.executemany if many else self._db.execute)(sql, params)

    def add(self, configs: Iterable[dict[str, Any]]) -> int:
        """Insert ``configs`` as pending runs; runs already stored (same key) are left alone.
        Returns the number of new rows."""
        now = time.time()
        rows = [(run_key(c), json.dumps(c, sort_keys=True), dataset_label(c), c.get("model", "?"),
                 c.get("loss", "?"), int(c.get("seed", 0)), now, now) for c in configs]
        before = self.count()
        self._tx("INSERT OR IGNORE INTO runs (key, config, dataset, model, loss, seed, status, "
                 "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)", rows, many=True)
        return self.count() - before

    def mark_running(self, key: str) -> None:
        """The run was handed to a worker (a crash now leaves it ``running``: interrupted)."""
        self._tx("UPDATE runs SET status='running', attempts=attempts+1, updated_at=? WHERE key=?",
                 (time.time(), key))

    def finish(self, key: str, result: dict[str, Any]) -> None:
        """Store a finished run: ``result`` is ``RunResult.to_dict()`` (or status/error only)."""
        status = result.get("status", "failed")
        if status not in FINISHED:
            status, result = "failed", {**result, "error": f"unknown status {status!r}"}
        self._tx("UPDATE runs SET status=?, history=?, test_accuracy=?, val_accuracy=?, "
                 "best_val_accuracy=?, epochs_run=?, steps=?, wall_time=?, error=?, updated_at=? "
                 "WHERE key=?",
                 (status, json.dumps(result.get("history") or []), result.get("test_accuracy"),
                  result.get("val_accuracy"), result.get("best_val_accuracy"),
                  result.get("epochs_run"), result.get("steps"), result.get("wall_time"),
                  result.get("error"), time.time(), key))

    def reset(self, statuses: Iterable[str]) -> int:
        """Set runs with these statuses back to pending (resume: ``running`` = interrupted)."""
        statuses = list(statuses)
        n = self.count(statuses)
        if n:
            marks = ",".join("?" * len(statuses))
            self._tx(f"UPDATE runs SET status='pending', updated_at=? WHERE status IN ({marks})",
                     (time.time(), *statuses))
        return n

    def set_meta(self, name: str, value: Any) -> None:
        self._tx("INSERT OR REPLACE INTO meta (name, value) VALUES (?, ?)", (name, json.dumps(value)))

    # -- reading ---------------------------------------------------------------------------
    def meta(self, name: str, default: Any = None) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE name=?", (name,)).fetchone()
        return json.loads(row["value"]) if row else default

    def count(self, statuses: Iterable[str] | None = None) -> int:
        if statuses is None:
            return self._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        statuses = list(statuses)
        marks = ",".join("?" * len(statuses))
        return self._db.execute(f"SELECT COUNT(*) FROM runs WHERE status IN ({marks})", statuses).fetchone()[0]

    def status_of(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out.update(self._db.execute(f"SELECT key, status FROM runs WHERE key IN ({marks})", chunk).fetchall())
        return out

    def rows(self, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """All runs (or those with ``statuses``) as dicts; ``config``/``history`` JSON decoded."""
        sql, params = f"SELECT {', '.join(_COLUMNS)} FROM runs", []
        if statuses is not None:
            params = list(statuses)
            sql += f" WHERE status IN ({','.join('?' * len(params))})"
        out = []
        for row in self._db.execute(sql + " ORDER BY dataset, model, loss, seed", params):
            d = dict(row)
            d["config"] = json.loads(d["config"])
            d["history"] = json.loads(d["history"]) if d["history"] else []
            out.append(d)
        return out

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_readonly(path: str | Path) -> ResultStore:
    """Open an existing store (``FileNotFoundError`` naming it if missing)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"no results database at {path} (run 'ngl bench --out DIR' first)")
    return ResultStore(path)

