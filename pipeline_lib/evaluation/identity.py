"""Identity accuracy of models that name animals (multi-class bottom-up / top-down).

Pose matching decides which prediction stands for which ground-truth animal; identity accuracy
is then the fraction of matched animals whose predicted track name equals the true one. It is
only defined when the ground truth carries tracks and the predictions carry identities.
"""

from __future__ import annotations

import numpy as np
import sleap_io as sio

from pipeline_lib.evaluation.pose_metrics import video_name


def identity_accuracy(
    gt: sio.Labels, pr: sio.Labels, arrays: dict[str, np.ndarray], user_instances_only: bool = True
) -> dict | None:
    """``{"identity_accuracy", "n_matched", "n_correct", "n_untracked"}`` or None when undefined.

    ``arrays`` are the per-match arrays of ``evaluate_labels(..., return_arrays=True)``, whose
    instance indices refer to each frame's (user) ground-truth instances and predicted instances
    in file order.
    """
    if not any(i.track is not None for lf in pr.labeled_frames for i in lf.instances):
        return None
    gt_frames = {}
    for gi, video in enumerate(gt.videos):
        for lf in gt.labeled_frames:
            if lf.video is video:
                insts = lf.user_instances if user_instances_only else lf.instances
                gt_frames[(gi, int(lf.frame_idx))] = insts
    pr_frames: dict[tuple[str, int], list] = {}
    for lf in pr.labeled_frames:
        pr_frames.setdefault((video_name(lf.video), int(lf.frame_idx)), []).extend(
            lf.predicted_instances or lf.user_instances
        )
    names = arrays["video_names"]
    n_correct = n_untracked = n = 0
    for v, f, g, p in zip(
        arrays["video_idx"],
        arrays["frame_idx"],
        arrays["gt_instance_idx"],
        arrays["pr_instance_idx"],
        strict=True,
    ):
        gt_inst = gt_frames[(int(v), int(f))][int(g)]
        pr_inst = pr_frames[(str(names[int(v)]), int(f))][int(p)]
        if gt_inst.track is None:
            continue
        n += 1
        if pr_inst.track is None:
            n_untracked += 1
        elif pr_inst.track.name == gt_inst.track.name:
            n_correct += 1
    if n == 0:
        return None
    return {
        "identity_accuracy": n_correct / n,
        "n_matched": n,
        "n_correct": n_correct,
        "n_untracked": n_untracked,
    }
