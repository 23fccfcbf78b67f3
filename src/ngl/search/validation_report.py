"""The tables of a search's validation (:mod:`ngl.search.validate`): per (task, loss) the mean test
accuracy, the paired difference to CE on the same seeds with its 95% interval, and Holm-corrected
p-values across the report's cells; Markdown, JSON and CSV, and a headline that says whether the
chosen loss meets the goal (beats CE on the search task with Holm p < 0.05, and is nowhere worse
than CE by more than 0.5 pp)."""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from ..fileio import write_csv_atomic, write_json_atomic, write_text_atomic

__all__ = ["summarize", "headline", "write_validation_report", "COLUMNS", "WORSE_BAND"]

COLUMNS = ["stage", "task", "loss", "label", "n", "mean_accuracy", "sd_accuracy", "delta_pp", "ci_low",
           "ci_high", "p_value", "p_holm", "significant"]
#: "not worse than CE" means a mean paired difference above -0.5 pp (the paper's band)
WORSE_BAND = 0.5


def summarize(acc: dict[tuple[str, str], dict[int, float]], losses: dict[str, str],
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
            if spec != "ce":
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


def headline(rows: list[dict], chosen_label: str, readable: str) -> tuple[str, bool]:
    """The chosen loss's report-seed deltas in one sentence, and whether it meets the goal."""
    mine = {r["task"]: r for r in rows if r["label"] == chosen_label}
    if not mine or any(r.get("delta_pp") is None for r in mine.values()):
        return f"The chosen loss {chosen_label} has no complete report runs.", False
    search = mine.get("search", next(iter(mine.values())))
    beats = bool(search["significant"]) and search["delta_pp"] > 0
    holds = all(r["delta_pp"] >= -WORSE_BAND for r in mine.values())
    parts = ", ".join(f"{_fmt(r['delta_pp'], '+.2f')} pp on the {task} task (95% CI "
                      f"[{_fmt(r['ci_low'], '+.2f')}, {_fmt(r['ci_high'], '+.2f')}], Holm p "
                      f"{_fmt(r['p_holm'], '.3g')})" for task, r in mine.items())
    goal = ("It meets the goal: better than CE on the search task (Holm p < 0.05) and not worse "
            f"than CE by more than {WORSE_BAND} pp on any task." if beats and holds else
            "It does not meet the goal (better than CE on the search task with Holm p < 0.05 and not "
            f"worse than CE by more than {WORSE_BAND} pp on any task): "
            + ("; ".join(w for w in (None if beats else "no significant gain on the search task",
                                     None if holds else "worse than CE by more than 0.5 pp on a task")
                         if w)) + ".")
    return f"Chosen by validation: {chosen_label} `{readable}`: {parts}. {goal}", beats and holds


def _table(rows: list[dict], name: str) -> list[str]:
    lines = ["| loss | accuracy % (sd) | n | delta vs CE (pp) | 95% CI | p (Holm) | expression |",
             "|---|---|---|---|---|---|---|"]
    for r in (r for r in rows if r["task"] == name):
        acc = f"{_fmt(r['mean_accuracy'] and 100 * r['mean_accuracy'], '.2f')} " \
              f"({_fmt(r['sd_accuracy'] and 100 * r['sd_accuracy'], '.2f')})"
        delta = _fmt(r.get("delta_pp"), "+.2f") + (" *" if r["significant"] else "")
        ci = f"[{_fmt(r.get('ci_low'), '+.2f')}, {_fmt(r.get('ci_high'), '+.2f')}]"
        expr = r["loss"][5:] if r["loss"].startswith("expr:") else ""
        lines.append(f"| {r['label']} | {acc} | {r['n']} | {delta} | {ci} | {_fmt(r['p_holm'], '.3g')} "
                     f"| `{expr}` |")
    return lines + [""]


def _markdown(rows: list[dict], selection: list[dict], tasks: dict, seeds: list[int],
              select_seeds: list[int], head: str) -> str:
    lines = ["# Validation of the search's winners", "", head, "",
             f"Report seeds {seeds[0]}..{seeds[-1]} ({len(seeds)} per cell), never used to choose; test "
             "accuracy; delta = paired mean difference to CE on the same seeds, in pp; p from a paired "
             "t-test, Holm-corrected across the report's cells; * marks corrected p < 0.05.", ""]
    for name, task in tasks.items():
        lines += [f"## {name} task: {task.dataset}, label noise {task.label_noise:g}, {task.model}", ""]
        lines += _table(rows, name)
    if selection:
        lines += [f"## Selection (seeds {select_seeds[0]}..{select_seeds[-1]}, used to choose: biased "
                  "upward for the chosen loss)", ""]
        for name in tasks:
            lines += [f"### {name} task", ""] + _table(selection, name)
    return "\n".join(lines)


def write_validation_report(folder: Path, *, rows: list[dict], selection: list[dict], chosen: Any,
                            candidates: list[Any], tasks: dict, seeds: list[int],
                            select_seeds: list[int]) -> dict[str, Any]:
    """``report.md``, ``report.json`` and ``report.csv`` in ``folder``; returns what they say."""
    from .. import expr as E

    readable = E.to_infix(E.readable(E.parse(chosen.spec[5:]))) if chosen.spec.startswith("expr:") \
        else chosen.spec
    head, met = headline(rows, chosen.label, readable)
    doc = {"headline": head, "goal_met": met, "rows": rows, "selection": selection,
           "chosen": {"label": chosen.label, "loss": chosen.spec, "readable": readable,
                      "search_rank": chosen.search_rank, "sha256": chosen.sha256},
           "candidates": [{"label": c.label, "loss": c.spec, "sha256": c.sha256, "file": c.path,
                           "edited_after_search": c.edited} for c in candidates],
           "seeds": seeds, "select_seeds": select_seeds,
           "tasks": {name: task.to_dict() for name, task in tasks.items()}}
    files = {"markdown": write_text_atomic(folder / "report.md",
                                           _markdown(rows, selection, tasks, seeds, select_seeds, head)),
             "json": write_json_atomic(folder / "report.json", doc),
             "csv": write_csv_atomic(folder / "report.csv",
                                     [{"stage": "report", **r} for r in rows]
                                     + [{"stage": "selection", **r} for r in selection], COLUMNS)}
    return {**doc, "files": {k: str(v) for k, v in files.items()}}
