"""``ngl bench``: run a grid of training runs (the paper's protocol: datasets x models x losses x
seeds) through the training harness into a resumable SQLite database, then print the report.

Configuration comes in layers (:mod:`ngl.config`): the ``--preset``, then the ``--config`` file,
then the flags, each replacing what it names. The grid's flags are generated from
:class:`ngl.bench.Grid`, the training ones from :class:`ngl.runspec.TrainConfig` (:data:`RUN_FLAGS`),
the execution ones from :class:`ngl.execution.Execution` (shared with ``ngl search``), the rest
from :class:`Output`. Naming ``--datasets`` (flag or file) also drops the preset's dataset variants
(label noise, train fraction) unless those are named too, so a grid is what its flags say.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import add_config_arguments, opt
from ..errors import InputError

__all__ = ["register", "run", "add_arguments", "grid_from_args", "execution_from_args", "run_bench",
           "layers", "Output", "RUN_FLAGS"]

_TRAIN, _EXEC, _OUT = "training (every run)", "execution", "output"
_AXES = ("datasets", "label_noise", "train_fraction", "models", "losses", "seeds")


#: the TrainConfig fields that have a flag of their own in ``ngl bench`` (``None``: the preset's, then
#: TrainConfig's default); any other field goes through ``--set KEY=VALUE``
RUN_FLAGS = ("epochs", "batch_size", "lr", "max_steps", "device", "data_dir")
#: bench's execution defaults (the flags are :class:`ngl.execution.Execution`'s)
EXEC_DEFAULTS = {"executor": None, "workers": min(2, os.cpu_count() or 1)}


@dataclass
class Output:
    """Where results go and what is printed."""

    out: str = opt("runs/bench", "folder: results.sqlite (the runs; rerun the same command to "
                   "resume), grid.json, report/", group=_OUT)
    dry_run: bool = opt(False, "print the grid's runs and exit", group=_OUT)
    report: bool = opt(True, "write and print the report at the end", group=_OUT)
    plots: bool = opt(True, "PNG figures in the report", group=_OUT)
    published: bool = opt(False, "print the published table (arXiv 2404.12948) beside ours where "
                          "datasets match", group=_OUT)
    quiet: bool = opt(False, "no progress bar or per-run lines", group=_OUT)


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (a TrainConfig field), got {text!r}")
    try:
        return key.strip(), json.loads(value)
    except (json.JSONDecodeError, RecursionError):
        return key.strip(), value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The grid, training, execution and output flags (shared with ``ngl demo``)."""
    from ..bench import PRESETS, Grid
    from ..bench.grid import GRID_GROUP
    from ..execution import Execution
    from ..runspec import TrainConfig

    groups: dict[str, Any] = {}
    g = groups[GRID_GROUP] = p.add_argument_group(GRID_GROUP)
    g.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="default: digits and digits with 20%% label noise x cnn_small x every "
                        "registered loss x 5 seeds (under 10 min on 2 CPU cores); paper: the published "
                        "grid (7 datasets, resnet50 + inception_v3, 200 epochs; needs the data and "
                        "GPUs); smoke: seconds (default: default)")
    g.add_argument("--config", help="JSON file of grid fields (datasets, models, losses, seeds, "
                                    "label_noise, train_fraction, base: {TrainConfig fields}); it "
                                    "replaces what it names of the preset, flags replace it")
    add_config_arguments(p, Grid, groups=groups)
    add_config_arguments(p, TrainConfig, only=RUN_FLAGS, defaults=dict.fromkeys(RUN_FLAGS),
                         group=_TRAIN, groups=groups)
    groups[_TRAIN].add_argument(
        "--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE",
        help="any other TrainConfig field (JSON value), repeatable, e.g. --set val_fraction=0.2")
    add_config_arguments(p, Execution, defaults=EXEC_DEFAULTS, groups=groups)
    groups[_EXEC].add_argument("--retry-failed", action=argparse.BooleanOptionalAction, default=False,
                               help="rerun runs recorded as failed")
    add_config_arguments(p, Output, groups=groups)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="run the evaluation protocol: datasets x models x losses x seeds",
        description="Run a grid of training runs (the paper's protocol: every loss vs CE over seeds "
                    "and models) into OUT/results.sqlite, one row per run. Killed and run again with "
                    "the same flags, it skips finished runs and reruns interrupted ones; one bench "
                    "at a time per OUT (a second one is refused). Failed and diverged runs are "
                    "recorded with their error and listed in the report, which is written to "
                    "OUT/report and printed at the end ('ngl report OUT' redoes it).")
    add_arguments(p)
    p.set_defaults(func=run, parser=p, layers=layers)


# -- configuration layers -------------------------------------------------------------------------
def _read_config(path: str) -> dict[str, Any]:
    """The ``--config`` file as checked grid fields (unknown keys, wrong types: one line)."""
    from ..bench import Grid
    from ..config import from_mapping
    from ..fileio import read_json_object

    doc = read_json_object(path, what="grid config")
    grid = from_mapping(Grid, doc, what=f"grid config {path}")   # checks keys and types
    return {k: getattr(grid, k) for k in doc}


def _as_layer(fields_: dict[str, Any], settings: list) -> dict[str, Any]:
    """Grid fields (with ``base``) as parser defaults: axes, RunSettings flags, ``--set`` pairs."""
    flags = set(RUN_FLAGS)
    layer = {k: list(v) for k, v in fields_.items() if k in _AXES}
    for key, value in (fields_.get("base") or {}).items():
        if key in flags:
            layer[key] = value
        else:
            settings = [*settings, (key, value)]
    return {**layer, "settings": settings}


def layers(args: argparse.Namespace) -> list[dict[str, Any]]:
    """``[preset, --config file]`` as defaults for the parser (flag > file > preset > default).

    When the file or a flag names ``datasets`` and neither names a variant axis (``label_noise``,
    ``train_fraction``), the preset's variants are dropped with its datasets."""
    from ..bench import PRESETS

    preset = PRESETS[args.preset]
    file_fields = _read_config(args.config) if args.config else {}
    named = set(getattr(args, "given", set())) | set(file_fields)
    preset_fields = {k: getattr(preset, k) for k in (*_AXES, "base")}
    if "datasets" in named:
        for axis in ("label_noise", "train_fraction"):
            if axis not in named:
                preset_fields.pop(axis)
    preset_layer = _as_layer(preset_fields, [])
    file_layer = _as_layer(file_fields, preset_layer["settings"]) if file_fields else {}
    return [preset_layer, file_layer]


def grid_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~ngl.bench.Grid` of parsed (and layered) arguments."""
    from ..bench import Grid

    base = {name: getattr(args, name) for name in RUN_FLAGS if getattr(args, name) is not None}
    base.update(dict(args.settings))
    base["threads"] = args.threads
    return Grid(**{k: tuple(getattr(args, k)) for k in _AXES}, base=base)


def _inherited(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    """Axes taken from the preset, and axes reset to the clean variant because ``datasets`` was
    named (neither named by a flag nor by --config)."""
    named = set(getattr(args, "given", set())) | (set(_read_config(args.config)) if args.config else set())
    reset = [a for a in ("label_noise", "train_fraction") if "datasets" in named and a not in named]
    return [a for a in _AXES if a not in named and a not in reset], reset


def describe_grid(grid: Any, args: argparse.Namespace, runs: int) -> str:
    """``grid: datasets x variants x models x losses x seeds = 1 x 1 x 1 x 2 x 2 = 4 runs``, and
    which axes came from the preset (named neither by a flag nor by --config)."""
    from ..bench import AXES, grid_shape

    shape = grid_shape(grid)
    text = (f"grid: {' x '.join(AXES)} = {' x '.join(str(shape[a]) for a in AXES)} = "
            f"{runs} run{'s' if runs != 1 else ''}")
    if runs != _product(shape):
        text += " (duplicate runs dropped)"
    inherited, reset = _inherited(args)
    if inherited:
        text += f"; from preset {args.preset!r}: " + ", ".join(
            f"{a} {','.join(map(str, getattr(grid, a))) or 'all registered'}" for a in inherited)
    if reset:
        what = {"label_noise": "no label noise", "train_fraction": "the whole training split"}
        text += f"; {' and '.join(what[a] for a in reset)} (the preset's variants go with its datasets; " \
                f"name {' or '.join('--' + a.replace('_', '-') for a in reset)} to add some)"
    return text


def _product(shape: dict[str, int]) -> int:
    n = 1
    for v in shape.values():
        n *= v
    return n


# -- checks -------------------------------------------------------------------------------------
def execution_from_args(args: argparse.Namespace) -> Any:
    """The checked :class:`~ngl.execution.Execution` of the parsed flags."""
    from ..execution import Execution

    kind = args.executor or "auto"
    return Execution(executor=kind, workers=args.workers, threads=args.threads, timeout=args.timeout,
                     ray_address=args.ray_address).check()


def _check_out(args: argparse.Namespace) -> None:
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; expected a folder (it will hold results.sqlite)")


# -- running --------------------------------------------------------------------------------------
def run_bench(args: argparse.Namespace, *, title: str = "ngl benchmark report") -> int:
    from ..bench import Expansion, pin_grid
    from ..bench.checks import check_runs

    execution = execution_from_args(args)
    _check_out(args)
    grid, sources = pin_grid(grid_from_args(args))
    expansion = Expansion(grid)                 # every setting of every run checked here
    check_runs(expansion.samples)               # each model, dataset and loss once
    print(describe_grid(grid, args, len(expansion)), file=sys.stderr)
    if args.dry_run:
        return _dry_run(expansion)
    from ..data import check_datasets_available

    check_datasets_available(dict.fromkeys((c.dataset, c.data_dir) for c in expansion.samples))
    return _execute(args, execution, grid, expansion, sources, title)


def _dry_run(runs: Any) -> int:
    """Print each run's key and settings as it is made (nothing is held per run)."""
    n = 0
    for r in runs:
        c = r.config
        sys.stdout.write(f"{r.key} " + json.dumps(
            {"dataset": c.dataset, "model": c.model, "loss": c.loss, "seed": c.seed,
             "label_noise": c.label_noise, "train_fraction": c.train_fraction, "epochs": c.epochs}) + "\n")
        n += 1
    print(f"{n} runs")
    return 0


def _save(path: Path, text: str) -> None:
    from ..bench import StoreWriteError
    from ..fileio import write_text_atomic

    try:
        write_text_atomic(path, text)
    except OSError as exc:
        raise StoreWriteError(f"cannot write {path} ({exc.strerror or exc}); free space or give "
                              f"--out a folder you can write") from None


def _execute(args: argparse.Namespace, execution: Any, grid: Any, expansion: Any, sources: dict,
             title: str) -> int:
    from ..bench import ResultStore, grid_settings, run_grid
    from ..report import write_report

    out = Path(args.out)
    runs = list(expansion)
    with ResultStore(out / "results.sqlite") as store:           # takes the store's lock first
        grid_id = store.record_grid([r.key for r in runs], grid_settings(expansion.samples))
        _save(out / "grid.json", json.dumps({"grid": {**grid.__dict__}, "id": grid_id, "runs": len(runs),
                                             "sources": sources}, indent=2, default=list) + "\n")
        where = "one worker process for the timeout" if execution.kind == "inline" and execution.timeout \
            else f"{execution.workers} worker(s)"
        print(f"ngl bench: {len(runs)} runs as grid {grid_id} ({execution.kind} executor, {where}) -> "
              f"{out / 'results.sqlite'}", file=sys.stderr)
        store.record_sources(sources)
        with execution.make() as executor:
            summary = run_grid(runs, store, executor=executor, retry_failed=args.retry_failed,
                               progress=not args.quiet, echo=(lambda _: None) if args.quiet else None)
    counts = ", ".join(f"{v} {k}" for k, v in sorted(summary["counts"].items())) or "nothing to run"
    print(f"ngl bench: {summary['ran']} run(s) in {summary['wall_time']:.1f}s ({counts}); "
          f"{summary['skipped']} already finished", file=sys.stderr)
    _save(out / "bench_summary.json", json.dumps(summary, indent=2) + "\n")
    if args.report:
        rep = write_report(out / "results.sqlite", out / "report", grid=grid_id, plots=args.plots,
                           published=args.published, title=title)
        print(rep["markdown"])                  # names the store's other grids, if any
        print(f"report: {', '.join(rep['files'].values())}", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    return run_bench(args)
