"""Wall time of the default benchmark grid with 1 and 2 workers (process executor), in one run.

Target: speed-up >= 1.7x on 2 cores. By default a documented subset of the default grid is timed
(4 losses x 2 dataset variants x 2 seeds = 16 runs, same epochs as the default preset) so that
both passes fit in a few minutes; ``--full`` times the whole default grid twice.

    python benchmarks/bench_scaling.py [--full] [--workers 1 2] [--out benchmarks/results/bench_scaling.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from ngl.bench import PRESETS, ResultStore, expand, resolve_config, run_grid
from ngl.executors import make_executor

SUBSET = {"losses": ("ce", "ngl", "focal", "sce"), "seeds": (0, 1)}


def time_grid(configs: list[dict], workers: int) -> dict:
    """Run ``configs`` into a fresh store; wall time includes starting the workers."""
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        kind = "process" if workers > 1 else "inline"
        with ResultStore(Path(tmp) / "r.sqlite") as store, \
                make_executor(kind, workers=workers, threads=1) as ex:
            summary = run_grid(configs, store, executor=ex, progress=False, echo=lambda _: None)
        wall = time.perf_counter() - start
    return {"workers": workers, "executor": kind, "wall_s": round(wall, 2), "runs": len(configs),
            "s_per_run": round(wall / len(configs), 3), "counts": summary["counts"]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="time the whole default grid (twice)")
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    ap.add_argument("--out", default="benchmarks/results/bench_scaling.json", help="JSON output")
    args = ap.parse_args(argv)
    grid = PRESETS["default"] if args.full else PRESETS["default"].replace(**SUBSET)
    configs = expand(grid, resolve=resolve_config)
    results = []
    for w in args.workers:
        r = time_grid(configs, w)
        print(f"{w} worker(s): {r['wall_s']:.1f}s for {r['runs']} runs ({r['s_per_run']:.2f} s/run)",
              file=sys.stderr)
        results.append(r)
    base = results[0]["wall_s"]
    for r in results:
        r["speedup_vs_first"] = round(base / r["wall_s"], 3)
    doc = {"benchmark": "bench_scaling", "grid": "default" if args.full else f"default subset {SUBSET}",
           "epochs": grid.base.get("epochs"), "results": results,
           "cpu_count": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 2),
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
