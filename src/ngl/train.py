"""The training harness: one seeded run of (dataset, model, loss) under the published protocol.

>>> from ngl.train import TrainConfig, train
>>> result = train(TrainConfig(dataset="digits", model="mlp", epochs=2, threads=1), progress=False)
>>> result.status, result.epochs_run, result.test_accuracy > 0.8
('ok', 2, True)

Protocol (REFERENCE.md section 2): Adam (lr 1e-3), batch 128, ReduceLROnPlateau on validation
accuracy (factor 0.2, patience 5, min_lr 1e-4), zoom 0.2 / shift 0.1 / horizontal-flip augmentation
for flip-safe datasets, 10% of train held out for validation (random_state 42), images scaled to
[-1, 1]. A registered loss's ``penalty(model)`` (CE + L2) is added to every step's loss.

On data ngl does not know (``npz:``, ``folder:``) the defaults use no augmentation (never a flip:
it changes digits, text, handedness) and ``model="auto"`` picks the model by input size
(:func:`ngl.models.choose_model`); ``train`` prints both choices and why.
"""
from __future__ import annotations

import contextlib
import json
import math
import sys
import time
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch
from torch import Tensor, nn

from .config import check_value, from_mapping, opt
from .errors import InputError, UserError, one_line
from .fileio import pyplot, save_figure, write_csv_atomic, write_json_atomic
from .trainrun import (OutputError, Preprocessor, Run, RunState, prepare_out, resolve_device, setup,
                       writing)

__all__ = ["TrainConfig", "RunResult", "train", "train_one_epoch", "validate", "evaluate",
           "resolve_device", "Preprocessor", "OutputError", "MAX_IMAGE_SIZE", "plot_history"]

#: the largest ``image_size`` accepted (a side of 100,000 px would allocate terabytes)
MAX_IMAGE_SIZE = 2048

_WHAT, _PROTOCOL, _EXEC = "what to train", "protocol", "execution and output"


#: where a run trains: ``auto`` is CUDA when present, else the CPU
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Everything that defines a run; ``to_dict``/``from_dict`` round-trip through JSON. The fields
    (with their help) generate ``ngl train``'s flags."""
    dataset: str = opt("digits", "dataset name, folder:PATH or npz:PATH", group=_WHAT)
    model: str = opt("auto", "model name, or auto: cnn_small up to 16 px, resnet_small above",
                     group=_WHAT)
    loss: str = opt("ce", "loss name, *.json expression file or 'expr:<infix>'", group=_WHAT)
    loss_kwargs: dict = opt(help="loss hyperparameters as JSON, e.g. '{\"gamma\": 1.5}'",
                            factory=dict, group=_WHAT)
    data_dir: str | None = opt(None, "folder holding the dataset files (default: $NGL_DATA_DIR or ./data)",
                               group=_WHAT)
    epochs: int = opt(20, "training epochs; the paper used 200", group=_PROTOCOL)
    batch_size: int = opt(128, "batch size", group=_PROTOCOL)
    lr: float = opt(1e-3, "Adam learning rate", group=_PROTOCOL)
    seed: int = opt(0, "seed of init, shuffling, augmentation and label noise", group=_PROTOCOL)
    label_noise: float = opt(0.0, "fraction of training labels set to a random other class",
                             group=_PROTOCOL)
    train_fraction: float = opt(1.0, "stratified, seeded fraction of the training split to use",
                                group=_PROTOCOL)
    val_fraction: float = opt(0.1, "stratified validation hold-out of train (random_state 42)",
                              group=_PROTOCOL)
    augment: bool | str | None = opt(
        None, "comma list of flip, shift, zoom, or none (default: per dataset: the protocol's on "
              "flip-safe datasets such as CIFAR, none on digits and on npz:/folder: data)",
        group=_PROTOCOL, metavar="PARTS")
    image_size: int | None = opt(None, "model input side; small images are upsampled (default: the "
                                       "model's, e.g. 32 -> 256 for resnet50/inception_v3)", group=_PROTOCOL)
    plateau_factor: float = opt(0.2, "ReduceLROnPlateau factor", group=_PROTOCOL)
    plateau_patience: int = opt(5, "ReduceLROnPlateau patience (epochs)", group=_PROTOCOL)
    min_lr: float = opt(1e-4, "ReduceLROnPlateau min_lr", group=_PROTOCOL)
    max_steps: int | None = opt(None, "stop after this many optimizer steps", group=_PROTOCOL)
    restore_best: bool = opt(True, "test the best-validation epoch's weights, as Keras' "
                                   "ModelCheckpoint(save_best_only=True); --no-restore-best: the last's",
                             group=_PROTOCOL)
    device: str = opt("auto", "auto (CUDA when present), cpu or cuda", group=_EXEC,
                      choices=lambda: list(DEVICES))
    amp: bool = opt(True, "bf16 autocast on CUDA", group=_EXEC)
    threads: int | None = opt(None, "torch CPU threads (default: torch's; 1 for mlp/cnn_small on CPU)",
                              group=_EXEC)
    eval_batch_size: int = opt(512, "evaluation batch size", group=_EXEC)

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """Build from a mapping; unknown keys (with close matches) and wrong types are refused."""
        return from_mapping(cls, d, what="TrainConfig")

    def validate(self) -> None:
        """Raise :class:`~ngl.errors.InputTypeError` / :class:`~ngl.errors.InputError` (one line,
        naming the field) for a wrongly typed or out-of-range field."""
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            check_value("TrainConfig", f.name, hints[f.name], getattr(self, f.name))
        for name, ok, want in self._range_checks():
            if not ok:
                raise InputError(f"TrainConfig.{name} must be {want}, got {getattr(self, name)!r}")
        from .data.augment import parse_augment
        if self.augment is not None:
            parse_augment(self.augment)

    def _range_checks(self) -> list[tuple[str, bool, str]]:
        opt_min = lambda v, lo: v is None or v >= lo   # noqa: E731
        return [
            ("epochs", self.epochs >= 1, ">= 1"), ("batch_size", self.batch_size >= 1, ">= 1"),
            ("lr", self.lr > 0, "> 0"), ("seed", self.seed >= 0, ">= 0"),
            ("label_noise", 0 <= self.label_noise <= 1, "in [0, 1]"),
            ("train_fraction", 0 < self.train_fraction <= 1, "in (0, 1]"),
            ("val_fraction", 0 <= self.val_fraction < 1, "in [0, 1)"),
            ("max_steps", opt_min(self.max_steps, 1), ">= 1 or None"),
            ("image_size", opt_min(self.image_size, 1) and (self.image_size or 0) <= MAX_IMAGE_SIZE,
             f"in 1..{MAX_IMAGE_SIZE} or None"),
            ("threads", opt_min(self.threads, 1), ">= 1 or None"),
            ("plateau_factor", 0 < self.plateau_factor < 1, "in (0, 1)"),
            ("plateau_patience", self.plateau_patience >= 0, ">= 0"),
            ("min_lr", self.min_lr >= 0, ">= 0"),
            ("eval_batch_size", self.eval_batch_size >= 1, ">= 1"),
            ("dataset", bool(self.dataset), "a dataset name, folder:PATH or npz:PATH"),
            ("model", bool(self.model), "a model name or 'auto'"),
            ("device", self.device in DEVICES, "'auto', 'cpu' or 'cuda'")]


@dataclass
class RunResult:
    status: str                      # "ok" | "diverged" | "failed"
    test_accuracy: float | None      # None with the note "no_test_split", or when not "ok"
    val_accuracy: float | None       # final epoch's
    best_val_accuracy: float | None
    epochs_run: int
    steps: int
    history: list[dict]              # per epoch: epoch, loss, accuracy, val_accuracy, lr, time
    wall_time: float
    error: str | None
    config: dict
    notes: list[str] = field(default_factory=list)   # "no_test_split", "no_validation_split"

    def to_dict(self) -> dict:
        return json.loads(json.dumps(asdict(self)))


def _autocast(device: torch.device, enabled: bool):
    if device.type == "cuda" and enabled:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(model: nn.Module, x, y: Tensor, prep: Preprocessor, *, batch_size: int = 512,
             amp: bool = True) -> float | None:
    """Top-1 accuracy (fraction) of ``model`` on stored images ``x`` with labels ``y``; ``None``
    when there are no samples."""
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


def plot_history(history: list[dict], path: Path, *, title: str = "") -> None:
    """Learning curves (training loss; train/val accuracy) to a PNG, headless."""
    plt = pyplot()
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
    save_figure(fig, path, dpi=100)


def _write_history(out: Path, history: list[dict]) -> None:
    write_json_atomic(out / "history.json", history)
    write_csv_atomic(out / "history.csv", history, ["epoch", "loss", "accuracy", "val_accuracy", "lr", "time"])


def train_one_epoch(run: Run, state: RunState, epoch: int) -> tuple[float, float]:
    """One pass over the (shuffled) training split; returns ``(mean loss, accuracy)``. A non-finite
    loss stops the epoch early and is returned as it is (the caller marks the run diverged)."""
    cfg, device, model = run.cfg, run.device, run.model
    from tqdm.auto import tqdm

    from .data import take

    model.train()
    y_train = run.data.y_train                     # on the device (CUDA: moved once in setup)
    n = len(y_train)
    perm = torch.randperm(n, generator=run.gen)
    if n % cfg.batch_size == 1 and n > 1:          # BatchNorm cannot train on one sample
        perm = perm[:-1]
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen, sync_every = 0, 1 if device.type == "cpu" else 50
    bar = tqdm(range(0, len(perm), cfg.batch_size), desc=f"epoch {epoch}/{cfg.epochs}",
               disable=not run.progress, leave=False, unit="batch")
    for start in bar:
        idx = perm[start:start + cfg.batch_size]
        xb = run.prep(take(run.data.x_train, idx), train=True)
        yb = y_train[idx.to(y_train.device)]
        loss, logits = _step(run, xb, yb)
        state.steps += 1
        loss_sum += loss * len(idx)
        correct += (logits.argmax(1) == yb).sum()
        seen += len(idx)
        if state.steps % sync_every == 0 and not math.isfinite(loss_sum.item()):
            break
        if cfg.max_steps is not None and state.steps >= cfg.max_steps:
            break
    bar.close()
    return loss_sum.item() / max(seen, 1), correct.item() / max(seen, 1)


def _step(run: Run, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
    """One optimizer step; returns the detached loss and logits."""
    with _autocast(run.device, run.cfg.amp):
        logits = run.model(xb)
    loss = run.criterion(logits.float(), yb)
    penalty = getattr(run.criterion, "penalty", None)
    if penalty is not None:
        loss = loss + penalty(run.model)
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    run.optimizer.step()
    return loss.detach(), logits.detach()


def validate(run: Run) -> float | None:
    """Accuracy on the validation split (``None`` without one)."""
    return evaluate(run.model, run.data.x_val, run.data.y_val, run.prep,
                    batch_size=run.cfg.eval_batch_size, amp=run.cfg.amp)


def _end_epoch(run: Run, state: RunState, epoch: int, train_loss: float, train_acc: float,
               t_epoch: float) -> None:
    """Validate, step the schedule, keep the best weights, log, and write history + checkpoint."""
    val = validate(run)
    run.scheduler.step(val if val is not None else train_acc)
    if run.cfg.restore_best and val is not None and val > state.best_val:   # ModelCheckpoint(save_best_only)
        state.best_val = val
        state.best_model = {k: v.detach().to("cpu", copy=True) for k, v in run.model.state_dict().items()}
    state.epoch = epoch
    state.history.append({"epoch": epoch, "loss": train_loss, "accuracy": train_acc,
                          "val_accuracy": val, "lr": run.optimizer.param_groups[0]["lr"],
                          "time": time.perf_counter() - t_epoch})
    if run.progress:
        from tqdm.auto import tqdm
        tqdm.write(f"epoch {epoch}/{run.cfg.epochs}: loss {train_loss:.4f} acc {train_acc:.4f} "
                   f"val {val if val is None else round(val, 4)} lr {state.history[-1]['lr']:.2g}")
    if run.out is not None:
        with writing(run.out / "history.json"):
            _write_history(run.out, state.history)
        run.save_checkpoint(state)


def _loop(run: Run, state: RunState) -> RunResult:
    """Epochs from ``state.epoch + 1`` to ``cfg.epochs`` (or ``max_steps``), then the test split."""
    cfg, status, error = run.cfg, "ok", None
    try:
        for epoch in range(state.epoch + 1, cfg.epochs + 1):
            if cfg.max_steps is not None and state.steps >= cfg.max_steps:
                break
            t_epoch = time.perf_counter()
            train_loss, train_acc = train_one_epoch(run, state, epoch)
            if not math.isfinite(train_loss):
                status, error = "diverged", f"diverged at epoch {epoch} (loss {train_loss})"
                break
            _end_epoch(run, state, epoch, train_loss, train_acc, t_epoch)
        test = None
        if status == "ok":
            if state.best_model is not None:
                run.model.load_state_dict(state.best_model)
            test = evaluate(run.model, run.data.x_test, run.data.y_test, run.prep,
                            batch_size=cfg.eval_batch_size, amp=cfg.amp)
        return _result(run, state, status, test, error)
    except (KeyboardInterrupt, MemoryError, UserError):
        raise
    except Exception as exc:                                # recorded, not a traceback
        return _result(run, state, "failed", None, one_line(exc))


def _result(run: Run, state: RunState, status: str, test: float | None, error: str | None) -> RunResult:
    history = state.history
    vals = [h["val_accuracy"] for h in history if h["val_accuracy"] is not None]
    notes = [n for n, missing in (("no_test_split", len(run.data.y_test) == 0),
                                  ("no_validation_split", len(run.data.y_val) == 0)) if missing]
    return RunResult(status, test, history[-1]["val_accuracy"] if history else None,
                     max(vals) if vals else None, len(history), state.steps, history, 0.0, error,
                     run.cfg.to_dict(), notes)


def train(config: TrainConfig, *, out_dir: str | Path | None = None, progress: bool = True,
          resume: bool = True, overwrite: bool = False) -> RunResult:
    """Train ``config.model`` on ``config.dataset`` with ``config.loss``; return a :class:`RunResult`.

    Raises a :class:`~ngl.errors.UserError` (one line) for a bad config, missing/corrupt data, or an
    output folder that cannot take the run, before any training. NaN/inf loss -> status
    ``"diverged"``; an exception inside the loop -> status ``"failed"`` with a one-line error.
    With ``out_dir``: config.json, history.csv/.json (each epoch), result.json, learning_curve.png,
    and an atomic checkpoint.pt each epoch from which the same config resumes (``resume=True``).
    A folder holding another config's run, or a finished run when ``resume=False``, is refused
    unless ``overwrite=True``.
    """
    cfg = config
    cfg.validate()
    t0 = time.perf_counter()
    out = prepare_out(out_dir, cfg, resume=resume, overwrite=overwrite)
    old_threads = torch.get_num_threads()
    try:
        run = setup(cfg)
        run.out, run.progress = out, progress
        if progress:
            for line in run.choice_lines():
                print(line, file=sys.stderr)
        if out is not None:
            run.write_config()
        state = run.start(resume=resume)
        result = _loop(run, state)
    finally:
        torch.set_num_threads(old_threads)
    result.wall_time = time.perf_counter() - t0
    if out is not None:
        _write_outputs(run, result)
    return result


def _write_outputs(run: Run, result: RunResult) -> None:
    """result.json and learning_curve.png next to the history."""
    with writing(run.out / "result.json"):
        write_json_atomic(run.out / "result.json", result.to_dict())
        if result.history:
            cfg = run.cfg
            plot_history(result.history, run.out / "learning_curve.png",
                         title=f"{run.choices['model']} on {cfg.dataset}, loss {cfg.loss}")
