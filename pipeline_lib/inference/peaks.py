"""Peak finding on confidence maps, with sub-pixel refinement.

Points come back in output-grid units (cell ``j`` is model pixel ``j * output_stride``; see
``pipeline_lib.data.transforms`` for the way back to frame pixels), xy order.

Refinement methods:

* ``"integral"``: weighted centroid of the map in a ``patch_size`` x ``patch_size`` window
  centred on the integer peak (negative values count as zero; the window is clipped at the map
  border, so peaks on the border are biased inwards by the missing half).
* ``"gaussian"``: fit a parabola to the log of the peak and its two neighbours on each axis.
  Exact for a Gaussian of any width, where ``"integral"`` shrinks sub-cell offsets toward the
  peak cell once the Gaussian is wider than its window (sigma of 1.25 cells: up to 0.11 cells;
  2.5 cells: up to 0.36 cells). The offset is limited to half a cell, as the integer peak is the
  maximum; a neighbour at or below zero counts as a tiny positive value, and one off the map
  mirrors its opposite (no shift on that axis).
* ``"local"``: SLEAP's legacy method; move a quarter cell toward the larger of the two neighbours
  on each axis (no move on a tie; a neighbour outside the map counts as 0).
* ``None``: the integer argmax.

Thresholds are inclusive: a peak is kept when its value is ``>= threshold``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

REFINEMENTS = ("integral", "gaussian", "local", None)


def _check_refinement(refinement: str | None, patch_size: int) -> None:
    if refinement not in REFINEMENTS:
        raise ValueError(f"refinement must be one of {REFINEMENTS}, got {refinement!r}")
    if refinement == "integral" and (patch_size < 1 or patch_size % 2 == 0):
        raise ValueError(f"patch_size must be a positive odd number, got {patch_size}")


def _refine(
    flat: torch.Tensor,
    map_idx: torch.Tensor,
    rows: torch.Tensor,
    cols: torch.Tensor,
    hw: tuple[int, int],
    refinement: str | None,
    patch_size: int,
) -> torch.Tensor:
    """Sub-pixel xy (K, 2) for integer peaks at (rows, cols) of maps ``flat[map_idx]``.

    ``flat`` is (M, h * w); only the patch around each peak is gathered, never a whole map.
    Points are float32 (float64 for float64 maps) whatever the maps' dtype, so bf16/fp16 maps
    do not round the coordinates.
    """
    out_dtype = torch.float64 if flat.dtype == torch.float64 else torch.float32
    xy = torch.stack((cols, rows), dim=-1).to(out_dtype)
    if refinement is None or rows.numel() == 0:
        return xy
    h, w = hw
    half = patch_size // 2 if refinement == "integral" else 1
    offsets = torch.arange(-half, half + 1, device=flat.device)
    r = rows[:, None, None] + offsets[None, :, None]  # (K, P, 1)
    c = cols[:, None, None] + offsets[None, None, :]  # (K, 1, P)
    inside = (r >= 0) & (r < h) & (c >= 0) & (c < w)  # (K, P, P)
    cell = r.clamp(0, h - 1) * w + c.clamp(0, w - 1)  # (K, P, P)
    patch = flat[map_idx[:, None, None], cell].to(out_dtype)
    patch = torch.where(inside, patch, torch.zeros_like(patch))
    if refinement == "local":
        dx = torch.sign(patch[:, 1, 2] - patch[:, 1, 0]) * 0.25
        dy = torch.sign(patch[:, 2, 1] - patch[:, 0, 1]) * 0.25
        return xy + torch.stack((dx, dy), dim=-1)
    if refinement == "gaussian":
        # A neighbour off the map mirrors the one opposite: no shift on that axis at a border.
        left, right = patch[:, 1, 0], patch[:, 1, 2]
        up, down = patch[:, 0, 1], patch[:, 2, 1]
        left, right = (
            torch.where(inside[:, 1, 0], left, right),
            torch.where(inside[:, 1, 2], right, left),
        )
        up, down = torch.where(inside[:, 0, 1], up, down), torch.where(inside[:, 2, 1], down, up)
        centre = patch[:, 1, 1]
        return xy + torch.stack(
            (_log_parabola_vertex(left, centre, right), _log_parabola_vertex(up, centre, down)),
            dim=-1,
        )
    weights = patch.clamp_min(0.0)
    total = weights.sum(dim=(1, 2))
    off = offsets.to(out_dtype)
    dx = (weights.sum(dim=1) * off).sum(dim=1) / total
    dy = (weights.sum(dim=2) * off).sum(dim=1) / total
    delta = torch.stack((dx, dy), dim=-1)
    delta = torch.where(total[:, None] > 0, delta, torch.zeros_like(delta))
    return xy + delta


def _log_parabola_vertex(
    before: torch.Tensor, centre: torch.Tensor, after: torch.Tensor
) -> torch.Tensor:
    """Offset (in cells, within +-0.5) of the vertex of the parabola through the logs of three
    neighbouring samples; for samples of a Gaussian this is its exact centre."""
    tiny = torch.finfo(centre.dtype).tiny
    floor = (centre.abs() * 1e-6).clamp_min(tiny)
    a, b, c = (torch.log(torch.maximum(v, floor)) for v in (before, centre, after))
    curvature = a - 2 * b + c
    offset = 0.5 * (a - c) / torch.where(curvature < 0, curvature, -torch.ones_like(curvature))
    return torch.where(curvature < 0, offset, torch.zeros_like(offset)).clamp(-0.5, 0.5)


def find_global_peaks(
    cms: torch.Tensor,
    threshold: float = 0.2,
    refinement: str | None = "integral",
    patch_size: int = 5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One peak per map: the global maximum of each channel.

    Args:
        cms: (B, N, h, w) confidence maps.
        threshold: peaks with value below it get NaN points.
        refinement: ``"integral"``, ``"gaussian"``, ``"local"`` or ``None`` (see the module
            docstring).
        patch_size: odd window size for ``"integral"``.

    Returns:
        points (B, N, 2) xy in grid units (NaN below threshold) and values (B, N), the map
        maximum (returned even where the point is NaN).
    """
    if cms.ndim != 4:
        raise ValueError(f"cms must be (B, N, h, w), got {tuple(cms.shape)}")
    _check_refinement(refinement, patch_size)
    b, n, h, w = cms.shape
    flat = cms.reshape(b * n, h * w)
    values, flat_idx = flat.max(dim=1)
    rows = torch.div(flat_idx, w, rounding_mode="floor")
    cols = flat_idx % w
    map_idx = torch.arange(b * n, device=cms.device)
    points = _refine(flat, map_idx, rows, cols, (h, w), refinement, patch_size)
    points = torch.where((values >= threshold)[:, None], points, torch.nan)
    return points.reshape(b, n, 2), values.reshape(b, n)


def find_local_peaks(
    cms: torch.Tensor,
    threshold: float = 0.2,
    refinement: str | None = "integral",
    patch_size: int = 5,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """All local maxima (3x3 max-pool non-maximum suppression) at or above ``threshold``.

    Args:
        cms: (B, C, h, w) confidence maps.
        threshold, refinement, patch_size: as in :func:`find_global_peaks`.

    Returns:
        points (K, 2) xy in grid units, values (K,), sample_idx (K,) and channel_idx (K,),
        ordered by sample, channel, row, column. A flat plateau yields one peak per cell.
    """
    if cms.ndim != 4:
        raise ValueError(f"cms must be (B, C, h, w), got {tuple(cms.shape)}")
    _check_refinement(refinement, patch_size)
    b, c, h, w = cms.shape
    pooled = F.max_pool2d(cms, kernel_size=3, stride=1, padding=1)
    is_peak = (cms == pooled) & (cms >= threshold)
    # Tie-break: a plateau of equal maxima (a Gaussian exactly between two cells) must give one
    # peak, not two; keep the cell that is strictly greater than its left/upper neighbours.
    left = F.pad(cms, (1, 0, 0, 0), value=float("-inf"))[..., :, :-1]
    up = F.pad(cms, (0, 0, 1, 0), value=float("-inf"))[..., :-1, :]
    up_left = F.pad(cms, (1, 0, 1, 0), value=float("-inf"))[..., :-1, :-1]
    up_right = F.pad(cms, (0, 1, 1, 0), value=float("-inf"))[..., :-1, 1:]
    is_peak &= (cms > left) & (cms > up) & (cms > up_left) & (cms > up_right)
    sample_idx, channel_idx, rows, cols = is_peak.nonzero(as_tuple=True)
    values = cms[sample_idx, channel_idx, rows, cols]
    flat = cms.reshape(b * c, h * w)
    points = _refine(flat, sample_idx * c + channel_idx, rows, cols, (h, w), refinement, patch_size)
    return points, values, sample_idx, channel_idx
