"""Report figures (matplotlib, Agg backend, PNG): deltas vs CE per dataset, learning curves per
loss, and the loss-shape figure (each registered loss's per-class expression vs p for y=1, y=0)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from statistics import mean
from typing import Any

import numpy as np

from ..fileio import pyplot as _plt, save_figure
from .render import loss_label
from .tables import loss_order

__all__ = ["plot_deltas", "plot_learning_curves", "plot_loss_shapes"]


def plot_deltas(summary: dict[str, Any], path: str | Path) -> Path:
    """Grouped bars: each loss's delta vs the baseline (pp) per dataset, error bars = 95% CI
    half-width where a paired test exists, the +-band shaded."""
    plt = _plt()
    others = [n for n in summary["losses"] if n != summary["baseline"]]
    ds = summary["datasets"]
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(ds) + 2), 4))
    width = 0.8 / max(1, len(others))
    x = np.arange(len(ds))
    for i, loss in enumerate(others):
        cells = [summary["cells"][loss][d] for d in ds]
        vals = [c["delta"] if c["delta"] is not None else np.nan for c in cells]
        err = [(c["test"]["ci_high"] - c["test"]["mean"]) if c["test"] and c["test"].get("ci_high") is not None
               else 0.0 for c in cells]
        ax.bar(x + (i - (len(others) - 1) / 2) * width, vals, width, yerr=err, capsize=2,
               label=loss_label(loss))
    band = summary["band"]
    ax.axhspan(-band, band, color="grey", alpha=0.2, lw=0, label=f"same (+-{band:g} pp)")
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(x, ds)
    ax.set_ylabel(f"test accuracy vs {loss_label(summary['baseline'])} (pp)")
    ax.set_title("Accuracy difference to the baseline (mean over seeds and models; bars: 95% CI)")
    ax.legend(fontsize=8, ncol=2)
    return save_figure(fig, path, dpi=120)


def plot_learning_curves(rows: list[dict[str, Any]], path: str | Path, *, metric: str = "val_accuracy") -> Path:
    """One panel per dataset: ``metric`` per epoch, mean over the ok runs of each loss."""
    plt = _plt()
    curves: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        if r["status"] != "ok":
            continue
        for h in r.get("history") or []:
            if h.get(metric) is not None and h.get("epoch") is not None:
                curves[r["dataset"]][r["loss"]][int(h["epoch"])].append(float(h[metric]))
    ds = sorted(curves) or ["(no runs)"]
    fig, axes = plt.subplots(1, len(ds), figsize=(5 * len(ds), 3.6), squeeze=False)
    for ax, d in zip(axes[0], ds):
        by_loss = curves.get(d, {})
        for loss in loss_order(set(by_loss), "ce"):       # same order (and colours) as the table
            by_epoch = by_loss[loss]
            epochs = sorted(by_epoch)
            ax.plot(epochs, [100 * mean(by_epoch[e]) for e in epochs], marker=".", label=loss_label(loss))
        ax.set_title(d)
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"{metric.replace('_', ' ')} (%)")
        ax.grid(alpha=0.3)
        if curves.get(d):
            ax.legend(fontsize=7)
    return save_figure(fig, path, dpi=120)


def _plot_shape(axes: Any, p: np.ndarray, expression: Any, label: str) -> None:
    from ..expr import evaluate

    for ax, y in zip(axes, (1.0, 0.0)):
        vals = np.broadcast_to(np.asarray(evaluate(expression, p, np.full_like(p, y), namespace="numpy"),
                                          dtype=float), p.shape)
        ax.plot(p, vals, label=label)


def plot_loss_shapes(path: str | Path, *, losses: list[str] | None = None) -> Path:
    """Each registered loss's per-class expression vs p in (0, 1), for y=1 (left) and y=0 (right)."""
    from ..losses import get_loss_info, list_losses

    plt = _plt()
    p = np.linspace(0.005, 0.995, 199)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=False)
    skipped = []
    for name in losses or list_losses():
        info = get_loss_info(name)
        if info.expression is None:
            skipped.append(info.label)
            continue
        _plot_shape(axes, p, info.expression, info.label)
    for ax, y in zip(axes, (1, 0)):
        ax.set_title(f"y = {y}" + (" (true class)" if y else " (other classes)"))
        ax.set_xlabel("predicted probability p")
        ax.set_ylabel("per-class loss")
        ax.grid(alpha=0.3)
    axes[0].set_ylim(top=12)
    axes[0].legend(fontsize=8)
    if skipped:
        fig.text(0.5, -0.02, f"no closed per-class expression: {', '.join(skipped)}", ha="center", fontsize=8)
    return save_figure(fig, path, dpi=120)
