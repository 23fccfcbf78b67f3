"""Search outputs: hall-of-fame expression files (each with its readable form), the
per-generation CSV and its plot, result.json."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from .. import expr as E
from ..fileio import pyplot, save_figure, write_csv_atomic, write_json_atomic

__all__ = ["write_outputs", "write_hall_of_fame", "write_generations_csv", "plot_generations",
           "CSV_COLUMNS", "FITNESS_METRIC"]

CSV_COLUMNS = ["generation", "best", "best_mean_gain", "best_seeds", "median", "mean", "unique_fraction",
               "revaried", "evaluations", "promoted", "runs", "batched", "requested", "cache_hits",
               "cache_hit_rate", "screened", "rejected", "rejection_rate", "failed", "mean_size",
               "wall_time", "total_time"]
_SEARCH_KEYS = ("fitness", "task", "task2", "combine", "seed")
FITNESS_METRIC = ("lower 90% confidence bound of the paired gain in validation accuracy over CE on "
                  "common seeds (worst fitness task), a fraction")


def write_hall_of_fame(out: Path, hof: list[dict], config: dict[str, Any],
                       tuned: list[dict] | None = None) -> list[Path]:
    """``out/hall_of_fame/NN.json`` (best = 00): tree, infix, LaTeX, fitness and provenance; the
    tuned constants with the fitness before and after tuning; validated deltas once validated."""
    folder = out / "hall_of_fame"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    by_rank = {t["rank"]: t for t in tuned or []}
    paths = []
    for rank, entry in enumerate(hof):
        meta = {"rank": rank, "search_rank": rank, "fitness": entry["fitness"],
                "fitness_metric": FITNESS_METRIC, "mean_gain": entry.get("mean_gain"),
                "seeds": entry.get("seeds"), "task_gains": entry.get("tasks"),
                "readable": E.readable_infix(entry["infix"]),
                "generation": entry["generation"], "fingerprint": entry["fingerprint"],
                "size": entry["size"], "search": {k: config.get(k) for k in _SEARCH_KEYS}}
        if rank in by_rank:
            t = by_rank[rank]
            meta["tuning"] = {k: t.get(k) for k in ("status", "infix", "constants", "constants_before",
                                                   "fitness_before", "fitness", "evaluations", "improved")}
        if entry.get("validation"):
            meta["validation"] = entry["validation"]
        paths.append(E.save(E.parse(entry["infix"]), folder / f"{rank:02d}.json", **meta))
    return paths


def write_generations_csv(path: Path, logbook: list[dict]) -> Path:
    return write_csv_atomic(path, logbook, CSV_COLUMNS)


def plot_generations(path: Path, logbook: list[dict]) -> Path:
    """Best/median fitness, unique fraction and rejection/cache-hit rates per generation."""
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    gens = [r["generation"] for r in logbook]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(gens, [100 * r["best"] for r in logbook], marker="o", label="best (lower bound)")
    ax1.plot(gens, [100 * (r.get("best_mean_gain") or r["best"]) for r in logbook], marker=".",
             label="best (mean)")
    ax1.plot(gens, [100 * r["median"] for r in logbook], marker=".", label="median of the trained")
    ax1.axhline(0.0, color="grey", lw=0.8)
    ax1.set(xlabel="generation", ylabel="paired gain over CE (pp)", title="fitness")
    ax1.legend()
    for key, label in (("unique_fraction", "unique fraction"), ("rejection_rate", "rejection rate"),
                       ("cache_hit_rate", "cache-hit rate")):
        ax2.plot(gens, [r.get(key, 0.0) for r in logbook], marker=".", label=label)
    ax2.set(xlabel="generation", ylabel="fraction", ylim=(-0.05, 1.05), title="diversity and cheapness")
    ax2.legend()
    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return save_figure(fig, path)


def write_outputs(out: Path, hof: list[dict], logbook: list[dict], config: Any,
                  tuned: list[dict] | None = None) -> None:
    """Everything a finished search leaves behind, next to its checkpoint and config."""
    cfg = config.to_dict()
    write_hall_of_fame(out, hof, cfg, tuned)
    write_generations_csv(out / "generations.csv", logbook)
    plot_generations(out / "generations.png", logbook)
    summary = {"best": hof[0] if hof else None, "hall_of_fame": hof, "tuned": tuned or [],
               "generations": len(logbook), "evaluations": sum(r["evaluations"] for r in logbook),
               "unique_fraction_after_gen0": (statistics.fmean(r["unique_fraction"] for r in logbook[1:])
                                              if len(logbook) > 1 else None),
               "runs": sum(r.get("runs", 0) for r in logbook),
               "fitness_metric": FITNESS_METRIC,
               "wall_time": logbook[-1]["total_time"] if logbook else 0.0, "config": cfg}
    write_json_atomic(out / "result.json", summary, indent=2)
