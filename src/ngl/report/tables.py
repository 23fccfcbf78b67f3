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

from .stats import SIGNIFICANCE, holm, paired_test

__all__ = ["verdict", "paired_test", "summarize", "loss_order", "SIGNIFICANCE"]


def verdict(delta_pp: float | None, *, band: float = 0.5) -> str | None:
    """``better`` if delta > band, ``worse`` if delta < -band, else ``same`` (the band is inclusive:
    exactly +-0.5 is ``same``). Deltas are rounded to 1e-9 pp first, so float noise such as
    0.5000000000000004 from 90.5 - 90.0 counts as 0.5.

    >>> verdict(0.5), verdict(0.51), verdict(-2.0)
    ('same', 'better', 'worse')
    """
    if delta_pp is None or math.isnan(delta_pp):
        return None
    d = round(delta_pp, 9)
    return "better" if d > band else "worse" if d < -band else "same"


def loss_order(losses: set[str], baseline: str) -> list[str]:
    """Baseline first, then registry order, then anything else (expression losses) by name."""
    from ..losses import list_losses

    rest = [n for n in list_losses() if n in losses and n != baseline]
    rest += sorted(n for n in losses if n not in rest and n != baseline)
    return ([baseline] if baseline in losses else []) + rest


def _seed_spread(by_model: dict[str, dict[int, float]]) -> float | None:
    """Mean over models of the standard deviation over seeds (pp); None with < 2 seeds."""
    sds = [stdev(list(seeds.values())) for seeds in by_model.values() if len(seeds) >= 2]
    return mean(sds) if sds else None


Accuracies = dict[tuple[str, str], dict[str, dict[int, float]]]


def _collect(rows: list[dict[str, Any]]) -> tuple[Accuracies, dict[str, set], list[dict]]:
    """``acc[(loss, dataset)][model][seed]`` in %, the (model, seed) pairs expected per dataset,
    and the failed/diverged runs."""
    acc: Accuracies = defaultdict(lambda: defaultdict(dict))
    expected: dict[str, set[tuple[str, int]]] = defaultdict(set)
    failed = []
    for r in rows:
        ds, loss, model, seed = r["dataset"], r["loss"], r["model"], int(r["seed"])
        expected[ds].add((model, seed))
        acc.setdefault((loss, ds), defaultdict(dict))
        if r["status"] == "ok" and r.get("test_accuracy") is not None:
            acc[(loss, ds)][model][seed] = 100.0 * float(r["test_accuracy"])
        elif r["status"] in ("failed", "diverged"):
            failed.append({k: r.get(k) for k in ("dataset", "model", "loss", "seed", "status", "error")})
    return acc, expected, failed


def _cell(runs: dict[str, dict[int, float]], base: dict[str, dict[int, float]] | None,
          expected: set[tuple[str, int]], band: float) -> dict[str, Any]:
    """One (loss, dataset) cell; ``base`` is the baseline's runs (None for the baseline itself)."""
    values = [v for seeds in runs.values() for v in seeds.values()]
    cell: dict[str, Any] = {"n": len(values), "expected": len(expected),
                            "mean": mean(values) if values else None, "std": _seed_spread(runs),
                            "delta": None, "verdict": None, "test": None, "significant": None}
    base_values = [v for seeds in (base or {}).values() for v in seeds.values()]
    if values and base_values:
        cell["delta"] = mean(values) - mean(base_values)
        cell["verdict"] = verdict(cell["delta"], band=band)
        pairs = sorted((m, s) for m, seeds in runs.items() for s in seeds)
        cell["test"] = paired_test([runs[m][s] - base[m][s] for m, s in pairs if s in base.get(m, {})])
    return cell


def _apply_holm(cells: dict[str, dict[str, dict[str, Any]]]) -> None:
    """Holm-correct the paired tests' p-values across every cell of the table (``p_holm``) and
    mark ``significant`` = corrected p < :data:`SIGNIFICANCE`."""
    tests = [c["test"] for by_ds in cells.values() for c in by_ds.values() if c["test"]]
    for test, p in zip(tests, holm([t.get("p_value") for t in tests])):
        test["p_holm"] = p
    for by_ds in cells.values():
        for c in by_ds.values():
            p = (c["test"] or {}).get("p_holm")
            c["significant"] = None if p is None else p < SIGNIFICANCE


def _missing(loss: str, ds: str, cell_runs: dict, expected: set) -> dict[str, Any] | None:
    have = {(m, s) for m, seeds in cell_runs.items() for s in seeds}
    lacking = sorted(expected - have)
    if not lacking:
        return None
    return {"dataset": ds, "loss": loss, "runs_missing": len(lacking), "of": len(expected),
            "which": [f"{m}/seed{s}" for m, s in lacking]}


def _mean_column(cells: dict, losses: list[str], datasets: list[str], baseline: str,
                 band: float) -> dict[str, dict[str, Any]]:
    out = {}
    for loss in losses:
        key = "mean" if loss == baseline else "delta"
        vals = [cells[loss][ds][key] for ds in datasets if cells[loss][ds][key] is not None]
        m = mean(vals) if vals else None
        out[loss] = {"value": m, "datasets": len(vals), "of": len(datasets),
                     "verdict": None if loss == baseline else verdict(m, band=band)}
    return out


def _run_counts(rows: list[dict[str, Any]]) -> dict[str, int]:
    status = [r["status"] for r in rows]
    return {"total": len(rows), "ok": status.count("ok"), "failed": status.count("failed"),
            "diverged": status.count("diverged"),
            "unfinished": status.count("pending") + status.count("running")}


def summarize(rows: list[dict[str, Any]], *, baseline: str = "ce", band: float = 0.5) -> dict[str, Any]:
    """Aggregate stored runs (``ResultStore.rows()``) into the comparison table.

    Args:
        rows: run rows with ``dataset``, ``model``, ``loss``, ``seed``, ``status``, ``test_accuracy``
            (fraction), ``error``.
        baseline: the loss every other is compared to (CE).
        band: half-width of the ``same`` band in percentage points.
    Returns:
        A JSON-safe dict: ``datasets``, ``losses``, ``cells[loss][dataset]`` (n, expected, mean %,
        std, delta pp, verdict, paired test with Holm-corrected ``p_holm``, ``significant``),
        ``mean[loss]`` (Mean column), ``missing``, ``failed``, ``runs`` (counts by status).
    """
    acc, expected, failed = _collect(rows)
    datasets = sorted(expected)
    losses = loss_order({loss for loss, _ in acc}, baseline)
    cells = {loss: {ds: _cell(acc.get((loss, ds), {}),
                              None if loss == baseline else acc.get((baseline, ds)),
                              expected[ds], band) for ds in datasets} for loss in losses}
    _apply_holm(cells)
    missing = [m for loss in losses for ds in datasets
               if (m := _missing(loss, ds, acc.get((loss, ds), {}), expected[ds]))]
    return {"baseline": baseline, "band": band, "datasets": datasets, "losses": losses,
            "cells": cells, "mean": _mean_column(cells, losses, datasets, baseline, band),
            "missing": missing, "significance": SIGNIFICANCE,
            "failed": sorted(failed, key=lambda f: (f["dataset"], f["loss"], f["model"], f["seed"])),
            "runs": _run_counts(rows)}
