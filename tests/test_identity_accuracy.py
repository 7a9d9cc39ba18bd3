"""Identity accuracy of multi-class predictions, on real two-fly labels."""

import numpy as np
import sleap_io as sio

from pipeline_lib.evaluation.identity import identity_accuracy
from pipeline_lib.evaluation.pose_metrics import evaluate_labels


def _as_predictions(gt: sio.Labels, swap_from: int | None) -> sio.Labels:
    tracks = {t.name: sio.Track(name=t.name) for t in gt.tracks}
    other = {"F": "M", "M": "F"}
    frames = []
    for lf in gt.labeled_frames:
        insts = []
        for inst in lf.user_instances:
            name = inst.track.name
            if swap_from is not None and lf.frame_idx >= swap_from:
                name = other[name]
            insts.append(
                sio.PredictedInstance.from_numpy(
                    inst.numpy(),
                    skeleton=inst.skeleton,
                    point_scores=np.ones(len(inst.skeleton)),
                    score=1.0,
                    track=tracks[name],
                )
            )
        frames.append(
            sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=insts[::-1])
        )
    return sio.Labels(
        labeled_frames=frames,
        videos=gt.videos,
        skeletons=gt.skeletons,
        tracks=list(tracks.values()),
    )


def test_identity_accuracy_counts_correct_names(shared_data):
    gt = sio.load_slp(str(shared_data / "dreem_assets/sleap/two_flies.slp"), open_videos=False)
    for swap_from, expected in ((None, 1.0), (64, 0.5), (0, 0.0)):
        pr = _as_predictions(gt, swap_from)
        _, arrays = evaluate_labels(gt, pr, return_arrays=True)
        result = identity_accuracy(gt, pr, arrays)
        assert result["n_matched"] == 256
        assert result["identity_accuracy"] == expected


def test_identity_accuracy_undefined_without_predicted_tracks(shared_data):
    gt = sio.load_slp(str(shared_data / "dreem_assets/sleap/two_flies.slp"), open_videos=False)
    pr = sio.load_slp(str(shared_data / "parity/two_flies_jitter2.pred.slp"), open_videos=False)
    for lf in pr.labeled_frames:
        for inst in lf.instances:
            inst.track = None
    _, arrays = evaluate_labels(gt, pr, return_arrays=True)
    assert identity_accuracy(gt, pr, arrays) is None
