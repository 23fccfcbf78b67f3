"""Does the search's fitness tell candidates apart? Three figures, before (the old default fitness:
clean digits, cnn_small, 200 steps, best validation accuracy on a 10% split) and after (the
current default: digits with 40% label noise, clean 30% validation split, MLP, 300 steps, final
validation accuracy), side by side:

(a) ties: the fraction of the trained candidates of a short search (population 16, 3 generations)
    whose fitness is within one validation sample of the best. Target < 10%.
(b) test-retest: 5 candidates of that search (at the 0, 25, 50, 75, 100% fitness quantiles; and
    separately the 5 best) re-evaluated with 3 other training seeds: the SD of the candidate means
    (between) over the pooled SD within a candidate. Target between >= 3 x within.
(c) known order: CE, NGL, SCE and a known-bad loss (p * y: minimising it lowers the true-class
    probability) on 3 seeds; validated results (digits+noise20, cnn_small, 5 seeds) say CE
    95.15%, NGL +2.84 pp, SCE +3.40 pp, so the order must be bad < CE < NGL, SCE (NGL vs SCE is
    within noise). Also shown, outside the order check: max(p, y), the old default's winner (28.8
    pp worse than CE on the issue's noisy transfer task). It is MAE in disguise (its gradient is
    that of 1 - p_true), which is provably robust to symmetric label noise (Ghosh et al. 2017),
    so a noisy-label fitness rightly ranks it above CE; whether it transfers is what
    ``ngl search validate`` checks.

    PYTHONPATH=src nice -n 5 python benchmarks/search_quality.py [--quick]

Prints the table and writes benchmarks/results/search_quality.json (with load average, wall and
CPU time of each part).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from ngl import expr as E
from ngl.losses import get_loss_info
from ngl.search import SearchConfig, run_search, tie_fraction
from ngl.search.evaluate import fitness_task
from ngl.search.fitness import train_fitness

KNOWN = {"bad": "p * y", **{n: E.to_infix(get_loss_info(n).expression) for n in ("ce", "ngl", "sce")},
         "max(p,y)": "max(p, y)"}
RETEST_SEEDS = (1, 2, 3)


def best_val_fitness(infix: str, task) -> float:
    """The old default fitness: the best validation accuracy over the epochs of the run."""
    from ngl.train import train

    result = train(dataclasses.replace(task, loss="expr:" + infix), progress=False)
    if result.status != "ok" or result.best_val_accuracy is None:
        raise RuntimeError(result.error or result.status)
    return float(result.best_val_accuracy)


def fitness_specs() -> dict[str, dict]:
    after = SearchConfig()
    before = SearchConfig.from_flat(dict(model="cnn_small", max_steps=200, label_noise=0.0, val_fraction=0.1,
                                         lr=1e-3, fitness_seeds=1))
    return {"before": {"config": before, "fn": best_val_fitness,
                       "what": "digits clean, cnn_small, 200 steps, best val acc, 10% val split"},
            "after": {"config": after, "fn": train_fitness,
                      "what": "digits noise 40%, mlp, 300 steps, final val acc (mean of 2 seeds), "
                              "clean 30% val split"}}


def val_size(cfg: SearchConfig) -> int:
    from ngl.data import load_dataset

    return int(load_dataset(cfg.task.dataset, val_fraction=cfg.task.val_fraction).y_val.numel())


def score(fn, infix: str, cfg: SearchConfig, seed: int) -> float:
    """The search's fitness of ``infix`` with other training seeds (``10 * seed + i`` for the
    ``fitness_seeds`` runs the fitness averages)."""
    seeds = [10 * seed + i for i in range(cfg.fitness_seeds)]
    try:
        return fitness_task(("k", infix, cfg.fitness_task(), seeds, fn))
    except Exception:  # noqa: BLE001 - a failed run scores 0, as in the search
        return 0.0


def sd_ratio(scores: dict[str, list[float]]) -> dict:
    means = [statistics.fmean(v) for v in scores.values()]
    within = math.sqrt(statistics.fmean(statistics.variance(v) for v in scores.values()))
    between = statistics.stdev(means)
    return {"between_sd": between, "within_sd": within,
            "ratio": between / within if within > 0 else math.inf, "scores": scores}


def measure(name: str, spec: dict, quick: bool) -> dict:
    cfg: SearchConfig = spec["config"]
    fn, settings = spec["fn"], cfg
    n_val = val_size(cfg)
    t0, c0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF).ru_utime
    search_cfg = dataclasses.replace(cfg, population=10 if quick else 16, generations=1 if quick else 3,
                                     tune_top=0, fitness="custom")
    with tempfile.TemporaryDirectory() as tmp:
        run_search(search_cfg, tmp, fitness_fn=fn, progress=False, log=None)
        cache = json.loads((Path(tmp) / "checkpoint.json").read_text())["cache"]
    trained = sorted((r for r in cache.values() if r["status"] == "ok"), key=lambda r: r["fitness"])
    best = trained[-1]["fitness"]
    ties = tie_fraction([r["fitness"] for r in trained], 1.0 / n_val)
    picks = {"quantiles": [trained[round(q * (len(trained) - 1))]["infix"] for q in (0, .25, .5, .75, 1)],
             "top5": [r["infix"] for r in trained[-5:]]}
    retest = {}
    for kind, infixes in picks.items():
        retest[kind] = sd_ratio({i: [score(fn, i, settings, s) for s in RETEST_SEEDS] for i in infixes})
    known = {k: statistics.fmean(score(fn, v, settings, s) for s in RETEST_SEEDS) for k, v in KNOWN.items()}
    order_ok = known["bad"] < known["ce"] < min(known["ngl"], known["sce"])
    return {"fitness": spec["what"], "val_samples": n_val, "trained": len(trained), "best": best,
            "ties_fraction": ties, "retest": retest, "known": known, "known_order_ok": order_ok,
            "wall_s": time.perf_counter() - t0,
            "cpu_s": resource.getrusage(resource.RUSAGE_SELF).ru_utime - c0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smaller search (a smoke check)")
    ap.add_argument("--only", choices=["before", "after"], default=None)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    path = Path(__file__).parent / "results" / ("search_quality_quick.json" if args.quick else "search_quality.json")
    out = json.loads(path.read_text()) if args.only and path.is_file() else {}
    out["load_average_start"] = os.getloadavg()
    for name, spec in fitness_specs().items():
        if args.only in (None, name):
            out[name] = measure(name, spec, args.quick)
            print(name, json.dumps({k: v for k, v in out[name].items() if k != "retest"}), flush=True)
    out["load_average_end"] = os.getloadavg()
    rows = [("ties within one val sample (target < 10%)", lambda m: f"{100 * m['ties_fraction']:.0f}%"),
            ("retest between/within SD, quantiles (target >= 3)", lambda m: f"{m['retest']['quantiles']['ratio']:.1f}"),
            ("retest between/within SD, top 5", lambda m: f"{m['retest']['top5']['ratio']:.1f}"),
            ("known order bad < CE < NGL,SCE", lambda m: str(m["known_order_ok"])),
            ("fitness p*y / CE / NGL / SCE / max(p,y)",
             lambda m: " / ".join(f"{m['known'].get(k, math.nan):.3f}" for k in KNOWN)),
            ("CPU s (wall s)", lambda m: f"{m['cpu_s']:.0f} ({m['wall_s']:.0f})")]
    names = [n for n in ("before", "after") if n in out]
    print(f"{'':52s}" + "".join(f"{n:>36s}" for n in names))
    for label, f in rows:
        print(f"{label:52s}" + "".join(f"{f(out[n]):>36s}" for n in names))
    path.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {path}; load average {out['load_average_start']} -> {out['load_average_end']}")


if __name__ == "__main__":
    main()
