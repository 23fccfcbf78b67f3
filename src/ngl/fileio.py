"""Atomic file writes and checked JSON reads: every result, checkpoint and config file of ngl goes
through here, so a crash never leaves half a file and a bad file is a one-line error.

A file written here gets the mode a plain ``open(path, "w")`` would give it (``0666`` less the
umask: ``0644`` under the usual ``022``), not the ``0600`` of a :func:`tempfile.mkstemp` file."""
from __future__ import annotations

import csv
import json
import os
import secrets
from pathlib import Path
from typing import Any, Iterable

from .errors import InputError, MissingFileError

__all__ = ["write_text_atomic", "write_json_atomic", "write_csv_atomic", "read_json_object",
           "pyplot", "save_figure"]


def _temp_beside(path: Path, suffix: str) -> tuple[int, str]:
    """``(fd, name)`` of a new hidden file next to ``path``, created ``0666`` so the umask applies
    (``O_EXCL``: never an existing file)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(6)}{suffix}")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` via a temp file in the same folder and ``os.replace``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path, ".tmp")
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
    """A JSON object from ``path``; :class:`MissingFileError` / :class:`InputError` (one line naming
    ``what`` and the path) for a missing file, invalid or too deeply nested JSON, or a non-object."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{what} not found: {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{what} {path} is not valid JSON ({exc})") from None
    except RecursionError:
        raise InputError(f"{what} {path} is nested too deeply to be a valid file") from None
    if not isinstance(doc, dict):
        raise InputError(f"{what} {path} must hold a JSON object, got {type(doc).__name__}")
    return doc


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the headless Agg backend (every figure of ngl is a PNG file)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: str | os.PathLike[str], *, dpi: int = 110) -> Path:
    """Save a matplotlib figure as PNG atomically (temp file + ``os.replace``) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path, ".tmp.png")
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    finally:
        pyplot().close(fig)
    return path
