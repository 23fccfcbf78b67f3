"""The parts of one training run (:mod:`ngl.train`): the choices of model and augmentation, the
output folder's guard, the preprocessor, and the checkpoint.

An output folder holds one run. A second ``ngl train --out DIR`` with another config is refused
(``--overwrite`` or a new folder), a finished run is never replaced silently, a checkpoint resumes
only the config that wrote it, and a write that fails (read-only folder, full disk) is one line
that leaves no temp file behind.
"""
from __future__ import annotations

import contextlib
import errno
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .errors import InputError, UnknownNameError, UserError, one_line
from .fileio import read_json_object, write_json_atomic

__all__ = ["Preprocessor", "Run", "RunState", "OutputError", "setup", "prepare_out", "resolve_device",
           "writing", "OUTPUT_FILES", "CHECKPOINT_VERSION"]

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


def resolve_device(device: str) -> torch.device:
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device='cuda' but no CUDA device is available; use 'auto' or 'cpu'")
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Preprocessor:
    """Turns stored uint8/float images into model inputs on ``device``, batch-wise: uint8 scaled to
    [-1, 1], augmentation (training only, at the stored size), channels matched, resized,
    channels-last."""

    def __init__(self, *, device: torch.device, in_channels: int | None, image_size: int,
                 augment: tuple[str, ...], generator: torch.Generator):
        self.device, self.in_channels, self.size = device, in_channels, image_size
        self.augment, self.generator = tuple(augment), generator
        self.channels_last = True      # NHWC: faster convolutions, pooling and BN on CPU (oneDNN) and GPU

    def __call__(self, x: Tensor, *, train: bool) -> Tensor:
        from .data import augment_batch

        x = x.to(self.device, non_blocking=True)
        x = x.float().mul_(1 / 127.5).sub_(1.0) if x.dtype == torch.uint8 else x.float()
        if train and self.augment:                     # at the stored size, before upsampling
            x = augment_batch(x, generator=self.generator, zoom=0.2 if "zoom" in self.augment else 0.0,
                              shift=0.1 if "shift" in self.augment else 0.0, hflip="flip" in self.augment)
        if self.in_channels and x.shape[1] != self.in_channels:
            x = x.expand(-1, self.in_channels, -1, -1) if x.shape[1] == 1 else x[:, :self.in_channels]
        h = x.shape[-1]
        if h != self.size or x.shape[-2] != self.size:
            integer = self.size % h == 0 and x.shape[-2] == h
            x = F.interpolate(x, size=(self.size, self.size), mode="nearest" if integer else "bilinear",
                              align_corners=None if integer else False)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


@dataclass
class RunState:
    """What changes from epoch to epoch (and is checkpointed)."""
    epoch: int = 0
    steps: int = 0
    history: list[dict] = field(default_factory=list)
    best_val: float = -1.0
    best_model: dict | None = None


@dataclass
class Run:
    """The fixed parts of one run, built by :func:`setup`."""
    cfg: Any                                  # TrainConfig
    device: torch.device
    data: Any                                 # ngl.data.DataSplits
    model: nn.Module
    criterion: nn.Module
    prep: Preprocessor
    gen: torch.Generator
    optimizer: torch.optim.Optimizer
    scheduler: Any
    choices: dict                             # model, model_why, augment, augment_why, image_size
    out: Path | None = None
    progress: bool = False

    def choice_lines(self) -> list[str]:
        """One line each: the model and the augmentation used, and why."""
        c = self.choices
        return [f"model: {c['model']} at {c['image_size']} px ({c['model_why']})",
                f"augment: {c['augment']} ({c['augment_why']})"]

    def write_config(self) -> None:
        """config.json: the config plus what was resolved from it."""
        c = self.choices
        doc = {**self.cfg.to_dict(), "resolved_model": c["model"], "resolved_image_size": c["image_size"],
               "resolved_augment": c["augment"], "resolved_device": str(self.device)}
        with writing(self.out / "config.json"):
            self.out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.out / "config.json", doc)

    def save_checkpoint(self, state: RunState) -> None:
        """Atomic checkpoint.pt (temp file + rename); a failed write removes the temp file."""
        ckpt = self.out / "checkpoint.pt"
        tmp = ckpt.with_name("checkpoint.pt.tmp")
        doc = {"version": CHECKPOINT_VERSION, "config": self.cfg.to_dict(), "model": self.model.state_dict(),
               "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
               "generator": self.gen.get_state(), "torch_rng": torch.get_rng_state(),
               "epoch": state.epoch, "steps": state.steps, "history": state.history,
               "best_val": state.best_val, "best_model": state.best_model}
        with writing(ckpt):
            try:
                torch.save(doc, tmp)
                os.replace(tmp, ckpt)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise

    def start(self, *, resume: bool) -> RunState:
        """A fresh :class:`RunState`, or the checkpoint's when resuming (refusing a foreign one)."""
        ckpt = self.out / "checkpoint.pt" if self.out is not None else None
        if ckpt is None or not resume or not ckpt.is_file():
            return RunState()
        try:
            return self._load(ckpt)
        except Exception as exc:              # corrupt zip, foreign pickle, wrong shapes, ...
            raise InputError(f"checkpoint {ckpt} is corrupt or not from this run ({one_line(exc, limit=160)}); "
                             f"start afresh with --no-resume") from None

    def _load(self, ckpt: Path) -> RunState:
        saved = torch.load(ckpt, weights_only=True, map_location="cpu")
        if not isinstance(saved, dict) or not _CKPT_KEYS <= set(saved):
            raise ValueError("not an ngl training checkpoint")
        if saved.get("version", CHECKPOINT_VERSION) != CHECKPOINT_VERSION:
            raise ValueError(f"checkpoint version {saved['version']}, this ngl reads {CHECKPOINT_VERSION}")
        if saved["config"] != self.cfg.to_dict():
            raise ValueError("it was written by another config")
        epoch, steps = saved["epoch"], saved["steps"]
        if not (isinstance(epoch, int) and 0 <= epoch <= self.cfg.epochs and isinstance(steps, int)
                and steps >= 0 and len(saved["history"]) == epoch):
            raise ValueError(f"epoch {epoch!r} / steps {steps!r} do not fit the config")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        self.gen.set_state(saved["generator"])
        torch.set_rng_state(saved["torch_rng"])
        return RunState(epoch, steps, saved["history"], saved.get("best_val", -1.0), saved.get("best_model"))


# --------------------------------------------------------------------------- the output folder
def _config_diff(saved: dict, cfg: dict) -> list[str]:
    keys = sorted(k for k in set(saved) | set(cfg) if not k.startswith("resolved_") and saved.get(k) != cfg.get(k))
    return [f"{k}: {saved.get(k)!r} -> {cfg.get(k)!r}" for k in keys]


def prepare_out(out_dir: str | Path | None, cfg: Any, *, resume: bool, overwrite: bool) -> Path | None:
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


def _refuse_other_run(out: Path, cfg: Any, *, resume: bool) -> None:
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


# --------------------------------------------------------------------------- setup
def _build_loss(cfg: Any) -> nn.Module:
    from .losses import get_loss

    try:
        return get_loss(cfg.loss, **cfg.loss_kwargs)
    except UserError:
        raise
    except KeyError as exc:
        raise UnknownNameError(exc.args[0] if exc.args else str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad loss_kwargs {cfg.loss_kwargs} for loss {cfg.loss!r}: {one_line(exc)}") from None


def _choose(cfg: Any, data: Any) -> dict:
    """The model (``auto``: by input size), input size and augmentation of a run, with reasons."""
    from .data.augment import describe, parse_augment
    from .models import choose_model, default_image_size

    _, h, w = data.image_shape
    if cfg.model == "auto":
        model, model_why = choose_model(max(h, w))
        model_why = f"auto: {model_why}; --model to change"
    else:
        model, model_why = cfg.model, "named by --model"
    if cfg.augment is None:
        augment, augment_why = parse_augment(data.augment), data.augment_why
    else:
        augment, augment_why = parse_augment(cfg.augment), "asked for by --augment"
        if "flip" in augment and not data.flip_safe:
            augment_why += f"; flips may change labels of {data.name}"
    return {"model": model, "model_why": model_why, "image_size": cfg.image_size or default_image_size(model, h),
            "augment_parts": augment, "augment": describe(augment), "augment_why": augment_why}


def setup(cfg: Any) -> Run:
    """Data, choices, model, loss, optimizer and schedule of ``cfg`` (a validated TrainConfig);
    sets torch's CPU threads. Raises a :class:`~ngl.errors.UserError` on bad input."""
    from .data import load_dataset
    from .models import build_model, get_model_info

    device = resolve_device(cfg.device)
    if cfg.model != "auto":
        get_model_info(cfg.model)                           # an unknown name fails before loading data
    criterion = _build_loss(cfg)
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, val_fraction=cfg.val_fraction,
                        train_fraction=cfg.train_fraction, label_noise=cfg.label_noise)
    choices = _choose(cfg, data)
    minfo = get_model_info(choices["model"])
    cpu = device.type == "cpu"
    threads = cfg.threads or (minfo.cpu_threads if cpu else None)
    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(cfg.seed)
    model = build_model(choices["model"], num_classes=data.num_classes, in_channels=data.image_shape[0],
                        image_size=choices["image_size"])
    model = model.to(device, memory_format=torch.channels_last)
    gen = torch.Generator().manual_seed(cfg.seed)
    prep = Preprocessor(device=device, in_channels=minfo.in_channels, image_size=choices["image_size"],
                        augment=choices["augment_parts"], generator=gen)
    _to_device(data, device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
        optimizer, mode="max", factor=cfg.plateau_factor, patience=cfg.plateau_patience, min_lr=cfg.min_lr)
    return Run(cfg, device, data, model, criterion.to(device), prep, gen, optimizer, scheduler, choices)


def _to_device(data: Any, device: torch.device) -> None:
    if device.type != "cuda":
        return
    torch.backends.cudnn.benchmark = True
    data.y_train = data.y_train.to(device)
    for split in ("x_train", "x_val", "x_test"):
        x = getattr(data, split)
        if isinstance(x, Tensor) and x.numel() * x.element_size() < 4 << 30:
            setattr(data, split, x.to(device))
