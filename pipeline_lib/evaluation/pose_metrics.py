"""Pose-estimation accuracy against ground truth: OKS matching, VOC mAP/mAR, distances, PCK.

The numbers are meant to be comparable with the ones SLEAP / sleap-nn users already know, so
the definitions follow sleap-nn 0.3.5's evaluator where that is sound, and every deliberate
difference is listed here so nobody has to rediscover it:

* **OKS** is the COCO form. Per node ``ks = exp(-d^2 / (2 * s^2 * k^2))`` with ``s^2`` the
  ground-truth instance's area (bounding box of its visible points, px^2, or ``oks_scale`` if
  given) and ``k = 2 * sigma`` exactly as in pycocotools, where ``sigma`` is the per-node OKS
  stddev (default 0.025 for every node). Nodes missing in the ground truth are left out of the
  mean; nodes missing in the prediction count as 0.
* **Matching** is per frame and greedy: predictions in descending score order (stable), each
  takes the still-unmatched ground-truth instance with the highest OKS if that OKS is above
  ``match_threshold``.
* **VOC mAP / mAR** use OKS thresholds 0.50:0.05:0.95 and 101 recall points (COCO
  interpolation). Detections tied on score are ranked stably: ground-truth frame order, then
  prediction order within a frame. Unlike sleap-nn, predictions left unmatched count as false
  positives here (sleap-nn drops them), and ground-truth frames that have no predicted frame
  count their instances as misses (sleap-nn skips such frames). When every frame is predicted
  and no frame has more predictions than ground truth, both give the same numbers.
* **mOKS** is the mean OKS over matched pairs; **distances** are over matched pairs and nodes
  visible in both; **visibility** counts compare which nodes are present in matched pairs.
* **PCK** (our definition): among matched pairs, the fraction of nodes *visible in the ground
  truth* whose prediction lies closer than ``t`` px (``d < t``; a node the prediction misses
  counts as wrong), for ``t = 1..10`` px; ``mPCK`` is its mean over the thresholds. sleap-nn
  divides by *all* nodes, so ground-truth nodes that are not visible count as misses; that
  variant is reported as ``pck_sleap_nn`` / ``mPCK_sleap_nn`` for comparison with published
  numbers.

Ground-truth instances without any visible point carry no pose and are left out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sleap_io as sio

from pipeline_lib.evaluation.null_reasons import pose_null_reasons
from pipeline_lib.io.atomic import atomic_path, write_json_atomic

DEFAULT_OKS_STDDEV = 0.025
OKS_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
PCK_THRESHOLDS = np.arange(1, 11, dtype=np.float64)
DISTANCE_PERCENTILES = (50, 75, 90, 95, 99)


@dataclass(frozen=True)
class FramePoses:
    """The ground-truth and predicted instances of one frame, as point arrays.

    ``gt`` is ``(n_gt, n_nodes, 2)``, ``pr`` is ``(n_pr, n_nodes, 2)`` (NaN = node missing),
    ``scores`` the predictions' instance scores. ``video_idx`` / ``frame_idx`` and the
    instance indices only label the per-match arrays; they do not change any metric.
    """

    gt: np.ndarray
    pr: np.ndarray
    scores: np.ndarray
    video_idx: int = 0
    frame_idx: int = 0
    gt_index: np.ndarray | None = field(default=None)
    pr_index: np.ndarray | None = field(default=None)


@dataclass(frozen=True)
class FrameMatch:
    """Result of matching one frame: matched pairs and the score-ranked predictions."""

    gt_idx: np.ndarray  # (k,) ground-truth instance of each matched pair
    pr_idx: np.ndarray  # (k,) prediction of each matched pair
    oks: np.ndarray  # (k,) OKS of each matched pair
    pr_order: np.ndarray  # (n_pr,) predictions by descending score, ties in input order
    pr_match_oks: np.ndarray  # (n_pr,) in pr_order: OKS of its match, 0 if unmatched


def instance_area(points: np.ndarray) -> np.ndarray:
    """Bounding-box area (px^2) of each instance's visible points; NaN if none is visible.

    ``points`` is ``(n_instances, n_nodes, 2)`` or a single ``(n_nodes, 2)`` instance.
    """
    points = _as_instances(points, "points")
    visible = ~np.isnan(points).any(axis=-1)
    area = np.full(points.shape[0], np.nan)
    has_any = visible.any(axis=-1)
    if has_any.any():
        pts = np.where(visible[..., None], points, np.nan)[has_any]
        extent = np.nanmax(pts, axis=1) - np.nanmin(pts, axis=1)
        area[has_any] = np.prod(extent, axis=-1)
    return area


def compute_oks(
    points_gt: np.ndarray,
    points_pr: np.ndarray,
    stddev: float | Sequence[float] | np.ndarray = DEFAULT_OKS_STDDEV,
    scale: float | Sequence[float] | np.ndarray | None = None,
) -> np.ndarray:
    """OKS between every ground-truth and predicted instance, shape ``(n_gt, n_pr)``.

    ``stddev`` is the per-node OKS sigma (scalar or one per node); ``scale`` replaces the
    ground-truth bounding-box area (px^2), as a scalar or one value per ground-truth instance.
    A ground-truth instance with no visible node gets NaN (there is nothing to compare).
    """
    gt = _as_instances(points_gt, "points_gt")
    pr = _as_instances(points_pr, "points_pr")
    n_gt, n_nodes, _ = gt.shape
    if pr.shape[1:] != gt.shape[1:]:
        raise ValueError(
            f"Ground truth has shape {gt.shape[1:]} per instance but predictions have "
            f"{pr.shape[1:]}; both need the same nodes"
        )
    sigma = _per_node_stddev(stddev, n_nodes)
    area = instance_area(gt) if scale is None else _per_instance_scale(scale, n_gt)

    sq_dist = ((gt[:, None] - pr[None]) ** 2).sum(axis=-1)  # (n_gt, n_pr, n_nodes)
    missing_gt = np.isnan(gt).any(axis=-1)  # (n_gt, n_nodes)
    missing_pr = np.isnan(pr).any(axis=-1)  # (n_pr, n_nodes)
    denom = 2.0 * (area[:, None, None] + np.spacing(1)) * (2.0 * sigma) ** 2
    with np.errstate(invalid="ignore", over="ignore"):
        ks = np.exp(-sq_dist / denom)
    ks[np.broadcast_to(missing_pr[None], ks.shape)] = 0.0
    ks[np.broadcast_to(missing_gt[:, None], ks.shape)] = 0.0
    n_visible = (~missing_gt).sum(axis=-1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        oks = ks.sum(axis=-1) / n_visible[:, None]
    oks[n_visible == 0] = np.nan
    return oks


def match_instances(oks: np.ndarray, scores: np.ndarray, threshold: float = 0.0) -> FrameMatch:
    """Greedily match predictions (by descending score) to ground truth by OKS.

    Each prediction in turn takes the still-unmatched ground-truth instance with the highest
    OKS (first one on ties) when that OKS is greater than ``threshold``; otherwise it stays
    unmatched, which makes it a false positive.
    """
    oks = np.asarray(oks, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    n_gt, n_pr = oks.shape
    if scores.shape != (n_pr,):
        raise ValueError(f"Expected {n_pr} prediction scores, got shape {scores.shape}")
    order = np.argsort(-scores, kind="stable")
    available = np.ones(n_gt, dtype=bool)
    gt_idx, pr_idx, pair_oks = [], [], []
    pr_match_oks = np.zeros(n_pr)
    for rank, j in enumerate(order):
        if not available.any():
            break
        candidates = np.where(available & (oks[:, j] > threshold), oks[:, j], -np.inf)
        best = int(np.argmax(candidates))
        if not np.isfinite(candidates[best]):
            continue
        available[best] = False
        gt_idx.append(best)
        pr_idx.append(int(j))
        pair_oks.append(float(oks[best, j]))
        pr_match_oks[rank] = oks[best, j]
    return FrameMatch(
        gt_idx=np.asarray(gt_idx, dtype=np.int64),
        pr_idx=np.asarray(pr_idx, dtype=np.int64),
        oks=np.asarray(pair_oks, dtype=np.float64),
        pr_order=order.astype(np.int64),
        pr_match_oks=pr_match_oks,
    )


def voc_metrics(
    match_scores: np.ndarray,
    detection_scores: np.ndarray,
    n_gt: int,
    thresholds: np.ndarray = OKS_THRESHOLDS,
    recall_thresholds: np.ndarray = RECALL_THRESHOLDS,
) -> dict[str, np.ndarray | float]:
    """VOC/COCO-style AP and recall per match threshold, and their means (mAP, mAR).

    ``match_scores`` holds, for every prediction, the OKS of its match (0 when unmatched);
    ``detection_scores`` its instance score. Both must already be in ground-truth frame order
    with predictions in order within a frame: the stable sort here keeps that order for ties.
    ``n_gt`` is the number of ground-truth instances (matched or not).
    """
    match_scores = np.asarray(match_scores, dtype=np.float64)
    detection_scores = np.asarray(detection_scores, dtype=np.float64)
    if match_scores.shape != detection_scores.shape:
        raise ValueError("match_scores and detection_scores must have the same length")
    if n_gt <= 0:
        raise ValueError("VOC metrics need at least one ground-truth instance")
    ranked = match_scores[np.argsort(-detection_scores, kind="stable")]
    precisions = np.zeros((len(thresholds), len(recall_thresholds)))
    recalls = np.zeros(len(thresholds))
    for i, thr in enumerate(thresholds):
        if ranked.size == 0:
            continue
        hit = ranked >= thr
        tp = np.cumsum(hit)
        fp = np.cumsum(~hit)
        rc = tp / n_gt
        pr = tp / (tp + fp + np.spacing(1))
        recalls[i] = rc[-1]
        pr = np.maximum.accumulate(pr[::-1])[::-1]  # precision envelope, non-increasing
        idx = np.searchsorted(rc, recall_thresholds, side="left")
        valid = idx < len(pr)
        precisions[i, valid] = pr[idx[valid]]
    ap = precisions.mean(axis=1)
    return {
        "thresholds": np.asarray(thresholds, dtype=np.float64),
        "recall_thresholds": np.asarray(recall_thresholds, dtype=np.float64),
        "precisions": precisions,
        "AP": ap,
        "AR": recalls,
        "mAP": float(precisions.mean()),
        "mAR": float(recalls.mean()),
        "ranked_match_scores": ranked,
    }


def distance_summary(dists: np.ndarray) -> dict[str, float]:
    """Mean and percentiles (50, 75, 90, 95, 99) of the finite distances; NaN when none."""
    values = np.asarray(dists, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    out = {"avg": float(values.mean()) if values.size else float("nan")}
    for p in DISTANCE_PERCENTILES:
        out[f"p{p}"] = float(np.percentile(values, p)) if values.size else float("nan")
    return out


def pck_curves(
    dists: np.ndarray, visible_gt: np.ndarray, thresholds: np.ndarray = PCK_THRESHOLDS
) -> dict[str, np.ndarray]:
    """PCK per threshold, ours (over visible GT nodes) and sleap-nn's (over all nodes).

    ``dists`` is ``(n_pairs, n_nodes)`` with NaN where either side misses the node;
    ``visible_gt`` marks the nodes present in the ground truth. A visible node whose
    prediction is missing is a miss in both variants.
    """
    d = np.where(np.isnan(dists), np.inf, dists)
    within = d[..., None] < np.asarray(thresholds)[None, None, :]  # (n_pairs, n_nodes, n_thr)
    n_visible = visible_gt.sum()
    hits = (within & visible_gt[..., None]).sum(axis=(0, 1))
    ours = hits / n_visible if n_visible else np.full(len(thresholds), np.nan)
    n_all = visible_gt.size
    sleap_nn = within.sum(axis=(0, 1)) / n_all if n_all else np.full(len(thresholds), np.nan)
    return {"pck": np.asarray(ours, dtype=np.float64), "pck_sleap_nn": sleap_nn}


def visibility_counts(points_gt: np.ndarray, points_pr: np.ndarray) -> dict[str, float]:
    """Confusion counts of node presence over matched pairs, with precision and recall."""
    gt_vis = ~np.isnan(points_gt).any(axis=-1)
    pr_vis = ~np.isnan(points_pr).any(axis=-1)
    tp = int((gt_vis & pr_vis).sum())
    fp = int((~gt_vis & pr_vis).sum())
    tn = int((~gt_vis & ~pr_vis).sum())
    fn = int((gt_vis & ~pr_vis).sum())
    return {
        "tp": tp,
        "fp": fp,
        "tn": tn,
        "fn": fn,
        "precision": tp / (tp + fp) if tp + fp else float("nan"),
        "recall": tp / (tp + fn) if tp + fn else float("nan"),
    }


def evaluate_frames(
    frames: Sequence[FramePoses],
    node_names: Sequence[str],
    oks_stddev: float | Sequence[float] | np.ndarray = DEFAULT_OKS_STDDEV,
    oks_scale: float | None = None,
    match_threshold: float = 0.0,
    return_arrays: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], dict[str, np.ndarray]]:
    """All pose metrics from per-frame point arrays (the array-level core of evaluate_labels).

    Frames are taken in the given order, which decides how score ties are ranked.
    """
    node_names = [str(n) for n in node_names]
    n_nodes = len(node_names)
    if len(set(node_names)) != n_nodes:
        raise ValueError(f"Node names must be unique, got {node_names}")
    sigma = _per_node_stddev(oks_stddev, n_nodes)

    gt_pts, pr_pts, pair_oks, pair_scores = [], [], [], []
    pair_video, pair_frame, pair_gt, pair_pr = [], [], [], []
    det_scores, det_match = [], []
    n_gt_total = n_pr_total = 0
    for frame in frames:
        gt = _as_instances(frame.gt, f"ground truth of frame {frame.frame_idx}", n_nodes)
        pr = _as_instances(frame.pr, f"predictions of frame {frame.frame_idx}", n_nodes)
        scores = np.asarray(frame.scores, dtype=np.float64).reshape(-1)
        if scores.shape[0] != pr.shape[0]:
            raise ValueError(
                f"Frame {frame.frame_idx} (video {frame.video_idx}) has {pr.shape[0]} "
                f"predictions but {scores.shape[0]} scores"
            )
        if not np.isfinite(scores).all():
            raise ValueError(
                f"Frame {frame.frame_idx} (video {frame.video_idx}) has a prediction with a "
                "non-finite instance score"
            )
        gt_index = np.arange(len(gt)) if frame.gt_index is None else np.asarray(frame.gt_index)
        pr_index = np.arange(len(pr)) if frame.pr_index is None else np.asarray(frame.pr_index)
        keep = ~np.isnan(gt).any(axis=-1).all(axis=-1)  # drop GT instances with no points
        gt, gt_index = gt[keep], gt_index[keep]
        n_gt_total += len(gt)
        n_pr_total += len(pr)
        if len(pr) == 0:
            continue
        if len(gt) == 0:
            order = np.argsort(-scores, kind="stable")
            det_scores.append(scores[order])
            det_match.append(np.zeros(len(pr)))
            continue
        oks = compute_oks(gt, pr, stddev=sigma, scale=oks_scale)
        match = match_instances(oks, scores, threshold=match_threshold)
        det_scores.append(scores[match.pr_order])
        det_match.append(match.pr_match_oks)
        gt_pts.append(gt[match.gt_idx])
        pr_pts.append(pr[match.pr_idx])
        pair_oks.append(match.oks)
        pair_scores.append(scores[match.pr_idx])
        pair_video.append(np.full(len(match.oks), frame.video_idx, dtype=np.int64))
        pair_frame.append(np.full(len(match.oks), frame.frame_idx, dtype=np.int64))
        pair_gt.append(gt_index[match.gt_idx])
        pair_pr.append(pr_index[match.pr_idx])

    if n_gt_total == 0:
        raise ValueError("No ground-truth instances with visible points to evaluate against")

    def cat(parts: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(shape, dtype=dtype)

    gt_m = cat(gt_pts, (0, n_nodes, 2), np.float64)
    pr_m = cat(pr_pts, (0, n_nodes, 2), np.float64)
    oks_m = cat(pair_oks, (0,), np.float64)
    dists = np.linalg.norm(pr_m - gt_m, axis=-1)  # NaN where either side misses the node
    visible_gt = ~np.isnan(gt_m).any(axis=-1)
    voc = voc_metrics(
        cat(det_match, (0,), np.float64), cat(det_scores, (0,), np.float64), n_gt_total
    )
    pck = pck_curves(dists, visible_gt)

    metrics: dict[str, Any] = {
        "n_frames": len(frames),
        "n_gt_instances": int(n_gt_total),
        "n_pred_instances": int(n_pr_total),
        "n_matched": int(len(oks_m)),
        "mOKS": float(oks_m.mean()) if len(oks_m) else float("nan"),
        "oks_voc": {
            "mAP": voc["mAP"],
            "mAR": voc["mAR"],
            "thresholds": [float(t) for t in voc["thresholds"]],
            "AP": [float(v) for v in voc["AP"]],
            "AR": [float(v) for v in voc["AR"]],
        },
        "distance": distance_summary(dists),
        "pck": {
            "thresholds": [float(t) for t in PCK_THRESHOLDS],
            "pck": [float(v) for v in pck["pck"]],
            "mPCK": float(np.mean(pck["pck"])),
            "pck_sleap_nn": [float(v) for v in pck["pck_sleap_nn"]],
            "mPCK_sleap_nn": float(np.mean(pck["pck_sleap_nn"])),
        },
        "visibility": visibility_counts(gt_m, pr_m),
        "per_node": _per_node(dists, visible_gt, node_names),
    }
    if not return_arrays:
        return metrics
    arrays = {
        "node_names": np.asarray(node_names, dtype=str),
        "video_idx": cat(pair_video, (0,), np.int64),
        "frame_idx": cat(pair_frame, (0,), np.int64),
        "gt_instance_idx": cat(pair_gt, (0,), np.int64),
        "pr_instance_idx": cat(pair_pr, (0,), np.int64),
        "pr_score": cat(pair_scores, (0,), np.float64),
        "oks": oks_m,
        "distances": dists,
        "gt_points": gt_m,
        "pr_points": pr_m,
        "oks_thresholds": voc["thresholds"],
        "recall_thresholds": voc["recall_thresholds"],
        "voc_precisions": voc["precisions"],
        "voc_ranked_match_scores": voc["ranked_match_scores"],
        "pck_thresholds": PCK_THRESHOLDS.copy(),
    }
    return metrics, arrays


def evaluate_labels(
    gt: sio.Labels,
    pr: sio.Labels,
    oks_stddev: float | Sequence[float] | np.ndarray = DEFAULT_OKS_STDDEV,
    oks_scale: float | None = None,
    user_instances_only: bool = True,
    match_threshold: float = 0.0,
    return_arrays: bool = False,
) -> dict[str, Any] | tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Evaluate predicted labels against ground-truth labels; see the module docstring.

    Frames are paired by (video, frame_idx); videos are paired by file name, or by position
    when the names differ but both files have the same number of videos. Only labelled
    ground-truth frames are evaluated (with ``user_instances_only``, frames that hold user
    instances), so predictions on unlabelled frames are not false positives. Predictions are
    the frame's PredictedInstances; a prediction file without any PredictedInstance has its
    user instances used instead, with score 1. Nodes are paired by name.

    With ``return_arrays=True`` returns ``(metrics, arrays)``; ``arrays`` holds the per-match
    data (distances, OKS, points, frame and instance indices) for ``save_pose_metrics``.
    """
    node_names = _single_skeleton(gt, "ground truth").node_names
    video_map = pair_videos(gt, pr)
    pr_frames: dict[tuple[int, int], list[sio.LabeledFrame]] = {}
    pr_video_index = {id(v): i for i, v in enumerate(pr.videos)}
    for lf in pr.labeled_frames:
        pr_frames.setdefault((pr_video_index[id(lf.video)], int(lf.frame_idx)), []).append(lf)
    use_user_as_pred = not any(lf.predicted_instances for lf in pr.labeled_frames)

    frames: list[FramePoses] = []
    for gi, video in enumerate(gt.videos):
        for lf in gt.labeled_frames:
            if lf.video is not video:
                continue
            gt_insts = lf.user_instances if user_instances_only else lf.instances
            if not gt_insts:
                continue
            pred_insts: list[sio.Instance] = []
            for plf in pr_frames.get((video_map[gi], int(lf.frame_idx)), []):
                pred_insts.extend(
                    plf.user_instances if use_user_as_pred else plf.predicted_instances
                )
            where = f"video {gi} ({video_name(video)}) frame {lf.frame_idx}"
            frames.append(
                FramePoses(
                    gt=instance_points(gt_insts, node_names, where),
                    pr=instance_points(pred_insts, node_names, where),
                    scores=np.array([_score(i, where) for i in pred_insts], dtype=np.float64),
                    video_idx=gi,
                    frame_idx=int(lf.frame_idx),
                )
            )
    if not frames:
        raise ValueError("The ground-truth labels have no labelled frames to evaluate")
    result = evaluate_frames(
        frames,
        node_names,
        oks_stddev=oks_stddev,
        oks_scale=oks_scale,
        match_threshold=match_threshold,
        return_arrays=return_arrays,
    )
    if return_arrays:
        metrics, arrays = result
        arrays["video_names"] = np.asarray([video_name(v) for v in gt.videos], dtype=str)
        return metrics, arrays
    return result


def save_pose_metrics(
    metrics: dict[str, Any],
    json_path: str | os.PathLike,
    npz_path: str | os.PathLike | None = None,
    arrays: dict[str, np.ndarray] | None = None,
) -> None:
    """Write the metrics JSON and, optionally, the per-match arrays as .npz, both atomically.

    With ``arrays`` but no ``npz_path`` the arrays go beside the JSON with the suffix ``.npz``.
    The .npz is written through a file handle so numpy never appends ``.npz`` to the name: the
    file lands exactly at ``npz_path``.
    """
    if npz_path is not None and arrays is None:
        raise ValueError(f"npz_path {npz_path} was given but no arrays to write into it")
    write_json_atomic(json_path, metrics, why_null=pose_null_reasons(metrics))
    if arrays is None:
        return
    if npz_path is None:
        npz_path = Path(json_path).with_suffix(".npz")
    with atomic_path(npz_path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **{k: np.asarray(v) for k, v in arrays.items()})


def pair_videos(gt: sio.Labels, pr: sio.Labels) -> list[int]:
    """Index of the prediction video for each ground-truth video.

    Pairs by file name (basename) when every ground-truth video has exactly one same-named
    prediction video; otherwise by position when the counts match; otherwise raises.
    """
    pr_names = [video_name(v) for v in pr.videos]
    mapping: list[int] = []
    for video in gt.videos:
        hits = [i for i, name in enumerate(pr_names) if name == video_name(video)]
        if len(hits) != 1:
            break
        mapping.append(hits[0])
    else:
        if len(set(mapping)) == len(mapping):
            return mapping
    if len(gt.videos) == len(pr.videos):
        return list(range(len(gt.videos)))
    gt_names = [video_name(v) for v in gt.videos]
    raise ValueError(
        f"Cannot pair videos: ground truth has {gt_names}, predictions have {pr_names} "
        "(need matching file names or the same number of videos)"
    )


def _per_node(dists: np.ndarray, visible_gt: np.ndarray, node_names: list[str]) -> dict:
    """Distance percentiles and PCK (our definition) for each node name."""
    out: dict[str, dict[str, float | int]] = {}
    for k, name in enumerate(node_names):
        summary = distance_summary(dists[:, k])
        pck = pck_curves(dists[:, k : k + 1], visible_gt[:, k : k + 1])["pck"]
        entry: dict[str, float | int] = {"n_visible": int(visible_gt[:, k].sum())}
        entry.update({f"distance_{key}": value for key, value in summary.items()})
        entry.update({f"pck{int(t)}": float(v) for t, v in zip(PCK_THRESHOLDS, pck, strict=True)})
        entry["mPCK"] = float(np.mean(pck))
        out[name] = entry
    return out


def _as_instances(points: Any, what: str, n_nodes: int | None = None) -> np.ndarray:
    """Coerce to float ``(n, n_nodes, 2)``; a single ``(n_nodes, 2)`` instance gets n = 1."""
    arr = np.asarray(points, dtype=np.float64)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim == 1 and arr.size == 0:
        arr = arr.reshape(0, n_nodes or 0, 2)
    if arr.ndim != 3 or arr.shape[-1] != 2:
        raise ValueError(f"{what}: expected points of shape (n, n_nodes, 2), got {arr.shape}")
    if n_nodes is not None and arr.shape[1] != n_nodes:
        raise ValueError(f"{what}: expected {n_nodes} nodes, got {arr.shape[1]}")
    return arr


def _per_node_stddev(stddev: Any, n_nodes: int) -> np.ndarray:
    """Broadcast the OKS sigma to one positive value per node."""
    sigma = np.asarray(stddev, dtype=np.float64)
    if sigma.ndim == 0:
        sigma = np.full(n_nodes, float(sigma))
    if sigma.shape != (n_nodes,):
        raise ValueError(f"oks_stddev must be a scalar or have {n_nodes} values, got {sigma.shape}")
    if not (np.isfinite(sigma).all() and (sigma > 0).all()):
        raise ValueError(f"oks_stddev must be positive and finite, got {sigma.tolist()}")
    return sigma


def _per_instance_scale(scale: Any, n_gt: int) -> np.ndarray:
    """Broadcast ``oks_scale`` (px^2) to one positive value per ground-truth instance."""
    arr = np.asarray(scale, dtype=np.float64)
    if arr.ndim == 0:
        arr = np.full(n_gt, float(arr))
    if arr.shape != (n_gt,):
        raise ValueError(f"oks_scale must be a scalar or have {n_gt} values, got {arr.shape}")
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        raise ValueError(f"oks_scale must be positive and finite, got {arr.tolist()}")
    return arr


def _single_skeleton(labels: sio.Labels, what: str) -> sio.Skeleton:
    """The one skeleton of a labels object; several would make node pairing ambiguous."""
    if len(labels.skeletons) != 1:
        raise ValueError(
            f"The {what} labels must have exactly one skeleton, found {len(labels.skeletons)}"
        )
    return labels.skeletons[0]


def instance_points(
    instances: Sequence[sio.Instance], node_names: Sequence[str], where: str
) -> np.ndarray:
    """Points of instances as ``(n, n_nodes, 2)`` in ``node_names`` order.

    Nodes are paired by name so a prediction skeleton with another node order still lines up;
    nodes the instance's skeleton lacks stay NaN (missing). ``where`` names the frame in errors.
    """
    node_names = list(node_names)
    out = np.full((len(instances), len(node_names), 2), np.nan)
    for i, inst in enumerate(instances):
        pts = inst.numpy()
        names = inst.skeleton.node_names
        if names == node_names:
            out[i] = pts
            continue
        index = {name: k for k, name in enumerate(names)}
        common = [(j, index[n]) for j, n in enumerate(node_names) if n in index]
        if not common:
            raise ValueError(
                f"{where}: instance skeleton nodes {names} share no name with "
                f"the ground-truth nodes {node_names}"
            )
        for j, k in common:
            out[i, j] = pts[k]
    return out


def _score(instance: sio.Instance, where: str) -> float:
    """Instance score of a prediction (1.0 for a user instance used as prediction)."""
    score = float(getattr(instance, "score", 1.0))
    if not np.isfinite(score):
        raise ValueError(f"{where}: prediction has a non-finite instance score ({score})")
    return score


def video_name(video: sio.Video) -> str:
    """File name used to pair videos: basename of the (source) video file or image folder."""
    source = video.source_video if video.source_video is not None else video
    filename = source.filename
    if isinstance(filename, list):
        return Path(str(filename[0]).replace("\\", "/")).parent.name if filename else ""
    return Path(str(filename).replace("\\", "/")).name
