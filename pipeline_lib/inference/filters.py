"""Post-filters on the instances predicted in one frame.

Applied after every predictor (single-instance, top-down, bottom-up) by :func:`apply_filters`,
in this order:

1. ``min_visible_nodes``: drop instances with fewer found nodes (partial detections of a
   background object, or an animal leaving the frame, often carry one or two stray peaks);
2. ``min_instance_score`` and ``min_mean_node_score``: drop instances whose instance score, or
   the mean score of their found nodes, is lower;
3. overlap suppression (``overlap_nms`` = "iou" or "oks"): greedy, highest instance score
   first; an instance overlapping an already kept one by more than ``overlap_threshold`` is
   dropped. IoU is between the bounding boxes of the found nodes; OKS is our evaluation's
   (:func:`pipeline_lib.evaluation.pose_metrics.compute_oks`, the kept instance's box area as
   the scale, ``oks_stddev`` per node), so "the same animal twice" means what it means when
   scoring. Top-down models duplicate an animal when two centroid peaks fall on it.

Everything an instance carries (points, scores, identities, extra per-instance arrays) stays
aligned; the surviving instances keep their order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from pipeline_lib.data.instances import pairwise_box_iou, pose_boxes
from pipeline_lib.evaluation.pose_metrics import DEFAULT_OKS_STDDEV, compute_oks

if TYPE_CHECKING:
    from pipeline_lib.inference.predictors import FrameInstances, InferenceOptions

NMS_METHODS = ("iou", "oks")


def filters_enabled(options: InferenceOptions) -> bool:
    """True when any post-filter is switched on."""
    return bool(
        options.min_visible_nodes
        or options.min_instance_score is not None
        or options.min_mean_node_score is not None
        or options.overlap_nms is not None
    )


def apply_filters(pred: FrameInstances, options: InferenceOptions) -> FrameInstances:
    """The instances of ``pred`` that pass every enabled filter of ``options``."""
    n = len(pred.scores)
    if n == 0 or not filters_enabled(options):
        return pred
    found = np.isfinite(pred.points).all(axis=-1)  # (I, N)
    keep = found.sum(axis=1) >= int(options.min_visible_nodes or 0)
    if options.min_instance_score is not None:
        keep &= np.asarray(pred.scores, dtype=float) >= float(options.min_instance_score)
    if options.min_mean_node_score is not None:
        keep &= mean_node_scores(pred.point_scores, found) >= float(options.min_mean_node_score)
    order = np.flatnonzero(keep)
    if options.overlap_nms is not None and len(order) > 1:
        survivors = suppress_overlaps(
            pred.points[order],
            np.asarray(pred.scores, dtype=float)[order],
            options.overlap_nms,
            float(options.overlap_threshold),
            options.oks_stddev,
        )
        order = order[np.sort(survivors)]
    return select_instances(pred, order)


def mean_node_scores(point_scores: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Mean score over each instance's found nodes (0 for an instance with none)."""
    scores = np.where(found, np.nan_to_num(np.asarray(point_scores, dtype=float)), 0.0)
    counts = found.sum(axis=1)
    return np.divide(scores.sum(axis=1), counts, out=np.zeros(len(counts)), where=counts > 0)


def suppress_overlaps(
    points: np.ndarray,
    scores: np.ndarray,
    method: str,
    threshold: float,
    oks_stddev: float | Sequence[float] = DEFAULT_OKS_STDDEV,
) -> np.ndarray:
    """Indices (into ``points``) kept by greedy non-maximum suppression, best score first."""
    if method not in NMS_METHODS:
        raise ValueError(f"overlap_nms must be one of {NMS_METHODS} or None, got {method!r}")
    overlap = box_iou(points) if method == "iou" else compute_oks(points, points, oks_stddev)
    overlap = np.nan_to_num(overlap, nan=0.0)
    kept: list[int] = []
    for i in np.argsort(-np.asarray(scores, dtype=float), kind="stable"):
        # OKS is asymmetric (the reference's area is the scale): the kept instance is the row.
        if all(overlap[k, i] <= threshold for k in kept):
            kept.append(int(i))
    return np.asarray(kept, dtype=int)


def box_iou(points: np.ndarray) -> np.ndarray:
    """IoU of the bounding boxes of the found nodes of every pair of instances, (I, I)."""
    boxes = pose_boxes(points)
    return pairwise_box_iou(boxes, boxes)


def select_instances(pred: FrameInstances, index: np.ndarray) -> FrameInstances:
    """``pred`` restricted to the instances at ``index``, every per-instance field aligned."""
    index = np.asarray(index, dtype=int)
    n = len(pred.scores)
    if len(index) == n and np.array_equal(index, np.arange(n)):
        return pred
    extra = {
        k: (np.asarray(v)[index] if isinstance(v, np.ndarray) and len(v) == n else v)
        for k, v in pred.extra.items()
    }
    return replace(
        pred,
        points=pred.points[index],
        point_scores=pred.point_scores[index],
        scores=np.asarray(pred.scores)[index],
        extra=extra,
        tracks=None if pred.tracks is None else [pred.tracks[i] for i in index],
        track_scores=None if pred.track_scores is None else np.asarray(pred.track_scores)[index],
    )
