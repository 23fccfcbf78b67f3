"""Model registry: the protocol's ResNet50 / InceptionV3 with the paper's 9-layer head, and small
CPU models for tests, demos and GP fitness.

>>> from ngl.models import build_model, list_models
>>> model = build_model("cnn_small", num_classes=10, in_channels=1, image_size=8)

All models output logits (the head's softmax lives in the loss).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

__all__ = ["ModelInfo", "register_model", "list_models", "get_model_info", "build_model",
           "paper_head", "default_image_size"]


@dataclass(frozen=True)
class ModelInfo:
    name: str
    build: Callable[..., nn.Module]    # (num_classes, in_channels, image_size) -> nn.Module
    summary: str
    in_channels: int | None = None     # required input channels (gray is repeated); None = any
    min_size: int = 1                  # smallest input side the network accepts
    upsample_to: int | None = None     # default: double small inputs until their side >= this
    cpu_threads: int | None = None     # default torch threads on CPU (tiny models: 1, no sync overhead)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(info: ModelInfo) -> ModelInfo:
    _REGISTRY[info.name] = info
    return info


def list_models() -> list[str]:
    return list(_REGISTRY)


def get_model_info(name: str) -> ModelInfo:
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered models: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


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
        raise ValueError(f"model {name!r} needs inputs of at least {info.min_size}x{info.min_size}, "
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


for _info in [
    ModelInfo("mlp", _mlp, "one hidden layer of 256 ReLU units (CPU, seconds)", cpu_threads=1),
    ModelInfo("cnn_small", _cnn_small, "3 conv-BN-ReLU layers, max pool, global average pool (CPU, seconds)",
              min_size=2, cpu_threads=1),
    ModelInfo("resnet50", _resnet50, "torchvision ResNet50 (weights=None), global max pool, paper head",
              in_channels=3, min_size=32, upsample_to=200),
    ModelInfo("inception_v3", _inception_v3,
              "torchvision InceptionV3 (weights=None, no aux), global max pool, paper head",
              in_channels=3, min_size=75, upsample_to=200),
]:
    register_model(_info)
del _info
