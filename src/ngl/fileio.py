"""Atomic file writes and checked JSON reads: every result, checkpoint and config file of ngl goes
through here, so a crash never leaves half a file and a bad file is a one-line error."""
from __future__ import annotations

import csv
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterable

__all__ = ["write_text_atomic", "write_json_atomic", "write_csv_atomic", "read_json_object"]


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, indent: int | None = 1) -> Path:
    """Strict JSON (no NaN/Infinity), written atomically."""
    return write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=False) + "\n")


def write_csv_atomic(path: str | os.PathLike[str], rows: Iterable[dict], columns: list[str]) -> Path:
    """Rows as CSV with the given columns (extra keys ignored), written atomically."""
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    return write_text_atomic(path, buf.getvalue())


def read_json_object(path: str | os.PathLike[str], *, what: str) -> dict[str, Any]:
    """A JSON object from ``path``; ``FileNotFoundError``/``ValueError`` naming ``what`` and the path."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{what} {path} is not valid JSON ({exc})") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{what} {path} must hold a JSON object, got {type(doc).__name__}")
    return doc
