"""Do the embedded 28x28 tasks (``digits28``, ``shapes28``) expose losses that under-fit?

For each dataset, label noise and epoch budget, trains ``mlp`` through the harness
(``ngl.train.train``: 1 thread, CPU, batch 64, lr 1e-3) with CE, SCE, NGL and three bounded
true-class-only expressions: ``exp_sin`` = ``exp(-(1.43 * sin(y) * p))`` and ``hof1``, numbers 2 and
1 of a short default search's hall of fame (issue 19), and ``mae_like`` = ``y * (1 - p)`` (MAE up to
a factor), on a few seeds. It prints the final validation and test accuracy (mean +- half the range
over seeds), the test accuracy's paired difference to CE on the same seeds, and the wall time of
one run. Generation times of both datasets (first call; later calls are cached) come first; the load
average is recorded (the machine may be shared).

    python benchmarks/synthetic_tasks.py [--seeds 0,1] [--epochs 3,6] [--noise 0.4,0.0]
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import time
from pathlib import Path

import numpy as np

from ngl.data import synthetic
from ngl.train import TrainConfig, train

LOSSES = {"ce": "ce", "sce": "sce", "ngl": "ngl", "exp_sin": "expr:exp(-(1.43 * sin(y) * p))",
          "mae_like": "expr:y * (1 - p)",
          "hof1": "expr:exp(-(sin(y) / exp(sin(sqrt(p + (-2.1219)) / y))) * p)"}


def generation_times() -> dict:
    """Seconds of the first (generating) and a second (cached) call of each reader."""
    out = {}
    for name, fn in [("digits28", synthetic.digits28), ("shapes28", synthetic.shapes28)]:
        t0 = time.perf_counter()
        fn()
        t1 = time.perf_counter()
        fn()
        out[name] = {"first_s": t1 - t0, "cached_s": time.perf_counter() - t1}
    return out


def run_cell(dataset: str, noise: float, epochs: int, loss: str, seed: int) -> dict:
    cfg = TrainConfig(dataset=dataset, model="mlp", loss=LOSSES[loss], epochs=epochs, batch_size=64,
                      lr=1e-3, label_noise=noise, seed=seed, threads=1, device="cpu")
    t0 = time.perf_counter()
    r = train(cfg, progress=False)
    return {"dataset": dataset, "label_noise": noise, "epochs": epochs, "loss": loss, "seed": seed,
            "status": r.status, "val_accuracy": r.val_accuracy, "test_accuracy": r.test_accuracy,
            "wall_s": time.perf_counter() - t0}


def summary(rows: list[dict]) -> list[str]:
    """One line per (dataset, noise, epochs, loss): val and test % (mean +- half range), paired
    test-accuracy difference to CE (pp), mean wall seconds."""
    lines = [f"{'dataset':<9} {'noise':>5} {'ep':>2} {'loss':<9} {'val %':>11} {'test %':>11} "
             f"{'vs CE pp':>8} {'wall s':>6}"]
    key = lambda r: (r["dataset"], -r["label_noise"], r["epochs"])   # noqa: E731
    for (ds, neg_noise, ep), group in itertools.groupby(sorted(rows, key=key), key=key):
        group = list(group)
        ce = {r["seed"]: 100 * (r["test_accuracy"] or 0) for r in group if r["loss"] == "ce"}
        for loss in LOSSES:
            g = [r for r in group if r["loss"] == loss]
            val = np.array([100 * (r["val_accuracy"] or 0) for r in g])
            test = np.array([100 * (r["test_accuracy"] or 0) for r in g])
            delta = np.mean([t - ce[r["seed"]] for t, r in zip(test, g)])
            half = lambda a: (a.max() - a.min()) / 2               # noqa: E731
            lines.append(f"{ds:<9} {-neg_noise:>5.1f} {ep:>2} {loss:<9} {val.mean():5.1f}+-{half(val):4.1f} "
                         f"{test.mean():5.1f}+-{half(test):4.1f} {delta:+8.1f} "
                         f"{np.mean([r['wall_s'] for r in g]):6.2f}")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits28,shapes28")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", default="3,6")
    ap.add_argument("--noise", default="0.4,0.0")
    ap.add_argument("--out", default="benchmarks/results/synthetic_tasks.json")
    args = ap.parse_args()
    load0 = os.getloadavg()[0]
    gen = generation_times()
    for name, t in gen.items():
        print(f"generation: {name} {t['first_s']:.2f} s first call, {t['cached_s']:.4f} s cached")
    run_cell("shapes28", 0.0, 1, "ce", 0)                    # warm-up: imports, first-run costs
    rows = []
    grid = itertools.product(args.datasets.split(","), map(float, args.noise.split(",")),
                             map(int, args.epochs.split(",")), LOSSES, map(int, args.seeds.split(",")))
    for cell in grid:
        rows.append(run_cell(*cell))
    lines = summary(rows)
    print("\n".join(lines))
    load1 = os.getloadavg()[0]
    print(f"load average {load0:.1f} -> {load1:.1f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"generation": gen, "rows": rows, "table": lines, "load_before": load0,
                               "load_after": load1}, indent=1) + "\n")


if __name__ == "__main__":
    main()
