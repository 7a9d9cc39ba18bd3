"""Part affinity field (PAF) targets for bottom-up models.

A PAF tells the grouping step which peaks belong together: near the segment of an edge
``src -> dst`` of an instance, the field holds the unit vector pointing from src to dst, and zero
elsewhere. Integrating the field along a candidate segment between two peaks then scores how
plausibly they are joined (see ``pipeline_lib.inference.paf_grouping``).

Conventions (shared with confidence maps): points are xy in model-input pixels, NaN = missing; an
output grid with stride ``s`` has cell ``(row i, col j)`` at model pixel ``(x = j * s, y = i * s)``.

A cell belongs to an edge's field when it lies within ``sigma`` model pixels of the segment's
line (perpendicular distance) and between the endpoints extended by ``sigma`` along the segment,
i.e. inside a rectangle of half-width ``sigma`` around the segment, padded by ``sigma`` at both
ends. Edges with a missing endpoint, or with coincident endpoints (no direction), draw nothing.

Overlap rule: where the fields of several instances cover the same cell for the same edge, the
cell holds the plain average of their unit vectors (not renormalised). Agreeing vectors keep unit
length; opposing vectors cancel towards zero, which is the honest target for an ambiguous cell.
"""

from __future__ import annotations

import torch


def _edge_field(
    src: torch.Tensor,
    dst: torch.Tensor,
    cx: torch.Tensor,
    cy: torch.Tensor,
    sigma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Unit vectors (B, E, 2) and coverage masks (B, E, h, w) of one instance's edges.

    ``src``/``dst`` are (B, E, 2) model-pixel endpoints; ``cx`` (w,) and ``cy`` (h,) are the cell
    positions in model pixels.
    """
    vec = dst - src
    length = torch.linalg.vector_norm(vec, dim=-1)  # (B, E); NaN when an endpoint is missing
    valid = torch.isfinite(length) & (length > 0)
    safe_len = torch.where(valid, length, torch.ones_like(length))
    unit = torch.where(valid[..., None], vec / safe_len[..., None], torch.zeros_like(vec))
    origin = torch.where(valid[..., None], src, torch.zeros_like(src))
    ux = unit[..., 0, None, None]
    uy = unit[..., 1, None, None]
    dx = cx[None, None, None, :] - origin[..., 0, None, None]  # (B, E, 1, w)
    dy = cy[None, None, :, None] - origin[..., 1, None, None]  # (B, E, h, 1)
    along = dx * ux + dy * uy  # (B, E, h, w)
    across = (dx * uy - dy * ux).abs()
    end = torch.where(valid, length, torch.zeros_like(length))[..., None, None]
    inside = (along >= -sigma) & (along <= end + sigma) & (across <= sigma)
    return unit, inside & valid[..., None, None]


def make_pafs(
    points: torch.Tensor,
    edges: torch.Tensor | list[tuple[int, int]],
    grid_hw: tuple[int, int],
    stride: int,
    sigma: float,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Render part affinity fields for every edge, averaged over overlapping instances.

    Args:
        points: (B, I, N, 2) xy in model-input pixels; NaN points and NaN-padded instances
            contribute nothing.
        edges: (E, 2) integer node indices ``(src, dst)``.
        grid_hw: (h, w) of the output grid (model input size // stride).
        stride: output stride of the grid.
        sigma: half-width of the field around each segment, in model-input pixels.
        dtype: floating dtype of the fields.

    Returns:
        (B, 2E, h, w) fields with channels ``(edge0_x, edge0_y, edge1_x, edge1_y, ...)``.

    Instances are accumulated one at a time (sum of vectors and a coverage count), so memory stays
    at a few (B, E, h, w) buffers rather than (B, I, E, h, w). Runs on the points' device.
    """
    if points.ndim != 4 or points.shape[-1] != 2:
        raise ValueError(f"points must be (B, I, N, 2), got {tuple(points.shape)}")
    if sigma <= 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    edge_idx = torch.as_tensor(edges, dtype=torch.long, device=points.device).reshape(-1, 2)
    n_nodes = points.shape[2]
    if edge_idx.numel() and (edge_idx.min() < 0 or edge_idx.max() >= n_nodes):
        raise ValueError(f"edges index nodes outside [0, {n_nodes}): {edge_idx.tolist()}")
    b, n_inst = points.shape[:2]
    n_edges = edge_idx.shape[0]
    h, w = int(grid_hw[0]), int(grid_hw[1])
    # Geometry runs in float32 (float64 if asked for): half precision would blur the boundary
    # tests, and float64 is not available on every device (MPS). Cast to ``dtype`` at the end.
    work = torch.float64 if dtype == torch.float64 else torch.float32
    pts = points.to(work)
    # A point missing one coordinate is missing.
    pts = pts.masked_fill(torch.isnan(pts).any(dim=-1, keepdim=True), float("nan"))
    cx = torch.arange(w, device=points.device, dtype=work) * float(stride)
    cy = torch.arange(h, device=points.device, dtype=work) * float(stride)
    total = torch.zeros((b, n_edges, 2, h, w), dtype=work, device=points.device)
    count = torch.zeros((b, n_edges, h, w), dtype=work, device=points.device)
    for i in range(n_inst):
        src = pts[:, i, edge_idx[:, 0]]  # (B, E, 2)
        dst = pts[:, i, edge_idx[:, 1]]
        unit, inside = _edge_field(src, dst, cx, cy, float(sigma))
        mask = inside.to(work)
        total += mask[:, :, None] * unit[..., None, None]
        count += mask
    avg = total / count.clamp_min(1.0)[:, :, None]
    return avg.reshape(b, 2 * n_edges, h, w).to(dtype)
