"""``ngl report``: the paper's comparison table from a bench's results database, with seed spread,
paired significance tests, missing cells and failed runs; Markdown, CSV, JSON and PNG figures.

>>> import tempfile, pathlib
>>> from ngl.bench import Grid, ResultStore, expand
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> with ResultStore(tmp / "results.sqlite") as store:
...     _ = store.add((r.key, r.config.to_dict()) for r in expand(Grid(losses=("ce", "ngl"), seeds=(0, 1))))
...     for run in store.rows():
...         store.finish(run["key"], {"status": "ok", "test_accuracy": 0.9 + 0.01 * run["seed"]})
>>> rep = write_report(tmp / "results.sqlite", tmp / "report", plots=False)
>>> rep["summary"]["cells"]["ngl"]["digits"]["delta"], sorted(rep["files"])
(0.0, ['csv', 'json', 'markdown'])
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from .published import PUBLISHED, PUBLISHED_DATASETS, compare_markdown, published_markdown
from ..fileio import write_text_atomic as write_atomic
from .render import loss_label, to_csv, to_json, to_markdown
from ..errors import UserError
from .selection import notice, select_runs
from .tables import loss_order, paired_test, summarize, verdict


class ReportWriteError(UserError, OSError):
    """The report's folder cannot be written (read-only, full disk)."""

__all__ = ["ReportWriteError", "summarize", "verdict", "paired_test", "loss_order", "to_markdown", "to_csv",
           "to_json", "loss_label", "write_report", "read_report", "save_report", "select_runs",
           "published_markdown", "compare_markdown", "PUBLISHED", "PUBLISHED_DATASETS"]


def read_report(db: str | Path, *, grid: str | int | None = "last", baseline: str = "ce",
                band: float = 0.5, published: bool = False,
                title: str = "ngl benchmark report") -> dict[str, Any]:
    """The report of one grid of the results database ``db`` (:func:`~ngl.report.selection.select_runs`:
    the last grid a bench ran by default, ``"all"``, or a grid id), written nowhere.

    Returns:
        ``{"summary", "markdown", "rows", "notice"}``; ``notice`` is the one line naming the store's
        other grids and runs (None if the report shows them all).
    Raises:
        InputError: the store holds no runs, or no such grid.
    """
    from ..bench.store import open_readonly

    with open_readonly(db) as store:           # SQLite mode=ro: the report never writes the store
        rows, selection = select_runs(store, grid)
        sources = store.meta("loss_sources", {}) or {}
    summary = summarize(rows, baseline=baseline, band=band)
    summary["sources"] = {spec: paths for spec, paths in sources.items() if spec in summary["losses"]}
    summary["selection"] = selection
    md = to_markdown(summary, title=title, folder=Path(db).parent)
    if published:
        md += "\n" + compare_markdown(summary)
    return {"summary": summary, "markdown": md, "rows": rows,
            "notice": notice(selection, Path(db).parent)}


def save_report(report: dict[str, Any], out_dir: str | Path, *, plots: bool = True) -> dict[str, str]:
    """Write :func:`read_report`'s ``report.md``, ``report.csv``, ``report.json`` and (``plots``)
    ``deltas.png``, ``learning_curves.png``, ``loss_shapes.png`` into ``out_dir``; ``{name: path}``."""
    try:
        files = _write_files(Path(out_dir), report["summary"], report["markdown"], report["rows"], plots)
    except OSError as exc:                     # read-only folder, full disk: nothing half-written
        raise ReportWriteError(f"cannot write the report to {out_dir} ({exc.strerror or exc}); "
                               f"free space or give --out a folder you can write") from None
    return {k: str(v) for k, v in files.items()}


def write_report(db: str | Path, out_dir: str | Path, *, grid: str | int | None = "last",
                 baseline: str = "ce", band: float = 0.5, plots: bool = True, published: bool = False,
                 title: str = "ngl benchmark report") -> dict[str, Any]:
    """Read the results database ``db`` and write its report into ``out_dir``
    (:func:`read_report`, then :func:`save_report`).

    The store is opened read-only (:func:`ngl.bench.open_readonly`). It shows one grid's runs
    (``grid``, default the last a bench ran) and names the store's others. A found loss is labelled
    by its infix; ``summary["sources"]`` (in ``report.json``) maps it to the files it was read from.

    Returns:
        ``{"summary", "markdown", "files": {name: path}, "notice"}``.
    """
    rep = read_report(db, grid=grid, baseline=baseline, band=band, published=published, title=title)
    files = save_report(rep, out_dir, plots=plots)
    return {"summary": rep["summary"], "markdown": rep["markdown"], "files": files, "notice": rep["notice"]}


def _write_files(out: Path, summary: dict[str, Any], md: str, rows: list[dict[str, Any]],
                 plots: bool) -> dict[str, Path]:
    """Every file atomically (a crash leaves the old file or the new one, never half of one)."""
    files = {"markdown": write_atomic(out / "report.md", md),
             "csv": write_atomic(out / "report.csv", to_csv(summary)),
             "json": write_atomic(out / "report.json", to_json(summary))}
    if plots:
        from .plots import plot_deltas, plot_learning_curves, plot_loss_shapes
        files["deltas"] = plot_deltas(summary, out / "deltas.png")
        files["learning_curves"] = plot_learning_curves(rows, out / "learning_curves.png")
        files["loss_shapes"] = plot_loss_shapes(out / "loss_shapes.png")
    return files
