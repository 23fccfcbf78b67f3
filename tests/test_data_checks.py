"""What the dataset readers refuse before training (issue 20): npz images over the size cap, read
from the headers before anything is decompressed; NaN/inf pixels; hidden entries of image trees;
a test split of another image size or with classes training lacks; and the cheap availability
check that raises what loading would, for every registered dataset."""
from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from ngl.data import (DATASETS, MAX_IMAGE_SIDE, DatasetsMissingError, check_dataset_available,
                      check_datasets_available, list_datasets, load_dataset)
from ngl.data.images import read_image_tree
from ngl.data.npz import check_npz, npz_shapes, read_npz
from ngl.errors import InputError, MissingFileError


def _png(color, size=(6, 6)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _npy_header(shape: tuple[int, ...], dtype=np.uint8) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                               "fortran_order": False, "shape": shape})
    return buf.getvalue()                          # magic, then the header dict, padded


def _header_only_npz(path: Path, shape: tuple[int, ...]) -> Path:
    """An .npz whose ``x`` header says ``shape`` (uint8) but holds a few bytes of pixels."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("x.npy", _npy_header(shape) + b"\0" * 64)
        z.writestr("y.npy", _npy_header(shape[:1], np.int64) + b"\0" * 8 * shape[0])
    return path


# ----------------------------------------------------------------------------- npz: size cap from the headers
def test_image_cap_is_the_trainers():
    from ngl.train import MAX_IMAGE_SIZE

    assert MAX_IMAGE_SIDE == MAX_IMAGE_SIZE == 2048


def test_npz_over_the_size_cap_is_refused_from_its_header(tmp_path, monkeypatch):
    """The issue's archive: x of (2, 20000, 20000) uint8 (800 MB of pixels). Only the header is
    written here (plus a few bytes): reading the pixels would fail another way, so the message
    proves the header alone was enough, and np.load is never reached."""
    path = _header_only_npz(tmp_path / "bomb.npz", (2, 20000, 20000))
    assert npz_shapes(path) == {"x": ((2, 20000, 20000), np.dtype(np.uint8)), "y": ((2,), np.dtype(np.int64))}
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load called on a refused archive"))
    with pytest.raises(InputError, match=r"bomb.npz x: images of shape \(2, 20000, 20000\); "
                                         r"at most 2048 px a side are supported") as e:
        read_npz(path)
    assert "\n" not in str(e.value)


def test_npz_side_cap_on_a_real_archive_and_memory_cap(tmp_path, monkeypatch):
    np.savez_compressed(tmp_path / "wide.npz", x=np.zeros((2, 8, MAX_IMAGE_SIDE + 1), np.uint8),
                        y=np.array([0, 1]))
    with pytest.raises(InputError, match="at most 2048 px a side"):
        load_dataset(f"npz:{tmp_path / 'wide.npz'}")
    np.savez_compressed(tmp_path / "test_wide.npz", x=np.zeros((4, 8, 8), np.uint8), y=np.arange(4) % 2,
                        x_test=np.zeros((2, 4096, 8), np.uint8), y_test=np.array([0, 1]))
    with pytest.raises(InputError, match="test_wide.npz x_test: images of shape"):
        read_npz(tmp_path / "test_wide.npz")
    np.savez(tmp_path / "ok.npz", x=np.zeros((4, MAX_IMAGE_SIDE, 2), np.uint8), y=np.arange(4) % 2)
    assert read_npz(tmp_path / "ok.npz")["x_train"].shape == (4, MAX_IMAGE_SIDE, 2, 1)   # the cap itself is fine
    # more bytes than the machine's memory (made small here): refused from the headers too
    import ngl.data.npz as npz_mod

    monkeypatch.setattr(npz_mod, "_memory_bytes", lambda: 1000)
    with pytest.raises(InputError, match=r"ok.npz: its arrays would take 0.0 GB decompressed, more than"):
        read_npz(tmp_path / "ok.npz")


# ----------------------------------------------------------------------------- npz: non-finite pixels
def test_npz_nan_and_inf_pixels_are_named_at_load_time(tmp_path, rng):
    x = rng.normal(size=(12, 5, 5)).astype(np.float32)
    x[3, 1, 1], x[7, 0, 4], x[8, 2, 2] = np.nan, np.inf, -np.inf
    np.savez(tmp_path / "nan.npz", x=x, y=np.arange(12) % 3)
    with pytest.raises(InputError, match=r"nan.npz x: 3 of 300 values are not finite \(NaN or inf\)"):
        load_dataset(f"npz:{tmp_path / 'nan.npz'}")
    clean = x.copy()
    clean[~np.isfinite(clean)] = 0
    np.savez(tmp_path / "test_nan.npz", x=clean, y=np.arange(12) % 3, x_test=x[:6], y_test=np.arange(6) % 3)
    with pytest.raises(InputError, match=r"test_nan.npz x_test: 1 of 150 values are not finite"):
        read_npz(tmp_path / "test_nan.npz")                             # x[:6] holds only the NaN
    np.savez(tmp_path / "clean.npz", x=clean, y=np.arange(12) % 3)
    np.testing.assert_array_equal(read_npz(tmp_path / "clean.npz")["x_train"][..., 0], clean)


# ----------------------------------------------------------------------------- npz: test split vs training
def test_npz_test_split_of_another_size_or_unseen_labels_is_refused(tmp_path):
    x = np.zeros((8, 6, 6), np.uint8)
    y = np.arange(8) % 2
    np.savez(tmp_path / "size.npz", x=x, y=y, x_test=np.zeros((4, 7, 7), np.uint8), y_test=y[:4])
    with pytest.raises(InputError, match=r"test images have shape \(7, 7, 1\) but training images \(6, 6, 1\)"):
        load_dataset(f"npz:{tmp_path / 'size.npz'}")
    np.savez(tmp_path / "labels.npz", x=x, y=y, x_test=x[:4], y_test=np.array([0, 1, 5, 9]))
    with pytest.raises(InputError, match=r"test labels 5, 9 \(2 classes\) never occur in training"):
        load_dataset(f"npz:{tmp_path / 'labels.npz'}")
    np.savez(tmp_path / "fine.npz", x=x, y=y, x_test=x[:4, None], y_test=np.array([1, 0, 1, 0]))   # NCHW ok
    assert load_dataset(f"npz:{tmp_path / 'fine.npz'}", val_fraction=0.0).num_classes == 2


# ----------------------------------------------------------------------------- image trees: hidden entries
def test_hidden_folders_and_files_of_an_image_tree_are_skipped(tmp_path):
    root = tmp_path / "tree"
    for cls, color in (("cats", (200, 0, 0)), ("dogs", (0, 200, 0))):
        (root / cls).mkdir(parents=True)
        for i in range(2):
            (root / cls / f"{i}.png").write_bytes(_png(color))
        (root / cls / f"._{cls}.png").write_bytes(b"\0\5\26\7 macOS resource fork")   # would not decode
    (root / ".git" / "objects").mkdir(parents=True)
    (root / ".git" / "icon.png").write_bytes(_png((0, 0, 200)))
    (root / ".git" / "objects" / "logo.png").write_bytes(_png((0, 0, 200)))
    d = read_image_tree(root, size=4)
    assert d["classes"] == ["cats", "dogs"] and len(d["y_train"]) == 4
    np.testing.assert_array_equal(d["x_train"][:, 0, 0], [[200, 0, 0]] * 2 + [[0, 200, 0]] * 2)
    with zipfile.ZipFile(tmp_path / "tree.zip", "w") as z:                # the same tree zipped
        for p in sorted(root.rglob("*")):
            if p.is_file():
                z.write(p, Path("tree") / p.relative_to(root))
    dz = read_image_tree(tmp_path / "tree.zip", size=4)
    assert dz["classes"] == ["cats", "dogs"]
    np.testing.assert_array_equal(dz["x_train"], d["x_train"])


# ----------------------------------------------------------------------------- availability before any run
def test_every_registered_dataset_has_a_check_raising_what_loading_raises(tmp_path):
    """In an empty data folder each dataset's cheap check raises the error loading raises (same
    type, same line naming the expected paths); the embedded ones (digits, digits28, shapes28)
    need nothing."""
    embedded = [n for n in list_datasets() if DATASETS.get(n).files.startswith("(none")]
    assert {"digits", "digits28", "shapes28"} <= set(embedded)
    for name in embedded:
        check_dataset_available(name, tmp_path)
    for name in list_datasets():
        if name in embedded:
            continue
        assert DATASETS.get(name).check is not None, name
        with pytest.raises(MissingFileError) as checked:
            check_dataset_available(name, tmp_path)
        with pytest.raises(MissingFileError) as loaded:
            load_dataset(name, data_dir=tmp_path)
        assert str(checked.value) == str(loaded.value), name
        assert str(tmp_path) in str(checked.value) and "\n" not in str(checked.value)


def test_checks_list_and_read_headers_but_decode_nothing(tmp_path):
    root = tmp_path / "cell_images"
    for cls in ("Parasitized", "Uninfected"):
        (root / cls).mkdir(parents=True)
        (root / cls / "a.png").write_bytes(b"\x89PNG broken")               # listed, never decoded
    check_dataset_available("malaria", tmp_path)
    with pytest.raises(MissingFileError, match="cannot decode"):
        load_dataset("malaria", data_dir=tmp_path)
    check_dataset_available(f"folder:{root}", None)
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingFileError, match="no images in class sub-folders"):
        check_dataset_available(f"folder:{tmp_path / 'empty'}", None)
    _header_only_npz(tmp_path / "bomb.npz", (1, 30000, 30000))
    with pytest.raises(InputError, match="at most 2048 px a side"):
        check_dataset_available(f"npz:{tmp_path / 'bomb.npz'}", None)
    np.savez(tmp_path / "fine.npz", x=np.zeros((4, 3, 3), np.uint8), y=np.arange(4) % 2)
    assert set(check_npz(tmp_path / "fine.npz")) == {"x", "y"}


def test_check_datasets_available_names_each_missing_one_in_one_error(tmp_path):
    np.savez(tmp_path / "mine.npz", x=np.zeros((4, 3, 3), np.uint8), y=np.arange(4) % 2)
    pairs = [("digits", None), ("cifar10", tmp_path), ("pcam", tmp_path), ("cifar10", str(tmp_path)),
             (f"npz:{tmp_path / 'mine.npz'}", None), (f"npz:{tmp_path / 'gone.npz'}", None)]
    with pytest.raises(DatasetsMissingError) as e:
        check_datasets_available(pairs)
    lines = str(e.value).splitlines()
    assert lines[0] == "3 datasets are not available:" and len(lines) == 4     # cifar10 once
    assert lines[1].startswith(f"  cifar10: cifar10 (cifar-10-batches-py/ or cifar-10-python.tar.gz) "
                               f"not found or unreadable at {tmp_path / 'cifar-10-batches-py'} or "
                               f"{tmp_path / 'cifar-10-python.tar.gz'}")
    assert lines[2].startswith(f"  pcam: pcam camelyonpatch_level_2_split_train_{{x,y}}.h5") and str(tmp_path) in lines[2]
    assert lines[3] == f"  npz:{tmp_path / 'gone.npz'}: npz file not found: {tmp_path / 'gone.npz'}; " \
                       "expected an .npz with arrays x, y[, x_test, y_test] (np.savez('data.npz', x=images, y=labels))"
    assert [n for n, _ in e.value.problems] == ["cifar10", "pcam", f"npz:{tmp_path / 'gone.npz'}"]
    _header_only_npz(tmp_path / "bomb.npz", (1, 30000, 30000))
    with pytest.raises(InputError, match=r"^2 datasets are not available:\n  npz:.*bomb.npz: .*2048 px"
                                         r".*\n  cifar11: unknown dataset 'cifar11' \(did you mean"):
        check_datasets_available([(f"npz:{tmp_path / 'bomb.npz'}", None), ("cifar11", None)])
    check_datasets_available([("digits", None), (f"npz:{tmp_path / 'mine.npz'}", None)])   # all there: silent
