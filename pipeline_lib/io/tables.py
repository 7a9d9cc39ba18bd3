"""Predictions as files other tools read: a tidy CSV and SLEAP's analysis HDF5.

The ``.slp`` stays the complete record; these are conveniences for analysis code (pandas, R,
MATLAB). Both are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import sleap_io as sio

from pipeline_lib.io.atomic import atomic_path


def labels_to_table(labels: sio.Labels) -> pd.DataFrame:
    """One row per instance: video, frame_idx, track, score, tracking_score, then per node
    ``<node>.x``, ``<node>.y``, ``<node>.score`` (user instances have score 1, no node scores).
    """
    if len(labels.skeletons) > 1:
        raise ValueError(
            f"Cannot tabulate labels with {len(labels.skeletons)} skeletons into one CSV"
        )
    nodes = labels.skeletons[0].node_names if labels.skeletons else []
    columns = ["video", "frame_idx", "track", "score", "tracking_score"]
    columns += [f"{n}.{c}" for n in nodes for c in ("x", "y", "score")]
    rows = []
    for lf in labels.labeled_frames:
        video = lf.video.filename
        video = video[0] if isinstance(video, list) else video
        for inst in lf.instances:
            predicted = isinstance(inst, sio.PredictedInstance)
            pts = inst.numpy()
            point_scores = (
                np.asarray(inst.points["score"], dtype=float)
                if predicted
                else np.full(len(pts), np.nan)
            )
            per_node = np.column_stack([pts, point_scores]).ravel().tolist()
            rows.append(
                [
                    video,
                    lf.frame_idx,
                    inst.track.name if inst.track is not None else "",
                    float(inst.score) if predicted else 1.0,
                    float(inst.tracking_score)
                    if predicted and inst.tracking_score is not None
                    else np.nan,
                    *per_node,
                ]
            )
    return pd.DataFrame(rows, columns=columns)


def save_table_csv(labels: sio.Labels, path: str | os.PathLike) -> None:
    """:func:`labels_to_table` as a CSV file."""
    with atomic_path(path) as tmp:
        labels_to_table(labels).to_csv(tmp, index=False)


def save_analysis_h5(
    labels: sio.Labels, path: str | os.PathLike, labels_path: str | os.PathLike | None = None
) -> None:
    """SLEAP's analysis HDF5 (``tracks`` as tracks x xy x nodes x frames, occupancy, scores),
    written by sleap-io for the video of the labelled frames; untracked instances each get a
    column. Labels without any instance (a video where nothing was found) get the same
    datasets with zero tracks, so downstream code reads every video the same way.
    ``labels_path`` (the .slp these labels were saved to) is stored in its ``labels_path``
    dataset, as SLEAP does, so the file says where it came from."""
    if not labels.videos:
        raise ValueError(f"Cannot write {path}: the predictions have no video")
    with atomic_path(path) as tmp:  # the temporary name keeps the .h5 suffix sleap-io needs
        if labels.labeled_frames:
            # The frames' own video object: sleap-io matches videos by identity.
            video = labels.labeled_frames[0].video
            sio.save_analysis_h5(labels, str(tmp), video=video, labels_path=_str(labels_path))
        else:
            _write_empty_analysis_h5(labels, tmp, _str(labels_path))


def _str(path: str | os.PathLike | None) -> str | None:
    return None if path is None else str(path)


def _write_empty_analysis_h5(labels: sio.Labels, path, labels_path: str | None) -> None:
    """The analysis datasets for labels with no instances (sleap-io refuses to write those)."""
    import h5py

    video = labels.videos[0]
    n_frames = int(video.shape[0]) if video.shape is not None else 0
    nodes = labels.skeletons[0].node_names if labels.skeletons else []
    with h5py.File(path, "w") as h5:
        h5.create_dataset("tracks", data=np.zeros((0, 2, len(nodes), n_frames), np.float64))
        h5.create_dataset("track_occupancy", data=np.zeros((n_frames, 0), np.uint8))
        h5.create_dataset("point_scores", data=np.zeros((0, len(nodes), n_frames), np.float64))
        h5.create_dataset("instance_scores", data=np.zeros((0, n_frames), np.float64))
        h5.create_dataset("tracking_scores", data=np.zeros((0, n_frames), np.float64))
        h5.create_dataset("track_names", data=np.array([], dtype="S1"))
        h5.create_dataset("node_names", data=np.array([n.encode() for n in nodes]))
        h5.create_dataset("video_path", data=str(video.filename))
        h5.create_dataset("labels_path", data=labels_path or "")
