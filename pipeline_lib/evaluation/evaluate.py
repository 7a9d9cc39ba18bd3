"""Evaluate a trained predictor on a labelled split: predict its frames, then score them."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import sleap_io as sio
import torch

from pipeline_lib.data.cache import decode_labelled_frames
from pipeline_lib.evaluation.identity import identity_accuracy
from pipeline_lib.evaluation.null_reasons import unmatched_warning
from pipeline_lib.evaluation.pose_metrics import evaluate_labels, save_pose_metrics
from pipeline_lib.inference.predictors import (
    InferenceOptions,
    head_of_dir,
    make_predictor,
    to_labeled_frame,
)
from pipeline_lib.io.labels import load_labels, save_labels

log = logging.getLogger(__name__)


def predict_labelled_frames(labels: sio.Labels, predictor, threads: int = 1) -> sio.Labels:
    """Predictions for exactly the labelled frames of ``labels`` (same videos, same indices)."""
    frames = decode_labelled_frames(labels, threads, desc="decode eval frames")
    preds = predictor.predict(frames)
    tracks: dict[str, sio.Track] = {}
    out = [
        to_labeled_frame(pred, lf.video, lf.frame_idx, predictor.skeleton, tracks)
        for lf, pred in zip(labels.labeled_frames, preds, strict=True)
        if len(pred.points)
    ]
    return sio.Labels(
        labeled_frames=out,
        videos=labels.videos,
        skeletons=[predictor.skeleton],
        tracks=list(tracks.values()),
    )


def evaluate_model(
    model_dirs: Sequence[str | os.PathLike],
    labels_path: str | os.PathLike,
    out_json: str | os.PathLike,
    out_npz: str | os.PathLike,
    out_pred_slp: str | os.PathLike,
    threads: int = 1,
    options: dict | None = None,
) -> dict:
    """Predict the frames of ``labels_path`` with the predictor in ``model_dirs`` and score them.

    Writes the predictions (``out_pred_slp``), the metrics JSON and the raw per-match arrays.
    A centroid model on its own is scored on its anchors (``evaluation.centroid``).
    An empty split (e.g. ``test_fraction: 0``) gives a metrics file with ``n_frames: 0``.
    """
    if len(model_dirs) == 1 and head_of_dir(model_dirs[0]) == "centroid":
        from pipeline_lib.evaluation.centroid import evaluate_centroid_model

        return evaluate_centroid_model(
            model_dirs[0], labels_path, out_json, out_npz, out_pred_slp, threads, options
        )
    torch.set_num_threads(max(1, int(threads)))
    gt = load_labels(labels_path)
    predictor = make_predictor(model_dirs, InferenceOptions.from_dict(options))
    if gt.labeled_frames:
        pr = predict_labelled_frames(gt, predictor, threads)
        metrics, arrays = evaluate_labels(gt, pr, return_arrays=True)
        warning = unmatched_warning(metrics, f"{model_dirs[-1]} on {labels_path}")
        if warning:
            log.warning("%s", warning)
        identity = identity_accuracy(gt, pr, arrays)
        if identity is not None:
            metrics["identity"] = identity
    else:
        pr = sio.Labels(videos=gt.videos, skeletons=[predictor.skeleton])
        metrics, arrays = {"n_frames": 0, "note": f"{labels_path} has no labelled frames"}, {}
    metrics["model_dirs"] = [str(d) for d in model_dirs]
    metrics["labels"] = str(labels_path)
    save_labels(pr, out_pred_slp)
    save_pose_metrics(metrics, out_json, out_npz, arrays)
    if gt.labeled_frames:
        log.info(
            "Evaluated %s on %s: mAP %.4f, mAR %.4f, mOKS %.4f",
            model_dirs[-1],
            labels_path,
            metrics["oks_voc"]["mAP"],
            metrics["oks_voc"]["mAR"],
            metrics["mOKS"],
        )
    return metrics
