"""Ten synthetic shape classes drawn on a grid from signed distance fields (vectorised NumPy).

Each image is one shape at a random position, size, rotation (within +-15 degrees, so plus and X,
horizontal and vertical bar stay apart), stroke width, edge blur, contrast, background level and
Gaussian pixel noise. A distance ``d`` (pixels, negative inside) becomes ink as ``sigmoid(-d / blur)``.

>>> x, y = render_shapes(20, np.random.default_rng(0))
>>> x.shape, x.dtype.name, y.dtype.name, sorted(set(y.tolist())) == list(range(10))
((20, 28, 28), 'uint8', 'int64', True)
"""
from __future__ import annotations

import numpy as np

__all__ = ["SHAPE_CLASSES", "render_shapes"]

#: the class names, in label order
SHAPE_CLASSES = ("disk", "ring", "square", "square_outline", "triangle", "plus", "x", "hbar",
                 "vbar", "l_corner")
MAX_DEGREES = 15.0           # < 22.5: a rotated plus never looks like an X
MAX_SHIFT = 3.0              # the largest shift of a shape's centre from the image's (px at 28x28)


def _box(u: np.ndarray, v: np.ndarray, a, b) -> np.ndarray:
    """Signed distance to the axis-aligned box of half-sides ``a`` (along u), ``b`` (along v)."""
    qu, qv = np.abs(u) - a, np.abs(v) - b
    outside = np.hypot(np.maximum(qu, 0), np.maximum(qv, 0))
    return outside + np.minimum(np.maximum(qu, qv), 0)


def _triangle(u: np.ndarray, v: np.ndarray, s) -> np.ndarray:
    """Signed distance (exact inside, a lower bound outside) to the upright equilateral triangle of
    circumradius ``s`` (v points down the image)."""
    k = [(np.cos(t), np.sin(t)) for t in np.deg2rad([90.0, 210.0, 330.0])]
    return np.max([cu * u + cv * v for cu, cv in k], axis=0) - s / 2


def _sdf(label: int, u: np.ndarray, v: np.ndarray, s, w) -> np.ndarray:
    """Signed distance in pixels to shape ``label`` of half-size ``s`` and stroke half-width ``w``
    in local coordinates ``u, v`` (arrays ``(n, H, W)``; ``s, w`` broadcast as ``(n, 1, 1)``)."""
    name = SHAPE_CLASSES[label]
    a = 0.8 * s                                         # a square of about the disk's area
    if name == "disk":
        return np.hypot(u, v) - s
    if name == "ring":
        return np.abs(np.hypot(u, v) - (s - w)) - w
    if name == "square":
        return _box(u, v, a, a)
    if name == "square_outline":
        return np.abs(_box(u, v, a - w, a - w)) - w
    if name == "triangle":
        return _triangle(u, v, 1.2 * s)
    if name in ("plus", "x"):
        if name == "x":
            u, v = (u + v) / np.sqrt(2), (v - u) / np.sqrt(2)
        return np.minimum(_box(u, v, s, w), _box(u, v, w, s))
    if name == "hbar":
        return _box(u, v, s, w)
    if name == "vbar":
        return _box(u, v, w, s)
    return np.minimum(_box(u + a - w, v, w, a), _box(u, v - a + w, a, w))   # l_corner


def _uniform(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, n).astype(np.float32)[:, None, None]


def render_shapes(n: int, rng: np.random.Generator, *, size: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 images ``(n, size, size)`` and int64 labels in ``0..9``, every class ``n // 10``
    or ``n // 10 + 1`` times, in random order; all randomness from ``rng``."""
    y = rng.permutation(np.resize(np.arange(len(SHAPE_CLASSES)), n)).astype(np.int64)
    f = size / 28.0                                    # the parameters below are for 28x28
    s = _uniform(rng, 6.0, 10.0, n) * f                # half-size (px)
    w = _uniform(rng, 0.9, 2.0, n) * f                 # stroke half-width (px)
    room = np.clip(size / 2 - s - 2 * f, 0, MAX_SHIFT * f)
    cy, cx = (size - 1) / 2 + room * rng.uniform(-1, 1, (2, n, 1, 1)).astype(np.float32)
    t = np.deg2rad(_uniform(rng, -MAX_DEGREES, MAX_DEGREES, n))
    blur = _uniform(rng, 0.4, 1.5, n) * f              # edge softness (px)
    ink, bg = _uniform(rng, 0.55, 1.0, n), _uniform(rng, 0.0, 0.25, n)
    noise = _uniform(rng, 0.04, 0.18, n)
    grid = np.arange(size, dtype=np.float32)
    gy, gx = grid[:, None], grid[None, :]
    d = np.empty((n, size, size), dtype=np.float32)
    for label in range(len(SHAPE_CLASSES)):            # one vectorised pass per class
        m = y == label
        dy, dx, cos, sin = gy - cy[m], gx - cx[m], np.cos(t[m]), np.sin(t[m])
        d[m] = _sdf(label, cos * dx + sin * dy, cos * dy - sin * dx, s[m], w[m])
    img = bg + ink / (1 + np.exp(np.clip(d / blur, -50, 50)))
    img += noise * rng.standard_normal((n, size, size), dtype=np.float32)
    return np.clip(np.rint(img * 255), 0, 255).astype(np.uint8), y
