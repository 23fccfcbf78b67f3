"""Results you can trust (issue 11, train/data side): no silent overwrite of a run, bounded labels,
one-line errors for bad output folders, checkpoints, images and configs, explicit missing splits."""
from __future__ import annotations

import errno
import json
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch

import ngl.harness.folder as TR
from ngl.cli import main
from ngl.data import load_dataset
from ngl.data.cifar import read_cifar
from ngl.data.images import read_image_tree
from ngl.data.npz import read_npz
from ngl.errors import InputError, InputTypeError, UserError
from ngl.train import OutputError, TrainConfig, train

FAST = dict(dataset="digits", model="mlp", epochs=1, batch_size=256, threads=1)


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main(["train", "--quiet", *map(str, argv)])
    err = capsys.readouterr().err.strip()
    return code, err


# ----------------------------------------------------------------------------- item 2: one run per folder
def test_second_run_with_another_config_is_refused_and_keeps_the_first(tmp_path, capsys):
    out = tmp_path / "run"
    first = train(TrainConfig(**FAST), out_dir=out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != "learning_curve.png"}
    with pytest.raises(OutputError, match=r"another config \(epochs: 1 -> 2\).*--overwrite"):
        train(TrainConfig(**{**FAST, "epochs": 2}), out_dir=out, progress=False)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != "learning_curve.png"} == before
    code, err = _cli(capsys, "--model", "mlp", "--epochs", 2, "--batch-size", 256, "--threads", 1, "--out", out)
    assert code == 2 and len(err.splitlines()) == 1 and "--overwrite" in err and "another --out" in err
    # the same config resumes (nothing left to train: no epoch runs, the checkpoint is untouched)
    # and reports the same result
    import ngl.harness.loop
    import ngl.train as T

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    checkpoint = (out / "checkpoint.pt").read_bytes()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ngl.harness.loop, "train_one_epoch", no_training)
        again = train(TrainConfig(**FAST), out_dir=out, progress=False)
    assert again.test_accuracy == first.test_accuracy and again.steps == first.steps
    assert (out / "checkpoint.pt").read_bytes() == checkpoint
    # a finished run is not retrained from scratch without --overwrite
    with pytest.raises(OutputError, match="finished run"):
        train(TrainConfig(**FAST), out_dir=out, progress=False, resume=False)
    replaced = train(TrainConfig(**{**FAST, "epochs": 2}), out_dir=out, progress=False, overwrite=True)
    assert replaced.epochs_run == 2
    assert json.loads((out / "result.json").read_text())["config"]["epochs"] == 2


def test_out_pointing_at_a_file_is_refused(tmp_path, capsys):
    f = tmp_path / "results.txt"
    f.write_text("keep me")
    code, err = _cli(capsys, "--model", "mlp", "--epochs", 1, "--out", f)
    assert code == 2 and "is a file" in err and f.read_text() == "keep me"


# ----------------------------------------------------------------------------- item 7: bounded labels
def test_huge_and_negative_npz_labels_are_refused_by_name(tmp_path, capsys):
    x = np.zeros((6, 4, 4), dtype=np.uint8)
    np.savez(tmp_path / "huge.npz", x=x, y=np.array([0, 1, 0, 1, 0, 2 ** 40]))
    with pytest.raises(InputError, match=r"label 1099511627776 is out of bounds; at most 100000 classes"):
        read_npz(tmp_path / "huge.npz")
    np.savez(tmp_path / "neg.npz", x=x, y=np.array([0, 1, -3, 1, 0, 1]))
    code, err = _cli(capsys, "--dataset", f"npz:{tmp_path / 'neg.npz'}", "--out", tmp_path / "o")
    assert code == 2 and "label -3 is negative" in err


# ----------------------------------------------------------------------------- item 10: output failures
def _denied(*args, **kwargs):
    raise PermissionError(errno.EACCES, "Permission denied")


def test_read_only_output_folder_is_one_line(tmp_path, monkeypatch, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    if os.geteuid() != 0:                  # a real read-only folder (root ignores the mode bits)
        out.chmod(0o555)
        try:
            with pytest.raises(OutputError, match="cannot write .*ro"):
                train(TrainConfig(**FAST), out_dir=out, progress=False)
        finally:
            out.chmod(0o755)
    monkeypatch.setattr(TR.os, "access", lambda *a: False)
    code, err = _cli(capsys, "--model", "mlp", "--epochs", 1, "--out", out)
    assert code == 2 and "read-only" in err and len(err.splitlines()) == 1


def test_full_disk_is_one_line_and_leaves_no_temp_checkpoint(tmp_path, monkeypatch):
    real_save = torch.save

    def enospc(obj, path, *a, **k):          # half a file, then the disk is full
        with open(path, "wb") as fh:
            fh.write(b"PK\x03\x04partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(TR.torch, "save", enospc)
    with pytest.raises(OutputError, match="checkpoint.pt: the disk is full"):
        train(TrainConfig(**FAST), out_dir=tmp_path, progress=False)
    assert not (tmp_path / "checkpoint.pt.tmp").exists() and not (tmp_path / "checkpoint.pt").exists()
    monkeypatch.setattr(TR.torch, "save", real_save)
    assert train(TrainConfig(**FAST), out_dir=tmp_path, progress=False).status == "ok"


@pytest.mark.parametrize("content", ["garbage", "foreign", "wrong_epoch"])
def test_corrupt_or_foreign_checkpoint_names_it_and_suggests_no_resume(tmp_path, capsys, content):
    cfg = TrainConfig(**{**FAST, "epochs": 2})
    train(cfg, out_dir=tmp_path, progress=False)
    (tmp_path / "result.json").unlink()                   # an interrupted run
    ckpt = tmp_path / "checkpoint.pt"
    if content == "garbage":
        ckpt.write_bytes(b"\x00not a checkpoint")
    elif content == "foreign":
        torch.save({"weights": torch.zeros(3)}, ckpt)
    else:
        saved = torch.load(ckpt, weights_only=True)
        torch.save({**saved, "epoch": 10 ** 9}, ckpt)
    with pytest.raises(InputError, match=r"checkpoint .*checkpoint.pt is corrupt or not from this run.*--no-resume"):
        train(cfg, out_dir=tmp_path, progress=False)
    code, err = _cli(capsys, "--model", "mlp", "--epochs", 2, "--batch-size", 256, "--threads", 1,
                     "--out", tmp_path, "--no-resume")
    assert code == 0 and json.loads((tmp_path / "result.json").read_text())["epochs_run"] == 2


# ----------------------------------------------------------------------------- item 10: bad images
def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels (a decompression bomb's signature)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


def test_png_decompression_bomb_is_refused(tmp_path, capsys):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        Image.new("RGB", (8, 8), (10, 20, 30)).save(tmp_path / "imgs" / cls / "ok.png")
    (tmp_path / "imgs" / "a" / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    with pytest.raises(InputError, match=r"bomb.png is too large to decode safely"):
        read_image_tree(tmp_path / "imgs", size=8)
    code, err = _cli(capsys, "--dataset", f"folder:{tmp_path / 'imgs'}", "--out", tmp_path / "o")
    assert code == 2 and "bomb.png" in err


# ----------------------------------------------------------------------------- item 10: config values
@pytest.mark.parametrize("doc,match", [
    ({"dataset": 5}, r"TrainConfig.dataset must be str, got 5"),
    ({"epochs": True}, r"TrainConfig.epochs must be int, got True"),
    ({"seed": 0.5}, r"TrainConfig.seed must be int, got 0.5"),
    ({"lr": float("nan")}, r"TrainConfig.lr must be float"),
])
def test_wrongly_typed_fields_are_refused_not_coerced(tmp_path, capsys, doc, match):
    with pytest.raises(InputTypeError, match=match):
        TrainConfig.from_dict(doc)
    with pytest.raises(InputTypeError, match=match):               # the constructor path validates too
        TrainConfig(**doc).check()
    if not any(isinstance(v, float) and v != v for v in doc.values()):
        (tmp_path / "c.json").write_text(json.dumps(doc))
        code, err = _cli(capsys, "--config", tmp_path / "c.json", "--out", tmp_path / "o")
        assert code == 2 and len(err.splitlines()) == 1 and "must be" in err


def test_config_file_nested_too_deeply_is_one_line(tmp_path, capsys):
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)
    code, err = _cli(capsys, "--config", tmp_path / "deep.json", "--out", tmp_path / "o")
    assert code == 2 and len(err.splitlines()) == 1 and "deep.json" in err


@pytest.mark.parametrize("flag,value,match", [
    ("--image-size", 100000, r"image_size must be in 1..2048"),
    ("--min-lr", -1e-4, r"min_lr must be >= 0"),
    ("--plateau-patience", -1, r"plateau_patience must be >= 0"),
    ("--seed", -2, r"seed must be >= 0"),
    ("--augment", "flip,rotate", r"unknown augmentation 'rotate'"),
])
def test_out_of_range_flags_are_one_line_before_any_work(tmp_path, capsys, flag, value, match):
    code, err = _cli(capsys, "--model", "mlp", flag, value, "--out", tmp_path / "o")
    assert code == 2 and len(err.splitlines()) == 1
    assert __import__("re").search(match, err), err
    assert not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------- item 11: meaningless results
def test_a_single_class_dataset_is_refused(tmp_path):
    np.savez(tmp_path / "one.npz", x=np.zeros((10, 4, 4), dtype=np.uint8), y=np.full(10, 3))
    with pytest.raises(InputError, match=r"single class \(only label 3\)"):
        train(TrainConfig(**{**FAST, "dataset": f"npz:{tmp_path / 'one.npz'}"}), progress=False)


def test_a_run_without_test_split_says_so(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "two.npz", x=rng.integers(0, 255, (2, 4, 4), dtype=np.uint8), y=np.array([0, 1]))
    r = train(TrainConfig(**{**FAST, "dataset": f"npz:{tmp_path / 'two.npz'}", "val_fraction": 0.0}),
              out_dir=tmp_path / "o", progress=False)
    assert r.status == "ok" and r.test_accuracy is None
    assert r.notes == ["no_test_split", "no_validation_split"]
    assert json.loads((tmp_path / "o" / "result.json").read_text())["notes"] == r.notes
    full = train(TrainConfig(**FAST), progress=False)
    assert full.notes == [] and full.test_accuracy is not None


# ----------------------------------------------------------------------------- item 12: context in messages
@pytest.mark.parametrize("payload,match", [
    (pickle.dumps([1, 2, 3], protocol=2), r"data_batch_1 holds a pickled list, expected a CIFAR batch dict"),
    (pickle.dumps({"labels": [0]}, protocol=2), r"data_batch_1 is not a CIFAR batch: no key 'data'"),
    (pickle.dumps({"data": np.zeros((2, 5), np.uint8), "labels": [0, 1]}, protocol=2),
     r"data_batch_1: data or labels of the wrong shape"),
    (b"\x80\x02garbage", r"data_batch_1 is not a readable CIFAR pickle"),
])
def test_malformed_cifar_pickles_name_the_file(tmp_path, payload, match):
    src = tmp_path / "cifar-10-batches-py"
    src.mkdir()
    (src / "data_batch_1").write_bytes(payload)
    with pytest.raises(UserError, match=match):
        read_cifar(tmp_path, "cifar10")


@pytest.mark.parametrize("make,match", [
    (lambda p: p.write_bytes(b""), r"empty.npz is an empty file; expected an .npz with arrays x, y"),
    (lambda p: np.savez(p, x=np.zeros((0, 4, 4), np.uint8), y=np.zeros(0, np.int64)),
     r"'x' holds no images \(shape \(0, 4, 4\)\)"),
    (lambda p: np.savez(p), r"holds no arrays; expected an .npz with arrays x, y"),
])
def test_empty_npz_files_get_context(tmp_path, capsys, make, match):
    path = tmp_path / "empty.npz"
    make(path)
    with pytest.raises(InputError, match=match):
        load_dataset(f"npz:{path}")
    code, err = _cli(capsys, "--dataset", f"npz:{path}", "--out", tmp_path / "o")
    assert code == 2 and "empty.npz" in err
    assert not (tmp_path / "o").exists()                  # refused before anything was written
