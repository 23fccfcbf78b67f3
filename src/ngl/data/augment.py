"""The protocol's augmentation on whole batches: zoom 0.2, width/height shift 0.1, horizontal flip.

One random affine per image, applied with ``affine_grid`` + ``grid_sample`` (border fill, as
Keras' ``fill_mode="nearest"``), so there is no per-sample Python.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["augment_batch"]


def augment_batch(x: Tensor, *, generator: torch.Generator | None = None, zoom: float = 0.2,
                  shift: float = 0.1, hflip: bool = True) -> Tensor:
    """Randomly zoom, shift and flip a float batch ``(B, C, H, W)``.

    Zoom factor ``s ~ U[1 - zoom, 1 + zoom]`` per axis (Keras ``zoom_range``), shifts
    ``t ~ U[-shift, shift]`` of the image size, flip with probability 1/2. Random numbers come from
    ``generator`` on the CPU, so a seeded run is reproducible on any device.
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
