"""Seeded train / validation / test split of labelled frames.

The split is by frame (all instances of a frame stay together) and depends only on the labels'
content and the seed, never on file-system order, so a rerun gives byte-identical splits.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import sleap_io as sio

from pipeline_lib.io.labels import LabelsError, load_labels, save_labels

log = logging.getLogger(__name__)


def usable_frames(
    labels: sio.Labels, user_instances_only: bool, source: str
) -> list[sio.LabeledFrame]:
    """Frames with at least one instance that has a visible point, stripped to usable instances.

    Predicted instances are dropped when ``user_instances_only`` (SLEAP projects mix both), and
    instances whose points are all missing are dropped since they carry no training signal.
    """
    frames = []
    n_predicted = 0
    invisible: list[int] = []  # frame indices of instances without a single visible point
    for lf in labels.labeled_frames:
        kept = []
        for inst in lf.instances:
            if user_instances_only and isinstance(inst, sio.PredictedInstance):
                n_predicted += 1
                continue
            if np.isfinite(inst.numpy()).all(axis=-1).any():
                kept.append(inst)
            else:
                invisible.append(int(lf.frame_idx))
        if kept:
            frames.append(sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=kept))
    if invisible:
        log.warning(
            "%s: dropped %d instance(s) with no visible point (all coordinates NaN) in frames %s",
            source,
            len(invisible),
            _few(invisible),
        )
    if not frames:
        kind = "user-labelled" if user_instances_only else "labelled"
        detail = []
        if invisible:
            detail.append(f"{len(invisible)} instance(s) have no visible point")
        if n_predicted:
            detail.append(
                f"{n_predicted} predicted instance(s) are not used as training labels "
                "(set user_instances_only: false to train on them)"
            )
        if not labels.labeled_frames:
            detail.append("it has no labelled frames")
        extra = f" ({'; '.join(detail)})" if detail else ""
        raise LabelsError(f"No {kind} instances with visible points in {source}{extra}")
    return frames


def _few(values: Sequence[int], limit: int = 10) -> str:
    """The first ``limit`` values, comma-separated, with a count of the rest."""
    shown = ", ".join(str(v) for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def merge_labels(
    paths: Sequence[str | os.PathLike], user_instances_only: bool = True
) -> sio.Labels:
    """Load one or more labels files into one Labels, checking that their skeletons agree."""
    if not paths:
        raise LabelsError("No labels files were given")
    merged_frames: list[sio.LabeledFrame] = []
    videos: list[sio.Video] = []
    tracks: dict[str, sio.Track] = {}
    skeleton: sio.Skeleton | None = None
    first_path = None
    for path in paths:
        labels = load_labels(path)
        if len(labels.skeletons) != 1:
            raise LabelsError(
                f"{path} has {len(labels.skeletons)} skeletons; exactly one is supported"
            )
        skel = labels.skeletons[0]
        if skeleton is None:
            skeleton, first_path = skel, path
        elif skel.node_names != skeleton.node_names:
            raise LabelsError(
                f"Skeleton of {path} (nodes {skel.node_names}) differs from {first_path} "
                f"(nodes {skeleton.node_names})"
            )
        frames = usable_frames(labels, user_instances_only, str(path))
        for lf in frames:
            for inst in lf.instances:
                inst.skeleton = skeleton
                if inst.track is not None:
                    inst.track = tracks.setdefault(inst.track.name, inst.track)
        videos.extend(v for v in labels.videos if v not in videos)
        merged_frames.extend(frames)
    return sio.Labels(
        labeled_frames=merged_frames,
        videos=videos,
        skeletons=[skeleton],
        tracks=list(tracks.values()),
    )


def split_labels(
    labels_paths: Sequence[str | os.PathLike],
    out_train: str | os.PathLike,
    out_val: str | os.PathLike,
    out_test: str | os.PathLike,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.1,
    test_labels_path: str | os.PathLike | None = None,
    seed: int = 0,
    user_instances_only: bool = True,
) -> dict:
    """Split labelled frames into train/val/test ``.slp`` files and return the counts.

    With ``test_labels_path`` the test split is that file (filtered the same way) and
    ``test_fraction`` is ignored. At least one frame always stays in train and, when there are two
    or more frames, one goes to validation.
    """
    for name, frac in (
        ("validation_fraction", validation_fraction),
        ("test_fraction", test_fraction),
    ):
        if not 0.0 <= frac < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {frac}")
    labels = merge_labels(labels_paths, user_instances_only)
    frames = sorted(
        labels.labeled_frames,
        key=lambda lf: (labels.videos.index(lf.video), lf.frame_idx),
    )
    n = len(frames)
    order = np.random.default_rng(seed).permutation(n)

    if test_labels_path is not None:
        test_labels = merge_labels([test_labels_path], user_instances_only)
        test_nodes = test_labels.skeletons[0].node_names
        if test_nodes != labels.skeletons[0].node_names:
            raise LabelsError(
                f"Skeleton of the test labels {test_labels_path} (nodes {test_nodes}) differs "
                f"from the training labels {labels_paths[0]} (nodes "
                f"{labels.skeletons[0].node_names})"
            )
        n_test = 0
    else:
        n_test = int(round(test_fraction * n))
    n_val = int(round(validation_fraction * n))
    if n >= 2:
        n_val = max(n_val, 1)
    n_test = min(n_test, max(n - n_val - 1, 0))
    n_val = min(n_val, n - n_test - 1)

    test_idx = sorted(order[:n_test])
    val_idx = sorted(order[n_test : n_test + n_val])
    train_idx = sorted(order[n_test + n_val :])

    def subset(idx: Sequence[int]) -> sio.Labels:
        return sio.Labels(
            labeled_frames=[frames[i] for i in idx],
            videos=labels.videos,
            skeletons=labels.skeletons,
            tracks=labels.tracks,
        )

    save_labels(subset(train_idx), out_train)
    save_labels(subset(val_idx), out_val)
    if test_labels_path is not None:
        save_labels(test_labels, out_test)
        n_test = len(test_labels.labeled_frames)
    else:
        save_labels(subset(test_idx), out_test)
    summary = {
        "n_frames": n,
        "train": len(train_idx),
        "val": len(val_idx),
        "test": n_test,
        "seed": seed,
        "sources": [str(Path(p)) for p in labels_paths],
    }
    log.info("Split %d labelled frames: %s", n, summary)
    return summary
