"""Setting up one run: the data, the model and augmentation chosen for it (with reasons), the loss,
the preprocessor, the optimizer and the schedule, all from one checked
:class:`~ngl.runspec.TrainConfig`."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import InputError, UnknownNameError, UserError, one_line
from ..runspec import TrainConfig, parse_augment

__all__ = ["Preprocessor", "Run", "RunState", "setup", "resolve_device", "build_loss", "choose"]


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
        from ..data import augment_batch

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
    cfg: TrainConfig
    device: torch.device
    data: Any                                 # ngl.data.DataSplits
    model: nn.Module
    criterion: nn.Module
    prep: Preprocessor
    gen: torch.Generator
    optimizer: torch.optim.Optimizer
    scheduler: Any                            # ReduceLROnPlateau
    choices: dict                             # model, model_why, augment, augment_why, image_size
    out: Path | None = None
    progress: bool = False

    def choice_lines(self) -> list[str]:
        """One line each: the model and the augmentation used, and why."""
        c = self.choices
        return [f"model: {c['model']} at {c['image_size']} px ({c['model_why']})",
                f"augment: {c['augment']} ({c['augment_why']})"]


def build_loss(cfg: TrainConfig) -> nn.Module:
    """The loss module of ``cfg`` (name, expression file or ``expr:``) with its ``loss_kwargs``."""
    from ..losses import get_loss

    try:
        return get_loss(cfg.loss, **cfg.loss_kwargs)
    except UserError:
        raise
    except KeyError as exc:
        raise UnknownNameError(exc.args[0] if exc.args else str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise InputError(f"bad loss_kwargs {cfg.loss_kwargs} for loss {cfg.loss!r}: {one_line(exc)}") from None


def choose(cfg: TrainConfig, data: Any) -> dict:
    """The model (``auto``: by input size), input size and augmentation of a run, with reasons."""
    from ..data.augment import describe
    from ..models import choose_model, default_image_size

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


def setup(cfg: TrainConfig) -> Run:
    """Data, choices, model, loss, optimizer and schedule of ``cfg`` (a checked TrainConfig);
    sets torch's CPU threads. Raises a :class:`~ngl.errors.UserError` on bad input."""
    from ..data import load_dataset
    from ..models import build_model, get_model_info

    device = resolve_device(cfg.device)
    if cfg.model != "auto":
        get_model_info(cfg.model)                           # an unknown name fails before loading data
    criterion = build_loss(cfg)
    data = load_dataset(cfg.dataset, data_dir=cfg.data_dir, seed=cfg.seed, val_fraction=cfg.val_fraction,
                        train_fraction=cfg.train_fraction, label_noise=cfg.label_noise)
    choices = choose(cfg, data)
    minfo = get_model_info(choices["model"])
    threads = cfg.threads or (minfo.cpu_threads if device.type == "cpu" else None)
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
