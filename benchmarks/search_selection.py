"""Does the search's selection survive noisy fitness? Before (the previous default: one task, every
candidate scored on 2 seeds, ranked by that mean) and after (the current default: two fitness
tasks, paired gains over CE on common seeds, racing 2 -> 4 -> 8 -> 16 seeds, ranked by the
worst-task lower confidence bound), side by side in one run, both through the same engine:

(b') top-5 between/within: the 5 best of a short search are scored again on 3 fresh replicate
     seed sets, each as many seeds as the search scored them on; the SD of their mean scores
     (between) over the pooled SD of one candidate's replicate scores (within). Target >= 2.
(d)  winner's curse: the final best's search-time score minus its paired gain over CE on 10 fresh
     seeds, in pp (the search task for "before", the worst task for "after"). Target <= 1 pp.
(e)  the fitness of known losses under each default: MAE (``abs(p - y)``), ``exp(-(y * p))``,
     NGL and SCE, as paired gains over CE on 8 fresh seeds per task (pp). A default under which
     MAE-like losses beat CE is not a default.

Scores are final validation accuracies of batched runs (:mod:`ngl.search.batched`, equal to
harness runs). ``PYTHONPATH=src python benchmarks/search_selection.py [--quick]`` prints the table
and writes ``benchmarks/results/search_selection.json`` (with load averages and times).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
KNOWN = {"MAE": "expr:abs(p - y)", "exp(-y p)": "expr:exp(-(y * p))", "NGL": "ngl", "SCE": "sce"}


def configs(quick: bool) -> dict:
    from ngl.search import SearchConfig

    size = {"population": 10 if quick else 16, "generations": 2 if quick else 6, "tune_top": 0,
            "validate_top": 0, "workers": 2}
    return {"before": SearchConfig.from_flat({**size, "race_stages": [2], "task2_dataset": "none"}),
            "after": SearchConfig.from_flat(size)}


def gains(cfg, specs: list[str], seeds: list[int]) -> dict[str, dict[str, list[float]]]:
    """spec -> task -> per-seed paired gain over CE (accuracy fraction), batched per task."""
    from ngl.search.batched import train_population

    out: dict[str, dict[str, list[float]]] = {s: {} for s in specs}
    for name, task in cfg.fitness_tasks().items():
        members = [(s, seed) for s in ["ce", *dict.fromkeys(specs)] for seed in seeds]
        acc = {(r.loss, r.seed): (r.val_accuracy if r.status == "ok" else 0.0)
               for r in train_population(task, members)}
        for s in specs:
            out[s][name] = [acc[(s, seed)] - acc[("ce", seed)] for seed in seeds]
    return out


def combined(per_task: dict[str, list[float]], worst: bool) -> float:
    means = [statistics.fmean(v) for v in per_task.values()]
    return min(means) if worst else means[0]


def measure(name: str, cfg, quick: bool) -> dict:
    from ngl.search import run_search
    from ngl.search.racing import draw_seeds

    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        res = run_search(cfg, tmp, progress=False, log=None)
    search_wall = time.perf_counter() - t0
    hof = res.hall_of_fame
    if name == "before":                               # the old rule: rank by the 2-seed mean
        hof = sorted(hof, key=lambda h: -(h["mean_gain"] or -1.0))
    worst = name == "after"
    top = hof[:5]
    specs = ["expr:" + h["infix"] for h in top]
    reps = []
    for r in range(3):                                 # (b') replicate scores, each candidate's seed count
        row = []
        for h, spec in zip(top, specs):
            seeds = draw_seeds(cfg.seed + 1, 1000 + r, h["seeds"], purpose=f"retest{h['fingerprint']}")
            row.append(100 * combined(gains(cfg, [spec], seeds)[spec], worst))
        reps.append(row)
    cand = list(zip(*reps))
    between = statistics.stdev([statistics.fmean(c) for c in cand])
    within = math.sqrt(statistics.fmean(statistics.variance(c) for c in cand))
    fresh = draw_seeds(cfg.seed + 1, 2000, 4 if quick else 10, purpose="curse")
    best_fresh = 100 * combined(gains(cfg, specs[:1], fresh)[specs[0]], worst)
    search_score = 100 * (top[0]["mean_gain"] if name == "before" else min(top[0]["tasks"].values()))
    known_seeds = draw_seeds(cfg.seed + 1, 3000, 4 if quick else 8, purpose="known")
    known = {k: 100 * combined(v, worst) for k, v in
             zip(KNOWN, gains(cfg, list(KNOWN.values()), known_seeds).values())}
    return {"config": {"race_stages": cfg.race_stages, "tasks": list(cfg.fitness_tasks())},
            "top5": [{"infix": h["infix"], "seeds": h["seeds"], "search_mean_gain_pp": 100 * h["mean_gain"]}
                     for h in top],
            "retest_pp": reps, "between_sd": between, "within_sd": within,
            "ratio": between / within if within > 0 else math.inf,
            "winner": top[0]["infix"], "winner_search_pp": search_score, "winner_fresh_pp": best_fresh,
            "winners_curse_pp": search_score - best_fresh, "known_pp": known,
            "search_wall_s": search_wall, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a smaller search (a smoke check)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    out = {"load_average_start": os.getloadavg()}
    for name, cfg in configs(args.quick).items():
        out[name] = measure(name, cfg, args.quick)
        print(name, json.dumps({k: v for k, v in out[name].items() if k not in ("retest_pp", "top5")}), flush=True)
    out["load_average_end"] = os.getloadavg()
    rows = [("(b') top-5 between/within SD (target >= 2)", lambda m: f"{m['ratio']:.2f}"),
            ("(d) winner's curse, pp (target <= 1)", lambda m: f"{m['winners_curse_pp']:+.2f}"),
            ("    winner: search score -> fresh seeds, pp",
             lambda m: f"{m['winner_search_pp']:+.2f} -> {m['winner_fresh_pp']:+.2f}"),
            *((f"(e) fitness of {k} vs CE, pp", (lambda k: lambda m: f"{m['known_pp'][k]:+.2f}")(k)) for k in KNOWN),
            ("search wall s (whole part s)", lambda m: f"{m['search_wall_s']:.0f} ({m['wall_s']:.0f})")]
    print(f"{'':46s}{'before':>26s}{'after':>26s}")
    for label, f in rows:
        print(f"{label:46s}" + "".join(f"{f(out[n]):>26s}" for n in ("before", "after")))
    path = RESULTS / ("search_selection_quick.json" if args.quick else "search_selection.json")
    from ngl.fileio import write_json_atomic

    write_json_atomic(path, out, indent=1)
    print(f"wrote {path}; load average {out['load_average_start']} -> {out['load_average_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
