"""Ground-truth detections for honest tracker tests and benchmarks.

Labelled files store each frame's instances in track order, so a tracker that keeps list order
looks perfect for free. These helpers build a tracker input from ground truth the way a
predictor would deliver it (shuffled, track-free PredictedInstances), optionally at a reduced
frame rate, and count identity switches by pairing output and truth through identical
coordinates. Shared by the tracker tests and ``bench/``, and by any later tracker.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import sleap_io as sio


def load_subsampled(path: str | os.PathLike, step: int = 1, offset: int = 0) -> sio.Labels:
    """Labels keeping every ``step``-th labelled frame from ``offset`` (frame indices unchanged)."""
    labels = sio.load_slp(str(path), open_videos=False)
    frames = [lf for lf in labels.labeled_frames if lf.frame_idx % step == offset % step]
    return sio.Labels(
        labeled_frames=frames,
        videos=labels.videos,
        skeletons=labels.skeletons,
        tracks=labels.tracks,
    )


def tracked_only(labels: sio.Labels) -> sio.Labels:
    """The same frames keeping only instances with a track (untracked decoys are not truth)."""
    frames = [
        sio.LabeledFrame(
            video=lf.video,
            frame_idx=lf.frame_idx,
            instances=[i for i in lf.instances if i.track is not None],
        )
        for lf in labels.labeled_frames
    ]
    return sio.Labels(
        labeled_frames=frames,
        videos=labels.videos,
        skeletons=labels.skeletons,
        tracks=labels.tracks,
    )


def as_untracked_predictions(labels: sio.Labels, seed: int = 0) -> sio.Labels:
    """Shuffled (seeded), track-free PredictedInstances of score 1 with the same points."""
    rng = np.random.default_rng(seed)
    frames = []
    for lf in labels.labeled_frames:
        insts = [
            sio.PredictedInstance.from_numpy(
                points_data=inst.numpy(),
                point_scores=np.ones(len(inst.skeleton)),
                skeleton=inst.skeleton,
                score=1.0,
            )
            for inst in lf.instances
        ]
        order = rng.permutation(len(insts))
        frames.append(
            sio.LabeledFrame(
                video=lf.video, frame_idx=lf.frame_idx, instances=[insts[k] for k in order]
            )
        )
    return sio.Labels(labeled_frames=frames, videos=labels.videos, skeletons=labels.skeletons)


def count_switches(gt: sio.Labels, tracked: sio.Labels) -> int:
    """Times a ground-truth track maps to a different output track than in its previous frame.

    Output and truth are paired by identical coordinates. Losing the identity (an untracked
    output instance) counts as a switch; ground-truth instances without a track are not scored.
    """
    out_frames = {(Path(lf.video.filename).name, lf.frame_idx): lf for lf in tracked.labeled_frames}
    previous: dict[str, str | None] = {}
    switches = 0
    for lf in sorted(gt.labeled_frames, key=lambda f: f.frame_idx):
        out = out_frames[(Path(lf.video.filename).name, lf.frame_idx)]
        for inst in lf.instances:
            if inst.track is None:
                continue
            pose = inst.numpy()
            match = [o for o in out.instances if np.array_equal(o.numpy(), pose, equal_nan=True)]
            if len(match) != 1:
                raise ValueError(
                    f"frame {lf.frame_idx}: no unique output for a ground-truth instance"
                )
            pred = match[0].track.name if match[0].track is not None else None
            key = inst.track.name
            if key in previous and (pred is None or previous[key] != pred):
                switches += 1
            previous[key] = pred
    return switches
