"""Model registry: the protocol's ResNet50 / InceptionV3 with the paper's 9-layer head, and small
CPU models for tests, demos, GP fitness and users' own images.

>>> from ngl.models import build_model, choose_model, list_models
>>> model = build_model("cnn_small", num_classes=10, in_channels=1, image_size=8)
>>> model(torch.zeros(2, 1, 8, 8)).shape
torch.Size([2, 10])
>>> choose_model(8)[0], choose_model(28)[0]
('cnn_small', 'resnet_small')

All models output logits (the head's softmax lives in the loss).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .errors import InputError
from .registry import Registry

__all__ = ["ModelInfo", "MODELS", "register_model", "list_models", "get_model_info", "build_model",
           "paper_head", "default_image_size", "choose_model", "AUTO_SMALL_MAX"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]    # (num_classes, in_channels, image_size) -> nn.Module
    summary: str
    in_channels: int | None = None     # required input channels (gray is repeated); None = any
    min_size: int = 1                  # smallest input side the network accepts
    upsample_to: int | None = None     # default: double small inputs until their side >= this
    cpu_threads: int | None = None     # default torch threads on CPU (tiny models: 1, no sync overhead)


#: every model, by name; ``--model`` choices, tests and reports come from it
MODELS: Registry[ModelInfo] = Registry("model", hint="or 'auto' (chosen by input size)")

#: ``model="auto"`` picks ``cnn_small`` up to this input side, ``resnet_small`` above it
AUTO_SMALL_MAX = 16


def register_model(info: ModelInfo) -> ModelInfo:
    """Add ``info`` to :data:`MODELS` under ``info.name`` (a name already taken is an error)."""
    return MODELS.add(info.name, info)


def list_models() -> list[str]:
    return MODELS.names()


def get_model_info(name: str) -> ModelInfo:
    """The registered model ``name``; :class:`~ngl.errors.UnknownNameError` (a ``KeyError``) naming
    close matches otherwise."""
    return MODELS.get(name)


def choose_model(side: int) -> tuple[str, str]:
    """``(model, reason)`` for ``model="auto"`` on images of side ``side`` (pixels).

    Tiny images (the 8x8 digits) train best and fastest on ``cnn_small``; from 17 px up, a small
    ResNet (:func:`_resnet_small`) is competitive and still fits a CPU budget.
    """
    if side <= AUTO_SMALL_MAX:
        return "cnn_small", f"{side}x{side} inputs are tiny (<= {AUTO_SMALL_MAX} px)"
    return "resnet_small", f"{side}x{side} inputs (> {AUTO_SMALL_MAX} px): a small ResNet fits them"


def default_image_size(name: str, native: int) -> int:
    """The model's input side for data of side ``native``: doubled until ``>= upsample_to`` (the
    published example upsamples CIFAR 32 -> 256 by three 2x steps), and at least ``min_size``."""
    info = get_model_info(name)
    size = native
    if info.upsample_to:
        while size < info.upsample_to:
            size *= 2
    return max(size, info.min_size)


def build_model(name: str, *, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    """A freshly initialised model (no pretrained weights) producing ``num_classes`` logits."""
    info = get_model_info(name)
    if image_size < info.min_size:
        raise InputError(f"model {name!r} needs inputs of at least {info.min_size}x{info.min_size}, "
                         f"got image_size={image_size}")
    channels = info.in_channels or in_channels
    return info.build(num_classes=num_classes, in_channels=channels, image_size=image_size)


def paper_head(in_features: int, num_classes: int) -> nn.Sequential:
    """The paper's 9 new layers: Flatten, BN, Dense 128 relu, Dropout .5, BN, Dense 64 relu,
    Dropout .5, BN, Dense classes (logits; softmax is in the loss). BN eps/momentum as Keras."""
    def bn(n: int) -> nn.BatchNorm1d:
        return nn.BatchNorm1d(n, eps=1e-3, momentum=0.01)

    return nn.Sequential(
        nn.Flatten(), bn(in_features), nn.Linear(in_features, 128), nn.ReLU(inplace=True),
        nn.Dropout(0.5), bn(128), nn.Linear(128, 64), nn.ReLU(inplace=True), nn.Dropout(0.5),
        bn(64), nn.Linear(64, num_classes))


def _resnet50(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    from torchvision.models import resnet50

    m = resnet50(weights=None)
    m.avgpool = nn.AdaptiveMaxPool2d(1)             # Keras pooling='max'
    m.fc = paper_head(m.fc.in_features, num_classes)
    return m


def _inception_v3(*, num_classes: int, in_channels: int, image_size: int) -> nn.Module:
    from torchvision.models import inception_v3

    m = inception_v3(weights=None, aux_logits=False, transform_input=False, init_weights=True)
    m.avgpool = nn.AdaptiveMaxPool2d(1)
    m.dropout = nn.Identity()                       # Keras include_top=False has no dropout
    m.fc = paper_head(m.fc.in_features, num_classes)
    return m


def _mlp(*, num_classes: int, in_channels: int, image_size: int, hidden: int = 256) -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(in_channels * image_size * image_size, hidden),
                         nn.ReLU(inplace=True), nn.Linear(hidden, num_classes))


def _cnn_small(*, num_classes: int, in_channels: int, image_size: int, width: int = 32) -> nn.Module:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    return nn.Sequential(*block(in_channels, width), *block(width, width), nn.MaxPool2d(2),
                         *block(width, 2 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(2 * width, num_classes))


class _BasicBlock(nn.Module):
    """ResNet basic block (He et al. 2016): two 3x3 conv-BN, identity or 1x1 projection shortcut."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout))
        self.shortcut = nn.Identity() if stride == 1 and cin == cout else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.shortcut(x))


def _resnet_small(*, num_classes: int, in_channels: int, image_size: int,
                  widths: tuple[int, int, int] = (32, 64, 128)) -> nn.Module:
    """3x3 conv stem and 2x2 max pool, three basic blocks (stride 1, 2, 2), global average pool,
    linear. At 28 px the blocks run at 14, 7 and 4 px, so the net sees a whole digit yet costs less
    per step than ``cnn_small`` (whose two 32-channel layers run at full size). Inputs above 40 px
    get a stride-2 stem, so 64 px costs about what 32 px does."""
    w0, w1, w2 = widths
    return nn.Sequential(
        nn.Conv2d(in_channels, w0, 3, 2 if image_size > 40 else 1, 1, bias=False), nn.BatchNorm2d(w0),
        nn.ReLU(inplace=True), nn.MaxPool2d(2),
        _BasicBlock(w0, w0, 1), _BasicBlock(w0, w1, 2), _BasicBlock(w1, w2, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(w2, num_classes))


for _info in [
    ModelInfo("mlp", _mlp, "one hidden layer of 256 ReLU units (CPU, seconds)", cpu_threads=1),
    ModelInfo("cnn_small", _cnn_small, "3 conv-BN-ReLU layers, max pool, global average pool (CPU, seconds)",
              min_size=2, cpu_threads=1),
    ModelInfo("resnet_small", _resnet_small,
              "small ResNet: 3x3 stem + max pool, 3 basic blocks (32/64/128), average pool; 17-64 px images (CPU, minutes)",
              min_size=8, cpu_threads=1),
    ModelInfo("resnet50", _resnet50, "torchvision ResNet50 (weights=None), global max pool, paper head",
              in_channels=3, min_size=32, upsample_to=200),
    ModelInfo("inception_v3", _inception_v3,
              "torchvision InceptionV3 (weights=None, no aux), global max pool, paper head",
              in_channels=3, min_size=75, upsample_to=200),
]:
    register_model(_info)
del _info
