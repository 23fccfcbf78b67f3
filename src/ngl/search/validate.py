"""Validation of a search's winners without selection bias (``ngl search validate OUT``).

A winner's search fitness is the maximum of many noisy scores, so it is biased upward. Here the
top ``k`` hall-of-fame losses (and their CMA-ES-tuned versions, where tuning changed them) are
retrained together with CE, NGL and SCE on fresh seeds (1000, 1001, ...: new initialisations,
batches *and* label-noise draws), on the search task and on a transfer task (another noise level
and another model), through the bench machinery (:func:`ngl.bench.expand`, :func:`ngl.bench.
run_grid`, a resumable :class:`ngl.bench.ResultStore` in ``OUT/validation/results.sqlite``).

Per cell (task x loss) the test-accuracy differences to CE on the same seeds get a paired t-test
(:func:`ngl.report.stats.paired_test`); the p-values are Holm-corrected across all cells
(:func:`ngl.report.stats.holm`). Writes ``OUT/validation/report.{md,json,csv}`` and records the
validated deltas in each hall-of-fame JSON.
"""
from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path
from typing import Any, Callable

from .. import expr as E
from ..errors import InputError, MissingFileError
from ..fileio import read_json_object, write_csv_atomic, write_json_atomic, write_text_atomic
from ..runspec import TrainConfig
from .config import SearchConfig

__all__ = ["validate_search", "validation_tasks", "validation_losses", "summarize_validation",
           "load_search", "FRESH_SEED"]

#: validation seeds start here; the search trains with ``train_seed`` (default 0)
FRESH_SEED = 1000
BASELINES = ("ce", "ngl", "sce")
_COLUMNS = ["task", "loss", "label", "n", "mean_accuracy", "sd_accuracy", "delta_pp", "ci_low",
            "ci_high", "p_value", "p_holm", "significant"]


def validation_tasks(cfg: SearchConfig) -> dict[str, TrainConfig]:
    """``{"search": ..., "transfer": ...}``: the two tasks as run specs (loss and seed set per run)."""
    search, transfer = cfg.fitness_task(), cfg.transfer_task()
    if (transfer.dataset, transfer.model, transfer.label_noise) == (search.dataset, search.model,
                                                                     search.label_noise):
        raise InputError("the transfer task must differ from the search task "
                         "(set --transfer-dataset, --transfer-model or --transfer-label-noise)")
    return {"search": search, "transfer": transfer}


def validation_losses(result: dict[str, Any], top: int) -> dict[str, str]:
    """label -> loss spec: the baselines, the top ``top`` found losses and their tuned versions."""
    losses = {name: name for name in BASELINES}
    tuned = {t["rank"]: t for t in result.get("tuned") or []}
    for rank, entry in enumerate(result["hall_of_fame"][:top]):
        losses[f"#{rank}"] = "expr:" + entry["infix"]
        t = tuned.get(rank)
        if t and t.get("improved") and t["infix"] != entry["infix"]:
            losses[f"#{rank} tuned"] = "expr:" + t["infix"]
    return losses


def _plan(tasks: dict[str, TrainConfig], losses: dict[str, str], seeds: list[int]) -> dict[str, list]:
    """task name -> its planned runs (:func:`ngl.bench.plan`): every loss x seed, keyed once."""
    from ..bench import plan

    return {name: plan(dataclasses.replace(task, loss=spec, seed=s) for spec in losses.values() for s in seeds)
            for name, task in tasks.items()}


def _accuracies(planned: dict[str, list], store: Any) -> dict[tuple[str, str], dict[int, float]]:
    """(task, loss spec) -> {seed: test accuracy} of this validation's finished ``ok`` runs, found
    by their keys: rows of another validation in the same store (other seeds, epochs) never mix in."""
    rows = {r["key"]: r for r in store.rows(["ok"])}
    out: dict[tuple[str, str], dict[int, float]] = {}
    for name, runs in planned.items():
        for run in runs:
            row = rows.get(run.key)
            if row is not None and row["test_accuracy"] is not None:
                out.setdefault((name, run.config.loss), {})[run.config.seed] = float(row["test_accuracy"])
    return out


def summarize_validation(acc: dict[tuple[str, str], dict[int, float]], losses: dict[str, str],
                         tasks: list[str]) -> list[dict[str, Any]]:
    """One row per (task, loss): mean accuracy, paired delta vs CE (pp), p and Holm-corrected p."""
    from ..report.stats import SIGNIFICANCE, holm, paired_test

    rows = []
    for task in tasks:
        ce = acc.get((task, "ce"), {})
        for label, spec in losses.items():
            mine = acc.get((task, spec), {})
            vals = list(mine.values())
            row = {"task": task, "loss": spec, "label": label, "n": len(vals),
                   "mean_accuracy": statistics.fmean(vals) if vals else None,
                   "sd_accuracy": statistics.stdev(vals) if len(vals) > 1 else None}
            if label != "ce":
                common = sorted(set(ce) & set(mine))
                test = paired_test([100 * (mine[s] - ce[s]) for s in common])
                row.update(delta_pp=test["mean"], ci_low=test["ci_low"], ci_high=test["ci_high"],
                           p_value=test["p_value"])
            rows.append(row)
    adjusted = holm([r.get("p_value") for r in rows])
    for row, p in zip(rows, adjusted):
        row["p_holm"] = p
        row["significant"] = p is not None and p < SIGNIFICANCE
    return rows


def _fmt(v: Any, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def _markdown(rows: list[dict], tasks: dict[str, TrainConfig], seeds: list[int], headline: str) -> str:
    lines = ["# Validation of the search's winners", "", headline, "",
             f"Fresh seeds {seeds[0]}..{seeds[-1]} ({len(seeds)} per cell); test accuracy; delta = "
             "paired mean difference to CE on the same seeds, in pp; p from a paired t-test, "
             "Holm-corrected across all cells; * marks corrected p < 0.05.", ""]
    for name, task in tasks.items():
        lines += [f"## {name} task: {task.dataset} noise {task.label_noise:g}, {task.model}", "",
                  "| loss | accuracy % (sd) | delta vs CE (pp) | 95% CI | p (Holm) | expression |",
                  "|---|---|---|---|---|---|"]
        for r in (r for r in rows if r["task"] == name):
            acc = f"{_fmt(r['mean_accuracy'] and 100 * r['mean_accuracy'], '.2f')} " \
                  f"({_fmt(r['sd_accuracy'] and 100 * r['sd_accuracy'], '.2f')})"
            delta = _fmt(r.get("delta_pp"), "+.2f") + (" *" if r["significant"] else "")
            ci = f"[{_fmt(r.get('ci_low'), '+.2f')}, {_fmt(r.get('ci_high'), '+.2f')}]"
            expr = r["loss"][5:] if r["loss"].startswith("expr:") else ""
            lines.append(f"| {r['label']} | {acc} | {delta} | {ci} | {_fmt(r['p_holm'], '.3g')} "
                         f"| `{expr}` |")
        lines.append("")
    return "\n".join(lines)


def _headline(rows: list[dict]) -> str:
    found = [r for r in rows if r["label"].startswith("#") and r["task"] == "search"
             and r.get("delta_pp") is not None]
    if not found:
        return "No found loss was validated."
    best = max(found, key=lambda r: r["delta_pp"])
    other = next((r for r in rows if r["task"] == "transfer" and r["label"] == best["label"]), {})
    wins = [r for r in found if r["significant"] and r["delta_pp"] > 0]
    verdict = (f"{len(wins)} found loss(es) beat CE on the search task with Holm-corrected p < 0.05."
               if wins else "No found loss beats CE on the search task with Holm-corrected p < 0.05.")
    return (f"Best found loss {best['label']} `{best['loss'][5:]}`: {_fmt(best['delta_pp'], '+.2f')} pp "
            f"vs CE on the search task (p_holm {_fmt(best['p_holm'], '.3g')}), "
            f"{_fmt(other.get('delta_pp'), '+.2f')} pp on the transfer task "
            f"(p_holm {_fmt(other.get('p_holm'), '.3g')}). {verdict}")


def _record_in_hall_of_fame(out: Path, rows: list[dict], losses: dict[str, str]) -> None:
    for label in losses:
        if not label.startswith("#") or label.endswith("tuned"):
            continue
        path = out / "hall_of_fame" / f"{int(label[1:]):02d}.json"
        if not path.is_file():
            continue
        _, doc = E.load_document(path)
        doc["validation"] = {f"{r['task']}{' tuned' if r['label'].endswith('tuned') else ''}":
                             {k: r[k] for k in ("delta_pp", "p_value", "p_holm", "significant", "n",
                                                "mean_accuracy")}
                             for r in rows if r["label"] in (label, f"{label} tuned")}
        write_json_atomic(path, doc, indent=2)


def load_search(out: Path) -> tuple[SearchConfig, dict[str, Any]]:
    if not (out / "result.json").is_file():
        raise MissingFileError(f"{out} holds no finished search (no result.json); run 'ngl search "
                               f"--out {out}' to the end first")
    result = read_json_object(out / "result.json", what="search result")
    return SearchConfig.from_dict(result["config"]), result


def validate_search(out_dir: str | Path, *, top: int | None = None, seeds: int | None = None,
                    execution: Any = None, echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Retrain the winners of the finished search in ``out_dir``; resumable. ``execution``: an
    :class:`~ngl.execution.Execution` (default: the search's). Returns ``{"rows", "headline",
    "files", "run"}`` (``run``: what :func:`ngl.bench.run_grid` did)."""
    from ..bench import ResultStore, run_grid

    out = Path(out_dir)
    cfg, result = load_search(out)
    top = cfg.validate_top if top is None else top
    seeds = cfg.validate_seeds if seeds is None else seeds
    if top < 0 or seeds < 2:
        raise InputError(f"validation needs top >= 0 and seeds >= 2; got top {top}, seeds {seeds}")
    seeds_list = [FRESH_SEED + i for i in range(seeds)]
    from ..runspec import pin_loss

    losses = {label: pin_loss(spec)[0] for label, spec in validation_losses(result, top).items()}
    tasks = validation_tasks(cfg)
    planned = _plan(tasks, losses, seeds_list)
    folder = out / "validation"
    with ResultStore(folder / "results.sqlite") as store, (execution or cfg.execution).make() as ex:
        ran = run_grid([r for runs in planned.values() for r in runs], store, executor=ex, progress=False,
                       echo=echo or (lambda _line: None))
        acc = _accuracies(planned, store)
    rows = summarize_validation(acc, losses, list(tasks))
    headline = _headline(rows)
    files = {"markdown": write_text_atomic(folder / "report.md", _markdown(rows, tasks, seeds_list, headline)),
             "json": write_json_atomic(folder / "report.json", {
                 "headline": headline, "rows": rows, "seeds": seeds_list,
                 "tasks": {name: task.to_dict() for name, task in tasks.items()}}),
             "csv": write_csv_atomic(folder / "report.csv", rows, _COLUMNS)}
    _record_in_hall_of_fame(out, rows, losses)
    return {"rows": rows, "headline": headline, "files": {k: str(v) for k, v in files.items()},
            "run": ran}
