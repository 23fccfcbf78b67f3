"""The embedded generated datasets digits28 and shapes28 (ngl.data.synthetic, .shapes, .standin)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.datasets import load_digits

from ngl.data import get_dataset_info, list_datasets, load_dataset, synthetic
from ngl.data.shapes import SHAPE_CLASSES, _sdf, render_shapes
from ngl.data.standin import elastic_digits
from ngl.train import TrainConfig, train


def _reference_elastic(n_train, n_test, *, seed, size=28, alpha=8.0, sigma=3.0, max_degrees=12.0):
    """The stand-in as first written: one image at a time (the vectorised renderer must equal it)."""
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    tr, te = train_test_split(np.arange(len(digits.target)), test_size=0.3, stratify=digits.target,
                              random_state=seed)
    rng = np.random.default_rng(seed)
    box = round(size * 20 / 28)
    pad = (size - box) // 2
    c = (size - 1) / 2
    yy, xx = np.meshgrid(np.arange(size) - c, np.arange(size) - c, indexing="ij")
    out = []
    for idx, n in [(tr, n_train), (te, n_test)]:
        order = np.concatenate([rng.permutation(len(idx)) for _ in range(-(-n // len(idx)))])[:n]
        x = np.empty((n, size, size), dtype=np.uint8)
        for i, j in enumerate(order):
            canvas = np.zeros((size, size))
            zoomed = ndimage.zoom(digits.images[idx[j]] / 16.0, box / 8, order=1)
            canvas[pad:pad + box, pad:pad + box] = zoomed
            dx = ndimage.gaussian_filter(rng.uniform(-1, 1, (size, size)), sigma) * alpha
            dy = ndimage.gaussian_filter(rng.uniform(-1, 1, (size, size)), sigma) * alpha
            a = np.deg2rad(rng.uniform(-max_degrees, max_degrees))
            ry = np.cos(a) * yy - np.sin(a) * xx + c
            rx = np.sin(a) * yy + np.cos(a) * xx + c
            img = ndimage.map_coordinates(canvas, [ry + dy, rx + dx], order=1, mode="constant", cval=0.0)
            x[i] = np.clip(np.rint(img * 255), 0, 255).astype(np.uint8)
        out += [x, digits.target[idx[order]]]
    return out


@pytest.mark.parametrize("seed,size", [(0, 28), (3, 20)])
def test_vectorised_elastic_digits_equal_the_per_image_reference(seed, size):
    d = elastic_digits(n_train=150, n_test=40, seed=seed, size=size)
    ref = _reference_elastic(150, 40, seed=seed, size=size)
    for key, want in zip(["x", "y", "x_test", "y_test"], ref):
        np.testing.assert_array_equal(d[key], want)


def test_registered_as_embedded_generated_without_flips():
    for name in ["digits28", "shapes28"]:
        assert name in list_datasets()
        info = get_dataset_info(name)
        assert info.augment == "none" and not info.flip_safe
        assert "embedded" in info.summary and "generated" in info.summary
        assert "no download" in info.source
        assert info.read(None)["x_train"].shape == (4000, 28, 28, 1)   # no data folder needed


@pytest.mark.parametrize("name", ["digits28", "shapes28"])
def test_shapes_dtypes_labels_and_balance(name):
    d = getattr(synthetic, name)()
    for split, n in [("train", 4000), ("test", 1000)]:
        x, y = d[f"x_{split}"], d[f"y_{split}"]
        assert x.shape == (n, 28, 28, 1) and x.dtype == np.uint8
        assert y.shape == (n,) and y.dtype == np.int64
        counts = np.bincount(y, minlength=10)
        assert len(counts) == 10
        if name == "shapes28":
            assert (counts == n // 10).all()                      # exactly balanced
        else:
            assert counts.min() > 0.08 * n and counts.max() < 0.12 * n   # as the base digits
        assert x.std() > 20 and 0 < x.mean() < 255               # real images, not blank
    assert len(d["classes"]) == 10


@pytest.mark.parametrize("name", ["digits28", "shapes28"])
def test_deterministic_independent_of_run_seed_and_copies(name):
    read = getattr(synthetic, name)
    first = read()
    want = {k: first[k].copy() for k in ["x_train", "y_train", "x_test", "y_test"]}
    first["x_train"][:] = 0                                       # a caller's edit never reaches the cache
    cached = read()
    getattr(synthetic, f"_{name}").cache_clear()                  # regenerate from scratch
    fresh = read()
    for k, v in want.items():
        np.testing.assert_array_equal(cached[k], v)
        np.testing.assert_array_equal(fresh[k], v)
    a, b = load_dataset(name, seed=0), load_dataset(name, seed=7)
    assert (a.x_train == b.x_train).all() and (a.x_test == b.x_test).all()
    assert (a.y_train == b.y_train).all() and (a.y_val == b.y_val).all()
    noisy = load_dataset(name, seed=7, label_noise=0.4)
    flipped = (noisy.y_train != a.y_train).float().mean().item()
    assert 0.35 < flipped < 0.45 and (noisy.y_val == a.y_val).all()


def test_digits28_train_and_test_come_from_disjoint_base_digits():
    base, base_test = synthetic.digits28_bases()
    d, digits = synthetic.digits28(), load_digits()
    assert not set(base.tolist()) & set(base_test.tolist())
    np.testing.assert_array_equal(d["y_train"], digits.target[base])
    np.testing.assert_array_equal(d["y_test"], digits.target[base_test])
    # the base indices are the digits actually drawn: without distortion each image is its base
    plain = elastic_digits(n_train=4000, n_test=1000, seed=synthetic.GENERATOR_SEED, alpha=0.0,
                           max_degrees=0.0, bases=True)
    np.testing.assert_array_equal(plain["base"], base)
    np.testing.assert_array_equal(plain["base_test"], base_test)
    for x, b in [(plain["x"][:50], base[:50]), (plain["x_test"][:50], base_test[:50])]:
        box = ndimage.zoom(digits.images[b] / 16.0, (1, 20 / 8, 20 / 8), order=1)
        np.testing.assert_array_equal(x[:, 4:24, 4:24], np.clip(np.rint(box * 255), 0, 255))


def test_shape_distance_fields_golden_values():
    s, w = np.full((1, 1, 1), 8.0), np.full((1, 1, 1), 1.5)
    at = lambda name, u, v: float(_sdf(SHAPE_CLASSES.index(name), np.full((1, 1, 1), u),   # noqa: E731
                                       np.full((1, 1, 1), v), s, w)[0, 0, 0])
    assert at("disk", 0, 0) == -8 and at("disk", 3, 4) == -3 and at("disk", 0, 10) == 2
    assert at("ring", 6.5, 0) == -1.5 and at("ring", 0, 0) == 6.5 - 1.5
    assert at("square", 0, 0) == -6.4 and at("square", 6.4 + 3, 6.4 + 4) == pytest.approx(5)
    assert at("square_outline", 0, 0) == pytest.approx(6.4 - 2 * 1.5)        # hollow inside
    assert at("triangle", 0, 0) == pytest.approx(-0.6 * 8) and at("triangle", 0, -9.6) == pytest.approx(0)
    assert at("plus", 8, 0) == 0 and at("plus", 5, 5) > 0 and at("x", 5, 5) < 0
    assert at("hbar", 7, 0) < 0 < at("hbar", 0, 7) and at("vbar", 0, 7) < 0 < at("vbar", 7, 0)
    assert at("l_corner", -5.5, -5) < 0 and at("l_corner", 5, 5.5) < 0 and at("l_corner", 5, -5) > 0


def test_render_shapes_is_seeded_and_each_class_draws_its_own_shape():
    x1, y1 = render_shapes(60, np.random.default_rng(4))
    x2, y2 = render_shapes(60, np.random.default_rng(4))
    assert (x1 == x2).all() and (y1 == y2).all() and np.bincount(y1).tolist() == [6] * 10
    d = synthetic.shapes28()
    means = np.stack([d["x_train"][d["y_train"] == c, ..., 0].mean(0) for c in range(10)])
    names = dict(zip(SHAPE_CLASSES, means))
    # mean images: bars are ink along their axis, an outline and a ring are darker inside than a fill
    h, v = names["hbar"], names["vbar"]
    assert h[14, 4:24].mean() > h[4:24, 14].mean() + 20 and v[4:24, 14].mean() > v[14, 4:24].mean() + 20
    assert names["square"][12:16, 12:16].mean() > names["square_outline"][12:16, 12:16].mean() + 30
    assert names["disk"][12:16, 12:16].mean() > names["ring"][12:16, 12:16].mean() + 30


def test_shapes28_is_learnable_but_not_trivial():
    from sklearn.linear_model import RidgeClassifier

    d = synthetic.shapes28()
    x, xt = (d[k].reshape(len(d[k]), -1) / 255.0 for k in ["x_train", "x_test"])
    pred = RidgeClassifier(alpha=1.0).fit(x, d["y_train"]).predict(xt)
    acc = (pred == d["y_test"]).mean()
    assert 0.45 < acc < 0.9, acc                                  # chance is 0.1; today 0.66
    recall = [(pred[d["y_test"] == c] == c).mean() for c in range(10)]
    assert min(recall) > 0.1, recall                              # no class is indistinguishable


@pytest.mark.slow
def test_ngl_train_shapes28_mlp_one_epoch_end_to_end():
    r = train(TrainConfig(dataset="shapes28", model="mlp", epochs=1, threads=1, device="cpu"),
              progress=False)
    assert r.status == "ok" and r.epochs_run == 1
    assert 0.3 < r.test_accuracy < 0.99 and 0.3 < r.val_accuracy < 0.99
