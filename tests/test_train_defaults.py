"""Defaults that fit a user's data (issue 10 item 3): augmentation per dataset kind, the model
chosen by input size, the choices printed, and the accuracy on a stand-in for 28x28 digits."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ngl.cli import main
from ngl.data import get_dataset_info, list_datasets
from ngl.data.augment import parse_augment
from ngl.data.standin import write_elastic_digits
from ngl.errors import InputError
from ngl.train import Preprocessor, TrainConfig, train


def _npz(tmp_path, side: int, n: int = 40, name: str = "d.npz") -> str:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / name, x=rng.integers(0, 256, (n, side, side), dtype=np.uint8), y=np.arange(n) % 4)
    return f"npz:{tmp_path / name}"


def _resolved(tmp_path, **kw) -> dict:
    out = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    r = train(TrainConfig(**{"epochs": 1, "max_steps": 1, "batch_size": 16, "threads": 1, **kw}),
              out_dir=out, progress=False)
    assert r.status == "ok", r.error
    return json.loads((out / "config.json").read_text())


# ----------------------------------------------------------------------------- augmentation
def test_only_flip_safe_datasets_flip_by_default():
    for name in list_datasets():
        info = get_dataset_info(name)
        assert "flip" not in parse_augment(info.augment) or info.flip_safe, name
    assert get_dataset_info("cifar10").augment == "flip,shift,zoom"          # the published protocol
    assert get_dataset_info("digits").augment == "none"
    for spec in ("npz:x.npz", "folder:imgs"):
        info = get_dataset_info(spec)
        assert not info.flip_safe and "flip" not in parse_augment(info.augment)
        assert info.augment == "none" and "never flips" in info.augment_why


def test_augmentation_resolved_per_dataset_kind_and_on_request(tmp_path):
    data = _npz(tmp_path, 8)
    assert _resolved(tmp_path, dataset=data)["resolved_augment"] == get_dataset_info(data).augment
    assert _resolved(tmp_path, dataset="digits", model="mlp")["resolved_augment"] == "none"
    assert _resolved(tmp_path, dataset=data, augment="zoom,flip")["resolved_augment"] == "flip,zoom"
    assert _resolved(tmp_path, dataset=data, augment="none")["resolved_augment"] == "none"
    assert _resolved(tmp_path, dataset=data, augment=True)["resolved_augment"] == "flip,shift,zoom"
    with pytest.raises(InputError, match="unknown augmentation 'rotate'"):
        train(TrainConfig(dataset=data, augment="flip,rotate"), progress=False)


def test_preprocessor_applies_exactly_the_parts_asked_for():
    x = torch.zeros(64, 1, 8, 8)
    x[:, :, 2:6, 0:3] = 1.0                                           # content on the left only
    def prep(parts):
        return Preprocessor(device=torch.device("cpu"), in_channels=None, image_size=8, augment=parts,
                            generator=torch.Generator().manual_seed(0))(x, train=True)
    flipped = prep(("flip",))
    same = torch.isclose(flipped, x, atol=1e-5).flatten(1).all(1)
    mirror = torch.isclose(flipped, x.flip(-1), atol=1e-5).flatten(1).all(1)
    assert bool((same | mirror).all()) and 0 < int(mirror.sum()) < 64    # each image: as is or mirrored
    moved = prep(("shift", "zoom"))
    left, right = moved[..., :4].sum((1, 2, 3)), moved[..., 4:].sum((1, 2, 3))
    assert bool((left > right).all())                                 # never mirrored
    assert not torch.allclose(moved, x)                               # but moved
    assert torch.equal(prep(()), x)                                   # none: untouched


# ----------------------------------------------------------------------------- model choice
@pytest.mark.parametrize("side,expected", [(8, "cnn_small"), (28, "resnet_small")])
def test_default_model_is_chosen_by_input_size(tmp_path, side, expected):
    conf = _resolved(tmp_path, dataset=_npz(tmp_path, side))
    assert conf["model"] == "auto" and conf["resolved_model"] == expected
    assert conf["resolved_image_size"] == side
    named = _resolved(tmp_path, dataset=_npz(tmp_path, side), model="mlp")
    assert named["resolved_model"] == "mlp"


def test_cli_prints_its_choices_and_why(tmp_path, capsys):
    assert main(["train", "--dataset", _npz(tmp_path, 28), "--epochs", "1", "--max-steps", "1",
                 "--threads", "1", "--out", str(tmp_path / "o")]) == 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith(("model:", "augment:"))]
    assert len(err) == 2
    assert err[0].startswith("model: resnet_small at 28 px (auto: 28x28 inputs")
    assert err[1].startswith("augment: none (npz:") and "never flips" in err[1]


# ----------------------------------------------------------------------------- the stand-in figure
@pytest.mark.slow
def test_defaults_reach_90_percent_on_the_28px_digits_stand_in(tmp_path):
    """Smaller than benchmarks/user_data.py (1,500 images, 6 epochs). Measured: the defaults until
    issue 10 (cnn_small with flips) reach 24.4% here, today's 98.8% (63 s at load average 11)."""
    path = write_elastic_digits(tmp_path / "d.npz", n_train=1500, n_test=500, seed=0)
    r = train(TrainConfig(dataset=f"npz:{path}", epochs=6), progress=False)
    assert r.status == "ok" and r.test_accuracy >= 0.90, r.test_accuracy
