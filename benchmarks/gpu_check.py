"""One prepared GPU check: NGL vs the reference code vs CE on CUDA, and AMP train steps.

1. Loss forward+backward at the benchmark shapes of ``loss_speed.py``, for integer labels,
   one-hot and soft targets (``0.9 * one_hot + 0.1 / C``), in float32 and bfloat16:
   ``ngl`` (the public ``ngl_loss``: on CUDA the Inductor-fused path), ``ngl_torch`` (the same
   math as unfused torch ops, what CUDA ran before), the reference code and ``F.cross_entropy``
   with the same targets; ms per step, ratios to CE, and the largest value/gradient difference of
   ``ngl`` against ``ngl_loss(..., fast=False)`` (the published formula, float64).
2. A few AMP (bfloat16 autocast) train steps of resnet50 at 224 px and inception_v3 at 299 px
   (``ngl.models.build_model``, the paper's head) with NGL (labels and soft targets) and with CE,
   in images/s.
3. The batched search fitness (``ngl.search.batched``) on CUDA: 64, 256 and 1024 (loss, seed)
   members of the default fitness task trained at once, in members per second, beside the
   harness's runs per second one at a time.

Writes JSON to ``--out``. Without CUDA it prints one line and exits 0; ``--smoke`` runs every part
on CPU with tiny sizes (a check of this script, not a measurement).

    python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.json] [--steps 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from ngl.expr import NGL_ALPHA as ALPHA
from ngl.losses import _ngl_fused, ngl_loss

SHAPES = [(128, 10), (128, 100), (512, 1000), (64, 21, 64, 64)]
MODELS = [("resnet50", 224), ("inception_v3", 299)]
KINDS = ("labels", "one_hot", "soft")


def reference_ngl(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The published PyTorch code: one_hot + softmax + element-wise ops, mean over everything."""
    p = F.softmax(logits, dim=1)
    y = target if target.is_floating_point() else F.one_hot(target, logits.shape[1]).movedim(-1, 1)
    y = y.to(p.dtype)
    return torch.mean(torch.exp(ALPHA - p * (1 + y)) - torch.cos(torch.cos(torch.sin(p))))


LOSSES = {
    "ngl": lambda z, t: ngl_loss(z, t),
    "ngl_torch": lambda z, t: _ngl_fused.FastNGL.apply(z.float(), t.float() if t.is_floating_point() else t,
                                                       ALPHA, "mean", "torch"),
    "reference": reference_ngl,
    "cross_entropy": lambda z, t: F.cross_entropy(z, t),
}


def make_targets(shape, kind: str, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Labels, or one-hot / soft targets of the logits' shape and dtype."""
    labels = torch.randint(0, shape[1], (shape[0],) + tuple(shape[2:]), device=device)
    if kind == "labels":
        return labels
    one_hot = F.one_hot(labels, shape[1]).movedim(-1, 1).to(dtype).contiguous()
    return one_hot if kind == "one_hot" else (0.9 * one_hot + 0.1 / shape[1]).contiguous()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


WARMUP = 3


def time_ms(fn, iters: int, device: torch.device) -> float:
    """Median ms of ``fn()`` over ``iters`` calls, after warm-up calls (compiles happen there)."""
    for _ in range(WARMUP):
        fn()
    sync(device)
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return sorted(times)[len(times) // 2] * 1e3


def agreement(z: torch.Tensor, t: torch.Tensor) -> dict[str, float]:
    """Largest |difference| of the fast NGL against the exact formula in float64."""
    a = z.detach().clone().requires_grad_(True)
    b = z.detach().double().clone().requires_grad_(True)
    va, vb = ngl_loss(a, t), ngl_loss(b, t.double() if t.is_floating_point() else t, fast=False)
    va.backward()
    vb.backward()
    return {"value": abs(va.item() - vb.item()),
            "grad": (a.grad.double() - b.grad).abs().max().item()}


def loss_row(device: torch.device, shape, dtype: torch.dtype, kind: str, iters: int) -> dict:
    z = torch.randn(*shape, device=device).to(dtype).requires_grad_(True)
    t = make_targets(shape, kind, device, dtype)

    def step(fn):
        def run():
            z.grad = None
            fn(z, t).backward()
        return run

    ms = {name: time_ms(step(fn), iters, device) for name, fn in LOSSES.items()}
    row = {"shape": list(shape), "dtype": str(dtype).replace("torch.", ""), "target": kind, "ms": ms,
           "vs_ce": {k: v / ms["cross_entropy"] for k, v in ms.items()},
           "max_abs_diff_vs_exact": agreement(z, t)}
    print(f"{str(tuple(shape)):>18} {row['dtype']:>8} {kind:>8}  " + "  ".join(
        f"{k} {v:8.3f} ms ({row['vs_ce'][k]:4.2f}x)" for k, v in ms.items()), flush=True)
    return row


def loss_rows(device: torch.device, shapes, dtypes, iters: int) -> list[dict]:
    return [loss_row(device, shape, dtype, kind, iters) for shape in shapes for dtype in dtypes for kind in KINDS]


def train_rows(device: torch.device, models, steps: int, batch: int) -> list[dict]:
    """Images/s of AMP train steps (forward, loss, backward, Adam) per model and loss."""
    from ngl.models import build_model

    rows = []
    for name, size in models:
        for loss_name in ("ngl", "ngl_soft", "cross_entropy"):
            torch.manual_seed(0)
            model = build_model(name, num_classes=100, in_channels=3, image_size=size)
            model = model.to(device, memory_format=torch.channels_last)   # as ngl train does
            opt = torch.optim.Adam(model.parameters(), lr=1e-3)
            x = torch.randn(batch, 3, size, size, device=device).to(memory_format=torch.channels_last)
            y = torch.randint(0, 100, (batch,), device=device)
            if loss_name == "ngl_soft":      # label-smoothed targets, as mixup/smoothing pipelines give
                y = 0.9 * F.one_hot(y, 100).float() + 0.001
            loss_fn = LOSSES[loss_name.removesuffix("_soft")]

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16):
                    out = model(x)
                    out = out.logits if hasattr(out, "logits") else out
                    loss = loss_fn(out.float(), y)
                loss.backward()
                opt.step()
                return loss

            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            ms = time_ms(step, steps, device)
            peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
            final = float(step().item())     # after the timed steps: still finite?
            rows.append({"model": name, "image_size": size, "batch": batch, "loss": loss_name,
                         "ms_per_step": ms, "images_per_s": batch / ms * 1e3, "peak_gib": peak,
                         "finite": final == final})
            print(f"{name:>13} {size}px batch {batch} {loss_name:>13}: {ms:8.1f} ms/step, "
                  f"{batch / ms * 1e3:8.1f} images/s", flush=True)
    return rows


BATCHED_SPECS = ["ce", "expr:square(p - y)", "expr:exp(-(y * p))", "expr:exp(2.4092 - p * (1 + y)) - cos(cos(sin(p)))"]


def batched_rows(device: torch.device, sizes, steps: int) -> list[dict]:
    """Members per second of the batched search fitness (:func:`ngl.search.batched.train_population`,
    the search's default task: digits, mlp, 40% noise, batch 64) beside the harness, one run at a time."""
    from ngl.search.batched import train_population
    from ngl.train import TrainConfig, train

    task = TrainConfig(dataset="digits", model="mlp", label_noise=0.4, val_fraction=0.3, max_steps=steps,
                       epochs=10_000, batch_size=64, lr=2e-3, threads=1, device=device.type)
    members = lambda n: [(BATCHED_SPECS[i % len(BATCHED_SPECS)], i // len(BATCHED_SPECS)) for i in range(n)]  # noqa: E731
    train_population(task, members(2), device=device.type)                    # warm-up
    t0 = time.perf_counter()
    for spec, seed in members(2):
        train(TrainConfig.from_dict({**task.to_dict(), "loss": spec, "seed": seed}), progress=False)
    harness_per_s = 2 / (time.perf_counter() - t0)
    rows = []
    for n in sizes:
        sync(device)
        t0 = time.perf_counter()
        res = train_population(task, members(n), device=device.type)
        sync(device)
        wall = time.perf_counter() - t0
        rows.append({"members": n, "steps": steps, "wall_s": wall, "members_per_s": n / wall,
                     "harness_runs_per_s": harness_per_s, "speedup": n / wall / harness_per_s,
                     "ok": sum(r.status == "ok" for r in res)})
        print(f"batched search fitness: {n:5d} members x {steps} steps: {wall:7.2f} s, {n / wall:8.1f} "
              f"members/s ({rows[-1]['speedup']:.1f}x the harness's {harness_per_s:.2f} runs/s)", flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/gpu_check.json"))
    ap.add_argument("--iters", type=int, default=50, help="timed loss steps per cell")
    ap.add_argument("--steps", type=int, default=20, help="timed train steps per model and loss")
    ap.add_argument("--batch", type=int, default=64, help="train batch size")
    ap.add_argument("--smoke", action="store_true", help="run every part on CPU at tiny sizes (script check)")
    args = ap.parse_args(argv)
    global WARMUP
    if args.smoke:
        WARMUP, device = 1, torch.device("cpu")
        torch.set_num_threads(1)     # a shared CPU: no thread-pool stalls in the script check
        shapes, models, args.iters, args.steps, args.batch = [(8, 10), (2, 5, 4, 4)], [("resnet50", 32), ("inception_v3", 75)], 2, 1, 2
        batched_sizes, batched_steps = [4], 5
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU available here; nothing measured (run it on a machine with one)")
        return 0
    else:
        device, shapes, models = torch.device("cuda"), SHAPES, MODELS
        batched_sizes, batched_steps = [64, 256, 1024], 300
    torch.backends.cudnn.benchmark = True
    info = {"benchmark": "gpu_check", "smoke": args.smoke, "torch": torch.__version__,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "fused_path": _ngl_fused.fused_enabled(device), "python": sys.version.split()[0]}
    print(json.dumps(info))
    info["losses"] = loss_rows(device, shapes, (torch.float32, torch.bfloat16), args.iters)
    info["train"] = train_rows(device, models, args.steps, args.batch)
    info["batched_search"] = batched_rows(device, batched_sizes, batched_steps)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
