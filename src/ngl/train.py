"""The training harness: one seeded run of (dataset, model, loss) under the published protocol.

>>> from ngl.train import TrainConfig, train
>>> result = train(TrainConfig(dataset="digits", model="cnn_small", loss="ngl", epochs=20))
>>> result.status, result.test_accuracy

Protocol (REFERENCE.md section 2): Adam (lr 1e-3), batch 128, ReduceLROnPlateau on validation
accuracy (factor 0.2, patience 5, min_lr 1e-4), zoom 0.2 / shift 0.1 / horizontal-flip augmentation
(per-dataset default), 10% of train held out for validation (random_state 42), images scaled to
[-1, 1]. A registered loss's ``penalty(model)`` (CE + L2) is added to every step's loss.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .fileio import write_csv_atomic, write_json_atomic

__all__ = ["TrainConfig", "RunResult", "train", "evaluate", "resolve_device"]


@dataclass
class TrainConfig:
    """Everything that defines a run; ``to_dict``/``from_dict`` round-trip through JSON."""
    dataset: str = "digits"          # list_datasets() name, "folder:PATH" or "npz:PATH"
    model: str = "cnn_small"         # list_models() name
    loss: str = "ce"                 # get_loss spec: registry name, *.json file, "expr:<infix>"
    loss_kwargs: dict = field(default_factory=dict)
    epochs: int = 20
    batch_size: int = 128
    lr: float = 1e-3
    seed: int = 0
    label_noise: float = 0.0         # fraction of training labels set to a random other class
    train_fraction: float = 1.0      # stratified, seeded subset of the training split
    val_fraction: float = 0.1        # stratified hold-out of train, random_state 42
    augment: bool | None = None      # None: the dataset's default
    image_size: int | None = None    # None: the model's default for this dataset
    data_dir: str | None = None      # None: $NGL_DATA_DIR or ./data
    device: str = "auto"             # "auto" | "cpu" | "cuda"
    max_steps: int | None = None     # stop after this many optimizer steps
    threads: int | None = None       # torch.set_num_threads; None: torch's, 1 for mlp/cnn_small on CPU
    plateau_factor: float = 0.2      # ReduceLROnPlateau on val accuracy
    plateau_patience: int = 5
    min_lr: float = 1e-4
    amp: bool = True                 # bf16 autocast on CUDA
    eval_batch_size: int = 512
    restore_best: bool = True        # test the best-validation epoch's weights (False: the last's)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig keys {unknown}; known keys: {sorted(names)}")
        return cls(**d)

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad field."""
        checks = [("epochs", self.epochs >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
                  ("lr", self.lr > 0, "> 0"), ("label_noise", 0 <= self.label_noise <= 1, "in [0, 1]"),
                  ("train_fraction", 0 < self.train_fraction <= 1, "in (0, 1]"),
                  ("val_fraction", 0 <= self.val_fraction < 1, "in [0, 1)"),
                  ("device", self.device in ("auto", "cpu", "cuda"), "'auto', 'cpu' or 'cuda'"),
                  ("max_steps", self.max_steps is None or self.max_steps >= 1, ">= 1 or None"),
                  ("image_size", self.image_size is None or self.image_size >= 1, ">= 1 or None"),
                  ("threads", self.threads is None or self.threads >= 1, ">= 1 or None"),
                  ("plateau_factor", 0 < self.plateau_factor < 1, "in (0, 1)"),
                  ("loss_kwargs", isinstance(self.loss_kwargs, dict), "a dict")]
        for name, ok, want in checks:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}")


@dataclass
class RunResult:
    status: str                      # "ok" | "diverged" | "failed"
    test_accuracy: float | None
    val_accuracy: float | None       # final epoch's
    best_val_accuracy: float | None
    epochs_run: int
    steps: int
    history: list[dict]              # per epoch: epoch, loss, accuracy, val_accuracy, lr, time
    wall_time: float
    error: str | None
    config: dict

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class _Batches:
    """Turns stored uint8/float images into model inputs on ``device``, batch-wise."""

    def __init__(self, *, device: torch.device, in_channels: int | None, image_size: int,
                 augment: bool, generator: torch.Generator):
        self.device, self.in_channels, self.size = device, in_channels, image_size
        self.augment, self.generator = augment, generator
        self.channels_last = True      # NHWC: faster convolutions, pooling and BN on CPU (oneDNN) and GPU

    def __call__(self, x: Tensor, *, train: bool) -> Tensor:
        x = x.to(self.device, non_blocking=True)
        x = x.float().mul_(1 / 127.5).sub_(1.0) if x.dtype == torch.uint8 else x.float()
        if train and self.augment:                     # at the stored size, before upsampling
            from .data import augment_batch
            x = augment_batch(x, generator=self.generator)
        if self.in_channels and x.shape[1] != self.in_channels:
            x = x.expand(-1, self.in_channels, -1, -1) if x.shape[1] == 1 else x[:, :self.in_channels]
        h = x.shape[-1]
        if h != self.size or x.shape[-2] != self.size:
            integer = self.size % h == 0 and x.shape[-2] == h
            x = F.interpolate(x, size=(self.size, self.size),
                              mode="nearest" if integer else "bilinear",
                              align_corners=None if integer else False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, x, y: Tensor, prep: _Batches, *, batch_size: int = 512,
             amp: bool = True) -> float | None:
    """Top-1 accuracy (fraction) of ``model`` on stored images ``x`` with labels ``y``."""
    from .data import take

    if len(y) == 0:
        return None
    model.train(False)                                      # inference mode: BN running stats, no dropout
    correct = torch.zeros((), dtype=torch.long, device=prep.device)
    for start in range(0, len(y), batch_size):
        idx = torch.arange(start, min(start + batch_size, len(y)))
        xb = prep(take(x, idx) if not isinstance(x, Tensor) else x[start:start + batch_size], train=False)
        with _autocast(prep.device, amp):
            out = model(xb)
        correct += (out.argmax(1) == y[start:start + batch_size].to(prep.device)).sum()
    return correct.item() / len(y)


def _write_history(out: Path, history: list[dict]) -> None:
    write_json_atomic(out / "history.json", history)
    write_csv_atomic(out / "history.csv", history, ["epoch", "loss", "accuracy", "val_accuracy", "lr", "time"])


def plot_history(history: list[dict], path: Path, *, title: str = "") -> None:
    """Learning curves (training loss; train/val accuracy) to a PNG, headless."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.5))
    a.plot(ep, [h["loss"] for h in history], marker=".")
    a.set(xlabel="epoch", ylabel="training loss")
    b.plot(ep, [h["accuracy"] for h in history], marker=".", label="train")
    b.plot(ep, [h["val_accuracy"] if h["val_accuracy"] is not None else math.nan for h in history],
           marker=".", label="validation")
    b.set(xlabel="epoch", ylabel="accuracy")
    b.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path.with_name(path.name + ".tmp.png"), dpi=100)
    plt.close(fig)
    os.replace(path.with_name(path.name + ".tmp.png"), path)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _default_threads(cfg: TrainConfig) -> int | None:
    """Tiny models gain nothing from intra-op threads on CPU and lose a lot on a busy machine."""
    from .models import get_model_info, list_models

    cpu = cfg.device == "cpu" or (cfg.device == "auto" and not torch.cuda.is_available())
    return get_model_info(cfg.model).cpu_threads if cpu and cfg.model in list_models() else None


def _setup(cfg: TrainConfig):
    """Data, model, loss and optimizer of a run; raises ValueError/FileNotFoundError on bad input."""
    from .data import load_dataset
    from .losses import get_loss
    from .models import build_model, default_image_size, get_model_info

    device = resolve_device(cfg.device)
    try:
        minfo = get_model_info(cfg.model)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    try:
        data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed,
                            val_fraction=cfg.val_fraction, train_fraction=cfg.train_fraction,
                            label_noise=cfg.label_noise)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    c, h, _ = data.image_shape
    size = cfg.image_size or default_image_size(cfg.model, h)
    try:
        criterion = get_loss(cfg.loss, **cfg.loss_kwargs)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    except TypeError as exc:
        raise ValueError(f"bad loss_kwargs for loss {cfg.loss!r}: {exc}") from None
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, num_classes=data.num_classes, in_channels=c, image_size=size)
    model = model.to(device, memory_format=torch.channels_last)
    criterion = criterion.to(device)
    gen = torch.Generator().manual_seed(cfg.seed)
    augment = data.augment if cfg.augment is None else cfg.augment
    prep = _Batches(device=device, in_channels=minfo.in_channels, image_size=size, augment=augment,
                    generator=gen)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        for split in ("x_train", "x_val", "x_test"):
            x = getattr(data, split)
            if isinstance(x, Tensor) and x.numel() * x.element_size() < 4 << 30:
                setattr(data, split, x.to(device))
    return device, data, model, criterion, prep, gen, size


def train(config: TrainConfig, *, out_dir: str | Path | None = None, progress: bool = True,
          resume: bool = True) -> RunResult:
    """Train ``config.model`` on ``config.dataset`` with ``config.loss``; return a :class:`RunResult`.

    Raises ``ValueError``/``FileNotFoundError`` for a bad config or missing/corrupt data (before any
    training). NaN/inf loss -> status ``"diverged"`` with ``error="diverged at epoch k (loss nan)"``;
    an exception inside the loop -> status ``"failed"`` with a one-line error. With ``out_dir``:
    config.json, history.csv/.json (each epoch), result.json, learning_curve.png, and an atomic
    checkpoint.pt each epoch from which an identical config resumes (``resume=True``).
    """
    from tqdm.auto import tqdm

    from .data import take

    cfg = config
    cfg.validate()
    t0 = time.perf_counter()
    old_threads = torch.get_num_threads()
    threads = cfg.threads or _default_threads(cfg)
    if threads:
        torch.set_num_threads(threads)
    try:
        device, data, model, criterion, prep, gen, size = _setup(cfg)
        out = Path(out_dir) if out_dir is not None else None
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(out / "config.json", {**cfg.to_dict(), "resolved_image_size": size,
                                                    "resolved_augment": prep.augment,
                                                    "resolved_device": str(device)})
        optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
            min_lr=cfg.min_lr)
        state = {"epoch": 0, "steps": 0, "history": []}
        ckpt = out / "checkpoint.pt" if out is not None else None
        if ckpt is not None and resume and ckpt.is_file():
            saved = torch.load(ckpt, weights_only=True, map_location="cpu")
            if saved.get("config") == cfg.to_dict():
                model.load_state_dict(saved["model"])
                optimizer.load_state_dict(saved["optimizer"])
                scheduler.load_state_dict(saved["scheduler"])
                gen.set_state(saved["generator"])
                torch.set_rng_state(saved["torch_rng"])
                state = {k: saved[k] for k in ("epoch", "steps", "history")}
                state.update(best_val=saved.get("best_val", -1.0), best_model=saved.get("best_model"))
        result = _loop(cfg, state, device, data, model, criterion, prep, gen, optimizer, scheduler,
                       out, ckpt, progress, tqdm, take)
    finally:
        torch.set_num_threads(old_threads)
    result.wall_time = time.perf_counter() - t0
    if out is not None:
        write_json_atomic(out / "result.json", result.to_dict())
        if result.history:
            plot_history(result.history, out / "learning_curve.png",
                         title=f"{cfg.model} on {cfg.dataset}, loss {cfg.loss}")
    return result


def _loop(cfg, state, device, data, model, criterion, prep, gen, optimizer, scheduler, out, ckpt,
          progress, tqdm, take) -> RunResult:
    penalty = getattr(criterion, "penalty", None)
    history: list[dict] = state["history"]
    steps = state["steps"]
    n = len(data.y_train)
    y_train = data.y_train.to(device)
    sync_every = 1 if device.type == "cpu" else 50
    status, error = "ok", None
    best_val, best_model = state.get("best_val", -1.0), state.get("best_model")

    def result(test: float | None) -> RunResult:
        vals = [h["val_accuracy"] for h in history if h["val_accuracy"] is not None]
        return RunResult(status, test, history[-1]["val_accuracy"] if history else None,
                         max(vals) if vals else None, len(history), steps, history, 0.0, error,
                         cfg.to_dict())

    try:
        for epoch in range(state["epoch"] + 1, cfg.epochs + 1):
            if cfg.max_steps is not None and steps >= cfg.max_steps:
                break
            t_epoch = time.perf_counter()
            model.train()
            perm = torch.randperm(n, generator=gen)
            if n % cfg.batch_size == 1 and n > 1:          # BatchNorm cannot train on one sample
                perm = perm[:-1]
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), dtype=torch.long, device=device)
            seen = 0
            bar = tqdm(range(0, len(perm), cfg.batch_size), desc=f"epoch {epoch}/{cfg.epochs}",
                       disable=not progress, leave=False, unit="batch")
            for start in bar:
                idx = perm[start:start + cfg.batch_size]
                xb = prep(take(data.x_train, idx), train=True)
                yb = y_train[idx.to(device)] if device.type != "cpu" else y_train[idx]
                with _autocast(device, cfg.amp):
                    logits = model(xb)
                loss = criterion(logits.float(), yb)
                if penalty is not None:
                    loss = loss + penalty(model)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                steps += 1
                loss_sum += loss.detach() * len(idx)
                correct += (logits.detach().argmax(1) == yb).sum()
                seen += len(idx)
                if steps % sync_every == 0 and not math.isfinite(loss_sum.item()):
                    break
                if cfg.max_steps is not None and steps >= cfg.max_steps:
                    break
            bar.close()
            train_loss = loss_sum.item() / max(seen, 1)
            if not math.isfinite(train_loss):
                status, error = "diverged", f"diverged at epoch {epoch} (loss {train_loss})"
                break
            val = evaluate(model, data.x_val, data.y_val, prep, batch_size=cfg.eval_batch_size, amp=cfg.amp)
            train_acc = correct.item() / max(seen, 1)
            scheduler.step(val if val is not None else train_acc)
            if cfg.restore_best and val is not None and val > best_val:   # ModelCheckpoint(save_best_only)
                best_val = val
                best_model = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
            history.append({"epoch": epoch, "loss": train_loss, "accuracy": train_acc,
                            "val_accuracy": val, "lr": optimizer.param_groups[0]["lr"],
                            "time": time.perf_counter() - t_epoch})
            if progress:
                tqdm.write(f"epoch {epoch}/{cfg.epochs}: loss {train_loss:.4f} acc {train_acc:.4f} "
                           f"val {val if val is None else round(val, 4)} lr {history[-1]['lr']:.2g}")
            if out is not None:
                _write_history(out, history)
                torch.save({"config": cfg.to_dict(), "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                            "epoch": epoch, "steps": steps, "history": history,
                            "best_val": best_val, "best_model": best_model},
                           ckpt.with_name("checkpoint.pt.tmp"))
                os.replace(ckpt.with_name("checkpoint.pt.tmp"), ckpt)
        if status != "ok":
            return result(None)
        if best_model is not None:
            model.load_state_dict(best_model)
        test = evaluate(model, data.x_test, data.y_test, prep, batch_size=cfg.eval_batch_size, amp=cfg.amp)
        return result(test)
    except (KeyboardInterrupt, MemoryError):
        raise
    except Exception as exc:                                # recorded, not a traceback
        status, error = "failed", _one_line(exc)
        return result(None)
