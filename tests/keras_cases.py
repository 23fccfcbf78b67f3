"""Keras-loss checks for ONE backend, run by tests/test_keras.py in a subprocess:

    KERAS_BACKEND=jax python -m pytest -q tests/keras_cases.py

(the name does not start with ``test_`` so the main suite does not collect it in-process, where
the backend would be whatever imported keras first). Every check runs for every registered loss:
values and input gradients against the PyTorch losses (float32, 1e-5), Keras' published focal
values, NumPy references, errors, serialisation and a short ``model.fit`` on sklearn digits.
"""
from __future__ import annotations

import os
import sys

_BEFORE_KERAS = set(sys.modules)
import keras  # noqa: E402
_BEFORE_NGL_KERAS = set(sys.modules)
import ngl.keras as nk  # noqa: E402
_ADDED_BY_NGL_KERAS = set(sys.modules) - _BEFORE_NGL_KERAS

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from keras import ops  # noqa: E402

import ngl.losses as nl  # noqa: E402
from ngl import expr as E  # noqa: E402

BACKEND = keras.backend.backend()
LOSSES = nk.list_losses()
torch.set_num_threads(1)
RNG = np.random.default_rng(0)
B, C = 6, 5
LOGITS = (RNG.normal(size=(B, C)) * 2).astype("float32")
PROBS = (np.exp(LOGITS) / np.exp(LOGITS).sum(1, keepdims=True)).astype("float32")
LABELS = RNG.integers(0, C, size=B)
ONE_HOT = np.eye(C, dtype="float32")[LABELS]
SOFT = RNG.dirichlet(np.ones(C), size=B).astype("float32")
TARGETS = {"labels": LABELS, "one_hot": ONE_HOT, "soft": SOFT}
REDUCTIONS = {"none": "none", "sum": "sum", "mean": "sum_over_batch_size"}   # torch -> keras


def to_np(x) -> np.ndarray:
    return np.asarray(ops.convert_to_numpy(x))


def torch_loss(name: str, x: np.ndarray, target: np.ndarray, *, from_logits: bool,
               reduction: str = "none", grad: bool = False, **kw):
    """The PyTorch twin's value (and gradient w.r.t. ``x``) with classes on dim 1."""
    xt = torch.tensor(np.moveaxis(x, -1, 1), requires_grad=grad)
    tt = torch.tensor(target if target.dtype.kind == "i" else np.moveaxis(target, -1, 1))
    out = nl.get_loss(name, from_logits=from_logits, reduction=reduction, **kw)(xt, tt)
    if not grad:
        return out.detach().numpy()
    out.sum().backward()
    return out.detach().numpy(), np.moveaxis(xt.grad.numpy(), 1, -1)


def keras_grad(loss, y, x: np.ndarray) -> np.ndarray:
    """d sum(loss(y, x)) / dx with the running backend's autodiff."""
    if BACKEND == "tensorflow":
        import tensorflow as tf

        xv = tf.constant(x)
        with tf.GradientTape() as tape:
            tape.watch(xv)
            value = tf.reduce_sum(loss(y, xv))
        return tape.gradient(value, xv).numpy()
    if BACKEND == "jax":
        import jax
        import jax.numpy as jnp

        return np.asarray(jax.grad(lambda v: jnp.sum(loss(y, v)))(jnp.asarray(x)))
    xv = torch.tensor(x, requires_grad=True)
    loss(y, xv).sum().backward()
    return xv.grad.numpy()


def inputs(from_logits: bool) -> np.ndarray:
    return LOGITS if from_logits else PROBS


# ------------------------------------------------------------------ registry and import hygiene
def test_registry_matches_pytorch_names_and_hyperparameters():
    assert LOSSES == nl.list_losses()
    shared = {"from_logits", "ignore_index", "weight", "reduction", "fast"}
    for name in LOSSES:
        torch_hp = {k: v for k, v in nl.get_loss_info(name).hparams.items() if k not in shared}
        loss = nk.get_loss(name)
        assert {k: getattr(loss, k) for k in torch_hp} == torch_hp, name
        assert loss.from_logits is False                   # the Keras convention, documented


def test_importing_ngl_keras_loads_no_other_backend():
    assert not any(m.split(".")[0] in ("tensorflow", "jax", "jaxlib") for m in _ADDED_BY_NGL_KERAS)
    if BACKEND != "tensorflow":
        assert "tensorflow" not in sys.modules


# ------------------------------------------------------------------ values and gradients vs PyTorch
@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("from_logits", [False, True])
@pytest.mark.parametrize("target", list(TARGETS))
def test_values_and_gradients_match_pytorch(name, from_logits, target):
    x, y = inputs(from_logits), TARGETS[target]
    want, want_grad = torch_loss(name, x, y, from_logits=from_logits, grad=True)
    loss = nk.get_loss(name, from_logits=from_logits, reduction="none")
    np.testing.assert_allclose(to_np(loss(y, x)), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(keras_grad(loss, y, x), want_grad, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", LOSSES)
@pytest.mark.parametrize("reduction", list(REDUCTIONS))
def test_reductions_match_pytorch(name, reduction):
    want = torch_loss(name, LOGITS, LABELS, from_logits=True, reduction=reduction)
    loss = nk.get_loss(name, from_logits=True, reduction=REDUCTIONS[reduction])
    np.testing.assert_allclose(to_np(loss(LABELS, LOGITS)), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", LOSSES)
def test_spatial_targets_class_axis_last(name):
    x = RNG.normal(size=(2, 3, 4, C)).astype("float32")
    y = RNG.integers(0, C, size=(2, 3, 4))
    want = torch_loss(name, x, y, from_logits=True)
    got = to_np(nk.get_loss(name, from_logits=True, reduction="none")(y, x))
    assert got.shape == (2, 3, 4)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_sample_weight_is_a_weighted_mean_over_the_batch():
    w = RNG.uniform(0, 2, size=B).astype("float32")
    per = to_np(nk.NGL(reduction="none")(LABELS, PROBS))
    np.testing.assert_allclose(to_np(nk.NGL()(LABELS, PROBS, sample_weight=w)), (per * w).mean(), rtol=1e-6)
    np.testing.assert_allclose(to_np(nk.NGL(reduction="mean_with_sample_weight")(
        LABELS, PROBS, sample_weight=w)), (per * w).sum() / w.sum(), rtol=1e-6)


@pytest.mark.parametrize("name", LOSSES)
def test_finite_values_and_gradients_at_extreme_logits(name):
    x = np.where(RNG.random((B, C)) < 0.5, -100.0, 100.0).astype("float32")
    loss = nk.get_loss(name, from_logits=True)
    for y in (LABELS, SOFT):
        assert np.isfinite(to_np(loss(y, x))).all()
        assert np.isfinite(keras_grad(loss, y, x)).all()


# ------------------------------------------------------------------ independent references
def test_ngl_matches_the_published_formula_in_numpy():
    terms = np.exp(2.4092 - PROBS * (1 + ONE_HOT)) - np.cos(np.cos(np.sin(PROBS)))
    np.testing.assert_allclose(to_np(nk.NGL()(LABELS, PROBS)), terms.mean(), rtol=1e-6)
    s = 1 / (1 + np.exp(-PROBS))   # the reference Keras example: sigmoid on softmax outputs
    ref = (np.exp(2.4092 - s * (1 + ONE_HOT)) - np.cos(np.cos(np.sin(s)))).mean()
    np.testing.assert_allclose(to_np(nk.NGL(scaling=True)(LABELS, PROBS)), ref, rtol=1e-6)
    assert abs(ref - terms.mean()) > 0.1


def test_focal_reproduces_keras_published_values():
    y = np.eye(3, dtype="float32")
    probs = np.array([[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]], "float32")
    logits = np.array([[8, 1, 1], [0, 9, 1], [2, 3, 5]], "float32")
    np.testing.assert_allclose(to_np(nk.Focal()(y, probs)), 0.02059, atol=1e-5)
    np.testing.assert_allclose(to_np(nk.Focal(from_logits=True)(y, logits)), 0.000345, atol=1e-6)
    ref = keras.losses.CategoricalFocalCrossentropy()(y, probs)
    np.testing.assert_allclose(to_np(nk.Focal()(y, probs)), to_np(ref), rtol=1e-5)


def test_degenerate_cases():
    ce = to_np(nk.CE(reduction="none")(LABELS, PROBS))
    np.testing.assert_allclose(ce, -np.log(PROBS[np.arange(B), LABELS]), rtol=1e-5)
    np.testing.assert_allclose(to_np(nk.Focal(gamma=0.0, alpha=None, reduction="none")(LABELS, PROBS)),
                               ce, rtol=1e-5)
    np.testing.assert_allclose(to_np(nk.SCE(alpha=1.0, beta=0.0, reduction="none")(LABELS, PROBS)),
                               ce, rtol=1e-5)
    np.testing.assert_allclose(to_np(nk.SCE(alpha=0.0, beta=1.0, reduction="none")(LABELS, PROBS)),
                               -np.log(1e-4) * (1 - PROBS[np.arange(B), LABELS]), rtol=1e-4)
    np.testing.assert_allclose(to_np(nk.Poly1(epsilon=0.0, reduction="none")(LABELS, PROBS)), ce, rtol=1e-5)
    np.testing.assert_allclose(to_np(nk.LabelSmoothingCE(smoothing=0.0, reduction="none")(LABELS, PROBS)),
                               ce, rtol=1e-5)


def test_expression_losses_equal_their_registered_twins():
    np.testing.assert_allclose(to_np(nk.from_expression(E.NGL)(LABELS, PROBS)),
                               to_np(nk.NGL()(LABELS, PROBS)), rtol=1e-6)
    np.testing.assert_allclose(to_np(nk.get_loss("expr:-(y * log(p))")(LABELS, PROBS)),
                               to_np(nk.CE()(LABELS, PROBS)) / C, rtol=1e-5)
    expr = E.parse("square(p - y) + 0.5 * abs(p)")
    want = torch_loss("expr:" + E.to_infix(expr), LOGITS, LABELS, from_logits=True, reduction="mean")
    np.testing.assert_allclose(to_np(nk.from_expression(expr, from_logits=True)(LABELS, LOGITS)),
                               want, rtol=1e-5)


def test_from_expression_reads_a_saved_file(tmp_path):
    path = E.save(E.NGL, tmp_path / "best.json", fitness=0.9)
    for loss in (nk.from_expression(path), nk.from_expression(str(path)), nk.get_loss(str(path))):
        assert isinstance(loss, nk.Expression) and loss.expression == E.NGL


# ------------------------------------------------------------------ bad input
def test_label_column_raises_instead_of_broadcasting():
    with pytest.raises(ValueError, match=r"class labels must have shape \(6,\).*got \(6, 1\).*squeeze"):
        nk.NGL()(LABELS[:, None], PROBS)


@pytest.mark.parametrize("y, x, match", [
    (np.zeros((B, C + 1), "float32"), PROBS, "one-hot/soft targets must have the predictions' shape"),
    (LABELS[:4], PROBS, "targets must be class labels"),
    (LABELS, PROBS[:, 0], "predictions must be"),
])
def test_shape_errors(y, x, match):
    for name in LOSSES:
        with pytest.raises(ValueError, match=match):
            nk.get_loss(name)(y, x)


@pytest.mark.parametrize("name, kw, match", [
    ("focal", {"gamma": -1.0}, "gamma"), ("sce", {"beta": float("nan")}, "beta"),
    ("ngl", {"alpha": "x"}, "alpha"), ("ce_l2", {"l2": -1e-4}, "l2"),
    ("label_smoothing_ce", {"smoothing": 1.5}, "label_smoothing"), ("ngl", {"from_logits": 1}, "from_logits"),
    ("ce", {"reduction": "avg"}, "reduction"), ("ngl", {"scaling": "yes"}, "scaling"),
])
def test_bad_hyperparameters(name, kw, match):
    with pytest.raises(ValueError, match=match):
        nk.get_loss(name, **kw)


def test_unknown_loss_names_the_registry():
    with pytest.raises(KeyError, match="unknown Keras loss .nope.; registered: ce, ce_l2"):
        nk.get_loss("nope")


# ------------------------------------------------------------------ serialisation
@pytest.mark.parametrize("name", LOSSES)
def test_config_round_trip_and_keras_lookup(name):
    loss = nk.get_loss(name, from_logits=True, reduction="sum", name="my_loss")
    cls_name = f"ngl>{type(loss).__name__}"
    assert keras.saving.get_registered_object(cls_name) is type(loss)
    for clone in (type(loss).from_config(loss.get_config()),
                  keras.losses.get({"class_name": cls_name, "config": loss.get_config()}),
                  keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(loss)),
                  nk.get_loss(cls_name, from_logits=True, reduction="sum", name="my_loss")):
        assert type(clone) is type(loss) and clone.get_config() == loss.get_config()
        np.testing.assert_allclose(to_np(clone(LABELS, LOGITS)), to_np(loss(LABELS, LOGITS)))


def test_expression_config_round_trip():
    loss = nk.from_expression("exp(2.4092 - p*(1+y)) - cos(cos(sin(p)))")
    clone = keras.losses.deserialize(keras.losses.serialize(loss))
    assert clone.expression == E.NGL


def _mlp(classes: int = 10, l2: float | None = None) -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
                             keras.layers.Dense(classes, activation="softmax")])


@pytest.mark.filterwarnings("ignore:Skipping variable loading for optimizer")
@pytest.mark.parametrize("loss", [nk.NGL(scaling=True, alpha=2.0), nk.from_expression("square(p - y)")])
def test_model_save_load_round_trip(tmp_path, loss):
    model = _mlp()
    model.compile(optimizer="adam", loss=loss)
    x = RNG.normal(size=(8, 64)).astype("float32")
    y = RNG.integers(0, 10, size=8)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(loaded.loss) is type(loss) and loaded.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5)


# ------------------------------------------------------------------ training
@pytest.fixture(scope="module")
def digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x / 16.0).astype("float32"), y.astype("int64")


@pytest.mark.parametrize("name", LOSSES)
def test_fit_on_digits_decreases_the_loss(digits, name):
    x, y = digits
    loss = nk.get_loss(name)
    model = _mlp()
    if name == "ce_l2":
        assert loss.apply_to(model) == 2                    # the two Dense kernels
        want = 1e-4 * sum(float(np.square(to_np(w)).sum()) for w in model.trainable_weights if len(w.shape) == 2)
        np.testing.assert_allclose(sum(float(to_np(v)) for v in model.losses), want, rtol=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, metrics=["accuracy"])
    hist = model.fit(x, y, batch_size=128, epochs=3, verbose=0, shuffle=False).history
    losses = hist["loss"]      # NGL's range is narrow (about 9.3 to 9.5 here): no relative threshold
    assert all(b < a - 1e-3 for a, b in zip(losses, losses[1:])), losses
    assert hist["accuracy"][-1] > 0.4, hist["accuracy"]                # chance is 0.1
