"""Training runs per CPU-second of the search's fitness: today's path vs the batched engine.

Side by side on the search's default fitness task (``SearchConfig().fitness_task()``: digits,
``mlp``, 40% label noise, 300 Adam steps of batch 64, 1 thread):

1. today's path: one harness ``ngl.train.train`` per (loss, seed), as the ``train`` fitness does;
2. batched: every (loss, seed) at once, :func:`ngl.search.batched.train_population`;

over ``--losses`` screened GP candidates (drawn as the search draws its initial population) on
``--seeds`` seeds, plus CE on the same seeds. Reports runs per CPU-second of each (target: batched
>= 4x today's), whether both gave the same final validation accuracies, and the achieved GFLOP/s
of the batched run (the MLP's matrix products, validation included) beside a plain batched-matmul
probe of the same shapes (``torch.baddbmm``/``torch.bmm``, forward and backward, no autograd):
the limit (target: within 2x of it). Each path runs ``--repeats`` times, alternating; the best
CPU time of each counts.

Writes ``benchmarks/results/search_batched_speed.json``.

    python benchmarks/search_batched_speed.py              # 16 losses x 2 seeds + CE
    python benchmarks/search_batched_speed.py --quick      # a smoke test
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "search_batched_speed.json"


def default_task(max_steps: int | None = None):
    """The search's default (first) fitness task, optionally with another step budget."""
    import dataclasses

    from ngl.search import SearchConfig

    task = SearchConfig().fitness_task()
    return task if max_steps is None else dataclasses.replace(task, max_steps=max_steps)


def candidate_losses(n: int, seed: int) -> list[str]:
    """``n`` distinct random trees that pass the rejection screen, as ``expr:`` specs."""
    from ngl import expr as E
    from ngl.search import make_pset, make_toolbox, screen, to_expr

    random.seed(seed)
    toolbox = make_toolbox(make_pset(), tournament_size=4, max_height=10)
    out: list[str] = []
    while len(out) < n:
        tree = to_expr(toolbox.individual())
        spec = "expr:" + E.to_infix(tree)
        if spec not in out and screen(tree).ok:
            out.append(spec)
    return out


def _cpu_wall(fn):
    c, t = time.process_time(), time.perf_counter()
    value = fn()
    return value, time.process_time() - c, time.perf_counter() - t


def today(task, members) -> list:
    from ngl.train import TrainConfig, train

    base = task.to_dict()
    return [train(TrainConfig.from_dict({**base, "loss": spec, "seed": seed}), progress=False)
            for spec, seed in members]


def flops(task, members: int, hidden: int = 256) -> dict:
    """Multiply-add FLOPs of the MLP's products over one run of each member: forward, weight
    gradients and the hidden layer's input gradient per step, and each epoch's validation."""
    from ngl.data import load_dataset

    d = load_dataset(task.dataset, seed=0, val_fraction=task.val_fraction, label_noise=task.label_noise)
    n, nv = len(d.y_train), len(d.y_val)
    n_in, classes = int(d.x_train[0].numel()), d.num_classes
    n -= 1 if n % task.batch_size == 1 and n > 1 else 0
    batches, epochs = [], 0
    while len(batches) < task.max_steps:
        epochs += 1
        for start in range(0, n, task.batch_size):
            batches.append(min(task.batch_size, n - start))
            if len(batches) == task.max_steps:
                break
    per_sample = 2 * (n_in * hidden + hidden * classes)              # one forward
    train = sum(b * (2 * per_sample + 2 * hidden * classes) for b in batches)
    val = epochs * nv * per_sample
    return {"members": members, "steps": len(batches), "epochs": epochs, "batch_sizes": sorted(set(batches)),
            "val_samples": nv, "in": n_in, "hidden": hidden, "classes": classes,
            "gflop": members * (train + val) / 1e9, "shapes": (batches, epochs, nv)}


def probe(m: int, f: dict, repeats: int = 3) -> float:
    """Seconds of the same products as plain batched matmuls on ready inputs (no autograd, no
    optimiser, no loss, no Python in between): the limit of the batched run."""
    batches, epochs, nv = f["shapes"]
    n_in, h, c = f["in"], f["hidden"], f["classes"]
    w1, b1, w2, b2 = torch.randn(m, h, n_in), torch.randn(m, h), torch.randn(m, c, h), torch.randn(m, c)
    ins = {b: (torch.randn(m, b, n_in), torch.randn(m, b, c), torch.randn(m, b, h)) for b in set(batches) | {nv}}

    def step(b: int) -> None:
        x, g, gh = ins[b]
        hid = torch.baddbmm(b1.unsqueeze(1), x, w1.transpose(1, 2)).relu_()
        torch.baddbmm(b2.unsqueeze(1), hid, w2.transpose(1, 2))
        torch.bmm(g.transpose(1, 2), hid), torch.bmm(g, w2), torch.bmm(gh.transpose(1, 2), x)

    def val() -> None:
        hid = torch.baddbmm(b1.unsqueeze(1), ins[nv][0], w1.transpose(1, 2)).relu_()
        torch.baddbmm(b2.unsqueeze(1), hid, w2.transpose(1, 2))

    counts = {b: batches.count(b) for b in set(batches)}
    best = float("inf")
    for _ in range(repeats):
        step(batches[0]), val()
        t = time.process_time()                         # CPU time, as the runs are measured
        for b, k in counts.items():
            for _ in range(k):
                step(b)
        for _ in range(epochs):
            val()
        best = min(best, time.process_time() - t)
    return best


def run(task, members, repeats: int, nv: int) -> dict:
    from ngl.search.batched import train_population

    train_population(task, members[:2])                              # warm-up (imports, data)
    today(task, members[:1])
    best_today = best_batched = float("inf")
    walls: dict[str, list] = {"today": [], "batched": []}
    load = [os.getloadavg()[0]]
    for _ in range(repeats):
        ref, cpu, wall = _cpu_wall(lambda: today(task, members))
        best_today, _ = min(best_today, cpu), walls["today"].append(wall)
        got, cpu, wall = _cpu_wall(lambda: train_population(task, members))
        best_batched, _ = min(best_batched, cpu), walls["batched"].append(wall)
        load.append(os.getloadavg()[0])
    same = sum(r.val_accuracy == h.val_accuracy and r.status == h.status for r, h in zip(got, ref))
    within_one = sum(r.val_accuracy is not None and h.val_accuracy is not None
                     and abs(r.val_accuracy - h.val_accuracy) * nv <= 1.0 + 1e-9 for r, h in zip(got, ref))
    return {"today_cpu_s": best_today, "batched_cpu_s": best_batched, "walls_s": walls,
            "today_runs_per_cpu_s": len(members) / best_today,
            "batched_runs_per_cpu_s": len(members) / best_batched,
            "speedup": best_today / best_batched, "same_val_accuracy": same, "within_one_sample": within_one,
            "diverged": sum(r.status != "ok" for r in got), "load_average_1min": load}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--losses", type=int, default=16, help="GP candidate losses")
    ap.add_argument("--seeds", type=int, default=2, help="training seeds per loss (CE runs on each too)")
    ap.add_argument("--repeats", type=int, default=2, help="alternating measurements of each path")
    ap.add_argument("--max-steps", type=int, default=None, help="steps per run (default: the search's)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the candidate draw")
    ap.add_argument("--quick", action="store_true", help="4 losses, 60 steps, 1 repeat (smoke test)")
    ap.add_argument("--out", default=str(RESULTS))
    args = ap.parse_args(argv)
    if args.quick:
        args.losses, args.max_steps, args.repeats = 4, 60, 1
    doc = measure(args.losses, args.seeds, args.repeats, args.max_steps, args.seed)
    write_json(Path(args.out), doc)
    print(summary(doc) + f"\nwrote {args.out}")
    return 0


def write_json(path: Path, doc: dict) -> None:
    """Atomically (temp file + rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def measure(losses: int, seeds: int, repeats: int, max_steps: int | None, seed: int) -> dict:
    """The comparison's record (what the JSON holds)."""
    torch.set_num_threads(1)
    task = default_task(max_steps)
    specs = candidate_losses(losses, seed) + ["ce"]
    members = [(spec, s) for spec in specs for s in range(seeds)]
    f = flops(task, len(members))
    res = run(task, members, repeats, f["val_samples"])
    probe_s = probe(len(members), f)
    res |= {"gflop": f["gflop"], "batched_gflops": f["gflop"] / res["batched_cpu_s"],
            "probe_gflops": f["gflop"] / probe_s, "probe_s": probe_s}
    res["probe_ratio"] = res["probe_gflops"] / res["batched_gflops"]
    res["targets"] = {"speedup_ge_4": res["speedup"] >= 4, "within_2x_of_probe": res["probe_ratio"] <= 2}
    return {"benchmark": "search_batched_speed", "task": task.to_dict(), "losses": specs, "seeds": seeds,
            "members": len(members), "flops": {k: v for k, v in f.items() if k != "shapes"}, **res,
            "machine": {"python": sys.version.split()[0], "torch": torch.__version__, "cpus": os.cpu_count(),
                        "platform": platform.platform()},
            "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def summary(doc: dict) -> str:
    n = doc["members"]
    return (f"{n} runs ({len(doc['losses']) - 1} losses + CE, x {doc['seeds']} seeds), 1 thread, load "
            f"{', '.join(f'{v:.1f}' for v in doc['load_average_1min'])}\n"
            f"  today's path: {doc['today_runs_per_cpu_s']:.2f} runs/CPU-s ({doc['today_cpu_s']:.1f} CPU-s)\n"
            f"  batched:      {doc['batched_runs_per_cpu_s']:.2f} runs/CPU-s ({doc['batched_cpu_s']:.1f} CPU-s): "
            f"{doc['speedup']:.2f}x (target >= 4)\n"
            f"  same final validation accuracy: {doc['same_val_accuracy']}/{n}, within one sample: "
            f"{doc['within_one_sample']}/{n}\n"
            f"  {doc['batched_gflops']:.1f} GFLOP/s achieved, probe {doc['probe_gflops']:.1f} GFLOP/s: "
            f"{doc['probe_ratio']:.2f}x from the limit (target <= 2)")


if __name__ == "__main__":
    sys.exit(main())
