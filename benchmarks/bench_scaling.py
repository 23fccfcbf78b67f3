"""Wall time of the default benchmark grid with 1 and 2 workers (process executor), in one run.

Target: speed-up >= 1.7x on 2 cores. By default the whole default grid is timed twice (about 4
minutes on an idle 2-core machine); ``--subset`` times 4 losses x 2 dataset variants x 2 seeds = 16
runs (same epochs), where the two workers' start-up (importing torch, about 4 s CPU each) weighs more.
``cpu_s`` and ``idle_speedup_bound`` (CPU of 1 worker / (CPU of 2 workers / 2)) separate the pool's
own overhead from cores taken by other processes, which the load average shows.

    python benchmarks/bench_scaling.py [--subset] [--workers 1 2] [--out benchmarks/results/bench_scaling.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

from ngl.bench import PRESETS, ResultStore, expand, run_grid
from ngl.executors import make_executor

SUBSET = {"losses": ("ce", "ngl", "focal", "sce"), "seeds": (0, 1)}


def time_grid(configs: list[dict], workers: int) -> dict:
    """Run ``configs`` into a fresh store; wall time includes starting the workers. ``cpu_s`` is the
    CPU time this process and its (joined) workers used: equal CPU at both worker counts means the
    pool adds no work, so on otherwise idle cores wall time scales as CPU / workers."""
    def cpu() -> float:
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

    with tempfile.TemporaryDirectory() as tmp:
        cpu0, load0 = cpu(), os.getloadavg()[0]
        start = time.perf_counter()
        kind = "process" if workers > 1 else "inline"
        with ResultStore(Path(tmp) / "r.sqlite") as store, \
                make_executor(kind, workers=workers, threads=1) as ex:
            summary = run_grid(configs, store, executor=ex, progress=False, echo=lambda _: None)
        wall = time.perf_counter() - start
    return {"workers": workers, "executor": kind, "wall_s": round(wall, 2), "cpu_s": round(cpu() - cpu0, 2),
            "load_avg_1m": [round(load0, 2), round(os.getloadavg()[0], 2)], "runs": len(configs),
            "s_per_run": round(wall / len(configs), 3), "counts": summary["counts"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--subset", action="store_true", help="time a 16-run subset instead of the full grid")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    ap.add_argument("--out", default="benchmarks/results/bench_scaling.json", help="JSON output")
    args = ap.parse_args(argv)
    grid = PRESETS["default"].replace(**SUBSET) if args.subset else PRESETS["default"]
    configs = expand(grid)
    results = []
    for w in args.workers:
        r = time_grid(configs, w)
        print(f"{w} worker(s): {r['wall_s']:.1f}s for {r['runs']} runs ({r['s_per_run']:.2f} s/run)",
              file=sys.stderr)
        results.append(r)
    base = results[0]["wall_s"]
    for r in results:
        r["speedup_vs_first"] = round(base / r["wall_s"], 3)
        r["idle_speedup_bound"] = round(results[0]["cpu_s"] / (r["cpu_s"] / r["workers"]), 3)
    doc = {"benchmark": "bench_scaling", "grid": f"default subset {SUBSET}" if args.subset else "default",
           "epochs": grid.base.get("epochs"), "results": results, "cpu_count": os.cpu_count(),
           "note": "load_avg_1m (start, end) shows other processes sharing the cores; the speed-up "
                   "is only meaningful when it stays below the core count",
           "python": platform.python_version(), "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)
    print(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
