"""Detections of one frame from its poses and image: anchors, boxes and crops.

The transformer never sees poses. Each instance reaches it as a crop of the frame around an
anchor point, the box of its visible points and that anchor's position. This module makes those
from a frame's points (NaN = missing) and image, the same way for training clips
(:mod:`pipeline_lib.tracking.gtr.data`) and for tracking predictions, so the model is fed at
inference exactly what it was trained on.

Anchors (DREEM's ``anchors``):

* a node name: the crop is centred on that node;
* a list of node names: centred on the mean of the visible ones among them;
* an int ``k``: ``k`` visible nodes drawn at random (without replacement; all of them when fewer
  are visible) and centred on their mean -- a random draw per instance, from ``rng``;
* ``None``: the mean of all visible points (the pose centroid).

``"centroid"`` and ``"midpoint"`` are also accepted as a single anchor meaning the pose centroid,
as DREEM configs use them, unless the skeleton has a node of that name (microscopy labels have a
single node ``"centroid"``), in which case that node is used.

``handle_missing`` says what happens to an instance whose anchor node(s) are not visible:
``"drop"`` leaves it out, ``"centroid"`` centres it on the pose centroid instead, and
``"ignore"`` keeps it as a *masked* detection: NaN centroid and box and an all-zero crop. Masked
detections carry their track and frame only; whatever consumes them must test
``torch.isnan(detections.centroids).any(dim=1)`` and keep them out of attention, position
embeddings and the loss (or drop them with :meth:`Detections.select`). Instances with no visible
point at all are dropped in every mode: there is nothing to place or crop.

Positions are frame pixels with pixel centres at integers (sleap-io's convention). Crops are pure
slices of the frame (``pipeline_lib.data.instances.crop_offsets``/``extract_crops``: the anchor
is rounded to a pixel, which lands at index ``crop_size // 2`` of the crop), zero outside the
frame, scaled to [0, 1]. Boxes are the box of the visible points grown by ``padding`` pixels on
every side, not clipped to the frame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import sleap_io as sio
import torch

from pipeline_lib.data.instances import crop_offsets, extract_crops
from pipeline_lib.tracking.gtr.detections import Detections

__all__ = [
    "CENTROID_ANCHORS",
    "HANDLE_MISSING",
    "check_anchors",
    "detections_from_frame",
    "empty_detections",
    "labels_frame_detections",
]

HANDLE_MISSING = ("drop", "ignore", "centroid")
CENTROID_ANCHORS = ("centroid", "midpoint")

Anchors = str | Sequence[str] | int | None


def check_anchors(anchors: Anchors, node_names: Sequence[str]) -> list[int] | int | None:
    """The anchor node indices (a list), a count (int) or None (pose centroid), checked.

    Why a separate step: a dataset resolves its anchors once per skeleton, and a misspelt node
    name has to fail before any frame is decoded, naming the skeleton's nodes.
    """
    names = list(node_names)
    if anchors is None:
        return None
    if isinstance(anchors, bool):
        raise ValueError(f"anchors must be a node name, a list of names or an int, not {anchors}")
    if isinstance(anchors, int | np.integer):
        if int(anchors) < 1:
            raise ValueError(f"anchors as a count of random nodes must be >= 1, got {anchors}")
        return int(anchors)
    if isinstance(anchors, str):
        if anchors not in names and anchors in CENTROID_ANCHORS:
            return None
        requested = [anchors]
    elif isinstance(anchors, Sequence):
        requested = list(anchors)
        if not requested:
            raise ValueError("anchors is an empty list; give at least one node name (or null)")
        if not all(isinstance(a, str) for a in requested):
            raise ValueError(f"anchors list must hold node names (strings), got {requested!r}")
    else:
        raise ValueError(
            f"anchors must be a node name, a list of names, an int or null, "
            f"not {type(anchors).__name__}"
        )
    unknown = [a for a in requested if a not in names]
    if unknown:
        raise ValueError(
            f"anchor node(s) {unknown} are not in the skeleton; its nodes are {names}"
            + (f" (or {' / '.join(CENTROID_ANCHORS)} for the pose centroid)" if names else "")
        )
    return [names.index(a) for a in requested]


def empty_detections(crop_size: int, channels: int, image_hw: tuple[int, int]) -> Detections:
    """Detections with no rows, shaped like real ones (for frames with nothing to keep)."""
    return Detections(
        crops=torch.zeros((0, channels, crop_size, crop_size), dtype=torch.float32),
        boxes=torch.zeros((0, 4), dtype=torch.float32),
        centroids=torch.zeros((0, 2), dtype=torch.float32),
        frames=torch.zeros((0,), dtype=torch.int64),
        track_ids=torch.zeros((0,), dtype=torch.int64),
        scores=torch.zeros((0,), dtype=torch.float32),
        image_hw=(int(image_hw[0]), int(image_hw[1])),
    )


def detections_from_frame(
    points: np.ndarray,
    image: np.ndarray | None,
    frame_idx: int,
    node_names: Sequence[str],
    anchors: Anchors,
    handle_missing: str,
    crop_size: int,
    padding: int,
    track_ids: Sequence[int] | np.ndarray | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
    rng: np.random.Generator | None = None,
    *,
    image_hw: tuple[int, int] | None = None,
    channels: int = 1,
) -> tuple[Detections, np.ndarray]:
    """The detections of one frame and the indices of the input instances they come from.

    Args:
        points: (I, N, 2) xy per instance and node, NaN where a node is missing.
        image: (H, W, C) frame (uint8, another integer type scaled by its maximum, or float in
            [0, 1]); (H, W) is taken as one channel. None when no pixels are needed (a model
            without visual features): crops are then zeros of ``channels`` channels and
            ``image_hw`` must give the frame size.
        frame_idx: frame index in the video, stored in ``frames`` and used in error messages.
        node_names: the skeleton's node names, in the order of ``points``' second axis.
        anchors: see the module docstring.
        handle_missing: ``"drop"``, ``"ignore"`` or ``"centroid"`` (module docstring).
        crop_size: side of the square crops in pixels.
        padding: pixels added on each side of the box of the visible points.
        track_ids: (I,) ground-truth track index per instance, -1 unknown (default all -1).
        scores: (I,) instance scores (default all 1).
        rng: draws the nodes of an int ``anchors``; None uses a fresh unseeded generator.

    Returns:
        The Detections of the kept instances (input order) and ``kept_index`` (K,) int64: the
        row of ``points`` each detection came from.
    """
    where = f"frame {frame_idx}"
    pts = _check_points(points, node_names, where)
    n_inst = pts.shape[0]
    tracks = _per_instance(track_ids, n_inst, -1, np.int64, "track_ids", where)
    inst_scores = _per_instance(scores, n_inst, 1.0, np.float64, "scores", where)
    if handle_missing not in HANDLE_MISSING:
        raise ValueError(
            f"handle_missing must be one of {', '.join(HANDLE_MISSING)}; got {handle_missing!r}"
        )
    crop_size, padding = _check_geometry(crop_size, padding)
    frame, hw, channels = _check_image(image, image_hw, channels, where)
    spec = check_anchors(anchors, node_names)

    visible = np.isfinite(pts).all(axis=-1)
    centres = _anchor_centres(pts, visible, spec, rng)
    has_points = visible.any(axis=1)
    missing = has_points & ~np.isfinite(centres).all(axis=1)
    if handle_missing == "centroid" and missing.any():
        centres[missing] = _visible_mean(pts[missing], visible[missing])
        missing[:] = False
    keep = has_points & ~missing if handle_missing == "drop" else has_points
    kept_index = np.flatnonzero(keep).astype(np.int64)
    if not len(kept_index):
        return empty_detections(crop_size, channels, hw), kept_index

    centres = centres[kept_index]
    masked = missing[kept_index]
    boxes = _padded_boxes(pts[kept_index], visible[kept_index], padding)
    centres[masked] = np.nan
    boxes[masked] = np.nan
    crops = np.zeros((len(kept_index), channels, crop_size, crop_size), dtype=np.float32)
    placed = np.flatnonzero(~masked)
    if frame is not None and len(placed):
        offsets = crop_offsets(centres[placed], crop_size)
        patches = extract_crops(frame, offsets, crop_size)  # (K, S, S, C)
        crops[placed] = _unit_scale(patches, where).transpose(0, 3, 1, 2)
    detections = Detections(
        crops=torch.from_numpy(crops),
        boxes=torch.from_numpy(boxes.astype(np.float32)),
        centroids=torch.from_numpy(centres.astype(np.float32)),
        frames=torch.full((len(kept_index),), int(frame_idx), dtype=torch.int64),
        track_ids=torch.from_numpy(tracks[kept_index]),
        scores=torch.from_numpy(inst_scores[kept_index].astype(np.float32)),
        image_hw=hw,
    )
    return detections, kept_index


def labels_frame_detections(
    lf: sio.LabeledFrame,
    image: np.ndarray | None,
    *,
    anchors: Anchors = None,
    handle_missing: str = "centroid",
    crop_size: int = 128,
    padding: int = 5,
    track_index: Mapping[str, int] | None = None,
    node_names: Sequence[str] | None = None,
    rng: np.random.Generator | None = None,
    image_hw: tuple[int, int] | None = None,
    channels: int = 1,
) -> tuple[Detections, np.ndarray]:
    """:func:`detections_from_frame` for a sleap-io LabeledFrame (all its instances, in order).

    ``track_index`` maps track names to the ids written to ``track_ids``; instances without a
    track get -1, and a track missing from the map is an error (a partial map would silently
    merge identities). ``None`` leaves every id at -1. Scores are a PredictedInstance's score
    and 1 for user instances. ``node_names`` defaults to the first instance's skeleton (it is
    required to check anchors only when the frame is empty). ``kept_index`` indexes
    ``lf.instances``.
    """
    instances = list(lf.instances)
    if node_names is None:
        node_names = instances[0].skeleton.node_names if instances else []
    names = list(node_names)
    where = f"frame {lf.frame_idx}"
    for inst in instances:
        if inst.skeleton.node_names != names:
            raise ValueError(
                f"{where}: an instance's skeleton nodes {inst.skeleton.node_names} differ from "
                f"{names}"
            )
    points = (
        np.stack([inst.numpy() for inst in instances]).astype(np.float64)
        if instances
        else np.zeros((0, len(names), 2))
    )
    track_ids = np.full(len(instances), -1, dtype=np.int64)
    if track_index is not None:
        for k, inst in enumerate(instances):
            if inst.track is None:
                continue
            if inst.track.name not in track_index:
                raise ValueError(
                    f"{where}: track {inst.track.name!r} is not in the track index "
                    f"(known: {sorted(track_index)})"
                )
            track_ids[k] = int(track_index[inst.track.name])
    scores = np.array(
        [
            float(inst.score) if isinstance(inst, sio.PredictedInstance) else 1.0
            for inst in instances
        ],
        dtype=np.float64,
    )
    return detections_from_frame(
        points,
        image,
        int(lf.frame_idx),
        names,
        anchors,
        handle_missing,
        crop_size,
        padding,
        track_ids=track_ids,
        scores=scores,
        rng=rng,
        image_hw=image_hw,
        channels=channels,
    )


# --------------------------------------------------------------------------------------------
# helpers


def _check_points(points: Any, node_names: Sequence[str], where: str) -> np.ndarray:
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 3 or pts.shape[-1] != 2:
        raise ValueError(f"{where}: points must be (instances, nodes, 2), got shape {pts.shape}")
    if pts.shape[1] != len(node_names):
        raise ValueError(
            f"{where}: points have {pts.shape[1]} nodes but the skeleton has {len(node_names)} "
            f"({list(node_names)})"
        )
    return pts


def _per_instance(
    values: Any, n: int, default: float, dtype: type, name: str, where: str
) -> np.ndarray:
    if values is None:
        return np.full(n, default, dtype=dtype)
    arr = np.asarray(values, dtype=dtype).reshape(-1)
    if arr.shape[0] != n:
        raise ValueError(f"{where}: {name} has {arr.shape[0]} entries for {n} instances")
    return arr


def _check_geometry(crop_size: Any, padding: Any) -> tuple[int, int]:
    if isinstance(crop_size, bool) or not isinstance(crop_size, int | np.integer) or crop_size < 1:
        raise ValueError(f"crop_size must be a positive int, got {crop_size!r}")
    if isinstance(padding, bool) or not isinstance(padding, int | np.integer) or padding < 0:
        raise ValueError(f"padding must be an int >= 0, got {padding!r}")
    return int(crop_size), int(padding)


def _check_image(
    image: np.ndarray | None, image_hw: tuple[int, int] | None, channels: int, where: str
) -> tuple[np.ndarray | None, tuple[int, int], int]:
    """(frame as (H, W, C) or None, (H, W), C)."""
    if image is None:
        if image_hw is None:
            raise ValueError(f"{where}: without an image, image_hw must give the frame size")
        if channels < 1:
            raise ValueError(f"{where}: channels must be >= 1, got {channels}")
        return None, (int(image_hw[0]), int(image_hw[1])), int(channels)
    frame = np.asarray(image)
    if frame.ndim == 2:
        frame = frame[..., None]
    if frame.ndim != 3:
        raise ValueError(f"{where}: image must be (H, W, C) or (H, W), got shape {frame.shape}")
    hw = (int(frame.shape[0]), int(frame.shape[1]))
    if image_hw is not None and tuple(int(s) for s in image_hw) != hw:
        raise ValueError(f"{where}: image is {hw} (H, W) but image_hw says {tuple(image_hw)}")
    return frame, hw, int(frame.shape[2])


def _visible_mean(pts: np.ndarray, visible: np.ndarray) -> np.ndarray:
    """(I, 2) mean of each instance's visible points (NaN when none)."""
    counts = visible.sum(axis=1, keepdims=True)
    sums = np.where(visible[..., None], pts, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)


def _anchor_centres(
    pts: np.ndarray,
    visible: np.ndarray,
    spec: list[int] | int | None,
    rng: np.random.Generator | None,
) -> np.ndarray:
    """(I, 2) anchor of each instance, NaN where its anchor node(s) are not visible."""
    if spec is None:
        return _visible_mean(pts, visible)
    if isinstance(spec, list):
        chosen = np.zeros_like(visible)
        chosen[:, spec] = True
        return _visible_mean(pts, visible & chosen)
    generator = rng if rng is not None else np.random.default_rng()
    chosen = np.zeros_like(visible)
    for i in range(pts.shape[0]):
        candidates = np.flatnonzero(visible[i])
        if len(candidates):
            picked = generator.choice(candidates, size=min(spec, len(candidates)), replace=False)
            chosen[i, picked] = True
    return _visible_mean(pts, chosen)


def _padded_boxes(pts: np.ndarray, visible: np.ndarray, padding: int) -> np.ndarray:
    """(I, 4) x1, y1, x2, y2 of the visible points, grown by ``padding`` on every side."""
    lo = np.where(visible[..., None], pts, np.inf).min(axis=1)
    hi = np.where(visible[..., None], pts, -np.inf).max(axis=1)
    return np.concatenate([lo - padding, hi + padding], axis=1)


def _unit_scale(patches: np.ndarray, where: str) -> np.ndarray:
    """Pixels as float32 in [0, 1]: integers divided by their type's maximum."""
    if np.issubdtype(patches.dtype, np.integer):
        return patches.astype(np.float32) / float(np.iinfo(patches.dtype).max)
    if patches.dtype == np.bool_:
        return patches.astype(np.float32)
    out = patches.astype(np.float32)
    if out.size and (np.nanmin(out) < 0.0 or np.nanmax(out) > 1.0):
        raise ValueError(
            f"{where}: a float image must hold values in [0, 1]; got "
            f"[{np.nanmin(out):g}, {np.nanmax(out):g}]"
        )
    return out
