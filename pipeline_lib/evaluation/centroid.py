"""Accuracy of a centroid model on its own, in the same metrics as a pose model.

A top-down predictor is evaluated end to end, which hides which stage fails: a missed animal
may be the centroid model's fault. Here the centroid model's anchors are scored as one-node
poses against the ground-truth anchors (the anchor node where labelled, else the centre of the
instance's box, as in training), so the report has the same columns for it: matched instances,
anchor error percentiles and PCK, and OKS-based mAP. A single point has no extent, so OKS is
scaled by the median box area of the split's animals, the tolerance a whole-pose OKS would give.
"""

from __future__ import annotations

import logging
import os

import numpy as np
import sleap_io as sio
import torch

from pipeline_lib.data.cache import decode_labelled_frames
from pipeline_lib.data.instances import instance_anchors
from pipeline_lib.evaluation.pose_metrics import (
    FramePoses,
    evaluate_frames,
    instance_area,
    instance_points,
    save_pose_metrics,
)
from pipeline_lib.inference.options import InferenceOptions
from pipeline_lib.inference.predictors import CentroidPredictor
from pipeline_lib.io.labels import load_labels, save_labels

log = logging.getLogger(__name__)


def anchor_frames(
    gt: sio.Labels, anchors: list[tuple[np.ndarray, np.ndarray]], anchor_part: str | None
) -> tuple[list[FramePoses], float]:
    """Ground-truth and predicted anchors per labelled frame as one-node poses, and the
    median instance box area (the OKS scale)."""
    nodes = gt.skeletons[0].node_names
    anchor_index = nodes.index(anchor_part) if anchor_part in nodes else None
    frames, areas = [], []
    video_index = {id(v): i for i, v in enumerate(gt.videos)}
    for lf, (points, scores) in zip(gt.labeled_frames, anchors, strict=True):
        where = f"video {video_index[id(lf.video)]} frame {lf.frame_idx}"
        full = instance_points(lf.user_instances or lf.instances, nodes, where)
        if len(full):
            areas.extend(instance_area(full))
        gt_anchor = instance_anchors(full, anchor_index)
        frames.append(
            FramePoses(
                gt=gt_anchor[:, None, :],
                pr=np.asarray(points, dtype=np.float64).reshape(-1, 1, 2),
                scores=np.asarray(scores, dtype=np.float64).reshape(-1),
                video_idx=video_index[id(lf.video)],
                frame_idx=int(lf.frame_idx),
            )
        )
    finite = [a for a in areas if np.isfinite(a) and a > 0]
    return frames, float(np.median(finite)) if finite else 1.0


def anchor_labels(
    gt: sio.Labels, anchors: list[tuple[np.ndarray, np.ndarray]], skeleton: sio.Skeleton, part: str
) -> sio.Labels:
    """The predicted anchors as instances (only the anchor node set) for labels_pr.slp."""
    index = skeleton.node_names.index(part) if part in skeleton.node_names else 0
    out = []
    for lf, (points, scores) in zip(gt.labeled_frames, anchors, strict=True):
        instances = []
        for p, v in zip(points, scores, strict=True):
            pts = np.full((len(skeleton.node_names), 2), np.nan)
            pts[index] = p
            instances.append(sio.PredictedInstance.from_numpy(pts, skeleton=skeleton, score=v))
        if instances:
            out.append(
                sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=instances)
            )
    return sio.Labels(labeled_frames=out, videos=gt.videos, skeletons=[skeleton])


def evaluate_centroid_model(
    model_dir: str | os.PathLike,
    labels_path: str | os.PathLike,
    out_json: str | os.PathLike,
    out_npz: str | os.PathLike,
    out_pred_slp: str | os.PathLike,
    threads: int = 1,
    options: dict | None = None,
) -> dict:
    """Score a centroid model's anchors on the labelled frames of ``labels_path``; writes the
    same three files as ``evaluate_model`` (metrics JSON, raw matches, predictions)."""
    torch.set_num_threads(max(1, int(threads)))
    gt = load_labels(labels_path)
    predictor = CentroidPredictor(model_dir, InferenceOptions.from_dict(options))
    part = predictor.anchor_part
    name = part or "bbox centre"
    if gt.labeled_frames:
        images = decode_labelled_frames(gt, threads, desc="decode eval frames")
        anchors = predictor.find_centroids(images)
        frames, scale = anchor_frames(gt, anchors, part)
        metrics, arrays = evaluate_frames(frames, [name], oks_scale=scale, return_arrays=True)
        pr = anchor_labels(gt, anchors, predictor.skeleton, part or "")
    else:
        metrics, arrays = {"n_frames": 0, "note": f"{labels_path} has no labelled frames"}, {}
        pr = sio.Labels(videos=gt.videos, skeletons=[predictor.skeleton])
    metrics["anchor"] = name
    metrics["model_dirs"] = [str(model_dir)]
    metrics["labels"] = str(labels_path)
    save_labels(pr, out_pred_slp)
    save_pose_metrics(metrics, out_json, out_npz, arrays)
    if gt.labeled_frames:
        log.info(
            "Evaluated centroid model %s on %s: %d of %d anchors matched, error p50 %.3g px",
            model_dir,
            labels_path,
            metrics["n_matched"],
            metrics["n_gt_instances"],
            metrics["distance"]["p50"],
        )
    return metrics
