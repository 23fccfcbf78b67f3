"""Model registry: shapes, the paper's head, and the torchvision backbones on tiny inputs."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from ngl.errors import UnknownNameError
from ngl.models import (AUTO_SMALL_MAX, MODELS, build_model, choose_model, default_image_size,
                        get_model_info, list_models, paper_head, register_model)


def test_registry():
    assert list_models() == ["mlp", "cnn_small", "resnet_small", "resnet50", "inception_v3"]
    with pytest.raises(UnknownNameError, match="registered: mlp"):
        get_model_info("vgg")
    with pytest.raises(KeyError, match="did you mean 'resnet50'"):       # still a KeyError for callers
        get_model_info("resnet5")
    with pytest.raises(ValueError, match="already registered"):
        register_model(get_model_info("mlp"))
    assert len(MODELS) == 5


@pytest.mark.parametrize("side,expected", [(8, "cnn_small"), (16, "cnn_small"), (17, "resnet_small"),
                                           (28, "resnet_small"), (64, "resnet_small")])
def test_auto_model_is_chosen_by_input_size(side, expected):
    name, why = choose_model(side)
    assert name == expected and f"{side}x{side}" in why
    assert (side <= AUTO_SMALL_MAX) == (name == "cnn_small")


@pytest.mark.parametrize("size", [28, 64])
def test_resnet_small_is_a_residual_net_with_bounded_cost(size):
    """Basic blocks with identity/projection shortcuts; a 64 px input gets a stride-2 stem, so its
    last feature map is no larger than the 28 px one's (4x4)."""
    torch.manual_seed(0)
    m = build_model("resnet_small", num_classes=10, in_channels=1, image_size=size)
    blocks = [b for b in m.modules() if type(b).__name__ == "_BasicBlock"]
    assert len(blocks) == 3
    assert isinstance(blocks[0].shortcut, nn.Identity) and isinstance(blocks[1].shortcut, nn.Sequential)
    feats = m[:-3](torch.randn(2, 1, size, size))
    assert feats.shape[1] == 128 and feats.shape[-1] == 4
    assert m(torch.randn(2, 1, size, size)).shape == (2, 10)
    # a residual block's output equals relu(body(x) + shortcut(x)), computed by hand
    b = blocks[0].eval()
    x = torch.randn(1, 32, 5, 5)
    assert torch.allclose(b(x), torch.relu(b.body(x) + x))


@pytest.mark.parametrize("name,channels,size", [("mlp", 1, 8), ("cnn_small", 1, 8), ("cnn_small", 3, 32),
                                                ("resnet_small", 1, 28), ("resnet_small", 3, 64)])
def test_small_models_output_logits(name, channels, size):
    torch.manual_seed(0)
    m = build_model(name, num_classes=7, in_channels=channels, image_size=size)
    x = torch.randn(5, channels, size, size, requires_grad=True)
    out = m(x)
    assert out.shape == (5, 7)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert sum(p.numel() for p in m.parameters()) < (400_000 if name == "resnet_small" else 100_000)


def test_paper_head_layers():
    head = paper_head(2048, 10)
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Flatten", "BatchNorm1d", "Linear", "ReLU", "Dropout", "BatchNorm1d", "Linear",
                     "ReLU", "Dropout", "BatchNorm1d", "Linear"]
    lin = [m for m in head if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in lin] == [(2048, 128), (128, 64), (64, 10)]
    assert all(m.p == 0.5 for m in head if isinstance(m, nn.Dropout))


def test_default_image_sizes_follow_the_published_upsampling():
    assert default_image_size("inception_v3", 32) == 256                # 32 -> 64 -> 128 -> 256
    assert default_image_size("resnet50", 28) == 224
    assert default_image_size("resnet50", 256) == 256
    assert default_image_size("cnn_small", 8) == 8
    with pytest.raises(ValueError, match="at least 75x75"):
        build_model("inception_v3", num_classes=2, in_channels=3, image_size=64)


@pytest.mark.slow
@pytest.mark.parametrize("name,size", [("resnet50", 32), ("inception_v3", 75)])
def test_backbones_train_a_step_at_small_size(name, size):
    torch.manual_seed(0)
    m = build_model(name, num_classes=3, in_channels=1, image_size=size)
    assert isinstance(m.avgpool, nn.AdaptiveMaxPool2d)                  # Keras pooling='max'
    assert isinstance(m.fc, nn.Sequential) and m.fc[-1].out_features == 3
    assert not any(isinstance(x, nn.Dropout) and x is getattr(m, "dropout", None) for x in m.modules())
    x = torch.randn(2, 3, size, size)
    y = torch.tensor([0, 2])
    opt = torch.optim.Adam(m.parameters(), lr=1e-3)
    before = m.fc[-1].weight.detach().clone()
    loss = nn.functional.cross_entropy(m(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss) and not torch.equal(before, m.fc[-1].weight)
    m.eval()
    with torch.no_grad():
        assert m(x).shape == (2, 3)
