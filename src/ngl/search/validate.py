"""Validation of a search's winners without selection bias (``ngl search validate OUT``).

A winner's search fitness is the maximum of many noisy scores, so it is biased upward. Here the
top ``k`` hall-of-fame losses (what their files hold now, content-hashed; and their CMA-ES-tuned
versions) are retrained on fresh seeds, on every fitness task and on a transfer task (a dataset
the fitness never saw), through the
bench machinery (:func:`ngl.bench.plan`, :func:`ngl.bench.run_grid`, a resumable
:class:`ngl.bench.ResultStore` in ``OUT/validation/results.sqlite``), in two stages:

1. **selection**: every candidate and CE on ``select_seeds`` seeds (1000, 1001, ...) on every
   task; the chosen loss has the best worst-task paired gain over CE;
2. **report**: the chosen loss with CE, NGL and SCE on ``validate_seeds`` other seeds (2000, ...),
   so the reported figures carry no selection bias: paired differences to CE with 95% intervals
   and Holm-corrected p-values (:mod:`ngl.report.stats`).

The chosen loss becomes ``hall_of_fame/00.json`` (the others follow in search order, each file
saying its ``search_rank``). Rows are found by their run keys, so a store holding an earlier
validation with other seeds or epochs never mixes in.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .. import expr as E
from ..errors import InputError, MissingFileError, UserError, one_line
from ..fileio import read_json_object
from ..runspec import TrainConfig, pin_loss
from .config import SearchConfig
from .validation_report import summarize, write_validation_report

__all__ = ["validate_search", "validation_tasks", "candidates", "load_search", "Candidate",
           "SELECT_SEED", "REPORT_SEED", "BASELINES"]

#: selection seeds start here, report seeds there; the search trains with ``train_seed`` (0, 1, ...)
SELECT_SEED, REPORT_SEED = 1000, 2000
BASELINES = ("ce", "ngl", "sce")


@dataclass(frozen=True)
class Candidate:
    """A found loss to validate: its label, spec (``expr:<infix>``), where it came from."""
    label: str                  # "#0" (search rank 0), "#0 tuned"
    spec: str
    search_rank: int
    sha256: str                 # of the canonical infix validated
    path: str | None = None     # its hall-of-fame file
    edited: bool = False        # the file no longer holds what the search found
    doc: dict | None = None     # the file's document (metadata kept on export)


def validation_tasks(cfg: SearchConfig) -> dict[str, TrainConfig]:
    """``{"search": ..., "task2": ..., "transfer": ...}``: every fitness task and the transfer task
    as run specs (loss and seed set per run)."""
    tasks, transfer = cfg.fitness_tasks(), cfg.transfer_task()
    for name, task in tasks.items():
        if (transfer.dataset, transfer.model, transfer.label_noise) == (task.dataset, task.model,
                                                                         task.label_noise):
            raise InputError(f"the transfer task must differ from the fitness task {name!r} "
                             "(set --transfer-dataset, --transfer-model or --transfer-label-noise)")
    return {**tasks, "transfer": transfer}


def _sha(spec: str) -> str:
    return hashlib.sha256(spec.encode()).hexdigest()[:16]


def _hall_of_fame_files(out: Path) -> dict[int, tuple[Path, dict]]:
    """search rank -> (file, document) of ``out/hall_of_fame/*.json``."""
    files: dict[int, tuple[Path, dict]] = {}
    for path in sorted((out / "hall_of_fame").glob("*.json")):
        _, doc = E.load_document(path)
        rank = doc.get("search_rank", doc.get("rank"))
        if isinstance(rank, int) and not isinstance(rank, bool) and rank not in files:
            files[rank] = (path, doc)
    return files


def candidates(out: Path, result: dict[str, Any], top: int, *,
               echo: Callable[[str], None] = lambda _: None) -> list[Candidate]:
    """The top ``top`` losses of the search as their files hold them now (a file edited after the
    search is validated for what it holds, and said so), and their tuned versions."""
    files = _hall_of_fame_files(out)
    tuned = {t["rank"]: t for t in result.get("tuned") or [] if isinstance(t, dict) and "rank" in t}
    found: list[Candidate] = []
    for rank, entry in enumerate(result["hall_of_fame"][:top]):
        searched = pin_loss("expr:" + entry["infix"])[0]
        t = tuned.get(rank)
        tspec = pin_loss("expr:" + t["infix"])[0] if t and t.get("improved") else None
        path, doc = files.get(rank, (None, None))
        spec = pin_loss(str(path))[0] if path is not None else searched
        edited = spec not in (searched, tspec)          # validation may have exported the tuned one
        if edited:
            echo(f"{path} no longer holds the search's loss #{rank}; validating what it holds: {spec[5:]}")
        base = spec if edited else searched
        found.append(Candidate(f"#{rank}", base, rank, _sha(base), str(path) if path else None, edited, doc))
        if tspec is not None and not edited and tspec != searched:
            found.append(Candidate(f"#{rank} tuned", tspec, rank, _sha(tspec), None, False, doc))
    return found


def load_search(out: Path) -> tuple[SearchConfig, dict[str, Any]]:
    """The config and result of the finished search in ``out``; one line if it is not one."""
    if not (out / "result.json").is_file():
        raise MissingFileError(f"{out} holds no finished search (no result.json); run 'ngl search "
                               f"--out {out}' to the end first")
    result = read_json_object(out / "result.json", what="search result")
    where = out / "result.json"
    if not isinstance(result.get("config"), dict):
        raise InputError(f"{where} has no search config; it is not the result of 'ngl search'")
    hof = result.get("hall_of_fame")
    if not isinstance(hof, list) or not all(isinstance(h, dict) and isinstance(h.get("infix"), str)
                                            for h in hof):
        raise InputError(f"{where}: hall_of_fame must be a list of found losses with an 'infix'")
    if not isinstance(result.get("tuned") or [], list):
        raise InputError(f"{where}: tuned must be a list")
    try:
        return SearchConfig.from_dict(result["config"]), result
    except UserError as exc:
        raise InputError(f"{where}: {one_line(exc)}") from None


def _plan(tasks: dict[str, TrainConfig], specs: list[str], seeds: list[int]) -> dict[str, list]:
    """task name -> its planned runs (:func:`ngl.bench.plan`): every loss x seed, keyed once."""
    from ..bench import plan

    return {name: plan(dataclasses.replace(task, loss=spec, seed=s) for spec in specs for s in seeds)
            for name, task in tasks.items()}


def _accuracies(planned: dict[str, list], store: Any) -> dict[tuple[str, str], dict[int, float]]:
    """(task, loss spec) -> {seed: test accuracy} of these planned runs' ``ok`` rows (by key)."""
    rows = {r["key"]: r for r in store.rows(["ok"])}
    out: dict[tuple[str, str], dict[int, float]] = {}
    for name, runs in planned.items():
        for run in runs:
            row = rows.get(run.key)
            if row is not None and row["test_accuracy"] is not None:
                out.setdefault((name, run.config.loss), {})[run.config.seed] = float(row["test_accuracy"])
    return out


def _run_stage(store: Any, executor: Any, tasks: dict, specs: list[str], seeds: list[int],
               echo: Callable[[str], None]) -> tuple[dict, dict]:
    from ..bench import run_grid

    planned = _plan(tasks, specs, seeds)
    ran = run_grid([r for runs in planned.values() for r in runs], store, executor=executor,
                   progress=False, echo=echo)
    return _accuracies(planned, store), ran


def choose(acc: dict[tuple[str, str], dict[int, float]], found: list[Candidate],
           tasks: list[str]) -> Candidate:
    """The candidate with the best worst-task mean paired gain over CE (ties: search order).

    >>> c = [Candidate("#0", "expr:a", 0, ""), Candidate("#1", "expr:b", 1, "")]
    >>> acc = {("s", "ce"): {1: .8, 2: .8}, ("s", "expr:a"): {1: .9, 2: .7}, ("s", "expr:b"): {1: .85, 2: .85}}
    >>> choose(acc, c, ["s"]).label
    '#1'
    """
    def score(c: Candidate) -> float:
        gains = []
        for task in tasks:
            ce, mine = acc.get((task, "ce"), {}), acc.get((task, c.spec), {})
            common = sorted(set(ce) & set(mine))
            gains.append(statistics.fmean(mine[s] - ce[s] for s in common) if common else -1.0)
        return min(gains)
    return max(found, key=lambda c: (score(c), -found.index(c)))


def validate_search(out_dir: str | Path, *, top: int | None = None, seeds: int | None = None,
                    select_seeds: int | None = None, execution: Any = None,
                    echo: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Validate the winners of the finished search in ``out_dir`` (resumable; one validation per
    folder at a time). ``execution``: an :class:`~ngl.execution.Execution` (default: the
    search's). Returns ``{"rows", "selection", "chosen", "headline", "files", "run"}``."""
    from ..bench import ResultStore
    from .engine import lock_folder

    out = Path(out_dir)
    cfg, result = load_search(out)
    top = cfg.validate_top if top is None else top
    seeds = cfg.validate_seeds if seeds is None else seeds
    select_seeds = cfg.select_seeds if select_seeds is None else select_seeds
    if top < 1 or seeds < 2 or select_seeds < 0:
        raise InputError(f"validation needs top >= 1, seeds >= 2 and select seeds >= 0; got top {top}, "
                         f"seeds {seeds}, select seeds {select_seeds}")
    say = echo or (lambda _line: None)
    tasks = validation_tasks(cfg)
    with lock_folder(out, "ngl search validate"):
        found = candidates(out, result, top, echo=say)
        sel_seeds = [SELECT_SEED + i for i in range(select_seeds)]
        rep_seeds = [REPORT_SEED + i for i in range(seeds)]
        with ResultStore(out / "validation" / "results.sqlite") as store, \
                (execution or cfg.execution).make() as ex:
            sel_acc, ran_sel = (_run_stage(store, ex, tasks, ["ce", *(c.spec for c in found)], sel_seeds, say)
                                if sel_seeds and len(found) > 1 else ({}, None))
            chosen = choose(sel_acc, found, list(tasks)) if sel_acc else found[0]
            report = {"ce": "ce", "ngl": "ngl", "sce": "sce", chosen.label: chosen.spec}
            rep_acc, ran_rep = _run_stage(store, ex, tasks, list(dict.fromkeys(report.values())), rep_seeds, say)
        rows = summarize(rep_acc, report, list(tasks))
        selection = summarize(sel_acc, {"ce": "ce", **{c.label: c.spec for c in found}}, list(tasks)) \
            if sel_acc else []
        doc = write_validation_report(out / "validation", rows=rows, selection=selection, chosen=chosen,
                                      candidates=found, tasks=tasks, seeds=rep_seeds, select_seeds=sel_seeds)
        export_chosen(out, chosen, found, rows, selection)
    return {**doc, "run": {"selection": ran_sel, "report": ran_rep}}


def export_chosen(out: Path, chosen: Candidate, found: list[Candidate], rows: list[dict],
                  selection: list[dict]) -> list[Path]:
    """Rewrite ``out/hall_of_fame``: ``00.json`` is the loss validation chose, then the others in
    search order; every file records its ``search_rank`` and its validated deltas. Written into a
    new folder that replaces the old one, so a crash leaves one whole hall of fame."""
    folder = out / "hall_of_fame"
    files = _hall_of_fame_files(out)
    order = [chosen.search_rank] + [r for r in sorted(files) if r != chosen.search_rank]
    tmp = out / "hall_of_fame.new"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    paths = []
    for new_rank, rank in enumerate(order):
        _, doc = files.get(rank, (None, {}))
        spec = chosen.spec if rank == chosen.search_rank else pin_loss("expr:" + E.to_infix(E.from_json(doc)))[0]
        mine = {r["task"]: {k: r.get(k) for k in ("delta_pp", "ci_low", "ci_high", "p_value", "p_holm",
                                                   "significant", "n", "mean_accuracy")}
                for r in rows if r["loss"] == spec}
        picked = {r["task"]: r.get("delta_pp") for r in selection if r["loss"] == spec}
        meta = {k: v for k, v in doc.items() if k not in ("format", "version", "tree", "infix", "latex")}
        meta.update(rank=new_rank, search_rank=rank, chosen_by_validation=rank == chosen.search_rank,
                    sha256=_sha(spec), validation={"report": mine, "selection_delta_pp": picked})
        paths.append(E.save(E.parse(spec[5:]), tmp / f"{new_rank:02d}.json", **meta))
    old = out / "hall_of_fame.old"
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        os.replace(folder, old)
    os.replace(tmp, folder)
    shutil.rmtree(old, ignore_errors=True)
    return [folder / p.name for p in paths]
