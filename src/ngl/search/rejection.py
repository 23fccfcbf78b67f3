"""The rejection screen: cheap checks that throw out useless losses before any training.

In the spirit of EvoMAL's rejection protocol (Raymond et al., TPAMI 2023) and AutoLoss-Zero:

1. the tree must use both ``p`` and ``y``;
2. values and gradients w.r.t. ``p`` must be finite on a probe grid (p in [0, 1], y in {0, 1});
3. the loss must depend on ``p`` (some non-zero gradient on the grid);
4. minimising it over free logits (Adam, up to a few hundred steps, softmax -> p, one-hot y) must
   raise the mean probability of the true class by at least ``min_gain`` (checked every 25 steps:
   accepted as soon as it does, rejected after half the steps if the rise is under a quarter).

A screen costs milliseconds; a training run costs seconds to minutes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import expr as E

__all__ = ["ScreenResult", "screen"]


@dataclass(frozen=True)
class ScreenResult:
    """``ok`` or the reason of the rejection; ``gain`` is the rise of the true-class probability."""

    ok: bool
    reason: str | None = None
    gain: float | None = None
    final_p_true: float | None = None


def _probe() -> tuple[torch.Tensor, torch.Tensor]:
    p, y = E.probe_grid()
    return torch.from_numpy(p), torch.from_numpy(y)


def _finite_check(expr: E.Expr) -> str | None:
    p, y = _probe()
    p.requires_grad_(True)
    try:
        values = E.evaluate(expr, p, y, namespace="torch")
        (grad,) = torch.autograd.grad(values.sum(), p, allow_unused=True)
    except (RuntimeError, OverflowError, ZeroDivisionError) as exc:
        return f"error on probe inputs: {str(exc).splitlines()[0][:80]}"
    if not bool(torch.isfinite(values).all()):
        return "non-finite value on probe inputs"
    if grad is None or not bool(torch.isfinite(grad).all()):
        return "non-finite gradient on probe inputs" if grad is not None else "constant in p"
    if float(grad.abs().max()) < 1e-9:
        return "constant in p (zero gradient on probe inputs)"
    return None


def screen(expr: E.Expr, *, steps: int = 200, lr: float = 0.1, batch: int = 32, classes: int = 10,
           min_gain: float = 0.2, seed: int = 0) -> ScreenResult:
    """Run the rejection screen on ``expr``.

    Args:
        expr: the candidate loss over ``p`` and ``y``.
        steps, lr: Adam steps and learning rate of the free-logit minimisation.
        batch, classes: shape of the free logits (random init, seeded; random labels).
        min_gain: required rise of the mean true-class probability (it starts near 1/classes).
        seed: seed of the logits and labels (fixed: the screen is a pure function of ``expr``).

    Returns:
        :class:`ScreenResult`.
    """
    missing = [v for v in E.TERMINALS if v not in expr.symbols]
    if missing:
        return ScreenResult(False, f"missing variable {' and '.join(missing)}")
    reason = _finite_check(expr)
    if reason:
        return ScreenResult(False, reason)

    gen = torch.Generator().manual_seed(seed)
    logits = 0.1 * torch.randn(batch, classes, generator=gen, dtype=torch.float64)
    labels = torch.randint(0, classes, (batch,), generator=gen)
    onehot = torch.nn.functional.one_hot(labels, classes).to(torch.float64)
    start = float(torch.softmax(logits, 1).gather(1, labels[:, None]).mean())
    m, v = torch.zeros_like(logits), torch.zeros_like(logits)
    b1, b2, end = 0.9, 0.999, start
    for step in range(1, steps + 1):             # Adam, written out: a third of torch.optim's cost
        z = logits.requires_grad_(True)
        loss = E.evaluate(expr, torch.softmax(z, 1), onehot, namespace="torch").mean()
        (grad,) = torch.autograd.grad(loss, z)
        if not math.isfinite(float(loss.detach())):
            return ScreenResult(False, "non-finite loss while minimising over free logits")
        with torch.no_grad():
            logits = z.detach()
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            denom = (v / (1 - b2 ** step)).sqrt_().add_(1e-8)
            logits = logits - lr * (m / (1 - b1 ** step)) / denom
            if step % 25 == 0 or step == steps:
                end = float(torch.softmax(logits, 1).gather(1, labels[:, None]).mean())
                if end - start >= min_gain:       # good enough: stop early
                    break
                if 2 * step >= steps and end - start < min_gain / 4:   # hopeless: stop early
                    break
    gain = end - start
    if not math.isfinite(gain) or gain < min_gain:
        return ScreenResult(False, f"minimising it does not raise the true-class probability "
                                   f"(gain {gain:+.3f} < {min_gain})", gain, end)
    return ScreenResult(True, None, gain, end)
