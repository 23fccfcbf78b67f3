"""The paper's table from stored runs: CE's absolute test accuracy per dataset, every other loss as
percentage points vs CE (averaged over seeds and models), a Mean column and the better / same /
worse verdict with the inclusive +-0.5 band; plus what the paper lacks: seed spread, a paired
t-test over (model, seed) pairs with a 95% CI, missing cells and the runs that failed or diverged.
"""
from __future__ import annotations

import math
from collections import defaultdict
from statistics import mean, stdev
from typing import Any

from .stats import paired_test

__all__ = ["verdict", "paired_test", "summarize", "loss_order"]


def verdict(delta_pp: float | None, *, band: float = 0.5) -> str | None:
    """``better`` if delta > band, ``worse`` if delta < -band, else ``same`` (the band is inclusive:
    exactly +-0.5 is ``same``). Deltas are rounded to 1e-9 pp first, so float noise such as
    0.5000000000000004 from 90.5 - 90.0 counts as 0.5."""
    if delta_pp is None or math.isnan(delta_pp):
        return None
    d = round(delta_pp, 9)
    return "better" if d > band else "worse" if d < -band else "same"


def loss_order(losses: set[str], baseline: str) -> list[str]:
    """Baseline first, then registry order, then anything else (expression files) by name."""
    try:
        from ..losses import list_losses
        registered = list_losses()
    except Exception:  # noqa: BLE001 - the report works on a bare store too
        registered = []
    rest = [n for n in registered if n in losses and n != baseline]
    rest += sorted(n for n in losses if n not in rest and n != baseline)
    return ([baseline] if baseline in losses else []) + rest


def _seed_spread(by_model: dict[str, dict[int, float]]) -> float | None:
    """Mean over models of the standard deviation over seeds (pp); None with < 2 seeds."""
    sds = [stdev(list(seeds.values())) for seeds in by_model.values() if len(seeds) >= 2]
    return mean(sds) if sds else None


def summarize(rows: list[dict[str, Any]], *, baseline: str = "ce", band: float = 0.5) -> dict[str, Any]:
    """Aggregate stored runs (``ResultStore.rows()``) into the comparison table.

    Args:
        rows: run rows with ``dataset``, ``model``, ``loss``, ``seed``, ``status``, ``test_accuracy``
            (fraction), ``error``.
        baseline: the loss every other is compared to (CE).
        band: half-width of the ``same`` band in percentage points.
    Returns:
        A JSON-safe dict: ``datasets``, ``losses``, ``cells[loss][dataset]`` (n, expected, mean %,
        std, delta pp, verdict, paired test), ``mean[loss]`` (Mean column), ``missing``, ``failed``.
    """
    acc: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    expected: dict[str, set[tuple[str, int]]] = defaultdict(set)
    datasets, losses, failed = set(), set(), []
    for r in rows:
        ds, loss, model, seed = r["dataset"], r["loss"], r["model"], int(r["seed"])
        datasets.add(ds)
        losses.add(loss)
        expected[ds].add((model, seed))
        if r["status"] == "ok" and r.get("test_accuracy") is not None:
            acc[(loss, ds)][model][seed] = 100.0 * float(r["test_accuracy"])
        elif r["status"] in ("failed", "diverged"):
            failed.append({k: r.get(k) for k in ("dataset", "model", "loss", "seed", "status", "error")})
    ds_order = sorted(datasets)
    loss_list = loss_order(losses, baseline)
    cells: dict[str, dict[str, Any]] = {}
    missing = []
    for loss in loss_list:
        cells[loss] = {}
        for ds in ds_order:
            runs = acc.get((loss, ds), {})
            values = [v for seeds in runs.values() for v in seeds.values()]
            have = {(m, s) for m, seeds in runs.items() for s in seeds}
            lacking = sorted(expected[ds] - have)
            cell: dict[str, Any] = {"n": len(values), "expected": len(expected[ds]),
                                    "mean": mean(values) if values else None,
                                    "std": _seed_spread(runs), "delta": None, "verdict": None,
                                    "test": None}
            base = acc.get((baseline, ds), {})
            base_values = [v for seeds in base.values() for v in seeds.values()]
            if values and base_values and loss != baseline:
                cell["delta"] = mean(values) - mean(base_values)
                cell["verdict"] = verdict(cell["delta"], band=band)
                diffs = [runs[m][s] - base[m][s] for m, s in sorted(have) if s in base.get(m, {})]
                cell["test"] = paired_test(diffs)
            cells[loss][ds] = cell
            if lacking:
                missing.append({"dataset": ds, "loss": loss, "runs_missing": len(lacking),
                                "of": len(expected[ds]),
                                "which": [f"{m}/seed{s}" for m, s in lacking]})
    mean_col = {}
    for loss in loss_list:
        key = "mean" if loss == baseline else "delta"
        vals = [cells[loss][ds][key] for ds in ds_order if cells[loss][ds][key] is not None]
        m = mean(vals) if vals else None
        mean_col[loss] = {"value": m, "datasets": len(vals), "of": len(ds_order),
                          "verdict": None if loss == baseline else verdict(m, band=band)}
    return {"baseline": baseline, "band": band, "datasets": ds_order, "losses": loss_list,
            "cells": cells, "mean": mean_col, "missing": missing,
            "failed": sorted(failed, key=lambda f: (f["dataset"], f["loss"], f["model"], f["seed"])),
            "runs": {"total": len(rows), "ok": sum(r["status"] == "ok" for r in rows),
                     "failed": sum(r["status"] == "failed" for r in rows),
                     "diverged": sum(r["status"] == "diverged" for r in rows),
                     "unfinished": sum(r["status"] in ("pending", "running") for r in rows)}}
