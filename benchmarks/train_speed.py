"""Training steps per second: the ngl harness vs a minimal hand-written PyTorch loop.

Same model (same seed), same in-memory data, batch, loss and optimizer; the plain loop does only
index -> scale -> forward -> loss -> backward -> Adam step. The harness's time is measured inside
``train()`` with its setup (data loading, model building) and its evaluations (per-epoch
validation, final test) timed separately and subtracted for the ``loop`` ratio; the ``all-in``
ratio keeps the per-epoch validation in. Repeats are interleaved; medians are reported.

    python benchmarks/train_speed.py [--repeats 3] [--threads 1] [--out benchmarks/results/train_speed.json]
    python benchmarks/train_speed.py --gpu-throughput    # CUDA only: images/s, bf16 + channels_last
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

import ngl.train as T
from ngl.data import load_dataset
from ngl.losses import get_loss
from ngl.models import build_model, get_model_info

CASES = {
    "cnn_small/digits": dict(dataset="digits", model="cnn_small", loss="ngl", batch_size=128, image_size=8,
                             max_steps=220),
    "resnet50/digits@32": dict(dataset="digits", model="resnet50", loss="ngl", batch_size=32, image_size=32,
                               max_steps=12),
}


def harness(case: dict, threads: int) -> dict:
    """Time one harness run, split into setup, evaluation and the training loop."""
    timers = {"setup": 0.0, "eval": 0.0}
    real_setup, real_eval = T._setup, T.evaluate

    def setup(cfg):
        t = time.perf_counter()
        out = real_setup(cfg)
        timers["setup"] += time.perf_counter() - t
        return out

    def evaluate(*a, **k):
        t = time.perf_counter()
        out = real_eval(*a, **k)
        timers["eval"] += time.perf_counter() - t
        return out

    T._setup, T.evaluate = setup, evaluate
    try:
        t0 = time.perf_counter()
        r = T.train(T.TrainConfig(**case, epochs=10_000, threads=threads, device="cpu"), progress=False)
        total = time.perf_counter() - t0
    finally:
        T._setup, T.evaluate = real_setup, real_eval
    assert r.status == "ok", r.error
    loop = total - timers["setup"] - timers["eval"]
    return {"steps": r.steps, "loop_s": loop, "with_val_s": loop + timers["eval"], "setup_s": timers["setup"]}


def plain(case: dict, threads: int) -> dict:
    """The minimal loop a user would write by hand on the same tensors."""
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        d = load_dataset(case["dataset"], seed=0)
        info = get_model_info(case["model"])
        torch.manual_seed(0)
        size = case["image_size"]
        model = build_model(case["model"], num_classes=d.num_classes, in_channels=d.image_shape[0],
                            image_size=size)
        crit = get_loss(case["loss"])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        x, y = d.x_train, d.y_train
        g = torch.Generator().manual_seed(0)
        bs, steps = case["batch_size"], 0
        t0 = time.perf_counter()
        model.train()
        while steps < case["max_steps"]:
            perm = torch.randperm(len(y), generator=g)
            for s in range(0, len(y), bs):
                idx = perm[s:s + bs]
                xb = x[idx].float() / 127.5 - 1
                if info.in_channels and xb.shape[1] != info.in_channels:
                    xb = xb.expand(-1, info.in_channels, -1, -1)
                if xb.shape[-1] != size:
                    xb = F.interpolate(xb, size=(size, size), mode="nearest")
                loss = crit(model(xb), y[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                steps += 1
                if steps >= case["max_steps"]:
                    break
        return {"steps": steps, "loop_s": time.perf_counter() - t0}
    finally:
        torch.set_num_threads(old)


def gpu_throughput(batch: int = 128, steps: int = 20) -> list[dict]:
    """Training images/s of resnet50 at 224 and inception_v3 at 299 on CUDA (bf16 autocast,
    channels_last, the paper's head), as the harness runs them; synthetic inputs."""
    rows = []
    dev = torch.device("cuda")
    torch.backends.cudnn.benchmark = True
    for name, size in (("resnet50", 224), ("inception_v3", 299)):
        torch.manual_seed(0)
        model = build_model(name, num_classes=10, in_channels=3, image_size=size).to(
            dev, memory_format=torch.channels_last)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        crit = get_loss("ngl").to(dev)
        x = torch.randn(batch, 3, size, size, device=dev).contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (batch,), device=dev)
        for i in range(steps + 5):
            if i == 5:                                   # after warm-up / cudnn autotuning
                torch.cuda.synchronize()
                t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out = model(x)
            loss = crit(out.float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        ips = batch * steps / (time.perf_counter() - t0)
        rows.append({"model": name, "image_size": size, "batch": batch, "images_per_s": ips,
                     "device": torch.cuda.get_device_name()})
        print(f"{name:<13} {size}px batch {batch}: {ips:8.1f} images/s (bf16, channels_last)", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {list(CASES)}")
    ap.add_argument("--out", default="benchmarks/results/train_speed.json")
    ap.add_argument("--gpu-throughput", action="store_true", help="only measure CUDA images/s of "
                    "resnet50@224 and inception_v3@299 (writes train_speed_gpu.json next to --out)")
    args = ap.parse_args()
    if args.gpu_throughput:
        if not torch.cuda.is_available():
            raise SystemExit("--gpu-throughput needs a CUDA device")
        out = Path(args.out).with_name("train_speed_gpu.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"torch": torch.__version__, "results": gpu_throughput()}, indent=1))
        print(f"wrote {out}")
        return
    rows = []
    for name in args.cases.split(","):
        case = CASES[name]
        plain(case, args.threads)                      # warm-up: imports, allocator
        h, p = [], []
        for _ in range(args.repeats):
            h.append(harness(case, args.threads))
            p.append(plain(case, args.threads))
        sps = lambda runs, key: statistics.median(r["steps"] / r[key] for r in runs)   # noqa: E731
        row = {"case": name, **{k: v for k, v in case.items()}, "threads": args.threads,
               "plain_steps_per_s": sps(p, "loop_s"), "harness_steps_per_s": sps(h, "loop_s"),
               "harness_steps_per_s_with_val": sps(h, "with_val_s"),
               "harness_setup_s": statistics.median(r["setup_s"] for r in h)}
        row["ratio_loop"] = row["harness_steps_per_s"] / row["plain_steps_per_s"]
        row["ratio_with_val"] = row["harness_steps_per_s_with_val"] / row["plain_steps_per_s"]
        rows.append(row)
        print(f"{name:<20} plain {row['plain_steps_per_s']:8.2f} steps/s | harness {row['harness_steps_per_s']:8.2f} "
              f"steps/s (x{row['ratio_loop']:.3f}) | with per-epoch val {row['harness_steps_per_s_with_val']:8.2f} "
              f"(x{row['ratio_with_val']:.3f}) | setup {row['harness_setup_s']:.2f} s", flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": platform.platform(), "torch": torch.__version__,
                               "repeats": args.repeats, "results": rows}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
