"""Forward+backward speed of NGL for the targets users pass (integer labels, one-hot and soft
targets), each against ``F.cross_entropy`` given the same targets; SCE, focal and Poly-1 too.

Columns, per shape and target kind:

- ``ngl``: the public ``ngl_loss`` (on CPU one native call: kernel, label check, reduction);
- ``native`` / ``fused`` / ``torch``: the three implementations of NGL's fused value-and-gradient
  side by side (C kernel; the torch ops compiled by Inductor, what CUDA runs; the same ops eager);
- ``reference``: the published code (softmax + element-wise formula, mean over ``(B, C)``);
- ``sce``, ``focal``, ``poly1``: the baselines' public functions;
- ``cross_entropy``: ``F.cross_entropy`` with the same targets (class indices or probabilities).

Soft targets are label smoothing's ``0.9 * one_hot + 0.1 / C`` (what the issue measured).
1 thread, candidates interleaved repeat by repeat; the fastest call over all repeats is reported
(on a shared, loaded machine the least disturbed one; the issue measured the same way); the
fused path is compiled during warm-up (its compile time is reported separately).
``--before DIR`` also times ``ngl`` and ``cross_entropy`` with the code of an earlier checkout
``DIR`` (its ``src/``) in a subprocess right after, so before and after come from one run.

    python benchmarks/loss_speed.py [--repeats 5] [--before DIR] [--out benchmarks/results/loss_speed.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ngl.expr import NGL_ALPHA as ALPHA
from ngl.losses import _ngl_fused, focal_loss, ngl_loss, poly1_loss, sce_loss

SHAPES = [(128, 10), (128, 100), (512, 1000), (64, 21, 64, 64)]
KINDS = ("labels", "one_hot", "soft")


def reference_ngl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The published PyTorch code: one_hot + softmax + element-wise ops, mean over everything."""
    p = F.softmax(logits, dim=1)
    y = target if target.is_floating_point() else F.one_hot(target, logits.shape[1]).movedim(-1, 1).float()
    return torch.mean(torch.exp(ALPHA - p * (1 + y)) - torch.cos(torch.cos(torch.sin(p))))


def implementation(impl: str):
    """NGL (mean) through one implementation of the fused value-and-gradient."""
    return lambda z, t: _ngl_fused.FastNGL.apply(z, t, ALPHA, "mean", impl)


CANDIDATES = {
    "ngl": lambda z, t: ngl_loss(z, t),
    "native": implementation("native"),
    "fused": implementation("fused"),
    "torch": implementation("torch"),
    "reference": reference_ngl,
    "sce": lambda z, t: sce_loss(z, t),
    "focal": lambda z, t: focal_loss(z, t),
    "poly1": lambda z, t: poly1_loss(z, t),
    "cross_entropy": lambda z, t: F.cross_entropy(z, t),
}
BEFORE = ("ngl", "cross_entropy")       # what an earlier checkout is timed on


def targets(shape: tuple[int, ...], kind: str) -> torch.Tensor:
    labels = torch.randint(0, shape[1], (shape[0],) + tuple(shape[2:]))
    if kind == "labels":
        return labels
    one_hot = F.one_hot(labels, shape[1]).movedim(-1, 1).float().contiguous()
    return one_hot if kind == "one_hot" else (0.9 * one_hot + 0.1 / shape[1]).contiguous()


def step(fn, z, t):
    z.grad = None
    fn(z, t).backward()


def best_ms(fn, z, t, iters: int) -> float:
    """The fastest of ``iters`` timed calls (the least disturbed by other load)."""
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        step(fn, z, t)
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def peak_bytes(fn, z, t) -> int:
    """Peak bytes allocated by torch on CPU during one forward+backward (profiler memory)."""
    step(fn, z, t)
    with torch.profiler.profile(profile_memory=True) as prof:
        step(fn, z, t)
    live = peak = 0
    for ev in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += ev.cpu_memory_usage
        peak = max(peak, live)
    return peak


def measure(shape, kind: str, names, repeats: int, quick: bool) -> dict:
    z = torch.randn(*shape, requires_grad=True)
    t = targets(shape, kind)
    fns = {n: CANDIDATES[n] for n in names}
    iters = max(3, min(200, int(2e7 // z.numel())) // (4 if quick else 1))
    compile_s = None
    if "fused" in fns:
        compile_s = time.perf_counter()
        step(fns["fused"], z, t)
        compile_s = time.perf_counter() - compile_s
    for fn in fns.values():   # warm up
        for _ in range(3):
            step(fn, z, t)
    best = {n: float("inf") for n in fns}
    for _ in range(repeats):
        for n, fn in fns.items():
            best[n] = min(best[n], best_ms(fn, z, t, iters))
    mem = ({n: peak_bytes(fns[n], z, t) for n in ("ngl", "reference", "cross_entropy")}
           if "reference" in fns else {})
    ce = best["cross_entropy"]
    row = {"shape": list(shape), "target": kind, "ms": best, "vs_ce": {n: best[n] / ce for n in fns},
           "peak_bytes": mem, "fused_first_call_s": compile_s}
    if "reference" in mem:
        row["memory_vs_reference"] = mem["ngl"] / max(mem["reference"], 1)
    return row


def run_rows(shapes, names, repeats: int, quick: bool, verbose: bool) -> list[dict]:
    rows = []
    for shape in shapes:
        for kind in KINDS:
            row = measure(shape, kind, names, repeats, quick)
            rows.append(row)
            if verbose:
                cells = "  ".join(f"{n} {row['ms'][n]:.3f} ({row['vs_ce'][n]:.2f}x)" for n in names)
                print(f"{str(tuple(shape)):>17} {kind:>8}  {cells}", flush=True)
    return rows


def run_before(source: Path, args) -> list[dict]:
    """The same measurement with the code under ``source/src``, in its own process."""
    env = {**os.environ, "PYTHONPATH": str(source / "src"), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, __file__, "--worker", "--repeats", str(args.repeats)]
    cmd += (["--shapes", args.shapes] if args.shapes else []) + (["--quick"] if args.quick else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"before worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats per candidate")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/loss_speed.json"))
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    ap.add_argument("--shapes", default=None, help="e.g. '128x10,512x1000' (default: all four)")
    ap.add_argument("--before", type=Path, help="an earlier checkout: time its ngl_loss too")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    shapes = [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")] if args.shapes else SHAPES
    repeats = 2 if args.quick else args.repeats
    if args.worker:
        print(json.dumps(run_rows(shapes, BEFORE, repeats, args.quick, verbose=False)))
        return {}
    print("ms per forward+backward (ratio to F.cross_entropy with the same targets)")
    result = {"benchmark": "loss_speed", "threads": 1, "statistic": "fastest call", "torch": torch.__version__,
              "machine": platform.machine(), "processor": platform.processor(),
              "load_average": list(os.getloadavg()),
              "rows": run_rows(shapes, list(CANDIDATES), repeats, args.quick, verbose=True)}
    if args.before:
        result["before"] = {"source": str(args.before), "rows": run_before(args.before, args)}
        for row in result["before"]["rows"]:
            print(f"before {str(tuple(row['shape'])):>17} {row['target']:>8}  ngl {row['ms']['ngl']:.3f} ms "
                  f"({row['vs_ce']['ngl']:.2f}x CE)", flush=True)
    result["load_average_end"] = list(os.getloadavg())
    from ngl.fileio import write_json_atomic

    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
