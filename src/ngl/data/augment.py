"""The protocol's augmentation on whole batches: zoom 0.2, width/height shift 0.1, horizontal flip,
and which parts a run uses (``--augment flip,shift,zoom`` / ``--augment none``).

One random affine per image, applied with ``affine_grid`` + ``grid_sample`` (border fill, as
Keras' ``fill_mode="nearest"``), so there is no per-sample Python.

>>> parse_augment("zoom, shift"), parse_augment(True), parse_augment("none")
(('shift', 'zoom'), ('flip', 'shift', 'zoom'), ())
>>> parse_augment("flip,rotate")
Traceback (most recent call last):
...
ngl.errors.InputError: unknown augmentation 'rotate' in 'flip,rotate'; expected a comma list of flip, shift, zoom, or none
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from ..runspec import AUGMENT_PARTS, parse_augment

__all__ = ["augment_batch", "parse_augment", "describe", "AUGMENT_PARTS", "PROTOCOL_AUGMENT",
           "USER_DATA_AUGMENT"]

#: the published protocol (flip-safe datasets such as CIFAR)
PROTOCOL_AUGMENT = "flip,shift,zoom"
#: data ngl does not know (npz:, folder:): nothing by default. Flips change labels (digits, text,
#: handedness); on the 28x28 digits stand-in shift/zoom also cost accuracy at 20 epochs (98.2% vs
#: 99.2% without, benchmarks/user_data.py), so it is opt-in: ``--augment shift,zoom``.
USER_DATA_AUGMENT = "none"


def describe(parts: tuple[str, ...]) -> str:
    """``"shift,zoom"`` or ``"none"``: the canonical spelling of parsed parts."""
    return ",".join(parts) or "none"


def augment_batch(x: Tensor, *, generator: torch.Generator | None = None, zoom: float = 0.2,
                  shift: float = 0.1, hflip: bool = True) -> Tensor:
    """Randomly zoom, shift and flip a float batch ``(B, C, H, W)``.

    Zoom factor ``s ~ U[1 - zoom, 1 + zoom]`` per axis (Keras ``zoom_range``), shifts
    ``t ~ U[-shift, shift]`` of the image size, flip with probability 1/2. Random numbers come from
    ``generator`` on the CPU, so a seeded run is reproducible on any device.

    >>> x = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> torch.equal(augment_batch(x, zoom=0.0, shift=0.0, hflip=False), x)
    True
    """
    b = x.shape[0]
    if b == 0:
        return x
    u = torch.rand(b, 5, generator=generator)
    sx = 1 - zoom + 2 * zoom * u[:, 0]
    sy = 1 - zoom + 2 * zoom * u[:, 1]
    tx = (2 * u[:, 2] - 1) * shift * 2          # normalised coords span 2
    ty = (2 * u[:, 3] - 1) * shift * 2
    flip = torch.where((u[:, 4] < 0.5) & hflip, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0] = sx * flip
    theta[:, 1, 1] = sy
    theta[:, 0, 2] = tx
    theta[:, 1, 2] = ty
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
