"""Forward+backward speed of NGL in Keras 3 on every backend, for integer labels, one-hot and
soft targets, each against Keras' cross entropy given the same targets
(``SparseCategoricalCrossentropy`` for labels, ``CategoricalCrossentropy`` for dense targets, both
``from_logits=True``), and against the published formula in ``keras.ops`` (``plain``).

Each backend runs in its own subprocess (a process holds one Keras backend; TensorFlow and torch
in one process crash), 1 thread on one core (the process is pinned), compiled as the backend
compiles: ``jax.jit`` of ``jax.value_and_grad``, ``tf.function`` around a ``GradientTape``, eager
torch autograd.
Candidates are interleaved repeat by repeat; the fastest call over all repeats is reported (wall
clock; on a shared, loaded machine the least disturbed call). Soft targets are label smoothing's
``0.9 * one_hot + 0.1 / C``.

    python benchmarks/keras_speed.py [--backends jax,tensorflow,torch] [--repeats 5]
        [--before DIR] [--out benchmarks/results/keras_speed.json]

``--before DIR`` also times an earlier checkout's ``ngl.keras.NGL`` (``DIR/src``), each backend
right after the current code's, so before and after come from one run.
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

ALPHA = 2.4092
SHAPES = [(128, 10), (128, 100), (512, 1000), (16, 64, 64, 21)]   # the last: (B, H, W, C)
BACKENDS = ("jax", "tensorflow", "torch")
KINDS = ("labels", "one_hot", "soft")
THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_NUM_INTRAOP_THREADS": "1",
              "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


# ---------------------------------------------------------------- worker (one backend per process)
def _losses():
    """name -> loss(y, logits) for each target kind."""
    import keras
    from keras import ops

    import ngl.keras as nk

    class Plain(keras.losses.Loss):     # a Keras loss: the same call overhead as the others
        def call(self, y, z):
            p = ops.softmax(z, axis=-1)
            if len(y.shape) < len(z.shape):
                y = ops.one_hot(ops.cast(y, "int32"), z.shape[-1], dtype=z.dtype)
            return ops.mean(ops.exp(ALPHA - p * (1.0 + y)) - ops.cos(ops.cos(ops.sin(p))), axis=-1)

    ce = keras.losses.CategoricalCrossentropy(from_logits=True)
    return {kind: {"ngl": nk.NGL(from_logits=True), "plain": Plain(),
                   "ce": keras.losses.SparseCategoricalCrossentropy(from_logits=True) if kind == "labels" else ce}
            for kind in KINDS}


def _stepper(backend: str, loss, y, z):
    """A no-argument function running one compiled forward+backward and waiting for it."""
    if backend == "jax":
        import jax

        f = jax.jit(jax.value_and_grad(lambda v: loss(y, v)))
        return lambda: jax.block_until_ready(f(z))
    if backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def f(v):
            with tf.GradientTape() as tape:
                tape.watch(v)
                value = loss(y, v)
            return value, tape.gradient(value, v)

        return lambda: [t.numpy() for t in f(z)]

    def step():
        z.grad = None
        loss(y, z).backward()
    return step


def _inputs(backend: str, shape: tuple[int, ...]):
    import numpy as np

    rng = np.random.default_rng(0)
    z = (rng.normal(size=shape) * 2).astype("float32")
    labels = rng.integers(0, shape[-1], size=shape[:-1]).astype("int32")
    one_hot = np.eye(shape[-1], dtype="float32")[labels]
    targets = {"labels": labels, "one_hot": one_hot, "soft": (0.9 * one_hot + 0.1 / shape[-1]).astype("float32")}
    if backend == "torch":
        import torch

        return torch.tensor(z, requires_grad=True), {k: torch.tensor(v).long() if k == "labels" else torch.tensor(v)
                                                     for k, v in targets.items()}
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.constant(z), {k: tf.constant(v) for k, v in targets.items()}
    import jax.numpy as jnp

    return jnp.asarray(z), {k: jnp.asarray(v) for k, v in targets.items()}


def _best_ms(step, iters: int) -> float:
    """The fastest of ``iters`` calls, wall clock (the least disturbed by other load; CPU time is
    no good here: XLA's worker threads make single calls' CPU times jitter both ways)."""
    best = float("inf")
    for _ in range(iters):
        t0 = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def worker(backend: str, repeats: int, shapes) -> list[dict]:
    """Time every candidate at every shape and target kind on the backend of this process."""
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    losses = _losses()
    rows = []
    for shape in shapes:
        z, targets = _inputs(backend, shape)
        numel = 1
        for d in shape:
            numel *= d
        iters = max(5, min(200, int(1e7 // numel)))
        for kind in KINDS:
            steps = {name: _stepper(backend, fn, targets[kind], z) for name, fn in losses[kind].items()}
            for step in steps.values():          # compile and warm up
                for _ in range(3):
                    step()
            best = {name: float("inf") for name in steps}
            for _ in range(repeats):
                for name, step in steps.items():
                    best[name] = min(best[name], _best_ms(step, iters))
            rows.append({"shape": list(shape), "target": kind, "ms": best,
                         "ngl_vs_ce": best["ngl"] / best["ce"], "ngl_vs_plain": best["ngl"] / best["plain"],
                         "plain_vs_ce": best["plain"] / best["ce"]})
    return rows


# ---------------------------------------------------------------- driver
def _run_backend(backend: str, repeats: int, shapes: str, source: Path | None = None) -> list[dict]:
    env = {**os.environ, **THREAD_ENV, "KERAS_BACKEND": backend}
    if source is not None:
        env["PYTHONPATH"] = str(source / "src")
    proc = subprocess.run([sys.executable, __file__, "--worker", backend, "--repeats", str(repeats),
                           "--shapes", shapes], env=env, capture_output=True, text=True, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _print_row(backend: str, row: dict) -> None:
    ms = row["ms"]
    was = "" if "before" not in row else (f" | before {row['before']['ms']:7.3f} ms, "
                                          f"{row['before']['ngl_vs_ce']:5.2f}x CE")
    print(f"{backend:>10} {str(tuple(row['shape'])):>17} {row['target']:>8}  ngl {ms['ngl']:7.3f}  "
          f"CE {ms['ce']:7.3f}  plain {ms['plain']:7.3f} ms | ngl/CE {row['ngl_vs_ce']:5.2f}x  "
          f"ngl/plain {row['ngl_vs_plain']:5.2f}x{was}", flush=True)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated Keras backends")
    ap.add_argument("--repeats", type=int, default=5, help="interleaved repeats per candidate")
    ap.add_argument("--shapes", default=",".join("x".join(map(str, s)) for s in SHAPES),
                    help="e.g. '128x10,512x1000' (class axis last)")
    ap.add_argument("--before", type=Path, help="an earlier checkout: time its ngl.keras.NGL too")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results/keras_speed.json"))
    ap.add_argument("--worker", choices=BACKENDS, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        if hasattr(os, "sched_setaffinity"):     # one core: XLA's CPU runtime starts worker threads
            os.sched_setaffinity(0, {max(os.sched_getaffinity(0))})
        shapes = [tuple(int(d) for d in s.split("x")) for s in args.shapes.split(",")]
        print(json.dumps(worker(args.worker, args.repeats, shapes)))
        return {}
    result = {"benchmark": "keras_speed", "threads": 1, "clock": "perf_counter", "statistic": "fastest call",
              "machine": platform.machine(),
              "load_average": os.getloadavg(), "before_source": str(args.before) if args.before else None,
              "backends": {}}
    for backend in args.backends.split(","):
        rows = _run_backend(backend, args.repeats, args.shapes)
        if args.before:
            before = _run_backend(backend, args.repeats, args.shapes, args.before)
            for row, was in zip(rows, before):
                row["before"] = {"ms": was["ms"]["ngl"], "ce_ms": was["ms"]["ce"], "ngl_vs_ce": was["ngl_vs_ce"]}
        result["backends"][backend] = rows
        for row in rows:
            _print_row(backend, row)
    result["load_average_end"] = os.getloadavg()
    from ngl.fileio import write_json_atomic

    write_json_atomic(args.out, result)
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
