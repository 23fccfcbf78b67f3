"""Write a :func:`~ngl.report.tables.summarize` summary as Markdown, CSV and JSON."""
from __future__ import annotations

import functools

import csv
import io
import json
import time
from pathlib import Path
from typing import Any

__all__ = ["loss_label", "to_markdown", "to_csv", "to_json", "CSV_FIELDS"]

CSV_FIELDS = ["loss", "label", "dataset", "n", "expected", "mean_accuracy", "seed_std", "delta_pp",
              "verdict", "p_value", "p_holm", "significant", "ci_low", "ci_high"]


def loss_label(spec: str) -> str:
    """How a report names a loss: the paper's label of a registered loss (``f5 (NGL)``), the
    readable form (:func:`ngl.expr.readable_infix`) of an expression loss (``expr:<infix>``, as
    bench stores a found loss; its file and exact infix are in the JSON's ``sources``), and the
    file name of a loss stored by path (stores written before losses were pinned to their content).

    >>> loss_label("expr:exp(2 - p) - y")
    'exp(2 - p) - y'
    >>> loss_label("expr:y * (p + (-2.12193))")
    'y * (p - 2.122)'
    >>> loss_label("runs/search/hall_of_fame/00.json")
    '00.json'
    """
    from ..losses import list_losses, loss_label as registered_label

    if spec in list_losses():
        return registered_label(spec)
    if spec.startswith("expr:"):
        return _readable(spec[5:])
    return Path(spec).name if spec.endswith(".json") or "/" in spec else spec


@functools.lru_cache(maxsize=256)
def _readable(infix: str) -> str:
    from ..expr import readable_infix

    try:
        return readable_infix(infix)
    except ValueError:                  # not parseable (a store written by a newer ngl): as stored
        return infix


def _pp(v: float | None, signed: bool = True) -> str:
    if v is None:
        return "n/a"
    v = round(v, 2) + 0.0                 # no "-0.00"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _num(v: float | None, fmt: str = ".3g") -> str:
    return "n/a" if v is None else format(v, fmt)


def _n_tests(summary: dict[str, Any]) -> int:
    return sum(1 for by_ds in summary["cells"].values() for c in by_ds.values()
               if (c.get("test") or {}).get("p_holm") is not None)


def _headline(summary: dict[str, Any]) -> list[str]:
    """The paper's table: the baseline in %, every other loss in pp vs it, * where significant."""
    ds, base, band = summary["datasets"], summary["baseline"], summary["band"]
    out = [f"## Test accuracy: {loss_label(base)} in %, every other loss in percentage points vs "
           f"{loss_label(base)}", "",
           "| Loss | " + " | ".join(ds) + " | Mean | Verdict |",
           "| :--- | " + " | ".join("---:" for _ in ds) + " | ---: | :---: |"]
    for loss in summary["losses"]:
        cells, m = summary["cells"][loss], summary["mean"][loss]
        if loss == base:
            vals = [_pp(cells[d]["mean"], signed=False) for d in ds]
            tail = f" | {_pp(m['value'], signed=False)} | baseline |"
        else:
            vals = [_pp(cells[d]["delta"]) + ("*" if cells[d].get("significant") else "") for d in ds]
            tail = f" | {_pp(m['value'])} | {m['verdict'] or 'n/a'} |"
        out.append(f"| {loss_label(loss)} | " + " | ".join(vals) + tail)
    return out + [
        "", f"Averaged over seeds and models. Verdict: above +{band:g} pp better, below -{band:g} "
            f"worse, within [-{band:g}, +{band:g}] (inclusive) same as {loss_label(base)}. The "
            "Mean column averages the datasets a loss has results for.",
        f"\\* the paired t-test vs {loss_label(base)} is significant after Holm's correction across "
        f"the table's {_n_tests(summary)} tests (corrected p < {summary.get('significance', 0.05):g})."]


def _per_cell(summary: dict[str, Any]) -> list[str]:
    base = summary["baseline"]
    out = ["## Per cell: seed spread and paired t-test vs the baseline", "",
           "| Loss | Dataset | Runs | Accuracy % | Seed SD | Delta pp | 95% CI | p | p (Holm) | Verdict |",
           "| :--- | :--- | ---: | ---: | ---: | ---: | :---: | ---: | ---: | :---: |"]
    for loss in summary["losses"]:
        for d in summary["datasets"]:
            c = summary["cells"][loss][d]
            t = c["test"] or {}
            ci = (f"[{_pp(t['ci_low'])}, {_pp(t['ci_high'])}]" if t.get("ci_low") is not None else "n/a")
            delta, ci = (_pp(c["delta"]), ci) if loss != base else ("-", "-")
            out.append(f"| {loss_label(loss)} | {d} | {c['n']}/{c['expected']} | "
                       f"{_pp(c['mean'], signed=False)} | {_pp(c['std'], signed=False)} | {delta} | "
                       f"{ci} | {_num(t.get('p_value'))} | {_num(t.get('p_holm'))} | "
                       f"{c['verdict'] or ('-' if loss == base else 'n/a')} |")
    return out + ["", "Seed SD: standard deviation over seeds (mean over models). Paired t-test over "
                      "(model, seed) pairs that both losses finished; p (Holm): corrected for the "
                      "number of cells tested; below 0.05 is a significant difference."]


def _problems(summary: dict[str, Any]) -> list[str]:
    out = ["## Missing runs", ""]
    if summary["missing"]:
        out += [f"- {loss_label(m['loss'])} on {m['dataset']}: {m['runs_missing']} of {m['of']} "
                f"without a result ({', '.join(m['which'][:6])}{', ...' if len(m['which']) > 6 else ''})"
                for m in summary["missing"]]
    else:
        out.append("None: every cell has all its runs.")
    out += ["", "## Failed and diverged runs", ""]
    if summary["failed"]:
        out += ["| Dataset | Model | Loss | Seed | Status | Error |", "| --- | --- | --- | ---: | --- | --- |"]
        out += [f"| {f['dataset']} | {f['model']} | {loss_label(f['loss'])} | {f['seed']} | "
                f"{f['status']} | {(f['error'] or '').replace('|', '/')} |" for f in summary["failed"]]
    else:
        out.append("None.")
    return out


def _selection(summary: dict[str, Any], folder: Any) -> list[str]:
    """Which runs the report shows (:func:`~ngl.report.selection.select_runs`), and what else the
    store holds."""
    from .selection import notice

    sel = summary.get("selection")
    if not sel:
        return []
    if sel["grid"] == "all":
        grids = ", ".join(map(str, sorted(sel["grids"])))
        outside = f"; {sel['outside']['runs']} run(s) in no recorded grid" if sel["outside"] else ""
        text = (f"Every run of this store (grids {grids}{outside})." if grids
                else "Every run of this store (it records no grids).")
    else:
        text = f"Grid {sel['grid']} of {len(sel['grids'])} in this store"
        if sel.get("ran_at"):
            text += f", last run {time.strftime('%Y-%m-%d %H:%M', time.localtime(sel['ran_at']))}"
        text += "."
    if sel["split_by"]:
        text += (f" Its runs differ in {', '.join(sel['split_by'])}: each setting has columns of its "
                 f"own.")
    line = notice(sel, folder if folder is not None else "OUT")
    return [text + (f" Note: {line}." if line else ""), ""]


def to_markdown(summary: dict[str, Any], *, title: str = "ngl benchmark report", folder: Any = None) -> str:
    """The paper's table (CE absolute %, others pp vs CE, Mean, verdict) and the detail tables;
    first, which runs of the store it shows (``summary["selection"]``; ``folder``: the store's)."""
    runs = summary["runs"]
    out = [f"# {title}", "", *_selection(summary, folder),
           f"Runs: {runs['total']} ({runs['ok']} ok, {runs['failed']} failed, {runs['diverged']} "
           f"diverged, {runs['unfinished']} unfinished).", ""]
    out += _headline(summary) + [""] + _per_cell(summary) + [""] + _problems(summary)
    return "\n".join(out) + "\n"


def to_csv(summary: dict[str, Any]) -> str:
    """One row per (loss, dataset) cell plus a ``Mean`` row per loss."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_FIELDS, lineterminator="\n")
    w.writeheader()
    for loss in summary["losses"]:
        for d in summary["datasets"]:
            c = summary["cells"][loss][d]
            t = c["test"] or {}
            w.writerow({"loss": loss, "label": loss_label(loss), "dataset": d, "n": c["n"],
                        "expected": c["expected"], "mean_accuracy": c["mean"], "seed_std": c["std"],
                        "delta_pp": c["delta"], "verdict": c["verdict"], "p_value": t.get("p_value"),
                        "p_holm": t.get("p_holm"), "significant": c.get("significant"),
                        "ci_low": t.get("ci_low"), "ci_high": t.get("ci_high")})
        m = summary["mean"][loss]
        is_base = loss == summary["baseline"]
        w.writerow({"loss": loss, "label": loss_label(loss), "dataset": "Mean", "n": m["datasets"],
                    "expected": m["of"], "mean_accuracy": m["value"] if is_base else None,
                    "delta_pp": None if is_base else m["value"], "verdict": m["verdict"]})
    return buf.getvalue()


def to_json(summary: dict[str, Any]) -> str:
    def clean(v: Any) -> Any:             # JSON has no inf/nan
        if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, list):
            return [clean(x) for x in v]
        return v
    return json.dumps(clean(summary), indent=2, sort_keys=False) + "\n"
