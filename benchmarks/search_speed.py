"""How cheap is the GP search's "cheap before fast"? One run measures:

1. candidates screened per second by the rejection screen vs the time of one full fitness
   evaluation (target: one screen < 2% of one evaluation);
2. full fitness evaluations per minute with 1 and 2 worker processes (target: speed-up >= 1.7x);
3. cache-hit and rejection rates over a search with the default GP settings;
4. with ``--parts batched`` (not in the default parts): training runs per CPU-second of the
   search's fitness, today's path vs the batched engine, and GFLOP/s beside a batched-matmul
   probe (``search_batched_speed.py``, which also gets the full record).

Writes ``benchmarks/results/search_speed.json``.

    python benchmarks/search_speed.py                 # harness fitness if ngl.train exists
    python benchmarks/search_speed.py --quick         # smaller, for a smoke test
    python benchmarks/search_speed.py --parts batched # adds "batched" to the existing file
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from ngl import expr as E
from ngl.search import SearchConfig, make_pset, make_toolbox, run_search, screen, to_expr
from ngl.executors import make_executor as make_search_executor
from ngl.search.evaluate import fitness_task as _fitness_task

RESULTS = Path(__file__).resolve().parent / "results" / "search_speed.json"


def _candidates(n: int, seed: int) -> list[E.Expr]:
    random.seed(seed)
    tb = make_toolbox(make_pset(), tournament_size=4, max_height=10)
    return [to_expr(tb.individual()) for _ in range(n)]


def bench_screen(n: int, seed: int) -> dict:
    exprs = _candidates(n, seed)
    screen(E.CE)                                         # warm-up
    times, accepted = [], []
    for e in exprs:
        t0 = time.perf_counter()
        ok = screen(e).ok
        times.append(time.perf_counter() - t0)
        accepted.append(ok)
    acc_times = [t for t, ok in zip(times, accepted) if ok]
    return {"candidates": n, "accepted": sum(accepted), "seconds_total": sum(times),
            "screened_per_second": n / sum(times), "mean_s": statistics.fmean(times),
            "mean_s_accepted": statistics.fmean(acc_times) if acc_times else None,
            "max_s": max(times)}


def _settings(fitness: str, max_steps: int):
    """The search's default fitness task with ``max_steps``."""
    return SearchConfig.from_flat({"fitness": fitness, "max_steps": max_steps}).fitness_task()


def bench_full_eval(fitness: str, max_steps: int, repeats: int) -> dict:
    settings = _settings(fitness, max_steps)
    item = ("k", E.to_infix(E.NGL), settings, [0], fitness)
    _fitness_task(item)                                  # warm-up (imports, data loading)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        _fitness_task(item)
        times.append(time.perf_counter() - t0)
    return {"fitness": fitness, "max_steps": max_steps, "settings": settings.to_dict(),
            "seconds_per_evaluation": statistics.median(times), "repeats": repeats}


def bench_workers(fitness: str, max_steps: int, tasks: int, workers: int) -> dict:
    settings = _settings(fitness, max_steps)
    losses = [E.CE, E.NGL, E.parse("square(p - y)"), E.parse("(1 - p) * y")]
    items = [(f"k{i}", E.to_infix(losses[i % len(losses)]), settings, [0], fitness) for i in range(tasks)]
    load_before = os.getloadavg()[0]
    ex = make_search_executor("process", workers=workers, timeout=None, threads=1)
    try:
        list(ex.map_unordered(_fitness_task, items[:workers]))         # start workers, warm up
        t0 = time.perf_counter()
        outs = list(ex.map_unordered(_fitness_task, items))
        wall = time.perf_counter() - t0
    finally:
        ex.close()
    errors = [o.error for _, o in outs if o.error]
    return {"workers": workers, "tasks": tasks, "wall_s": wall, "evaluations_per_minute": 60 * tasks / wall,
            "mean_task_s": statistics.fmean(o.wall_time for _, o in outs),
            "load_average_before": load_before, "errors": errors[:3]}


def bench_search(generations: int, seed: int) -> dict:
    cfg = SearchConfig.from_flat({"fitness": "linear", "generations": generations, "seed": seed,
                                  "max_steps": 60, "lr": 0.05, "tune_top": 0})
    with tempfile.TemporaryDirectory() as tmp:
        res = run_search(cfg, tmp, progress=False, log=None)
    book = res.logbook
    req = sum(r["requested"] for r in book)
    return {"config": {k: cfg.to_dict()[k] for k in ("population", "generations", "tournament_size",
                                                      "crossover", "mutation", "max_height", "fitness")},
            "requested": req, "cache_hits": sum(r["cache_hits"] for r in book),
            "cache_hit_rate": sum(r["cache_hits"] for r in book) / req,
            "screened": sum(r["screened"] for r in book), "rejected": sum(r["rejected"] for r in book),
            "rejection_rate": sum(r["rejected"] for r in book) / max(1, sum(r["screened"] for r in book)),
            "trainings": sum(r["evaluations"] for r in book),
            "trainings_saved": 1 - sum(r["evaluations"] for r in book) / req,
            "best": res.hall_of_fame[0] if res.hall_of_fame else None}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fitness", default=None, help="train (harness) or linear; default: train if available")
    ap.add_argument("--max-steps", type=int, default=200, help="steps of one full fitness evaluation")
    ap.add_argument("--screen-candidates", type=int, default=200)
    ap.add_argument("--tasks", type=int, default=8, help="evaluations per worker-count measurement")
    ap.add_argument("--generations", type=int, default=20, help="generations of the cache-rate search")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    ap.add_argument("--parts", default="screen,workers,search",
                    help="which measurements to (re)run (screen, workers, search, batched); the others are "
                         "kept from an existing --out file")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    if args.quick:
        args.screen_candidates, args.tasks, args.generations = 40, 4, 3
    if args.fitness is None:
        try:
            import ngl.train  # noqa: F401
            args.fitness = "train"
        except ModuleNotFoundError:
            args.fitness = "linear"
    parts = set(args.parts.split(","))
    path = Path(args.out)
    out: dict = json.loads(path.read_text()) if path.is_file() and parts != {"screen", "workers", "search"} else {}
    out |= {"machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                             "cpus": os.cpu_count(), "platform": platform.platform()},
                 "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if "screen" in parts:
        print("screen ...", flush=True)
        out["screen"] = bench_screen(args.screen_candidates, args.seed)
        print(f"  {out['screen']['screened_per_second']:.1f} candidates/s", flush=True)
        print(f"full evaluation ({args.fitness}, {args.max_steps} steps) ...", flush=True)
        out["full_evaluation"] = bench_full_eval(args.fitness, args.max_steps, repeats=3)
        full_s = out["full_evaluation"]["seconds_per_evaluation"]
        out["screen_cost_fraction"] = out["screen"]["mean_s"] / full_s
        out["screen_cost_fraction_accepted"] = (out["screen"]["mean_s_accepted"] or 0) / full_s
        out["screen_target_met"] = out["screen_cost_fraction"] < 0.02
        print(f"  {full_s:.2f} s; one screen = {out['screen_cost_fraction']:.2%} of it", flush=True)
    if "workers" in parts:
        runs = []
        for w in (1, 2):
            print(f"workers={w} ...", flush=True)
            runs.append(bench_workers(args.fitness, args.max_steps, args.tasks, w))
            print(f"  {runs[-1]['evaluations_per_minute']:.1f} evaluations/min", flush=True)
        out["workers"] = runs
        out["speedup_2_workers"] = runs[1]["evaluations_per_minute"] / runs[0]["evaluations_per_minute"]
        out["speedup_target_met"] = out["speedup_2_workers"] >= 1.7
        out["load_average_1min"] = os.getloadavg()[0]
    if "batched" in parts:
        from search_batched_speed import RESULTS as BATCHED, measure, summary, write_json

        print("batched fitness vs today's path ...", flush=True)
        doc = measure(4 if args.quick else 16, 2, 1 if args.quick else 2, 60 if args.quick else None, args.seed)
        print(summary(doc), flush=True)
        if not args.quick:
            write_json(BATCHED, doc)                        # the full record
        out["batched"] = {k: doc[k] for k in ("members", "today_runs_per_cpu_s", "batched_runs_per_cpu_s",
                                             "speedup", "same_val_accuracy", "batched_gflops", "probe_gflops",
                                             "probe_ratio", "targets", "load_average_1min")}
    if "search" in parts:
        print(f"search ({args.generations} generations, default GP settings) ...", flush=True)
        out["search"] = bench_search(args.generations, args.seed)
        print(f"  cache-hit rate {out['search']['cache_hit_rate']:.1%}, rejection rate "
              f"{out['search']['rejection_rate']:.1%}", flush=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
