"""Confidence-map targets: unnormalised Gaussians on the model's output grid.

Convention (shared with peak finding and the coordinate chain): an output grid with stride ``s``
has cell ``(row i, col j)`` at model-input pixel ``(x = j * s, y = i * s)``; a point ``(px, py)``
in model-input pixels gives ``exp(-((x - px)^2 + (y - py)^2) / (2 sigma^2))`` with ``sigma`` in
model-input pixels and peak value 1. Missing (NaN) points give all-zero maps.

A 2-D isotropic Gaussian is the outer product of two 1-D Gaussians, so each map costs
``h + w`` exponentials plus one broadcast multiply; everything is batched torch and runs on
whatever device the points are on (targets can be made on the GPU next to the model).
"""

from __future__ import annotations

import torch


def _axis_gaussians(
    coords: torch.Tensor, n_cells: int, stride: int, sigma: float, dtype: torch.dtype
) -> torch.Tensor:
    """1-D Gaussians (..., n_cells) of the cell positions around ``coords`` (...); NaN -> 0."""
    cells = torch.arange(n_cells, device=coords.device, dtype=dtype) * float(stride)
    diff = cells - coords.to(dtype).unsqueeze(-1)
    g = torch.exp(diff.square() / (-2.0 * float(sigma) ** 2))
    return torch.nan_to_num(g, nan=0.0)


def make_confmaps(
    points: torch.Tensor,
    grid_hw: tuple[int, int],
    stride: int,
    sigma: float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Render one Gaussian per point.

    Args:
        points: (B, N, 2) xy in model-input pixels, NaN for missing.
        grid_hw: (h, w) of the output grid (model input size // stride).
        stride: output stride of the grid.
        sigma: Gaussian standard deviation in model-input pixels.
        dtype: floating dtype of the maps.

    Returns:
        (B, N, h, w) maps with values in [0, 1].
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, N, 2), got {tuple(points.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    h, w = int(grid_hw[0]), int(grid_hw[1])
    # A point missing only one coordinate is still missing: blank both axes.
    missing = torch.isnan(points).any(dim=-1, keepdim=True)
    pts = points.masked_fill(missing, float("nan"))
    gx = _axis_gaussians(pts[..., 0], w, stride, sigma, dtype)  # (B, N, w)
    gy = _axis_gaussians(pts[..., 1], h, stride, sigma, dtype)  # (B, N, h)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)


def make_multi_instance_confmaps(
    points: torch.Tensor,
    grid_hw: tuple[int, int],
    stride: int,
    sigma: float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Render all instances' Gaussians per node and keep the maximum over instances.

    Args:
        points: (B, I, N, 2) xy in model-input pixels; NaN points and NaN-padded instances
            contribute nothing.
        grid_hw, stride, sigma, dtype: as in :func:`make_confmaps`.

    Returns:
        (B, N, h, w) maps. Zero instances (I == 0) give all-zero maps.

    The maximum is accumulated one instance at a time so memory stays at one (B, N, h, w)
    buffer instead of (B, I, N, h, w).
    """
    if points.ndim != 4 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, I, N, 2), got {tuple(points.shape)}")
    b, n_inst, n_nodes = points.shape[:3]
    out = torch.zeros(
        (b, n_nodes, int(grid_hw[0]), int(grid_hw[1])), dtype=dtype, device=points.device
    )
    for i in range(n_inst):
        out = torch.maximum(out, make_confmaps(points[:, i], grid_hw, stride, sigma, dtype))
    return out
