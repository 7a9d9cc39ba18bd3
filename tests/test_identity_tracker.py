"""The identity tracker keeps the tracks multi-class models assign."""

import numpy as np
import pytest
import sleap_io as sio

from pipeline_lib.tracking.track import build_tracker


def _predicted(gt: sio.Labels, duplicate_at: int | None = None) -> sio.Labels:
    frames = []
    for lf in gt.labeled_frames[:10]:
        insts = []
        for inst in lf.user_instances:
            track = lf.user_instances[0].track if lf.frame_idx == duplicate_at else inst.track
            insts.append(
                sio.PredictedInstance.from_numpy(
                    inst.numpy(),
                    skeleton=inst.skeleton,
                    point_scores=np.full(13, 0.5),
                    score=0.9,
                    track=track,
                    tracking_score=0.8,
                )
            )
        frames.append(sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=insts))
    return sio.Labels(
        labeled_frames=frames, videos=gt.videos, skeletons=gt.skeletons, tracks=gt.tracks
    )


def test_identities_pass_through_unchanged(shared_data):
    gt = sio.load_slp(str(shared_data / "dreem_assets/sleap/two_flies.slp"), open_videos=False)
    pred = _predicted(gt)
    out = build_tracker({"method": "identity"}).track(pred)
    assert sorted(t.name for t in out.tracks) == ["F", "M"]
    for a, b in zip(pred.labeled_frames, out.labeled_frames, strict=True):
        assert [i.track.name for i in a.instances] == [i.track.name for i in b.instances]
        np.testing.assert_array_equal(a.instances[0].numpy(), b.instances[0].numpy())
        assert b.instances[0].score == pytest.approx(0.9)
        np.testing.assert_allclose(b.instances[0].numpy(scores=True)[:, 2], 0.5)


def test_duplicate_identity_in_a_frame_is_an_error(shared_data):
    gt = sio.load_slp(str(shared_data / "dreem_assets/sleap/two_flies.slp"), open_videos=False)
    with pytest.raises(ValueError, match="Frame 3 .* two instances of track"):
        build_tracker({"method": "identity"}).track(_predicted(gt, duplicate_at=3))
