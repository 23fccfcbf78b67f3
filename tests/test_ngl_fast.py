"""NGL's fast paths (fused C kernel on CPU, torch-ops polynomial path) against the exact formula
and an independent float64 NumPy re-computation."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ngl.losses import _native, ngl_loss
from ngl.losses import _ngl_fused as fused

ALPHA = 2.4092   # written out: an independent check of ngl.expr.NGL_ALPHA


def numpy_ngl(logits: np.ndarray, labels: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """Per-sample NGL (mean over classes), float64, class axis 1."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.moveaxis(np.eye(logits.shape[1])[labels], -1, 1)
    return (np.exp(alpha - p * (1 + y)) - np.cos(np.cos(np.sin(p)))).mean(axis=1)


def numpy_grad(logits: np.ndarray, labels: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """d(sum of per-sample NGL)/d logits, derived by hand from the formula."""
    z = logits - logits.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.moveaxis(np.eye(logits.shape[1])[labels], -1, 1)
    dp = (-(1 + y) * np.exp(alpha - p * (1 + y))
          - np.sin(np.cos(np.sin(p))) * np.sin(np.sin(p)) * np.cos(p)) / logits.shape[1]
    return p * (dp - (p * dp).sum(axis=1, keepdims=True))


SHAPES = [(16, 10), (8, 100), (3, 1000), (2, 21, 5, 7), (4, 3, 9), (1, 1), (5, 2)]


@pytest.fixture(params=["native", "torch"])
def forward(request):
    if request.param == "native":
        lib = _native.kernel()
        if lib is None:
            pytest.skip("no C compiler: native kernel unavailable")
        return lambda z, t, a=ALPHA: fused.native_forward(lib, z, t, a)
    return lambda z, t, a=ALPHA: fused.forward(z, t, a)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("scale", [1.0, 8.0])
def test_fast_forward_matches_numpy(forward, shape, scale):
    rng = np.random.default_rng(sum(shape))
    z = (rng.standard_normal(shape) * scale).astype(np.float32)
    t = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
    value, grad = forward(torch.from_numpy(z), torch.from_numpy(t))
    np.testing.assert_allclose(value.numpy(), numpy_ngl(z.astype(np.float64), t), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(grad.numpy(), numpy_grad(z.astype(np.float64), t), rtol=0, atol=1e-6)


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
        torch.testing.assert_close(ngl_loss(z, t), ngl_loss(z, t, fast=False), atol=1e-6, rtol=0)
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

    def spy(z, t, a):
        calls.append(z.shape)
        return fused.forward(z, t, a)

    monkeypatch.setattr(fused, "fused_forward", spy)
    monkeypatch.setattr(fused, "_can_compile", lambda device_type: True)
    z, t = torch.randn(8, 5), torch.randint(0, 5, (8,))
    torch.testing.assert_close(ngl_loss(z, t), ngl_loss(z, t, fast=False), atol=1e-6, rtol=0)
    assert calls == [(8, 5)]
    monkeypatch.setenv("NGL_FUSED", "0")       # opt out: plain torch ops
    ngl_loss(z, t)
    assert calls == [(8, 5)]


def test_fused_compile_failure_falls_back_to_torch_ops(no_native, monkeypatch):
    def broken(alpha):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(fused, "_compiled", broken)
    monkeypatch.setattr(fused, "_can_compile", lambda device_type: True)
    z, t = torch.randn(8, 5), torch.randint(0, 5, (8,))
    with pytest.warns(RuntimeWarning, match="no C\\+\\+ compiler"):
        out = ngl_loss(z, t)
    torch.testing.assert_close(out, ngl_loss(z, t, fast=False), atol=1e-6, rtol=0)
    assert not fused.fused_enabled(z.device)    # not retried on every call


@pytest.mark.slow
@pytest.mark.skipif(_native._compiler() is None, reason="Inductor needs a C++ compiler on CPU")
def test_fused_forward_matches_numpy():
    rng = np.random.default_rng(5)
    for shape in [(16, 10), (2, 21, 5, 7), (64, 1000)]:
        z = (rng.standard_normal(shape) * 4).astype(np.float32)
        t = rng.integers(0, shape[1], size=(shape[0],) + shape[2:])
        value, grad = fused.fused_forward(torch.from_numpy(z), torch.from_numpy(t), ALPHA)
        np.testing.assert_allclose(value.numpy(), numpy_ngl(z.astype(np.float64), t), rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(grad.numpy(), numpy_grad(z.astype(np.float64), t), rtol=0, atol=1e-6)
