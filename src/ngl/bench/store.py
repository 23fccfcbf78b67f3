"""The results database: one SQLite row per run (stdlib ``sqlite3``, WAL journal).

What it guarantees (see the README's "What is guaranteed"):

- every write is one transaction, so a killed bench never leaves a half-written row, and a failed
  write (full disk, I/O error) rolls back only itself: every run finished before it stays;
- one writer at a time: a writer holds an OS lock (``fcntl.flock``) on ``<db>.lock`` for as long as
  it is open, and a second writer gets :class:`StoreLockedError` naming the holder;
- the schema version is ``PRAGMA user_version`` (:data:`SCHEMA_VERSION`); a newer store, a foreign
  SQLite file or a damaged one is refused with one line; an older one is read as is and upgraded in
  place by the next writer;
- every grid a bench ran is recorded (:meth:`ResultStore.record_grid`: an id, its settings, its run
  keys, when it ran), so a report shows exactly one grid's runs however many share the store;
- a reader (``readonly=True``, :func:`open_readonly`) opens the file with SQLite's ``mode=ro``: it
  never creates tables, switches the journal or writes anything, so it works on read-only storage.
"""
from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import quote

from ..errors import InputError, MissingFileError, UserError
from ..runspec import dataset_label

__all__ = ["ResultStore", "STATUSES", "FINISHED", "open_readonly", "SCHEMA_VERSION", "StoreError",
           "StoreLockedError", "StoreWriteError"]

#: pending: queued; running: handed to a worker (left so by a crash = interrupted);
#: ok / diverged / failed: finished.
STATUSES = ("pending", "running", "ok", "diverged", "failed")
FINISHED = ("ok", "diverged", "failed")
#: ``PRAGMA user_version`` of the stores this ngl writes; an older store is read as is by a reader
#: and upgraded in place by a writer. 0: the unversioned format (runs and meta); 1: the same
#: tables, versioned (a ``last_grid`` meta entry holds the last grid's keys); 2: grids recorded
#: (``grids``, ``grid_runs``; a version-1 ``last_grid`` becomes grid 1).
SCHEMA_VERSION = 2
#: a failed write is tried this many times (seconds to wait before each retry) before giving up
WRITE_RETRIES = (0.2, 1.0)


class StoreError(InputError):
    """The file is not a usable ngl results database (foreign, damaged, newer schema)."""


class StoreLockedError(InputError):
    """Another process is writing the store."""


class StoreWriteError(UserError, OSError):
    """A write failed after its retries (disk full, I/O error); earlier rows are intact."""


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
CREATE TABLE IF NOT EXISTS grids (
    id INTEGER PRIMARY KEY,
    fingerprint TEXT NOT NULL UNIQUE,
    settings TEXT NOT NULL,
    runs INTEGER NOT NULL,
    created_at REAL NOT NULL,
    ran_at REAL NOT NULL,
    seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS grid_runs (
    grid INTEGER NOT NULL,
    key TEXT NOT NULL,
    PRIMARY KEY (grid, key)
) WITHOUT ROWID;
"""
_COLUMNS = ("key", "config", "dataset", "model", "loss", "seed", "status", "history", "test_accuracy",
            "val_accuracy", "best_val_accuracy", "epochs_run", "steps", "wall_time", "error",
            "attempts", "created_at", "updated_at")

def _connect(path: Path, *, readonly: bool) -> sqlite3.Connection:
    if not readonly:
        return sqlite3.connect(path, timeout=30, isolation_level=None)
    uri = "file:" + quote(str(path.resolve())) + "?mode=ro"
    try:
        db = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)
        db.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()
        return db
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc):
            raise
        # a WAL store in a folder nobody may write (no -shm file can be made): read it as
        # immutable; no writer can be at work there
        return sqlite3.connect(uri + "&immutable=1", uri=True, timeout=30, isolation_level=None)


def _unusable(path: Path, exc: sqlite3.Error) -> StoreError:
    """A SQLite error on opening as the one line that says what the file is."""
    if "not a database" in str(exc):
        return StoreError(f"{path} is not an ngl results database (SQLite: {exc})")
    if "malformed" in str(exc) or "corrupt" in str(exc):
        return StoreError(f"{path} is damaged (SQLite: {exc}); restore a copy or start a new --out")
    return StoreError(f"cannot open {path} as a results database (SQLite: {exc})")


def _lock(path: Path, store: Path) -> Any:
    """The writer's lock on ``path`` (:class:`ngl.locking.FolderLock`), its errors in the store's terms."""
    from ..locking import FolderLock, LockedError, LockWriteError

    try:
        return FolderLock(path, owner="ngl bench", what=str(store),
                          refusal="one bench per --out at a time: wait for it, or give this one another --out")
    except LockedError as exc:
        raise StoreLockedError(str(exc)) from None
    except LockWriteError:
        raise StoreWriteError(f"cannot write results next to {store} ({path}); choose another --out") from None


def _inspect(db: sqlite3.Connection) -> tuple[int, set[str], set[str]]:
    """``(user_version, table names, columns of runs)``; ``DatabaseError`` if not SQLite."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    columns = {r[1] for r in db.execute("PRAGMA table_info(runs)")} if "runs" in tables else set()
    return version, tables, columns


def _check_format(path: Path, version: int, tables: set[str], columns: set[str]) -> bool:
    """True if the store is empty (to be created); raise :class:`StoreError` if it is not ours."""
    if not tables:
        if version:
            raise StoreError(f"{path} is not an ngl results database (user_version {version}, no tables)")
        return True
    if "runs" not in tables or not set(_COLUMNS) <= columns:
        raise StoreError(f"{path} is not an ngl results database (no 'runs' table with ngl's columns; "
                         f"it has: {', '.join(sorted(tables))[:200]})")
    if version > SCHEMA_VERSION:
        raise StoreError(f"{path} has results schema version {version}; this ngl reads versions up to "
                         f"{SCHEMA_VERSION}: upgrade ngl to read it")
    return False


def _quick_check(path: Path, db: sqlite3.Connection) -> None:
    problems = [r[0] for r in db.execute("PRAGMA quick_check(3)")]
    if problems != ["ok"]:
        raise StoreError(f"{path} is damaged (SQLite: {'; '.join(problems)[:300]}); restore a copy or "
                         f"start a new --out")


class ResultStore:
    """Runs of a benchmark in ``path`` (created with its schema if missing).

    ``dataset`` is the report column (:func:`~ngl.bench.grid.dataset_label`), so noise and
    train-fraction variants are their own datasets. A writer (the default) holds the store's lock
    until :meth:`close`; ``readonly=True`` opens an existing store for reading only (no lock, no
    write of any kind).

    Raises:
        StoreError: a foreign, damaged or newer-schema file. StoreLockedError: another writer.
        StoreWriteError: the folder cannot be written.
    """

    def __init__(self, path: str | os.PathLike[str], *, readonly: bool = False) -> None:
        self.path, self.readonly, self._lock = Path(path), readonly, None
        if self.path.is_dir():
            raise InputError(f"{self.path} is a folder; expected a results database file")
        if not readonly:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreWriteError(f"cannot create the folder {self.path.parent}: "
                                      f"{exc.strerror or exc}") from None
            self._lock = _lock(self.path.with_name(self.path.name + ".lock"), self.path)
        try:
            self._db = _connect(self.path, readonly=readonly)
        except sqlite3.Error as exc:
            self._release()
            raise _unusable(self.path, exc) from None
        self._db.row_factory = sqlite3.Row
        try:
            self._open()
        except sqlite3.Error as exc:
            self.close()
            raise _unusable(self.path, exc) from None
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        version, tables, columns = _inspect(self._db)
        fresh = _check_format(self.path, version, tables, columns)
        if not fresh:
            _quick_check(self.path, self._db)
        self.version, self._tables = version, tables
        if self.readonly:
            return
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        if fresh or version < SCHEMA_VERSION:     # create, or upgrade an older format in place
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                for stmt in _SCHEMA.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
                self._adopt_last_grid()
                self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
            self.version, self._tables = SCHEMA_VERSION, _inspect(self._db)[1]

    def _adopt_last_grid(self) -> None:
        """Upgrade: a version-1 store's ``last_grid`` meta entry becomes grid 1 (inside the open
        transaction)."""
        legacy = self._legacy_grid()
        if legacy is not None and not self._db.execute("SELECT 1 FROM grids").fetchone():
            info, keys = legacy
            self._insert_grid(keys, info["settings"], info["ran_at"])
            self._db.execute("DELETE FROM meta WHERE name='last_grid'")

    # -- writing ---------------------------------------------------------------------------
    def _write(self, sql: str, params: Any, many: bool) -> None:
        """The one place a statement changes the store (tests inject faults here)."""
        (self._db.executemany if many else self._db.execute)(sql, params)

    def _tx(self, sql: str, params: Iterable[Any] | Iterable[Iterable[Any]], many: bool = False) -> None:
        """One transaction; a failed one rolls back and is retried (:data:`WRITE_RETRIES`), then
        :class:`StoreWriteError`. Rows committed before are never touched."""
        if self.readonly:
            raise InputError(f"{self.path} is open read-only")
        params = list(params) if many else params
        self._transaction(lambda: self._write(sql, params, many))

    def _transaction(self, body: Callable[[], None]) -> None:
        """``body`` in one transaction, rolled back and retried on failure (:meth:`_tx`)."""
        for wait in (*WRITE_RETRIES, None):
            try:
                with self._db:                               # BEGIN ... COMMIT (ROLLBACK on error)
                    self._db.execute("BEGIN IMMEDIATE")
                    body()
                return
            except sqlite3.OperationalError as exc:
                if wait is None:
                    raise StoreWriteError(
                        f"cannot write to {self.path} ({exc}); every run finished before this one is "
                        f"saved: fix the disk or free space and rerun the same command to resume") from None
                time.sleep(wait)

    def add(self, runs: Iterable[tuple[str, dict[str, Any]]]) -> int:
        """Insert ``(key, config)`` pairs (a run's key and its pinned config,
        :func:`ngl.bench.expand`) as pending runs; runs already stored (same key) are left alone.
        Returns the number of new rows."""
        now = time.time()
        rows = [(key, json.dumps(c, sort_keys=True), dataset_label(c), c.get("model", "?"),
                 c.get("loss", "?"), int(c.get("seed", 0)), now, now) for key, c in runs]
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

    def record_sources(self, sources: dict[str, list[str]]) -> None:
        """Merge ``{pinned loss spec: [expression files]}`` (:func:`~ngl.bench.grid.pin_grid`) into
        the ``loss_sources`` meta entry that the report's JSON lists."""
        merged = dict(self.meta("loss_sources", {}) or {})
        for spec, paths in sources.items():
            merged[spec] = list(dict.fromkeys([*merged.get(spec, []), *paths]))
        self.set_meta("loss_sources", merged)

    def record_grid(self, keys: Sequence[str], settings: dict[str, list[Any]]) -> int:
        """Record that a bench ran the grid of these run keys, with these settings
        (:func:`~ngl.bench.grid.grid_settings`), and return its id. A grid is its set of keys: the
        same grid run again keeps its id and becomes the last one (:meth:`grids`)."""
        if self.readonly:
            raise InputError(f"{self.path} is open read-only")
        found: list[int] = []

        def write() -> None:
            found[:] = [self._insert_grid(keys, settings, time.time())]
        self._transaction(write)
        return found[0]

    def _insert_grid(self, keys: Sequence[str], settings: dict[str, list[Any]], ran_at: float) -> int:
        """Find or insert the grid of ``keys`` and make it the last (inside a transaction)."""
        unique = sorted(set(keys))
        fingerprint = hashlib.sha256("\n".join(unique).encode()).hexdigest()
        seq = self._db.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM grids").fetchone()[0]
        row = self._db.execute("SELECT id FROM grids WHERE fingerprint=?", (fingerprint,)).fetchone()
        if row is not None:
            self._write("UPDATE grids SET ran_at=?, seq=? WHERE id=?", (ran_at, seq, row[0]), False)
            return int(row[0])
        self._write("INSERT INTO grids (fingerprint, settings, runs, created_at, ran_at, seq) "
                    "VALUES (?, ?, ?, ?, ?, ?)",
                    (fingerprint, json.dumps(settings), len(unique), ran_at, ran_at, seq), False)
        grid = int(self._db.execute("SELECT id FROM grids WHERE fingerprint=?", (fingerprint,)).fetchone()[0])
        self._write("INSERT INTO grid_runs (grid, key) VALUES (?, ?)", [(grid, k) for k in unique], True)
        return grid

    # -- reading ---------------------------------------------------------------------------
    def grids(self) -> list[dict[str, Any]]:
        """The grids benches ran into this store, the last run last: ``{"id", "runs", "settings",
        "created_at", "ran_at"}``. A version-1 store's ``last_grid`` entry reads as grid 1; a store
        from before that records none."""
        if "grids" not in self._tables:
            legacy = self._legacy_grid()
            return [] if legacy is None else [legacy[0]]
        return [{"id": r["id"], "runs": r["runs"], "settings": json.loads(r["settings"]),
                 "created_at": r["created_at"], "ran_at": r["ran_at"]}
                for r in self._read("SELECT id, runs, settings, created_at, ran_at FROM grids ORDER BY seq")]

    def grid_keys(self, grid: int | None = None) -> set[str]:
        """The run keys of grid ``grid``, or (``None``) of every recorded grid."""
        if "grids" not in self._tables:
            legacy = self._legacy_grid()
            return set(legacy[1]) if legacy is not None and grid in (None, 1) else set()
        if grid is None:
            return {r[0] for r in self._read("SELECT DISTINCT key FROM grid_runs")}
        return {r[0] for r in self._read("SELECT key FROM grid_runs WHERE grid=?", (grid,))}

    def _legacy_grid(self) -> tuple[dict[str, Any], list[str]] | None:
        """A version-1 store's ``last_grid`` meta entry as grid 1 and its keys (settings from its
        stored runs), or None."""
        keys = self.meta("last_grid")
        if not isinstance(keys, list) or not keys:
            return None
        keys = [str(k) for k in keys]
        wanted = set(keys)
        rows = [r for r in self.rows() if r["key"] in wanted]
        ran_at = max((r["created_at"] for r in rows), default=0.0)
        from .grid import grid_settings
        info = {"id": 1, "runs": len(wanted), "settings": grid_settings(r["config"] for r in rows),
                "created_at": ran_at, "ran_at": ran_at}
        return info, keys

    def _read(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        if not self._tables:                 # an empty file opened read-only: no tables, no rows
            return []
        try:
            return self._db.execute(sql, list(params)).fetchall()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot read {self.path} ({exc}); it may be damaged: restore a copy "
                             f"or start a new --out") from None

    def meta(self, name: str, default: Any = None) -> Any:
        rows = self._read("SELECT value FROM meta WHERE name=?", (name,))
        if not rows:
            return default
        try:
            return json.loads(rows[0]["value"])
        except (TypeError, ValueError, RecursionError):
            raise StoreError(f"{self.path}: meta entry {name!r} holds malformed JSON; restore a copy "
                             f"or start a new --out") from None

    def count(self, statuses: Iterable[str] | None = None) -> int:
        if statuses is None:
            rows = self._read("SELECT COUNT(*) FROM runs")
        else:
            statuses = list(statuses)
            marks = ",".join("?" * len(statuses))
            rows = self._read(f"SELECT COUNT(*) FROM runs WHERE status IN ({marks})", statuses)
        return rows[0][0] if rows else 0

    def status_of(self, keys: Iterable[str]) -> dict[str, str]:
        keys = list(keys)
        out: dict[str, str] = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            marks = ",".join("?" * len(chunk))
            out.update((r[0], r[1]) for r in
                       self._read(f"SELECT key, status FROM runs WHERE key IN ({marks})", chunk))
        return out

    def rows(self, statuses: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """All runs (or those with ``statuses``) as dicts; ``config``/``history`` JSON decoded."""
        sql, params = f"SELECT {', '.join(_COLUMNS)} FROM runs", []
        if statuses is not None:
            params = list(statuses)
            sql += f" WHERE status IN ({','.join('?' * len(params))})"
        out = []
        for row in self._read(sql + " ORDER BY dataset, model, loss, seed", params):
            d = dict(row)
            try:
                d["config"] = json.loads(d["config"])
                d["history"] = json.loads(d["history"]) if d["history"] else []
            except (TypeError, ValueError, RecursionError):
                raise StoreError(f"{self.path}: run {d['key']} holds malformed JSON; restore a copy "
                                 f"or start a new --out") from None
            out.append(d)
        return out

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def close(self) -> None:
        """Close the database and drop the writer's lock; idempotent. A writer leaves the file in
        rollback-journal mode, one self-contained file that a reader opens without creating any."""
        db = getattr(self, "_db", None)
        if db is not None:
            if not self.readonly and getattr(self, "version", None) is not None:
                try:
                    db.execute("PRAGMA journal_mode=DELETE")
                except sqlite3.Error:                 # busy or read-only: stays WAL, still valid
                    pass
            db.close()
            self._db = None
        self._release()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_readonly(path: str | os.PathLike[str]) -> ResultStore:
    """Open an existing store for reading only (SQLite ``mode=ro``: nothing is created or written,
    read-only storage works); :class:`~ngl.errors.MissingFileError` naming it if missing."""
    if not Path(path).is_file():
        raise MissingFileError(f"no results database at {path} (run 'ngl bench --out DIR' first)")
    return ResultStore(path, readonly=True)
