"""Dataset readers on tiny files written in each native format, splits, label noise, augmentation."""
from __future__ import annotations

import gzip
import io
import os
import pickle
import struct
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from ngl.data import (add_label_noise, augment_batch, get_dataset_info, images, list_datasets, load_dataset,
                      stratified_split, stratified_subset, take)
from ngl.data.cifar import read_cifar
from ngl.data.idx import read_fashion_mnist, read_idx
from ngl.data.pcam import H5Images
from ngl.data.unpickle import restricted_loads


# ----------------------------------------------------------------------------- native-format writers
def _cifar_batch(rng, n, label_key, classes):
    x = rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8)
    y = (np.arange(n) % classes).tolist()                  # lists, as in the original files
    return {"batch_label": "training batch", "data": x.reshape(n, -1), label_key: y}, x, np.array(y)


def write_cifar10(root: Path, rng, *, per_batch=4, archive=False):
    src = root / "cifar-10-batches-py"
    src.mkdir(parents=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        d, x, y = _cifar_batch(rng, per_batch, "labels", 10)
        (src / name).write_bytes(pickle.dumps(d, protocol=2))
        xs.append(x), ys.append(y)
    (src / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}, protocol=2))
    if archive:
        with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(src, arcname="cifar-10-batches-py")
        for f in src.iterdir():
            f.unlink()
        src.rmdir()
    return np.concatenate(xs[:5]), np.concatenate(ys[:5]), xs[5], ys[5]


def write_idx(path: Path, arr: np.ndarray, *, gz: bool):
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}i", *arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


def _png(color, size=(10, 12), fmt="PNG") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format=fmt)
    return buf.getvalue()


COLORS = {"Parasitized": (200, 10, 10), "Uninfected": (10, 200, 10)}


# ----------------------------------------------------------------------------- registry
def test_registry_lists_the_protocol_datasets():
    names = list_datasets()
    for n in ["digits", "cifar10", "cifar100", "fashion_mnist", "caltech101", "pcam", "malaria",
              "colorectal_histology"]:
        assert n in names
        info = get_dataset_info(n)
        assert info.summary and info.files and info.source
    assert get_dataset_info("digits").augment == "none" and get_dataset_info("cifar10").augment == "flip,shift,zoom"
    with pytest.raises(KeyError, match="unknown dataset 'imagenet'.*registered: digits"):
        get_dataset_info("imagenet")


# ----------------------------------------------------------------------------- CIFAR
@pytest.mark.parametrize("archive", [False, True])
def test_read_cifar10_folder_and_targz(tmp_path, rng, archive):
    xtr, ytr, xte, yte = write_cifar10(tmp_path, rng, archive=archive)
    d = read_cifar(tmp_path, "cifar10")
    assert d["x_train"].shape == (20, 32, 32, 3) and d["x_train"].dtype == np.uint8
    np.testing.assert_array_equal(d["x_train"], xtr.transpose(0, 2, 3, 1))   # CHW rows -> HWC
    np.testing.assert_array_equal(d["y_train"], ytr)
    np.testing.assert_array_equal(d["x_test"], xte.transpose(0, 2, 3, 1))
    np.testing.assert_array_equal(d["y_test"], yte)
    assert d["classes"][3] == "c3"
    # pixel (row 1, col 2) of the green channel of image 0 is byte 1024 + 32 + 2 of its row
    assert d["x_train"][0, 1, 2, 1] == xtr.reshape(20, -1)[0, 1024 + 32 + 2]


def test_read_cifar100_with_bytes_keys(tmp_path, rng):
    src = tmp_path / "cifar-100-python"
    src.mkdir()
    expect = {}
    for name, n in (("train", 6), ("test", 3)):
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        y = list(range(n))
        (src / name).write_bytes(pickle.dumps({b"data": x, b"fine_labels": y, b"coarse_labels": y},
                                              protocol=2))
        expect[name] = (x, y)
    d = read_cifar(tmp_path, "cifar100")
    np.testing.assert_array_equal(d["x_test"].transpose(0, 3, 1, 2).reshape(3, -1), expect["test"][0])
    assert d["y_train"].tolist() == expect["train"][1]


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch /tmp/ngl_pwned_by_pickle",))


def test_cifar_unpickler_refuses_arbitrary_globals(tmp_path):
    src = tmp_path / "cifar-10-batches-py"
    src.mkdir()
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (src / name).write_bytes(pickle.dumps({"data": _Evil(), "labels": [0]}, protocol=2))
    with pytest.raises(FileNotFoundError, match="not allowed"):
        read_cifar(tmp_path, "cifar10")
    with pytest.raises(pickle.UnpicklingError):
        restricted_loads(pickle.dumps(_Evil()))
    assert not Path("/tmp/ngl_pwned_by_pickle").exists()


def test_cifar_missing_names_files_and_url(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        read_cifar(tmp_path, "cifar10")
    msg = str(e.value)
    assert "cifar-10-python.tar.gz" in msg and "https://www.cs.toronto.edu/~kriz/" in msg
    assert "\n" not in msg
    with pytest.raises(FileNotFoundError, match="cifar-100-python.tar.gz"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_cifar_corrupt_is_a_one_line_error(tmp_path, rng):
    write_cifar10(tmp_path, rng)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x02garbage")
    with pytest.raises(FileNotFoundError, match="data_batch_3|unreadable"):
        read_cifar(tmp_path, "cifar10")


def test_load_cifar10_uses_the_official_test_split(tmp_path, rng):
    xtr, ytr, xte, yte = write_cifar10(tmp_path, rng, per_batch=20)     # 100 train, 20 test
    d = load_dataset("cifar10", data_dir=tmp_path, val_fraction=0.1)
    assert d.x_test.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(d.x_test.numpy(), xte)
    assert len(d.y_train) == 90 and len(d.y_val) == 10 and d.num_classes == 10
    assert sorted(np.bincount(d.y_val.numpy(), minlength=10)) == [1] * 10      # stratified
    assert d.augment == "flip,shift,zoom" and d.flip_safe


# ----------------------------------------------------------------------------- IDX
@pytest.mark.parametrize("gz", [True, False])
def test_read_fashion_mnist_idx(tmp_path, rng, gz):
    sub = tmp_path / "FashionMNIST" / "raw"                           # torchvision's layout
    sub.mkdir(parents=True)
    arrays = {"train": (rng.integers(0, 256, (30, 28, 28)), np.arange(30) % 10),
              "t10k": (rng.integers(0, 256, (10, 28, 28)), np.arange(10) % 10)}
    sfx = ".gz" if gz else ""
    for prefix, (x, y) in arrays.items():
        write_idx(sub / f"{prefix}-images-idx3-ubyte{sfx}", x, gz=gz)
        write_idx(sub / f"{prefix}-labels-idx1-ubyte{sfx}", y, gz=gz)
    d = read_fashion_mnist(tmp_path)
    np.testing.assert_array_equal(d["x_train"][..., 0], arrays["train"][0])
    np.testing.assert_array_equal(d["y_test"], arrays["t10k"][1])
    s = load_dataset("fashion_mnist", data_dir=tmp_path)
    assert s.image_shape == (1, 28, 28) and s.augment == "none" and len(s.y_test) == 10


def test_idx_bad_magic_and_missing(tmp_path):
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02\x03\x04rest")
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte.*zalandoresearch"):
        read_fashion_mnist(tmp_path)
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "train-images-idx3-ubyte")


# ----------------------------------------------------------------------------- HDF5 (PCam)
def test_pcam_hdf5_lazy(tmp_path, rng):
    import h5py

    data = {}
    for split, n in (("train", 40), ("test", 8)):
        x = rng.integers(0, 256, (n, 96, 96, 3), dtype=np.uint8)
        y = (np.arange(n) % 2).reshape(n, 1, 1, 1).astype(np.uint8)
        with h5py.File(tmp_path / f"camelyonpatch_level_2_split_{split}_x.h5", "w") as f:
            f["x"] = x
        with h5py.File(tmp_path / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as f:
            f["y"] = y
        data[split] = (x, y.reshape(-1))
    d = load_dataset("pcam", data_dir=tmp_path)
    assert isinstance(d.x_train, H5Images) and d.image_shape == (3, 96, 96)
    assert len(d.y_train) == 36 and len(d.y_val) == 4
    idx = torch.tensor([5, 1, 5, 0])                                   # unsorted, repeated
    rows = d.x_train.rows[idx.numpy()]
    np.testing.assert_array_equal(take(d.x_train, idx).numpy(), data["train"][0][rows].transpose(0, 3, 1, 2))
    np.testing.assert_array_equal(d.y_train.numpy(), data["train"][1][d.x_train.rows])
    np.testing.assert_array_equal(take(d.x_test, torch.arange(8)).numpy(), data["test"][0].transpose(0, 3, 1, 2))
    (tmp_path / "camelyonpatch_level_2_split_test_y.h5").unlink()
    with pytest.raises(FileNotFoundError, match="camelyonpatch_level_2_split_test.*basveeling"):
        load_dataset("pcam", data_dir=tmp_path)


# ----------------------------------------------------------------------------- folder trees and zips
def test_malaria_from_folder_and_original_zip(tmp_path):
    zpath = tmp_path / "zip" / "cell_images.zip"
    zpath.parent.mkdir()
    with zipfile.ZipFile(zpath, "w") as z:
        for cls, color in COLORS.items():
            for i in range(5):
                z.writestr(f"cell_images/{cls}/C{i}_cell.png", _png(color, size=(20 + i, 17)))
            z.writestr(f"cell_images/{cls}/Thumbs.db", b"not an image")
    d = images.read_malaria(zpath.parent, size=16)
    assert d["classes"] == ["Parasitized", "Uninfected"] and d["x_train"].shape == (10, 16, 16, 3)
    for img, label in zip(d["x_train"], d["y_train"]):
        np.testing.assert_array_equal(img.reshape(-1, 3), np.tile(COLORS[d["classes"][label]], (256, 1)))
    with zipfile.ZipFile(zpath) as z:
        z.extractall(tmp_path / "dir")
    d2 = images.read_malaria(tmp_path / "dir", size=16)
    np.testing.assert_array_equal(d2["x_train"], d["x_train"])
    caches = list((tmp_path / "dir" / ".ngl_cache").glob("malaria_16_*.npz"))
    assert len(caches) == 1                                            # decoded once, cached
    np.testing.assert_array_equal(images.read_malaria(tmp_path / "dir", size=16)["x_train"], d["x_train"])
    (tmp_path / "dir" / "cell_images" / "Uninfected" / "C0_cell.png").write_bytes(_png((1, 2, 3), size=(9, 9)))
    d3 = images.read_malaria(tmp_path / "dir", size=16)                # changed file -> cache rebuilt
    assert (d3["x_train"].reshape(10, -1, 3) == [1, 2, 3]).all(axis=(1, 2)).sum() == 1
    s = load_dataset("malaria", data_dir=tmp_path / "dir", val_fraction=0.2)
    assert len(s.y_test) == 2 and len(s.y_val) == 2 and len(s.y_train) == 6          # 20% test, then 20% val
    assert sorted(s.y_test.tolist()) == [0, 1]


def test_colorectal_zip_of_tifs(tmp_path):
    stem = "Kather_texture_2016_image_tiles_5000"
    with zipfile.ZipFile(tmp_path / f"{stem}.zip", "w") as z:
        for k, cls in enumerate(["01_TUMOR", "02_STROMA", "03_COMPLEX"]):
            for i in range(3):
                z.writestr(f"{stem}/{cls}/img_{i}.tif", _png((k * 80, 0, 0), size=(15, 15), fmt="TIFF"))
    d = images.read_colorectal(tmp_path, size=15)
    assert d["classes"] == ["01_TUMOR", "02_STROMA", "03_COMPLEX"]
    np.testing.assert_array_equal(d["x_train"][:, 0, 0, 0], d["y_train"] * 80)


def test_caltech_excludes_background_and_folder_dataset(tmp_path):
    root = tmp_path / "caltech101" / "101_ObjectCategories"
    for cls in ["BACKGROUND_Google", "accordion", "airplanes"]:
        (root / cls).mkdir(parents=True)
        for i in range(3):
            (root / cls / f"image_{i:04d}.jpg").write_bytes(_png((9, 99, 199), fmt="JPEG"))
    d = images.read_caltech101(tmp_path, size=8)
    assert d["classes"] == ["accordion", "airplanes"] and len(d["y_train"]) == 6
    s = load_dataset(f"folder:{root}", val_fraction=0.0)
    assert s.num_classes == 3 and s.image_shape == (3, 64, 64)
    (root / "airplanes" / "image_0001.jpg").write_bytes(b"\xff\xd8broken")
    with pytest.raises(FileNotFoundError, match="image_0001.jpg.*corrupt"):
        images.read_caltech101(tmp_path, size=8)
    with pytest.raises(FileNotFoundError, match="101_ObjectCategories.*data.caltech.edu"):
        images.read_caltech101(tmp_path / "nowhere")


# ----------------------------------------------------------------------------- npz
def test_npz_layouts_and_errors(tmp_path, rng):
    x = rng.integers(0, 256, (20, 3, 5, 5), dtype=np.uint8)            # NCHW
    y = np.arange(20) % 4
    np.savez(tmp_path / "a.npz", x=x, y=y, x_test=x[:4].transpose(0, 2, 3, 1), y_test=y[:4])
    d = load_dataset(f"npz:{tmp_path / 'a.npz'}", val_fraction=0.2)
    assert d.image_shape == (3, 5, 5) and d.num_classes == 4
    np.testing.assert_array_equal(d.x_test.numpy(), x[:4])
    np.savez(tmp_path / "f.npz", x=rng.normal(size=(15, 6, 6)).astype(np.float64), y=np.arange(15) % 3)
    f = load_dataset(f"npz:{tmp_path / 'f.npz'}", val_fraction=0.0)
    assert f.x_train.dtype == torch.float32 and len(f.y_test) == 3      # 20% stratified test hold-out
    np.savez(tmp_path / "bad.npz", images=x)
    with pytest.raises(ValueError, match="expected an .npz with arrays x, y"):
        load_dataset(f"npz:{tmp_path / 'bad.npz'}")
    np.savez(tmp_path / "obj.npz", x=np.array([{"a": 1}], dtype=object), y=np.zeros(1))
    with pytest.raises(ValueError, match="cannot read .*obj.npz"):
        load_dataset(f"npz:{tmp_path / 'obj.npz'}")                     # object arrays need pickle: refused


# ----------------------------------------------------------------------------- splits and noise
def test_stratified_split_matches_class_proportions():
    y = np.repeat(np.arange(4), [50, 30, 10, 10])
    keep, hold = stratified_split(y, 0.2, seed=42)
    assert len(hold) == 20 and len(keep) == 80 and not set(keep) & set(hold)
    np.testing.assert_array_equal(np.bincount(y[hold]), [10, 6, 2, 2])
    k2, h2 = stratified_split(y, 0.2, seed=42)
    np.testing.assert_array_equal(h2, hold)
    sub = stratified_subset(y, 0.5, seed=3)
    np.testing.assert_array_equal(np.bincount(y[sub]), [25, 15, 5, 5])
    assert not np.array_equal(sub, stratified_subset(y, 0.5, seed=4))


def test_label_noise_is_exact_symmetric_and_seeded():
    y = np.repeat(np.arange(5), 2000)
    noisy = add_label_noise(y, 0.2, 5, seed=1)
    changed = noisy != y
    assert changed.sum() == 2000                                     # exactly 20%, never the same class
    off = (noisy[changed] - y[changed]) % 5                           # offsets 1..4 uniform
    counts = np.bincount(off, minlength=5)[1:]
    assert counts.min() > 400 and counts.max() < 600
    np.testing.assert_array_equal(noisy, add_label_noise(y, 0.2, 5, seed=1))
    np.testing.assert_array_equal(add_label_noise(y, 0.0, 5, seed=1), y)


def test_digits_splits_noise_and_fraction():
    clean = load_dataset("digits", seed=0)
    assert clean.image_shape == (1, 8, 8) and clean.x_train.dtype == torch.uint8
    assert len(clean.y_train) + len(clean.y_val) + len(clean.y_test) == 1797
    assert len(clean.y_test) == 359 and len(clean.y_val) == round(0.1 * (1797 - 359))
    from sklearn.datasets import load_digits
    raw = load_digits().images
    np.testing.assert_array_equal(clean.x_train.numpy()[0, 0] // 1, np.rint(
        raw[_find_row(raw, clean.x_train.numpy()[0, 0])] * 255 / 16).astype(np.uint8))
    noisy = load_dataset("digits", seed=0, label_noise=0.2)
    assert torch.equal(noisy.x_train, clean.x_train) and torch.equal(noisy.y_val, clean.y_val)
    assert (noisy.y_train != clean.y_train).sum().item() == round(0.2 * len(clean.y_train))
    part = load_dataset("digits", seed=0, train_fraction=0.25)
    assert len(part.y_train) == round(0.25 * len(clean.y_train)) and torch.equal(part.y_test, clean.y_test)


def _find_row(raw: np.ndarray, img: np.ndarray) -> int:
    scaled = np.rint(raw * 255 / 16)
    return int(np.flatnonzero((scaled == img).all(axis=(1, 2)))[0])


# ----------------------------------------------------------------------------- augmentation
def test_augment_identity_flip_and_constant():
    x = torch.rand(6, 2, 9, 9)
    same = augment_batch(x, zoom=0.0, shift=0.0, hflip=False, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    flipped = augment_batch(x, zoom=0.0, shift=0.0, generator=torch.Generator().manual_seed(0))
    kinds = [torch.allclose(f, o, atol=1e-5) or torch.allclose(f, o.flip(-1), atol=1e-5)
             for f, o in zip(flipped, x)]
    assert all(kinds)
    const = torch.full((4, 3, 8, 8), 0.25)
    torch.testing.assert_close(augment_batch(const, generator=torch.Generator().manual_seed(1)), const)
    a = augment_batch(x, generator=torch.Generator().manual_seed(5))
    b = augment_batch(x, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.allclose(a, x)


def test_augment_shift_moves_content():
    x = torch.zeros(1, 1, 20, 20)
    x[..., 10, 10] = 1.0
    g = torch.Generator().manual_seed(0)
    out = augment_batch(x.expand(200, -1, -1, -1).contiguous(), zoom=0.0, shift=0.1, hflip=False, generator=g)
    peaks = out.flatten(1).argmax(1)
    cols = peaks % 20
    assert cols.min() >= 8 and cols.max() <= 12 and len(set(cols.tolist())) > 2   # |shift| <= 2 px
