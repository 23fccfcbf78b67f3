"""Search outputs: hall-of-fame expression files, the per-generation CSV and its plot."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .. import expr as E
from ..fileio import write_csv_atomic

__all__ = ["write_outputs", "write_hall_of_fame", "write_generations_csv", "plot_generations",
           "CSV_COLUMNS"]

CSV_COLUMNS = ["generation", "best", "median", "mean", "evaluations", "requested", "cache_hits",
               "cache_hit_rate", "screened", "rejected", "rejection_rate", "failed", "mean_size",
               "wall_time", "total_time"]


def write_hall_of_fame(out: Path, hof: list[dict], config: dict[str, Any]) -> list[Path]:
    """``out/hall_of_fame/NN.json`` (best = 00): tree, infix, LaTeX, fitness and provenance."""
    folder = out / "hall_of_fame"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.json"):
        old.unlink()
    paths = []
    for rank, entry in enumerate(hof):
        expr = E.from_json(entry["tree"])
        paths.append(E.save(expr, folder / f"{rank:02d}.json", rank=rank, fitness=entry["fitness"],
                            fitness_metric="validation accuracy", generation=entry["generation"],
                            fingerprint=entry["fingerprint"], size=entry["size"],
                            search={k: config[k] for k in ("fitness", "dataset", "model", "max_steps", "seed")}))
    return paths


def write_generations_csv(path: Path, logbook: list[dict]) -> Path:
    return write_csv_atomic(path, logbook, CSV_COLUMNS)


def plot_generations(path: Path, logbook: list[dict]) -> Path:
    """Best/median fitness and rejection/cache-hit rates per generation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gens = [r["generation"] for r in logbook]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    ax1.plot(gens, [r["best"] for r in logbook], marker="o", label="best")
    ax1.plot(gens, [r["median"] for r in logbook], marker=".", label="median")
    ax1.set(xlabel="generation", ylabel="fitness (validation accuracy)", title="fitness")
    ax1.legend()
    ax2.plot(gens, [r["rejection_rate"] for r in logbook], marker=".", label="rejection rate")
    ax2.plot(gens, [r["cache_hit_rate"] for r in logbook], marker=".", label="cache-hit rate")
    ax2.set(xlabel="generation", ylabel="fraction", ylim=(-0.05, 1.05), title="cheapness")
    ax2.legend()
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_outputs(out: Path, hof: list[dict], logbook: list[dict], config: Any) -> None:
    """Everything a finished search leaves behind, next to its checkpoint and config."""
    cfg = config.to_dict()
    write_hall_of_fame(out, hof, cfg)
    write_generations_csv(out / "generations.csv", logbook)
    plot_generations(out / "generations.png", logbook)
    summary = {"best": hof[0] if hof else None, "hall_of_fame": hof, "generations": len(logbook),
               "evaluations": sum(r["evaluations"] for r in logbook),
               "wall_time": logbook[-1]["total_time"] if logbook else 0.0, "config": cfg}
    (out / "result.json").write_text(json.dumps(summary, indent=2, allow_nan=False) + "\n")
