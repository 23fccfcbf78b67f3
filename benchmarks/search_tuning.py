"""Does CMA-ES tuning of a structure's constants hold up on fresh seeds?

Takes SCE's structure, ``-(a * y * log(p)) + b * p * (1 - y)``, starting from a deliberately poor
ratio (a = 1, b = 0.5: mostly CE, which overfits noisy labels), tunes (a, b) with CMA-ES against
the search's default fitness (``ngl.search.tune.tune_constants``, 24 evaluations), then retrains
the structure before and after tuning on 5 fresh seeds (1000..1004: new initialisation, batches
and label-noise draws) on the search task and reports the test accuracies, the paired difference
and its p-value (``ngl.report.stats.paired_test``).

    PYTHONPATH=src nice -n 5 python benchmarks/search_tuning.py

Writes benchmarks/results/search_tuning.json (with load average and CPU time).
"""
from __future__ import annotations

import json
import os
import resource
import statistics
import time
from pathlib import Path

from ngl.report.stats import paired_test
from ngl.search import SearchConfig
import dataclasses

from ngl.executors import make_executor
from ngl.search.tune import tune_constants

START = "-(1.0 * y * log(p)) + 0.5 * p * (1 - y)"
SEEDS = range(1000, 1005)


def test_accuracy(infix: str, cfg: SearchConfig, seed: int) -> float:
    from ngl.train import train

    run = train(dataclasses.replace(cfg.fitness_task(), seed=seed, loss="expr:" + infix), progress=False)
    return float(run.test_accuracy) if run.status == "ok" and run.test_accuracy is not None else 0.0


def main() -> None:
    import torch

    torch.set_num_threads(1)
    t0, load = time.perf_counter(), os.getloadavg()
    cfg = SearchConfig()
    with make_executor("inline", threads=1) as ex:
        res = tune_constants(START, fitness="train", task=cfg.fitness_task(), seeds=cfg.fitness_seed_list,
                             executor=ex,
                             evaluations=24, sigma=1.0, seed=0)
    before = [test_accuracy(START, cfg, s) for s in SEEDS]
    after = [test_accuracy(res["infix"], cfg, s) for s in SEEDS]
    test = paired_test([100 * (a - b) for a, b in zip(after, before)])
    out = {"structure": START, "tuning": res, "fresh_seeds": list(SEEDS),
           "test_accuracy_before": before, "test_accuracy_after": after,
           "mean_before": statistics.fmean(before), "mean_after": statistics.fmean(after),
           "paired_delta_pp": test["mean"], "p_value": test["p_value"],
           "ci": [test["ci_low"], test["ci_high"]], "load_average": [load, os.getloadavg()],
           "wall_s": time.perf_counter() - t0, "cpu_s": resource.getrusage(resource.RUSAGE_SELF).ru_utime}
    print(f"constants {res['constants_before']} -> {res['constants']}: search fitness "
          f"{res['fitness_before']:.4f} -> {res['fitness']:.4f}")
    print(f"fresh seeds, test accuracy: {100 * out['mean_before']:.2f}% -> {100 * out['mean_after']:.2f}% "
          f"(paired {test['mean']:+.2f} pp, p = {test['p_value']:.3g})")
    path = Path(__file__).parent / "results" / "search_tuning.json"
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}; load average {load} -> {os.getloadavg()}")


if __name__ == "__main__":
    main()
