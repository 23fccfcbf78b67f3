"""``ngl report``: the comparison table (and figures) from a bench's results database."""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
from pathlib import Path

from ..errors import InputError

__all__ = ["register", "run", "resolve_db", "check_writable"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="the paper's table (and more) from a bench's results",
        description="Read a results database written by 'ngl bench' and write report.md, report.csv, "
                    "report.json and PNG figures (deltas vs CE, learning curves, loss shapes): CE's "
                    "test accuracy in %, every other loss in percentage points vs CE per dataset "
                    "(mean over seeds and models), a Mean column, the better/same/worse verdict "
                    "(+-band, inclusive), seed spread, a paired t-test with 95% CI per cell, missing "
                    "cells and failed or diverged runs. The Markdown is printed too. It shows one grid: "
                    "the last one 'ngl bench' ran into the store (a line names the others; --grid "
                    "selects). The database is opened read-only, so a store on read-only storage "
                    "reports (give --out elsewhere).")
    p.add_argument("source", nargs="?", default="runs/bench",
                   help="a bench output directory (with results.sqlite) or the .sqlite file itself")
    p.add_argument("--out", default=None,
                   help="output directory (default: the report folder next to the database)")
    p.add_argument("--grid", default="last", metavar="ID",
                   help="which of the store's grids (one per distinct 'ngl bench' grid run into it) to "
                        "report: last (default; every run if the store records no grids), a grid id, "
                        "or all (runs that differ in a setting such as epochs are separate columns)")
    p.add_argument("--baseline", default="ce", help="the loss every other loss is compared to (default: ce)")
    p.add_argument("--band", type=float, default=0.5,
                   help="half-width of the 'same' band in pp, >= 0 (default: 0.5)")
    p.add_argument("--published", action="store_true",
                   help="also print the published table (arXiv 2404.12948) beside ours where datasets match")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG figures")
    p.add_argument("--quiet", action="store_true", help="do not print the Markdown")
    p.set_defaults(func=run)


def resolve_db(source: str | Path) -> Path:
    path = Path(source)
    return path / "results.sqlite" if path.is_dir() else path


def check_writable(folder: Path, *, flag: str = "--out") -> None:
    """Create ``folder`` and a temp file in it, or a one-line :class:`InputError` saying so."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ngl-write-check.")
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputError(f"cannot write to {folder} ({exc.strerror or exc}); give {flag} a folder "
                         f"you can write") from None


def run(args: argparse.Namespace) -> int:
    from ..report import read_report, save_report
    from ..report.selection import parse_grid

    if not (math.isfinite(args.band) and args.band >= 0):
        raise InputError(f"--band must be a number >= 0 (pp), got {args.band}")
    grid = parse_grid(args.grid)
    db = resolve_db(args.source)
    out = Path(args.out) if args.out else db.parent / "report"
    rep = read_report(db, grid=grid, baseline=args.baseline, band=args.band, published=args.published)
    check_writable(out)                       # a bad or empty store, a bad --grid: no folder made
    files = save_report(rep, out, plots=not args.no_plots)
    if args.baseline not in rep["summary"]["losses"]:
        print(f"ngl report: warning: no runs of the baseline {args.baseline!r}; deltas are n/a",
              file=sys.stderr)
    if not args.quiet:
        print(rep["markdown"])                # names the store's other grids, if any
    elif rep["notice"]:
        print(f"ngl report: {rep['notice']}", file=sys.stderr)
    print(f"report: {', '.join(files.values())}", file=sys.stderr)
    return 0
