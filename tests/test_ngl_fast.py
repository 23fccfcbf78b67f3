"""NGL's fast paths (fused C kernel on CPU, torch-ops polynomial path) against the exact formula
and an independent float64 NumPy re-computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ngl.losses import _native, ngl_loss
from ngl.losses import _ngl_fused as fused

ALPHA = 2.4092   # written out: an independent check of ngl.expr.NGL_ALPHA


def _probs_and_targets(logits: np.ndarray, target: np.ndarray):
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = target if target.dtype.kind == "f" else np.moveaxis(np.eye(logits.shape[1])[target], -1, 1)
    return p, y


def numpy_ngl(logits: np.ndarray, target: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Per-sample NGL (mean over classes), float64, class axis 1; labels or dense targets."""
    p, y = _probs_and_targets(logits, target)
    return (np.exp(alpha - p * (1 + y)) - np.cos(np.cos(np.sin(p)))).mean(axis=1)


def numpy_grad(logits: np.ndarray, target: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """d(sum of per-sample NGL)/d logits, derived by hand from the formula."""
    p, y = _probs_and_targets(logits, target)
    dp = (-(1 + y) * np.exp(alpha - p * (1 + y))
          - np.sin(np.cos(np.sin(p))) * np.sin(np.sin(p)) * np.cos(p)) / logits.shape[1]
    return p * (dp - (p * dp).sum(axis=1, keepdims=True))


def soft_targets(rng, shape) -> np.ndarray:
    """Random soft targets (Dirichlet over the class axis, so no row is one-hot)."""
    y = rng.dirichlet(np.ones(shape[1]), size=(shape[0],) + tuple(shape[2:]))
    return np.ascontiguousarray(np.moveaxis(y, -1, 1))


SHAPES = [(16, 10), (8, 100), (3, 1000), (2, 21, 5, 7), (4, 3, 9), (1, 1), (5, 2)]


@pytest.fixture(params=["native", "torch"])
def forward(request):
    if request.param == "native":
        lib = _native.kernel()
        if lib is None:
            pytest.skip("no C compiler: native kernel unavailable")
        return lambda z, t, a=ALPHA: fused.native_forward(lib, z, t, a)
    return lambda z, t, a=ALPHA: fused.forward(z, t, a)


@pytest.fixture(params=["native", "torch"])
def forward_impl(request):
    """An implementation by name, with its ``reduction`` argument."""
    if request.param == "native" and _native.kernel() is None:
        pytest.skip("no C compiler: native kernel unavailable")
    return lambda z, t, a, reduction: fused.IMPLEMENTATIONS[request.param](z, t, a, reduction)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_fast_forward_matches_numpy(forward, shape, scale):
    rng = np.random.default_rng(sum(shape))
    z = (rng.standard_normal(shape) * scale).astype(np.float32)
    t = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    value, grad = forward(torch.from_numpy(z), torch.from_numpy(t))
    np.testing.assert_allclose(value.numpy(), numpy_ngl(z.astype(np.float64), t), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad.numpy(), numpy_grad(z.astype(np.float64), t), rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_fast_forward_dense_targets_match_numpy(forward, shape, scale):
    """Soft targets (not one-hot) and mixup-like two-class targets against the float64 formula."""
    rng = np.random.default_rng(sum(shape) + 7)
    z = (rng.standard_normal(shape) * scale).astype(np.float32)
    labels = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    mix = 0.7 * np.moveaxis(np.eye(shape[1])[labels], -1, 1) + 0.3 * np.moveaxis(np.eye(shape[1])[labels[::-1]], -1, 1)
    for y in (soft_targets(rng, shape), mix):
        value, grad = forward(torch.from_numpy(z), torch.from_numpy(y.astype(np.float32)))
        want = numpy_ngl(z.astype(np.float64), y.astype(np.float32).astype(np.float64))
        np.testing.assert_allclose(value.numpy(), want, rtol=1e-6, atol=0)
        np.testing.assert_allclose(grad.numpy(), numpy_grad(z.astype(np.float64), y.astype(np.float32).astype(np.float64)),
                                   rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", SHAPES)
def test_fast_forward_one_hot_equals_labels(forward, shape):
    rng = np.random.default_rng(sum(shape) + 11)
    z = torch.from_numpy((rng.standard_normal(shape) * 4).astype(np.float32))
    t = torch.from_numpy(rng.integers(0, shape[1], size=(shape[0],) + shape[2:]))
    onehot = torch.nn.functional.one_hot(t, shape[1]).movedim(-1, 1).float().contiguous()
    (v1, g1), (v2, g2) = forward(z, t), forward(z, onehot)
    torch.testing.assert_close(v2, v1, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g2, g1, rtol=0, atol=1e-6)


@pytest.mark.parametrize("kind", ["labels", "soft"])
def test_fast_forward_reductions(forward_impl, kind):
    """``reduction="mean"``/``"sum"``: the per-sample values' mean/sum and the gradient of it."""
    rng = np.random.default_rng(13)
    for shape in [(16, 10), (8, 100), (2, 21, 5, 7)]:
        z = torch.from_numpy((rng.standard_normal(shape) * 3).astype(np.float32))
        t = (torch.from_numpy(rng.integers(0, shape[1], size=(shape[0],) + shape[2:])) if kind == "labels"
             else torch.from_numpy(soft_targets(rng, shape).astype(np.float32)))
        value, grad = forward_impl(z, t, ALPHA, "none")
        n = value.numel()
        for reduction, scale in (("mean", 1 / n), ("sum", 1.0)):
            total, g = forward_impl(z, t, ALPHA, reduction)
            assert total.shape == ()
            torch.testing.assert_close(total, value.sum() * scale, rtol=2e-6, atol=0)
            torch.testing.assert_close(g, grad * scale, rtol=1e-5, atol=1e-9)


def test_torch_ops_dense_targets_in_float64():
    """The torch-ops pass in float64: only the polynomials' error (< 2e-7 on values of 4 to 11)."""
    rng = np.random.default_rng(12)
    for shape in [(9, 7), (3, 1000), (2, 5, 3, 4)]:
        z = rng.standard_normal(shape) * 3
        y = soft_targets(rng, shape)
        value, grad = fused.forward(torch.from_numpy(z), torch.from_numpy(y), ALPHA)
        assert value.dtype == grad.dtype == torch.float64
        np.testing.assert_allclose(value.numpy(), numpy_ngl(z, y), rtol=1e-7, atol=0)
        np.testing.assert_allclose(grad.numpy(), numpy_grad(z, y), rtol=0, atol=1e-7)


@pytest.mark.parametrize("alpha", [0.0, 1.0, 2.4092, 3.5])
def test_fast_forward_other_alpha(forward, alpha):
    rng = np.random.default_rng(1)
    z = rng.standard_normal((32, 7)).astype(np.float32)
    t = rng.integers(0, 7, size=32)
    value, grad = forward(torch.from_numpy(z), torch.from_numpy(t), alpha)
    np.testing.assert_allclose(value.numpy(), numpy_ngl(z.astype(np.float64), t, alpha), atol=2e-6 * np.exp(alpha))
    np.testing.assert_allclose(grad.numpy(), numpy_grad(z.astype(np.float64), t, alpha), atol=1e-6 * np.exp(alpha))


def test_public_fast_and_exact_agree_to_1e6():
    torch.manual_seed(0)
    z = torch.randn(64, 37) * 3
    t = torch.randint(0, 37, (64,))
    a, b = z.clone().requires_grad_(), z.clone().requires_grad_()
    va, vb = ngl_loss(a, t, fast=True), ngl_loss(b, t, fast=False)
    va.backward()
    vb.backward()
    assert abs(va.item() - vb.item()) < 1e-6
    assert (a.grad - b.grad).abs().max().item() < 1e-6


def test_extreme_logits_finite(forward):
    z = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, 1e4], [100.0, -100.0, 50.0]])
    t = torch.tensor([0, 1, 2])
    value, grad = forward(z, t)
    assert torch.isfinite(value).all() and torch.isfinite(grad).all()
    # p is one-hot: the true class at p=1 gives exp(a-2) - ccs(1) + wrong classes exp(a) - ccs(0)
    ccs = lambda p: np.cos(np.cos(np.sin(p)))  # noqa: E731
    right = (np.exp(ALPHA - 2) - ccs(1.0) + 2 * (np.exp(ALPHA) - ccs(0.0))) / 3
    wrong = (np.exp(ALPHA - 1) - ccs(1.0) + np.exp(ALPHA) - ccs(0.0) + np.exp(ALPHA) - ccs(0.0)) / 3
    np.testing.assert_allclose(value.numpy(), [right, wrong, wrong], rtol=1e-5)


def test_nan_logits_propagate(forward):
    z = torch.tensor([[float("nan"), 0.0, 1.0], [0.0, 1.0, 2.0]])
    value, grad = forward(z, torch.tensor([0, 1]))
    assert torch.isnan(value[0]) and torch.isfinite(value[1])
    assert torch.isnan(grad[0]).all() and torch.isfinite(grad[1]).all()


def test_segmentation_matches_flattened():
    torch.manual_seed(3)
    z = torch.randn(2, 6, 4, 5)
    t = torch.randint(0, 6, (2, 4, 5))
    spatial = ngl_loss(z, t, reduction="none")
    flat = ngl_loss(z.permute(0, 2, 3, 1).reshape(-1, 6), t.reshape(-1), reduction="none")
    torch.testing.assert_close(spatial.reshape(-1), flat, atol=2e-6, rtol=0)


def test_half_precision_computed_in_float32():
    torch.manual_seed(4)
    z = torch.randn(16, 10)
    t = torch.randint(0, 10, (16,))
    for dtype in (torch.float16, torch.bfloat16):
        zh = z.to(dtype)
        out = ngl_loss(zh, t)
        assert out.dtype == torch.float32
        ref = ngl_loss(zh.float(), t, fast=False)
        assert abs(out.item() - ref.item()) < 1e-6 * abs(ref.item())
        zr = zh.clone().requires_grad_()
        ngl_loss(zr, t).backward()
        assert zr.grad.dtype == dtype


def test_double_backward_refused():
    z = torch.randn(4, 3, requires_grad=True)
    loss = ngl_loss(z, torch.tensor([0, 1, 2, 0]), fast=True)
    (g,) = torch.autograd.grad(loss, z, create_graph=True)
    with pytest.raises(RuntimeError):
        g.sum().backward()


def test_kernel_falls_back_without_compiler(monkeypatch, tmp_path):
    monkeypatch.setattr(_native, "_compiler", lambda: None)
    _native.kernel.cache_clear()
    fused._can_compile.cache_clear()
    try:
        assert _native.kernel() is None
        assert not fused.fused_enabled(torch.device("cpu"))   # Inductor would need a compiler too
        z, t = torch.randn(8, 5), torch.randint(0, 5, (8,))
        torch.testing.assert_close(ngl_loss(z, t), ngl_loss(z, t, fast=False), rtol=1e-6, atol=1e-7)   # float32: 1e-6 relative
    finally:
        _native.kernel.cache_clear()
        fused._can_compile.cache_clear()     # it asked the patched _compiler too


def test_kernel_disabled_by_env(monkeypatch):
    monkeypatch.setenv("NGL_NATIVE", "0")
    _native.kernel.cache_clear()
    try:
        assert _native.kernel() is None
    finally:
        monkeypatch.delenv("NGL_NATIVE")
        _native.kernel.cache_clear()


def test_kernel_builds_into_cache(monkeypatch, tmp_path):
    if _native._compiler() is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("NGL_CACHE_DIR", str(tmp_path))
    _native.kernel.cache_clear()
    try:
        lib = _native.kernel()
        assert lib is not None
        built = list((tmp_path / "kernels").glob("ngl_kernel_*.so"))
        assert len(built) == 1 and not list((tmp_path / "kernels").glob("*.tmp*"))
    finally:
        _native.kernel.cache_clear()


# --- the fused (Inductor-compiled) path: used where the native kernel is not ---------------------
@pytest.fixture
def no_native(monkeypatch):
    monkeypatch.setattr(_native, "kernel", lambda: None)
    monkeypatch.setattr(fused, "_FUSED_BROKEN", [])
    monkeypatch.delenv("NGL_FUSED", raising=False)


def test_fused_path_is_chosen_without_native_kernel(no_native, monkeypatch):
    calls = []

    def spy(z, t, a, reduction="none"):
        calls.append(z.shape)
        return fused.forward(z, t, a, reduction)

    monkeypatch.setattr(fused, "fused_forward", spy)
    monkeypatch.setattr(fused, "_can_compile", lambda device_type: True)
    z, t = torch.randn(8, 5), torch.randint(0, 5, (8,))
    torch.testing.assert_close(ngl_loss(z, t), ngl_loss(z, t, fast=False), rtol=1e-6, atol=1e-7)   # float32: 1e-6 relative
    assert calls == [(8, 5)]
    monkeypatch.setenv("NGL_FUSED", "0")       # opt out: plain torch ops
    ngl_loss(z, t)
    assert calls == [(8, 5)]


def test_fused_compile_failure_falls_back_to_torch_ops(no_native, monkeypatch):
    def broken(*args):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_compiled", broken)
    monkeypatch.setattr(fused, "_can_compile", lambda device_type: True)
    z, t = torch.randn(8, 5), torch.randint(0, 5, (8,))
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        out = ngl_loss(z, t)
    torch.testing.assert_close(out, ngl_loss(z, t, fast=False), rtol=1e-6, atol=1e-7)   # float32: 1e-6 relative
    assert not fused.fused_enabled(z.device)    # not retried on every call


def test_fused_recompile_limit_runs_that_call_eagerly(no_native, monkeypatch):
    """dynamo's recompile limit (many shape/dtype variants) is no compiler failure: that call runs
    the torch ops, later ones stay fused and nothing warns."""
    class FailOnRecompileLimitHit(Exception):
        pass

    def limit(*args):
        raise FailOnRecompileLimitHit("Hard failure due to fullgraph=True")

    monkeypatch.setattr(fused, "fused_forward", limit)
    monkeypatch.setattr(fused, "_can_compile", lambda device_type: True)
    z, t = torch.randn(8, 5), torch.randint(0, 5, (8,))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = ngl_loss(z, t)
    torch.testing.assert_close(out, ngl_loss(z, t, fast=False), rtol=1e-6, atol=1e-7)   # float32: 1e-6 relative
    assert fused.fused_enabled(z.device)


@pytest.mark.slow
@pytest.mark.skipif(_native._compiler() is None, reason="Inductor needs a C++ compiler on CPU")
def test_fused_forward_matches_numpy():
    """Labels and soft targets through the Inductor-compiled pass (what CUDA runs)."""
    rng = np.random.default_rng(5)
    for shape in [(16, 10), (2, 21, 5, 7), (64, 1000)]:
        z = (rng.standard_normal(shape) * 4).astype(np.float32)
        t = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
        y = soft_targets(rng, shape).astype(np.float32)
        for target in (t, y):
            value, grad = fused.fused_forward(torch.from_numpy(z), torch.from_numpy(target), ALPHA)
            want = numpy_ngl(z.astype(np.float64), target.astype(np.float64) if target is y else t)
            np.testing.assert_allclose(value.numpy(), want, rtol=1e-6, atol=0)
            np.testing.assert_allclose(grad.numpy(), numpy_grad(z.astype(np.float64), target.astype(np.float64)
                                                                if target is y else t), rtol=0, atol=1e-6)
    total, g = fused.fused_forward(torch.from_numpy(z), torch.from_numpy(y), ALPHA, "mean")   # the last shape
    torch.testing.assert_close(total, value.mean(), rtol=2e-6, atol=0)
    torch.testing.assert_close(g, grad / value.numel(), rtol=1e-5, atol=1e-12)


# --- the public ngl_loss: one native call per loss (labels checked, ignore_index and reduction in C)
def _native_or_skip():
    if _native.kernel() is None:
        pytest.skip("no C compiler: native kernel unavailable")


PUBLIC_SHAPES = [(128, 10), (600, 7), (64, 100), (16, 1000), (4, 21, 6, 5)]   # 600: blocks of 256 rows


@pytest.mark.parametrize("shape", PUBLIC_SHAPES)
@pytest.mark.parametrize("kind", ["labels", "one_hot", "soft"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_public_native_path_matches_numpy(shape, kind, reduction):
    _native_or_skip()
    rng = np.random.default_rng(sum(shape) + len(kind) + len(reduction))
    z = (rng.standard_normal(shape) * 4).astype(np.float32)
    labels = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    keep = np.ones(labels.shape, dtype=bool)
    if kind == "labels":
        keep = rng.random(labels.shape) > 0.2
        target = torch.from_numpy(np.where(keep, labels, -100))
        y = labels
    else:
        y = np.moveaxis(np.eye(shape[1])[labels], -1, 1) if kind == "one_hot" else soft_targets(rng, shape)
        y = y.astype(np.float32)
        target = torch.from_numpy(y)
    x = torch.from_numpy(z).requires_grad_(True)
    loss = ngl_loss(x, target, reduction=reduction)
    assert loss.grad_fn.name() == "NativeNGLBackward"
    loss.sum().backward()
    per, grad = numpy_ngl(z.astype(np.float64), y), numpy_grad(z.astype(np.float64), y)
    per, grad = per * keep, grad * np.expand_dims(keep, 1)
    want, scale = {"none": (per, 1.0), "sum": (per.sum(), 1.0), "mean": (per.sum() / keep.sum(), 1 / keep.sum())}[reduction]
    np.testing.assert_allclose(loss.detach().numpy(), want, rtol=2e-6, atol=0)
    np.testing.assert_allclose(x.grad.numpy(), grad * scale, rtol=0, atol=1e-6 * scale)


def test_public_native_path_ignore_index_inside_the_class_range():
    _native_or_skip()
    rng = np.random.default_rng(21)
    z = torch.from_numpy(rng.standard_normal((40, 60)).astype(np.float32))
    t = torch.from_numpy(rng.integers(0, 4, size=40))
    got = ngl_loss(z, t, ignore_index=1)
    keep = (t != 1).numpy()
    assert got.grad_fn is None and keep.sum() < 40      # no grad needed: still the native call
    np.testing.assert_allclose(got.item(), numpy_ngl(z.double().numpy(), t.numpy())[keep].mean(), rtol=2e-6)


def test_public_native_path_refuses_a_bad_label_in_one_line():
    _native_or_skip()
    from ngl.errors import InputError

    z = torch.randn(6, 50)
    for bad in (50, -1, -100):
        t = torch.tensor([0, 1, bad, 3, 4, 5])
        with pytest.raises(InputError, match=rf"^ngl: class label {bad} out of range \[0, 49\] for 50 classes$"):
            ngl_loss(z, t, ignore_index=-7)


def test_public_native_path_upstream_gradients():
    """loss.backward() hands the kernel's gradient through; any other upstream gradient scales it,
    and a retained graph gives the same gradient twice."""
    _native_or_skip()
    torch.manual_seed(9)
    x = torch.randn(32, 70, requires_grad=True)
    y = torch.softmax(torch.randn(32, 70), 1)
    ref = torch.from_numpy(numpy_grad(x.detach().double().numpy(), y.double().numpy())).float() / 32
    (ngl_loss(x, y) * 3.0).backward()
    torch.testing.assert_close(x.grad, 3 * ref, rtol=0, atol=3e-6 / 32)
    x.grad = None
    loss = ngl_loss(x, y)
    loss.backward(retain_graph=True)
    first = x.grad.clone()
    loss.backward()
    torch.testing.assert_close(x.grad, 2 * first, rtol=0, atol=0)
    loss = ngl_loss(x, y)
    loss.mul_(2)                        # the output is an ordinary tensor, as F.cross_entropy's
    assert torch.isfinite(loss)


def test_soft_targets_with_class_weight_match_numpy():
    rng = np.random.default_rng(23)
    z = rng.standard_normal((12, 9)) * 3
    y = soft_targets(rng, (12, 9))
    w = rng.uniform(0.2, 2.0, size=9)
    per, ws = numpy_ngl(z, y), (y * w).sum(1)
    for dtype in (torch.float32, torch.float64):
        got = ngl_loss(torch.from_numpy(z).to(dtype), torch.from_numpy(y).to(dtype), weight=torch.from_numpy(w).to(dtype))
        np.testing.assert_allclose(got.item(), (per * ws).sum() / ws.sum(), rtol=2e-6)


def test_targets_that_need_a_gradient_take_the_exact_formula():
    x = torch.randn(5, 6, requires_grad=True)
    y = torch.softmax(torch.randn(5, 6), 1).requires_grad_(True)
    loss = ngl_loss(x, y)
    assert "NGL" not in loss.grad_fn.name()
    loss.backward()
    p = torch.softmax(x.detach(), 1)
    torch.testing.assert_close(y.grad, -p * torch.exp(ALPHA - p * (1 + y.detach())) / 30)
    from ngl.errors import InputError

    with pytest.raises(InputError, match="targets that need no gradient"):
        ngl_loss(x, y, fast=True)


def test_probabilities_outside_0_1_take_the_formula():
    """issue 20: from_logits=False on values outside [0, 1] applies the published formula as
    given (Keras does the same: tests/keras_fast_cases.py), golden value 6.85203 for [[2, 0, 0]]."""
    p = np.array([[2.0, 0.0, 0.0], [2.0, -1.0, 0.5], [0.2, 0.3, 0.5]])
    t = np.array([0, 2, 1])
    y = np.eye(3)[t]
    want = (np.exp(ALPHA - p * (1 + y)) - np.cos(np.cos(np.sin(p)))).mean(1)
    for dtype in (torch.float32, torch.float64):
        got = ngl_loss(torch.from_numpy(p).to(dtype), torch.from_numpy(t), from_logits=False, reduction="none")
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert want[0] == pytest.approx(6.85203, abs=1e-5)
