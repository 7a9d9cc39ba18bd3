"""Instances as arrays: points per frame, anchors, and the crop geometry of top-down models.

Everything here works in whatever pixel space the caller's points are in; the coordinate chain in
``transforms.py`` decides which space that is.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import sleap_io as sio


def node_indices(skeleton: sio.Skeleton, part_names: Sequence[str] | None) -> list[int]:
    """Indices of ``part_names`` in the skeleton (all nodes when None), with a clear error."""
    names = skeleton.node_names
    if part_names is None:
        return list(range(len(names)))
    missing = [p for p in part_names if p not in names]
    if missing:
        raise ValueError(f"part_names {missing} are not nodes of the skeleton {names}")
    return [names.index(p) for p in part_names]


def frame_points(lf: sio.LabeledFrame, nodes: Sequence[int]) -> np.ndarray:
    """(I, N, 2) float64 points of a frame's instances for the selected nodes; NaN = missing."""
    if not lf.instances:
        return np.full((0, len(nodes), 2), np.nan)
    return np.stack([inst.numpy()[list(nodes)] for inst in lf.instances]).astype(np.float64)


def instance_anchors(points: np.ndarray, anchor_index: int | None) -> np.ndarray:
    """(I, 2) anchor of each instance: the anchor node where visible, else its bbox midpoint.

    Instances with no visible point get a NaN anchor.
    """
    points = np.asarray(points, dtype=np.float64)
    out = np.full((points.shape[0], 2), np.nan)
    for i, inst in enumerate(points):
        visible = np.isfinite(inst).all(axis=-1)
        if not visible.any():
            continue
        if anchor_index is not None and visible[anchor_index]:
            out[i] = inst[anchor_index]
        else:
            vis = inst[visible]
            out[i] = (vis.min(axis=0) + vis.max(axis=0)) / 2.0
    return out


def crop_offsets(centers: np.ndarray, crop_size: int) -> np.ndarray:
    """Integer top-left corners of ``crop_size`` crops centred on ``centers`` (K, 2).

    Integer offsets mean a crop is a pure slice: no resampling, and coordinates map back by adding
    the offset.
    """
    return np.round(np.asarray(centers, dtype=np.float64)).astype(np.int64) - crop_size // 2


def extract_crops(image: np.ndarray, offsets: np.ndarray, crop_size: int) -> np.ndarray:
    """(K, S, S, C) crops of an (H, W, C) image at integer ``offsets``; outside is zero."""
    h, w, c = image.shape
    crops = np.zeros((len(offsets), crop_size, crop_size, c), dtype=image.dtype)
    for k, (x0, y0) in enumerate(np.asarray(offsets, dtype=np.int64)):
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + crop_size, w), min(y0 + crop_size, h)
        if sx1 <= sx0 or sy1 <= sy0:
            continue
        crops[k, sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return crops


def auto_crop_size(
    instance_points: Sequence[np.ndarray],
    max_stride: int,
    min_crop_size: int | None,
    crop_padding: int | None = None,
    rotation: bool = True,
    scale_max: float = 1.0,
) -> int:
    """Crop size that holds the largest instance under the configured augmentation.

    The largest bounding-box side is grown to the box's diagonal when rotation augmentation is
    on (any rotation of the box fits inside it), times the maximum augmentation scale, plus
    padding on both sides; then rounded up to a multiple of ``max_stride`` and to at least
    ``min_crop_size``.
    """
    largest = 0.0
    for pts in instance_points:
        vis = pts[np.isfinite(pts).all(axis=-1)]
        if len(vis) == 0:
            continue
        wh = vis.max(axis=0) - vis.min(axis=0)
        extent = float(np.hypot(*wh)) if rotation else float(wh.max())
        largest = max(largest, extent)
    padding = 16 if crop_padding is None else int(crop_padding)
    size = largest * max(scale_max, 1.0) + 2 * padding
    size = max(size, float(min_crop_size or 0))
    stride = max(int(max_stride), 1)
    return int(math.ceil(size / stride) * stride)


def pose_boxes(poses: np.ndarray) -> np.ndarray:
    """(N, 4) boxes x0, y0, x1, y1 of the visible (finite) points of (N, K, 2) poses; NaN rows
    for poses with no visible point."""
    poses = np.asarray(poses, dtype=float)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows give NaN, by design
        lo = np.nanmin(np.where(np.isfinite(poses), poses, np.nan), axis=1)
        hi = np.nanmax(np.where(np.isfinite(poses), poses, np.nan), axis=1)
    return np.concatenate([lo, hi], axis=1)


def pairwise_box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, M) intersection over union of boxes ``a`` (N, 4) and ``b`` (M, 4), x0 y0 x1 y1;
    0 where it is undefined (a NaN box, or two empty boxes)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, inter / union, 0.0)
    return np.nan_to_num(iou, nan=0.0)
