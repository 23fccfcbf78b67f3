"""Losses against independent NumPy re-computations of the published formulas (REFERENCE.md 1, 3)
and published golden values."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ngl.losses import (CEL2Loss, ce_l2_loss, ce_loss, focal_loss, label_smoothing_ce_loss, ngl_loss,
                        poly1_loss, sce_loss)

ALPHA = 2.4092


def softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def onehot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    return np.moveaxis(np.eye(num_classes)[labels], -1, 1)


def ngl_terms(p: np.ndarray, y: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The published element-wise NGL term."""
    return np.exp(alpha - p * (1 + y)) - np.cos(np.cos(np.sin(p)))


def draw(rng, shape, scale=3.0):
    z = rng.normal(size=shape) * scale
    labels = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
    return z, labels


def t64(a):
    return torch.from_numpy(np.asarray(a, dtype=np.float64))


# --- NGL ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(16, 10), (7, 100), (3, 21, 5, 4)])
def test_ngl_random_inputs_match_published_mean(rng, shape):
    z, labels = draw(rng, shape)
    ref = ngl_terms(softmax(z), onehot(labels, shape[1])).mean()   # torch.mean over all B x C
    for dtype, tol in ((torch.float64, 1e-12), (torch.float32, 2e-6)):
        got = ngl_loss(t64(z).to(dtype), torch.from_numpy(labels))
        assert abs(got.item() - ref) < tol * abs(ref)
    soft = softmax(rng.normal(size=shape))
    got = ngl_loss(t64(z), t64(soft), reduction="none").numpy()
    np.testing.assert_allclose(got, ngl_terms(softmax(z), soft).mean(axis=1), rtol=1e-12)


@pytest.mark.parametrize("shape", [(128, 10), (128, 100), (64, 1000), (4, 21, 16, 16)])
def test_ngl_fast_path_matches_exact_path(rng, shape):
    z, labels = draw(rng, shape, scale=4.0)
    target = torch.from_numpy(labels)
    for reduction in ("mean", "sum", "none"):
        grads, values = [], []
        for fast in (True, False):
            x = torch.tensor(z, dtype=torch.float32, requires_grad=True)
            v = ngl_loss(x, target, fast=fast, reduction=reduction)
            v.sum().backward()
            values.append(v.detach())
            grads.append(x.grad)
        # 1e-6 relative: NGL values are 4 to 11, where a float32 ulp is already ~1e-6
        torch.testing.assert_close(values[0], values[1], rtol=1e-6, atol=1e-7)
        torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-6)


def test_ngl_range_facts():
    """REFERENCE.md section 1: 11.125 -> 1.506 (true class), 11.125 -> 4.093 (wrong), 0.5403/0.7861."""
    assert np.exp(ALPHA) == pytest.approx(11.125, abs=5e-4)
    assert np.exp(ALPHA - 2) == pytest.approx(1.506, abs=5e-4)
    assert np.exp(ALPHA - 1) == pytest.approx(4.093, abs=5e-4)
    # p given as probabilities: p = (1, 0), label 0 -> true class at p=1, wrong class at p=0
    per_class = ngl_loss(torch.tensor([[1.0, 0.0]], dtype=torch.float64), torch.tensor([0]),
                         from_logits=False, reduction="none") * 2
    assert per_class.item() == pytest.approx((1.506 - 0.7861) + (11.125 - 0.5403), abs=1e-3)
    # p = (0, 1), label 0: true class at p=0 and wrong class at p=1
    per_class = ngl_loss(torch.tensor([[0.0, 1.0]], dtype=torch.float64), torch.tensor([0]),
                         from_logits=False, reduction="none") * 2
    assert per_class.item() == pytest.approx((11.125 - 0.5403) + (4.093 - 0.7861), abs=1e-3)
    # a perfect prediction over C classes: (1.506 - 0.7861 + (C - 1) (11.125 - 0.5403)) / C
    perfect = ngl_loss(torch.eye(10, dtype=torch.float64), torch.arange(10), from_logits=False)
    assert perfect.item() == pytest.approx((1.506 - 0.7861 + 9 * (11.125 - 0.5403)) / 10, abs=1e-3)


def test_ngl_scaling_is_sigmoid_of_softmax(rng):
    z, labels = draw(rng, (9, 6))
    p = softmax(z)
    s = 1 / (1 + np.exp(-p))
    assert s.min() >= 0.5 and s.max() <= 0.7311
    ref = ngl_terms(s, onehot(labels, 6)).mean()
    got = ngl_loss(t64(z), torch.from_numpy(labels), scaling=True)
    assert got.item() == pytest.approx(ref, rel=1e-12)
    got = ngl_loss(t64(p), torch.from_numpy(labels), scaling=True, from_logits=False)
    assert got.item() == pytest.approx(ref, rel=1e-12)


def test_ngl_alpha_is_the_exponent_constant(rng):
    z, labels = draw(rng, (5, 4))
    ref = ngl_terms(softmax(z), onehot(labels, 4), alpha=1.0).mean()
    for fast in (True, False):
        got = ngl_loss(t64(z).float(), torch.from_numpy(labels), alpha=1.0, fast=fast)
        assert got.item() == pytest.approx(ref, rel=2e-6)


# --- SCE ----------------------------------------------------------------------------------------
def numpy_sce(z, y, alpha, beta):
    p = softmax(z)
    ce = -(y * np.log(p)).sum(1)
    rce = -(np.clip(p, 1e-7, 1) * np.log(np.clip(y, 1e-4, 1))).sum(1)
    return alpha * ce + beta * rce


@pytest.mark.parametrize("alpha, beta", [(0.1, 1.0), (6.0, 0.1), (0.01, 1.0)])
def test_sce_matches_clamped_formula(rng, alpha, beta):
    z, labels = draw(rng, (12, 10), scale=6.0)
    y = onehot(labels, 10)
    got = sce_loss(t64(z), torch.from_numpy(labels), alpha=alpha, beta=beta, reduction="none")
    np.testing.assert_allclose(got.numpy(), numpy_sce(z, y, alpha, beta), rtol=1e-10)
    soft = softmax(rng.normal(size=(12, 10)))
    got = sce_loss(t64(z), t64(soft), alpha=alpha, beta=beta, reduction="none")
    np.testing.assert_allclose(got.numpy(), numpy_sce(z, soft, alpha, beta), rtol=1e-10)


def test_sce_rce_is_9_2103_times_one_minus_p_true(rng):
    z, labels = draw(rng, (20, 10), scale=8.0)
    p = softmax(z)
    p_t = p[np.arange(20), labels]
    rce = sce_loss(t64(z), torch.from_numpy(labels), alpha=0.0, beta=1.0, reduction="none").numpy()
    assert -np.log(1e-4) == pytest.approx(9.2103, abs=1e-4)
    # equal up to the 1e-7 clamp of the (at most 9) wrong-class probabilities
    np.testing.assert_allclose(rce, 9.2103404 * (1 - p_t), rtol=0, atol=9 * 9.2103 * 1e-7 + 1e-9)
    # a fully confident correct prediction: the clamp leaves 9 * 1e-7 * 9.21
    confident = torch.full((1, 10), -1e4, dtype=torch.float64)
    confident[0, 3] = 1e4
    rce = sce_loss(confident, torch.tensor([3]), alpha=0.0, beta=1.0).item()
    assert rce == pytest.approx(9 * 1e-7 * -np.log(1e-4), rel=1e-9)


# --- focal --------------------------------------------------------------------------------------
def test_focal_gamma0_alpha_none_is_ce(rng):
    z, labels = draw(rng, (3, 7, 4, 2))
    x, t = t64(z), torch.from_numpy(labels)
    for target in (t, t64(softmax(rng.normal(size=(3, 7, 4, 2))))):
        torch.testing.assert_close(focal_loss(x, target, gamma=0.0, alpha=None, reduction="none"),
                                   F.cross_entropy(x, target, reduction="none"))
    p = t64(softmax(z))
    torch.testing.assert_close(focal_loss(p, t, gamma=0.0, alpha=None, from_logits=False),
                               F.cross_entropy(x, t), rtol=1e-6, atol=1e-6)


def numpy_focal(p, y, gamma, alpha):
    p = np.clip(p / p.sum(1, keepdims=True), 1e-7, 1 - 1e-7)
    return -(alpha * y * (1 - p) ** gamma * np.log(p)).sum(1)


def test_focal_keras_golden_values():
    y = torch.eye(3, dtype=torch.float64)
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.5, 0.89, 0.6], [0.05, 0.01, 0.94]], dtype=torch.float64)
    logits = torch.tensor([[8.0, 1, 1], [0, 9, 1], [2, 3, 5]], dtype=torch.float64)
    got = focal_loss(probs, y, alpha=0.25, gamma=2.0, from_logits=False)
    assert got.item() == pytest.approx(0.02059, abs=1e-5)   # Keras: 0.0205951
    assert got.item() == pytest.approx(numpy_focal(probs.numpy(), y.numpy(), 2.0, 0.25).mean(), rel=1e-9)
    assert focal_loss(probs, torch.arange(3), from_logits=False).item() == pytest.approx(got.item(), rel=1e-12)
    got = focal_loss(logits, y, alpha=0.25, gamma=2.0, from_logits=True)
    assert got.item() == pytest.approx(0.000345, abs=5e-7)
    ref = numpy_focal(softmax(logits.numpy()), y.numpy(), 2.0, 0.25).mean()
    assert got.item() == pytest.approx(ref, rel=1e-6)


def test_focal_random_inputs(rng):
    z, labels = draw(rng, (10, 5))
    p, y = softmax(z), onehot(labels, 5)
    ref = -(0.5 * y * (1 - p) ** 1.5 * np.log(p)).sum(1)
    got = focal_loss(t64(z), torch.from_numpy(labels), gamma=1.5, alpha=0.5, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)


# --- CE family -----------------------------------------------------------------------------------
@pytest.mark.parametrize("epsilon", [1.0, 2.0, -0.5])
def test_poly1_is_ce_plus_eps_one_minus_pt(rng, epsilon):
    z, labels = draw(rng, (10, 6))
    p = softmax(z)
    p_t = p[np.arange(10), labels]
    ref = -np.log(p_t) + epsilon * (1 - p_t)
    got = poly1_loss(t64(z), torch.from_numpy(labels), epsilon=epsilon, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)
    got = poly1_loss(t64(z), t64(onehot(labels, 6)), epsilon=epsilon, reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.3])
def test_label_smoothing_matches_torch_and_formula(rng, smoothing):
    z, labels = draw(rng, (3, 8, 2, 3))
    x, t = t64(z), torch.from_numpy(labels)
    got = label_smoothing_ce_loss(x, t, smoothing=smoothing, reduction="none")
    torch.testing.assert_close(got, F.cross_entropy(x, t, label_smoothing=smoothing, reduction="none"))
    q = (1 - smoothing) * onehot(labels, 8) + smoothing / 8
    np.testing.assert_allclose(got.numpy(), -(q * np.log(softmax(z))).sum(1), rtol=1e-10)


def test_ce_matches_formula_and_probability_path(rng):
    z, labels = draw(rng, (10, 4))
    p = softmax(z)
    ref = -np.log(p[np.arange(10), labels])
    np.testing.assert_allclose(ce_loss(t64(z), torch.from_numpy(labels), reduction="none").numpy(), ref,
                               rtol=1e-10)
    got = ce_loss(t64(p), torch.from_numpy(labels), from_logits=False, reduction="none").numpy()
    np.testing.assert_allclose(got, ref, rtol=1e-6)


def test_ce_l2_penalty_on_a_small_module():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(8, 3))
    kernels = [model[0].weight, model[3].weight]
    ref = 1e-3 * sum(float((w.detach().double() ** 2).sum()) for w in kernels)   # biases, BN exempt
    crit = CEL2Loss(l2=1e-3)
    pen = crit.penalty(model)
    assert pen.item() == pytest.approx(ref, rel=1e-6)
    assert CEL2Loss().l2 == 1e-4
    x, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 0])
    total = ce_l2_loss(x, t, model=model, l2=1e-3)
    assert total.item() == pytest.approx(F.cross_entropy(x, t).item() + ref, rel=1e-6)
    pen.backward()   # the penalty's gradient reaches the kernels: 2 * l2 * W
    torch.testing.assert_close(model[3].weight.grad, 2e-3 * model[3].weight.detach())
    assert model[3].bias.grad is None
