"""A run's output folder: it holds one run. A second run with another config is refused
(``--overwrite`` or a new folder), a finished run is never replaced silently, the checkpoint
resumes only the config that wrote it, and a write that fails (read-only folder, full disk) is
one line that leaves no temp file behind. Writes config.json, history.json/.csv, checkpoint.pt
(atomically, each epoch), result.json and learning_curve.png."""
from __future__ import annotations

import contextlib
import errno
import math
import os
from pathlib import Path
from typing import Iterator

import torch

from ..errors import InputError, UserError, one_line
from ..fileio import pyplot, read_json_object, save_figure, write_csv_atomic, write_json_atomic
from ..runspec import RunResult, TrainConfig
from .setup import Run, RunState

__all__ = ["OutputError", "writing", "prepare_out", "write_config", "write_history", "save_checkpoint",
           "start_state", "write_outputs", "plot_history", "OUTPUT_FILES", "CHECKPOINT_VERSION"]

#: what a run writes into its folder (``--overwrite`` removes exactly these)
OUTPUT_FILES = ("config.json", "history.json", "history.csv", "result.json", "learning_curve.png",
                "checkpoint.pt", "checkpoint.pt.tmp")
#: format version stored in every checkpoint.pt
CHECKPOINT_VERSION = 1
_CKPT_KEYS = {"config", "model", "optimizer", "scheduler", "generator", "torch_rng", "epoch", "steps",
              "history"}


class OutputError(UserError, OSError):
    """The output folder cannot take the run (read-only, full disk, a file, another run's results)."""


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` while writing ``path`` into one :class:`OutputError` line."""
    try:
        yield
    except OSError as exc:
        if isinstance(exc, UserError):
            raise
        why = "the disk is full" if exc.errno == errno.ENOSPC else (exc.strerror or one_line(exc))
        raise OutputError(f"cannot write {path}: {why}; free space or choose another --out folder") from None


# --------------------------------------------------------------------------- the guard
def _config_diff(saved: dict, cfg: dict) -> list[str]:
    keys = sorted(k for k in set(saved) | set(cfg) if not k.startswith("resolved_") and saved.get(k) != cfg.get(k))
    return [f"{k}: {saved.get(k)!r} -> {cfg.get(k)!r}" for k in keys]


def prepare_out(out_dir: str | Path | None, cfg: TrainConfig, *, resume: bool, overwrite: bool) -> Path | None:
    """The output folder (created later, with config.json); refuses a file, a read-only folder,
    another config's run, and (without ``resume``) a finished run, unless ``overwrite`` (which
    removes the previous run's files)."""
    if out_dir is None:
        return None
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} is a file; give a folder (new or holding this run)")
    if out.is_dir() and not overwrite:
        _refuse_other_run(out, cfg, resume=resume)
    if out.is_dir():                                        # created when the config is written
        with writing(out):
            if not os.access(out, os.W_OK):
                raise PermissionError(errno.EACCES, "the folder is read-only")
            if overwrite:
                for name in OUTPUT_FILES:
                    (out / name).unlink(missing_ok=True)
    return out


def _refuse_other_run(out: Path, cfg: TrainConfig, *, resume: bool) -> None:
    conf = out / "config.json"
    hint = "pass --overwrite to replace it, or choose another --out folder"
    if conf.is_file():
        try:
            saved = read_json_object(conf, what="run config")
        except UserError as exc:
            raise OutputError(f"{out} holds an unreadable run ({one_line(exc, limit=120)}); {hint}") from None
        diff = _config_diff(saved, cfg.to_dict())
        if diff:
            more = f" and {len(diff) - 3} more" if len(diff) > 3 else ""
            raise OutputError(f"{out} holds a run with another config ({'; '.join(diff[:3])}{more}); {hint}")
    if not resume and (out / "result.json").is_file():
        raise OutputError(f"{out} holds a finished run of this config; drop --no-resume to keep it, "
                          f"or pass --overwrite to train it again")


# --------------------------------------------------------------------------- what a run writes
def write_config(run: Run) -> None:
    """config.json: the config plus what was resolved from it."""
    c = run.choices
    doc = {**run.cfg.to_dict(), "resolved_model": c["model"], "resolved_image_size": c["image_size"],
           "resolved_augment": c["augment"], "resolved_device": str(run.device)}
    with writing(run.out / "config.json"):
        run.out.mkdir(parents=True, exist_ok=True)
        write_json_atomic(run.out / "config.json", doc)


def write_history(out: Path, history: list[dict]) -> None:
    with writing(out / "history.json"):
        write_json_atomic(out / "history.json", history)
        write_csv_atomic(out / "history.csv", history, ["epoch", "loss", "accuracy", "val_accuracy", "lr", "time"])


def save_checkpoint(run: Run, state: RunState) -> None:
    """Atomic checkpoint.pt (temp file + rename); a failed write removes the temp file."""
    ckpt = run.out / "checkpoint.pt"
    tmp = ckpt.with_name("checkpoint.pt.tmp")
    doc = {"version": CHECKPOINT_VERSION, "config": run.cfg.to_dict(), "model": run.model.state_dict(),
           "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
           "generator": run.gen.get_state(), "torch_rng": torch.get_rng_state(),
           "epoch": state.epoch, "steps": state.steps, "history": state.history,
           "best_val": state.best_val, "best_model": state.best_model}
    with writing(ckpt):
        try:
            torch.save(doc, tmp)
            os.replace(tmp, ckpt)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise


def start_state(run: Run, *, resume: bool) -> RunState:
    """A fresh :class:`RunState`, or the checkpoint's when resuming (refusing a foreign one)."""
    ckpt = run.out / "checkpoint.pt" if run.out is not None else None
    if ckpt is None or not resume or not ckpt.is_file():
        return RunState()
    try:
        return _load(run, ckpt)
    except Exception as exc:              # corrupt zip, foreign pickle, wrong shapes, ...
        raise InputError(f"checkpoint {ckpt} is corrupt or not from this run ({one_line(exc, limit=160)}); "
                         f"start afresh with --no-resume") from None


def _load(run: Run, ckpt: Path) -> RunState:
    saved = torch.load(ckpt, weights_only=True, map_location="cpu")
    if not isinstance(saved, dict) or not _CKPT_KEYS <= set(saved):
        raise ValueError("not an ngl training checkpoint")
    if saved.get("version", CHECKPOINT_VERSION) != CHECKPOINT_VERSION:
        raise ValueError(f"checkpoint version {saved['version']}, this ngl reads {CHECKPOINT_VERSION}")
    if saved["config"] != run.cfg.to_dict():
        raise ValueError("it was written by another config")
    epoch, steps = saved["epoch"], saved["steps"]
    if not (isinstance(epoch, int) and 0 <= epoch <= run.cfg.epochs and isinstance(steps, int)
            and steps >= 0 and len(saved["history"]) == epoch):
        raise ValueError(f"epoch {epoch!r} / steps {steps!r} do not fit the config")
    run.model.load_state_dict(saved["model"])
    run.optimizer.load_state_dict(saved["optimizer"])
    run.scheduler.load_state_dict(saved["scheduler"])
    run.gen.set_state(saved["generator"])
    torch.set_rng_state(saved["torch_rng"])
    return RunState(epoch, steps, saved["history"], saved.get("best_val", -1.0), saved.get("best_model"))


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


def write_outputs(run: Run, result: RunResult) -> None:
    """result.json and learning_curve.png next to the history."""
    with writing(run.out / "result.json"):
        write_json_atomic(run.out / "result.json", result.to_dict())
        if result.history:
            cfg = run.cfg
            plot_history(result.history, run.out / "learning_curve.png",
                         title=f"{run.choices['model']} on {cfg.dataset}, loss {cfg.loss}")
