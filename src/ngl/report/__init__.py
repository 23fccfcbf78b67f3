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
from .tables import loss_order, paired_test, summarize, verdict


class ReportWriteError(UserError, OSError):
    """The report's folder cannot be written (read-only, full disk)."""

__all__ = ["ReportWriteError", "summarize", "verdict", "paired_test", "loss_order", "to_markdown", "to_csv", "to_json",
           "loss_label", "write_report", "published_markdown", "compare_markdown", "PUBLISHED",
           "PUBLISHED_DATASETS"]


def write_report(db: str | Path, out_dir: str | Path, *, baseline: str = "ce", band: float = 0.5,
                 plots: bool = True, published: bool = False,
                 title: str = "ngl benchmark report") -> dict[str, Any]:
    """Read the results database ``db`` and write ``report.md``, ``report.csv``, ``report.json`` and
    (``plots``) ``deltas.png``, ``learning_curves.png``, ``loss_shapes.png`` into ``out_dir``.

    The store is opened read-only (:func:`ngl.bench.open_readonly`). A found loss is labelled by
    its infix; ``summary["sources"]`` (in ``report.json``) maps it to the files it was read from.

    Returns:
        ``{"summary": ..., "markdown": text, "files": {name: path}}``.
    """
    from ..bench.store import open_readonly
    from ..errors import InputError

    with open_readonly(db) as store:           # SQLite mode=ro: the report never writes the store
        rows = store.rows()
        sources = store.meta("loss_sources", {}) or {}
    if not rows:
        raise InputError(f"{db} holds no runs yet (run 'ngl bench' first)")
    summary = summarize(rows, baseline=baseline, band=band)
    summary["sources"] = {spec: paths for spec, paths in sources.items() if spec in summary["losses"]}
    md = to_markdown(summary, title=title)
    if published:
        md += "\n" + compare_markdown(summary)
    try:
        files = _write_files(Path(out_dir), summary, md, rows, plots)
    except OSError as exc:                     # read-only folder, full disk: nothing half-written
        raise ReportWriteError(f"cannot write the report to {out_dir} ({exc.strerror or exc}); "
                               f"free space or give --out a folder you can write") from None
    return {"summary": summary, "markdown": md, "files": {k: str(v) for k, v in files.items()}}


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
