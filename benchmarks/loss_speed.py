"""Forward+backward speed and peak memory of NGL: ngl's fast path vs the reference code vs CE.

Side by side in one run, 1 thread, interleaved repeats (the minimum of per-repeat medians is
reported, which is robust on a noisy VM). Prints a table of ratios and writes JSON.

    python benchmarks/loss_speed.py [--repeats 7] [--out benchmarks/results/loss_speed.json]
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ngl.losses import ngl_loss

ALPHA = 2.4092
SHAPES = [(128, 10), (128, 100), (512, 1000), (64, 21, 64, 64)]


def reference_ngl(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The published PyTorch code: one_hot + softmax + element-wise ops, mean over everything."""
    p = F.softmax(logits, dim=1)
    y = F.one_hot(labels, logits.shape[1]).movedim(-1, 1).float()
    return torch.mean(torch.exp(ALPHA - p * (1 + y)) - torch.cos(torch.cos(torch.sin(p))))


CANDIDATES = {
    "ngl": lambda z, t: ngl_loss(z, t),
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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="interleaved repeats per candidate")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/loss_speed.json"))
    ap.add_argument("--quick", action="store_true", help="fewer iterations (smoke run)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = []
    for shape in SHAPES:
        z = torch.randn(*shape, requires_grad=True)
        t = torch.randint(0, shape[1], (shape[0],) + tuple(shape[2:]))
        numel = z.numel()
        iters = max(3, min(200, int(2e7 // numel))) // (4 if args.quick else 1) or 3
        for fn in CANDIDATES.values():   # warm up
            for _ in range(3):
                step(fn, z, t)
        best = {name: float("inf") for name in CANDIDATES}
        for _ in range(args.repeats if not args.quick else 2):
            for name, fn in CANDIDATES.items():
                best[name] = min(best[name], median_ms(fn, z, t, iters))
        mem = {name: peak_bytes(fn, z, t) for name, fn in CANDIDATES.items()}
        row = {"shape": list(shape), "ms": best, "peak_bytes": mem,
               "ngl_vs_ce": best["ngl"] / best["cross_entropy"],
               "reference_vs_ce": best["reference"] / best["cross_entropy"],
               "speedup_vs_reference": best["reference"] / best["ngl"],
               "memory_vs_reference": mem["ngl"] / max(mem["reference"], 1)}
        rows.append(row)
        print(f"{str(tuple(shape)):>18}  ngl {best['ngl']:8.3f} ms  ref {best['reference']:8.3f} ms  "
              f"CE {best['cross_entropy']:8.3f} ms | ngl/CE {row['ngl_vs_ce']:5.2f}x  "
              f"ref/CE {row['reference_vs_ce']:5.2f}x  ref/ngl {row['speedup_vs_reference']:5.2f}x  "
              f"mem ngl/ref {row['memory_vs_reference']:4.2f}", flush=True)
    result = {"benchmark": "loss_speed", "threads": 1, "torch": torch.__version__,
              "machine": platform.machine(), "processor": platform.processor(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
