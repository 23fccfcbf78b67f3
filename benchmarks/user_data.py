"""Test accuracy and wall time of ``ngl train --dataset npz:...`` on a user's 28x28 digits.

The data is the stand-in of :mod:`ngl.data.standin` (scikit-learn's digits upsampled to 28x28
with random elastic distortion; train and test drawn from disjoint base digits). Each variant is
one ``ngl train`` process, as a user runs it, timed end to end; the load average is recorded next
to every timing (the machine may be shared).

- ``before``: the defaults until issue 10, reproduced by flags: ``--model cnn_small --augment
  flip,shift,zoom`` (cnn_small was the default model; npz data got the protocol's flips);
- ``after``: today's defaults, no flags (``model=auto`` -> resnet_small at 28 px; no augmentation);
- ``after_shift_zoom``: today's defaults plus ``--augment shift,zoom`` (why it is not the default).

``cpu_s`` is the child's user + system CPU time: on a busy machine it is the fairer figure (the
runs use one thread, so an idle 2-core machine finishes in about ``cpu_s`` wall seconds).

    python benchmarks/user_data.py [--n-train 4000] [--epochs 20] [--variants before,after]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ngl.data.standin import write_elastic_digits
from ngl.fileio import write_json_atomic

VARIANTS = {"before": ["--model", "cnn_small", "--augment", "flip,shift,zoom"], "after": [],
            "after_shift_zoom": ["--augment", "shift,zoom"]}


def run_variant(name: str, data: Path, work: Path, epochs: int, seed: int) -> dict:
    load0 = os.getloadavg()[0]
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "ngl.cli", "train", "--dataset", f"npz:{data}",
                           "--epochs", str(epochs), "--seed", str(seed), "--out", str(work / name),
                           "--quiet", "--json", *VARIANTS[name]],
                          capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    if proc.returncode != 0:
        raise SystemExit(f"{name}: ngl train exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    result = json.loads(proc.stdout)
    conf = json.loads((work / name / "config.json").read_text())
    return {"variant": name, "flags": " ".join(VARIANTS[name]) or "(defaults)",
            "model": conf["resolved_model"], "augment": conf["resolved_augment"],
            "test_accuracy": result["test_accuracy"], "best_val_accuracy": result["best_val_accuracy"],
            "epochs": result["epochs_run"], "wall_s": wall, "cpu_s": cpu, "load_before": load0,
            "load_after": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n-train", type=int, default=4000)
    ap.add_argument("--n-test", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--variants", default="before,after")
    ap.add_argument("--out", default="benchmarks/results/user_data.json")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="ngl_user_data_") as tmp:
        data = write_elastic_digits(Path(tmp) / "digits28.npz", n_train=args.n_train, n_test=args.n_test,
                                    seed=args.seed)
        for name in args.variants.split(","):
            row = run_variant(name, data, Path(tmp), args.epochs, args.seed)
            rows.append(row)
            print(f"{name:<7} {row['model']:<13} augment {row['augment']:<16} test {100 * row['test_accuracy']:6.2f}% "
                  f"| {row['wall_s']:6.1f} s wall, {row['cpu_s']:6.1f} s CPU | load {row['load_before']:.1f} -> {row['load_after']:.1f}",
                  flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out, {"machine": platform.platform(), "cpus": os.cpu_count(),
                            "n_train": args.n_train, "n_test": args.n_test, "epochs": args.epochs,
                            "results": rows})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
