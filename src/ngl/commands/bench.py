"""``ngl bench``: run the evaluation protocol's grid (datasets x models x losses x seeds) through the
training harness into a resumable SQLite database, then print the report."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

__all__ = ["register", "run", "add_arguments", "grid_from_args", "validate_grid", "run_bench"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a TrainConfig field), got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The grid, execution and output flags (shared with ``ngl demo``)."""
    from ..bench import PRESETS
    from ..executors import EXECUTORS

    g = p.add_argument_group("grid (flags override the preset)")
    g.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="default: digits and digits with 20%% label noise x cnn_small x every registered "
                        "loss x 5 seeds (under 10 min on 2 CPU cores); paper: the published grid (7 "
                        "datasets, resnet50 + inception_v3, 200 epochs; needs the data and GPUs); smoke: "
                        "seconds")
    g.add_argument("--datasets", type=_names, help="comma-separated ngl.data names, folder:PATH or npz:PATH")
    g.add_argument("--models", type=_names, help="comma-separated ngl.models names")
    g.add_argument("--losses", type=_names,
                   help="comma-separated registry names, *.json expression files or expr:<infix> "
                        "(default: every registered loss; include ce, the baseline)")
    g.add_argument("--seeds", type=_ints, help="comma-separated seeds, e.g. 0,1,2,3,4")
    g.add_argument("--label-noise", type=_floats,
                   help="comma-separated training label-noise fractions; each is a dataset variant")
    g.add_argument("--train-fraction", type=_floats,
                   help="comma-separated training-set fractions; each is a dataset variant")
    t = p.add_argument_group("training (every run)")
    t.add_argument("--epochs", type=int, help="epochs per run (preset default)")
    t.add_argument("--batch-size", type=int, help="batch size")
    t.add_argument("--lr", type=float, help="Adam learning rate")
    t.add_argument("--max-steps", type=int, help="stop each run after this many optimizer steps")
    t.add_argument("--device", help="auto | cpu | cuda")
    t.add_argument("--data-dir", help="where dataset files are (default: $NGL_DATA_DIR or ./data)")
    t.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="any other TrainConfig field (JSON value), repeatable, e.g. --set val_fraction=0.2")
    t.add_argument("--config", help="JSON file of grid fields (datasets, models, losses, seeds, "
                                    "label_noise, train_fraction, base: {TrainConfig fields}); flags override")
    x = p.add_argument_group("execution")
    x.add_argument("--executor", choices=list(EXECUTORS), default=None,
                   help="inline: this process; process: local pool of --workers; ray: RAY_ADDRESS or a "
                        "local Ray instance (default: process if --workers > 1, else inline)")
    x.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1),
                   help="parallel runs")
    x.add_argument("--threads", type=int, default=1, help="torch threads per run")
    x.add_argument("--timeout", type=float, default=None, help="seconds per run before it is killed "
                                                               "and recorded as failed")
    x.add_argument("--ray-address", default=None, help="Ray cluster address (default: RAY_ADDRESS or local)")
    x.add_argument("--retry-failed", action="store_true", help="rerun runs recorded as failed")
    o = p.add_argument_group("output")
    o.add_argument("--out", default="runs/bench",
                   help="directory: results.sqlite (the runs; rerun the same command to resume), "
                        "grid.json, report/")
    o.add_argument("--dry-run", action="store_true", help="print the grid's runs and exit")
    o.add_argument("--no-report", action="store_true", help="do not write or print the report")
    o.add_argument("--no-plots", action="store_true", help="report without PNG figures")
    o.add_argument("--published", action="store_true",
                   help="print the published table (arXiv 2404.12948) beside ours where datasets match")
    o.add_argument("--quiet", action="store_true", help="no progress bar or per-run lines")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="run the evaluation protocol: datasets x models x losses x seeds",
        description="Run a grid of training runs (the paper's protocol: every loss vs CE over seeds "
                    "and models) into OUT/results.sqlite, one row per run. Killed and run again with "
                    "the same flags, it skips finished runs and reruns interrupted ones. Failed and "
                    "diverged runs are recorded with their error and listed in the report, which is "
                    "written to OUT/report and printed at the end ('ngl report OUT' redoes it).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(p)
    p.set_defaults(func=run)


def grid_from_args(args: argparse.Namespace) -> Any:
    """The preset, then the --config file, then the flags."""
    from ..bench import PRESETS, Grid
    from ..fileio import read_json_object

    grid = PRESETS[args.preset]
    if args.config:
        path = Path(args.config)
        doc = read_json_object(path, what="grid config")
        known = set(Grid.__dataclass_fields__)
        if set(doc) - known:
            raise ValueError(f"grid config {path}: expected an object with keys among {sorted(known)}")
        doc = {k: (tuple(v) if isinstance(v, list) else v) for k, v in doc.items()}
        grid = grid.replace(**{k: v for k, v in doc.items() if k != "base"},
                            base={**grid.base, **doc.get("base", {})})
    base = dict(grid.base)
    for flag, key in (("epochs", "epochs"), ("batch_size", "batch_size"), ("lr", "lr"),
                      ("max_steps", "max_steps"), ("device", "device"), ("data_dir", "data_dir")):
        if getattr(args, flag) is not None:
            base[key] = getattr(args, flag)
    base.update(dict(args.settings))
    base["threads"] = args.threads
    return grid.replace(datasets=args.datasets, models=args.models, losses=args.losses, seeds=args.seeds,
                        label_noise=args.label_noise, train_fraction=args.train_fraction, base=base)


def validate_grid(configs: list[dict]) -> None:
    """Fail fast, before any run, on names the registries do not know."""
    from ..losses import get_loss
    from ..models import list_models

    try:
        from ..data import list_datasets
        datasets = set(list_datasets())
    except ImportError:  # pragma: no cover
        datasets = None
    for name in sorted({c["model"] for c in configs}):
        if name not in list_models():
            raise ValueError(f"unknown model {name!r}; registered models: {', '.join(list_models())}")
    for name in sorted({c["dataset"] for c in configs}):
        if datasets is not None and name not in datasets and not name.startswith(("folder:", "npz:")):
            raise ValueError(f"unknown dataset {name!r}; registered: {', '.join(sorted(datasets))} "
                             "(or folder:PATH, npz:PATH)")
    for c in configs:
        get_loss(c["loss"], **(c.get("loss_kwargs") or {}))


def run_bench(args: argparse.Namespace, *, title: str = "ngl benchmark report") -> int:
    from ..bench import ResultStore, expand, resolve_config, run_grid, run_key
    from ..executors import make_executor
    from ..report import write_report
    from ..fileio import write_text_atomic as write_atomic

    grid = grid_from_args(args)
    configs = expand(grid, resolve=resolve_config)
    validate_grid(configs)
    out = Path(args.out)
    if args.dry_run:
        for c in configs:
            print(run_key(c), json.dumps({k: c[k] for k in ("dataset", "model", "loss", "seed",
                                                            "label_noise", "train_fraction", "epochs")}))
        print(f"{len(configs)} runs")
        return 0
    write_atomic(out / "grid.json", json.dumps({"grid": {**grid.__dict__}, "runs": len(configs)},
                                               indent=2, default=list) + "\n")
    kind = args.executor or ("process" if args.workers > 1 else "inline")
    print(f"ngl bench: {len(configs)} runs ({kind} executor, {args.workers} worker(s)) -> "
          f"{out / 'results.sqlite'}", file=sys.stderr)
    with ResultStore(out / "results.sqlite") as store, \
            make_executor(kind, workers=args.workers, timeout=args.timeout, threads=args.threads,
                          ray_address=args.ray_address) as executor:
        store.set_meta("last_grid", [run_key(c) for c in configs])
        summary = run_grid(configs, store, executor=executor, retry_failed=args.retry_failed,
                           progress=not args.quiet, echo=(lambda _: None) if args.quiet else None)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items())) or "nothing to run"
    print(f"ngl bench: {summary['ran']} run(s) in {summary['wall_time']:.1f}s ({counts}); "
          f"{summary['skipped']} already finished", file=sys.stderr)
    write_atomic(out / "bench_summary.json", json.dumps(summary, indent=2) + "\n")
    if not args.no_report:
        rep = write_report(out / "results.sqlite", out / "report", plots=not args.no_plots,
                           published=getattr(args, "published", False), title=title)
        print(rep["markdown"])
        print(f"report: {', '.join(rep['files'].values())}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    return run_bench(args)
