"""Forward+backward speed and peak memory of NGL: ngl's paths vs the reference code vs CE.

Columns: ``ngl`` (the public ``ngl_loss``, which picks the native C kernel on CPU), and the three
implementations of its fused value-and-gradient side by side: ``native`` (C kernel), ``torch``
(unfused torch ops: the fallback, what CUDA ran before), ``fused`` (the same ops compiled by
Inductor: what CUDA and kernel-less CPUs run now); then the reference code and ``F.cross_entropy``.
1 thread, interleaved repeats (the minimum of per-repeat medians is reported, which is robust on a
noisy VM); the fused path is compiled during warm-up (its compile time is reported separately).

    python benchmarks/loss_speed.py [--repeats 7] [--out benchmarks/results/loss_speed.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ngl.expr import NGL_ALPHA as ALPHA
from ngl.losses import _ngl_fused, ngl_loss
SHAPES = [(128, 10), (128, 100), (512, 1000), (64, 21, 64, 64)]


def reference_ngl(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The published PyTorch code: one_hot + softmax + element-wise ops, mean over everything."""
    p = F.softmax(logits, dim=1)
    y = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).float()
    return torch.mean(torch.exp(ALPHA - p * (1 + y)) - torch.cos(torch.cos(torch.sin(p))))


def implementation(impl: str):
    """NGL (mean) through one implementation of the fused value-and-gradient."""
    return lambda z, t: _ngl_fused.FastNGL.apply(z, t, ALPHA, 1.0 / t.numel(), impl)


CANDIDATES = {
    "ngl": lambda z, t: ngl_loss(z, t),
    "native": implementation("native"),
    "torch": implementation("torch"),
    "fused": implementation("fused"),
    "reference": reference_ngl,
    "cross_entropy": lambda z, t: F.cross_entropy(z, t),
}


def step(fn, z, t):
    z.grad = None
    fn(z, t).backward()


def median_ms(fn, z, t, iters: int) -> float:
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        step(fn, z, t)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def peak_bytes(fn, z, t) -> int:
    """Peak bytes allocated by torch on CPU during one forward+backward (profiler memory)."""
    step(fn, z, t)
    with torch.profiler.profile(profile_memory=True) as prof:
        step(fn, z, t)
    # walk the allocation events in order, tracking live bytes
    live = peak = 0
    for ev in sorted(prof.events(), key=lambda e: e.time_range.start):
        live += ev.cpu_memory_usage
        peak = max(peak, live)
    return peak


def measure(shape, args) -> dict:
    z = torch.randn(*shape, requires_grad=True)
    t = torch.randint(0, shape[1], (shape[0],) + tuple(shape[2:]))
    iters = max(3, min(200, int(2e7 // z.numel()))) // (4 if args.quick else 1) or 3
    compile_s = time.perf_counter()
    step(CANDIDATES["fused"], z, t)
    compile_s = time.perf_counter() - compile_s
    for fn in CANDIDATES.values():   # warm up
        for _ in range(3):
            step(fn, z, t)
    best = {name: float("inf") for name in CANDIDATES}
    for _ in range(args.repeats if not args.quick else 2):
        for name, fn in CANDIDATES.items():
            best[name] = min(best[name], median_ms(fn, z, t, iters))
    mem = {name: peak_bytes(fn, z, t) for name, fn in CANDIDATES.items()}
    ce = best["cross_entropy"]
    return {"shape": list(shape), "ms": best, "peak_bytes": mem,
            "vs_ce": {name: best[name] / ce for name in CANDIDATES},
            "ngl_vs_ce": best["ngl"] / ce, "reference_vs_ce": best["reference"] / ce,
            "speedup_vs_reference": best["reference"] / best["ngl"],
            "fused_speedup_vs_torch": best["torch"] / best["fused"],
            "memory_vs_reference": mem["ngl"] / max(mem["reference"], 1),
            "fused_first_call_s": compile_s}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="interleaved repeats per candidate")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/loss_speed.json"))
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    ap.add_argument("--shapes", default=None, help="e.g. '128x10,512x1000' (default: all four)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    shapes = [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")] if args.shapes else SHAPES
    print("ms per forward+backward and its ratio to F.cross_entropy; then reference/ngl time and "
          "ngl/reference peak memory")
    print(f"{'shape':>18}  " + "  ".join(f"{n[:13]:>14}" for n in CANDIDATES) + "  ref/ngl  mem")
    rows = []
    for shape in shapes:
        row = measure(shape, args)
        rows.append(row)
        cells = "  ".join(f"{row['ms'][n]:7.3f} {row['vs_ce'][n]:5.2f}x" for n in CANDIDATES)
        print(f"{str(tuple(shape)):>18}  {cells}  {row['speedup_vs_reference']:6.2f}x  "
              f"{row['memory_vs_reference']:5.2f}   (fused first call {row['fused_first_call_s']:.1f} s)",
              flush=True)
    result = {"benchmark": "loss_speed", "threads": 1, "torch": torch.__version__,
              "machine": platform.machine(), "processor": platform.processor(),
              "load_average": list(os.getloadavg()), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
