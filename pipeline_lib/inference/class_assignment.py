"""Identity assignment for multi-class models: instances come out already labelled by class.

A multi-class model predicts, alongside the part peaks, how strongly each location (bottom-up:
class maps) or each crop (top-down: class vectors) belongs to each known animal. Because every
class is one animal, each class may be used at most once per frame (per node, for peaks); the
assignment that maximises the total class probability under that constraint is a linear
assignment problem, solved with ``scipy.optimize.linear_sum_assignment``. Instance ``c`` is class
``c``, so identities hold across frames without a tracker.
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline_lib.inference.paf_grouping import ArrayLike, sample_maps, to_numpy


def classify_peaks_by_class_maps(
    peaks: ArrayLike,
    peak_vals: ArrayLike,
    peak_channels: ArrayLike,
    class_maps: ArrayLike,
    n_nodes: int,
    stride: int,
    cms_stride: int | None = None,
    min_class_score: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Build one instance per class from part peaks and class maps (one sample).

    Args:
        peaks: (K, 2) xy peaks in confidence-map grid units (as ``find_local_peaks`` gives).
        peak_vals: (K,) peak confidences.
        peak_channels: (K,) node index of each peak.
        class_maps: (C, h, w) class maps on a grid of stride ``stride``.
        n_nodes: number of skeleton nodes N.
        stride: output stride of the class-map grid.
        cms_stride: output stride of the confidence-map grid; defaults to ``stride`` (same grid).
        min_class_score: an assigned peak whose class-map value is below this is left out, so
            a spurious peak that no class claims does not fill a slot.

    Returns:
        points (C, N, 2) in confidence-map grid units (NaN where class c has no peak of node n),
        point_scores (C, N) peak values (0 where missing), instance_scores (C,) the mean class-map
        value of the class's assigned peaks (0 for a class with none).

    For each node type, peaks are assigned to classes one-to-one maximising the summed class-map
    values read (bilinearly) at the peaks; extra peaks beyond C are dropped.
    """
    xy = to_numpy(peaks).reshape(-1, 2)
    vals = to_numpy(peak_vals).reshape(-1)
    chans = to_numpy(peak_channels, np.int64).reshape(-1)
    maps = to_numpy(class_maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(f"class_maps must be (C, h, w), got {maps.shape}")
    if not (len(xy) == len(vals) == len(chans)):
        raise ValueError(f"peaks {len(xy)}, peak_vals {len(vals)} and channels {len(chans)} differ")
    n_classes = maps.shape[0]
    cms_stride = stride if cms_stride is None else cms_stride
    points = np.full((n_classes, n_nodes, 2), np.nan)
    point_scores = np.zeros((n_classes, n_nodes))
    class_scores = np.zeros((n_classes, n_nodes))
    assigned = np.zeros((n_classes, n_nodes), dtype=bool)
    usable = np.isfinite(xy).all(axis=1)
    probs = np.zeros((len(xy), n_classes))
    if usable.any():
        probs[usable] = sample_maps(maps, xy[usable] * (float(cms_stride) / float(stride)))
    for node in range(n_nodes):
        idx = np.flatnonzero(usable & (chans == node))
        if len(idx) == 0:
            continue
        rows, cols = linear_sum_assignment(-probs[idx])
        for r, c in zip(rows, cols, strict=True):
            if probs[idx[r], c] < min_class_score:
                continue
            points[c, node] = xy[idx[r]]
            point_scores[c, node] = vals[idx[r]]
            class_scores[c, node] = probs[idx[r], c]
            assigned[c, node] = True
    counts = assigned.sum(axis=1)
    instance_scores = np.divide(
        class_scores.sum(axis=1), counts, out=np.zeros(n_classes), where=counts > 0
    )
    return points, point_scores, instance_scores


def assign_instances_by_class_vectors(class_probs: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    """Give each instance of one frame a distinct class, maximising the summed probability.

    Args:
        class_probs: (I, C) class probabilities (or scores) of each instance, e.g. the softmax of
            a top-down model's class-vector head for each crop.

    Returns:
        class_idx (I,) the class of each instance, ``-1`` for instances left over when I > C;
        scores (I,) the probability of the assigned class, 0 for unassigned instances.
    """
    probs = to_numpy(class_probs)
    if probs.ndim != 2:
        raise ValueError(f"class_probs must be (I, C), got {probs.shape}")
    class_idx = np.full(probs.shape[0], -1, dtype=np.int64)
    scores = np.zeros(probs.shape[0])
    if probs.size == 0:
        return class_idx, scores
    # Non-finite probabilities are treated as "never this class" but must stay finite for scipy.
    rows, cols = linear_sum_assignment(-np.where(np.isfinite(probs), probs, -1e9))
    class_idx[rows] = cols
    scores[rows] = probs[rows, cols]
    return class_idx, scores
