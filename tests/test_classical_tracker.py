"""Tests of the classical tracker on real fly data, with the input order scrambled.

The fly files store each frame's instances in track order, so a tracker that keeps list order
would look perfect for free. Every test therefore shuffles instances within each frame (seeded),
strips the tracks, and turns user instances into PredictedInstances as the predictor would.
Identity switches are counted by pairing output and ground truth through identical coordinates.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sleap_io as sio

from pipeline_lib.tracking.classical import (
    ClassicalTracker,
    centroid_similarity,
    iou_similarity,
    oks_similarity,
    track_labels,
)
from pipeline_lib.tracking.gt_detections import (
    as_untracked_predictions,
    count_switches,
    load_subsampled,
)
from pipeline_lib.tracking.options import TrackerOptions, TrackerOptionsError
from pipeline_lib.tracking.track import build_tracker, track_file

FLY_DIR = Path("dreem_assets") / "sleap"


def load_gt(shared_data: Path, name: str, step: int = 1, offset: int = 0) -> sio.Labels:
    """Ground-truth labels keeping every ``step``-th frame from ``offset`` (indices unchanged)."""
    return load_subsampled(shared_data / FLY_DIR / name, step, offset)


def run(shared_data: Path, name: str, step: int, **options) -> tuple[int, sio.Labels]:
    gt = load_gt(shared_data, name, step)
    tracked = track_labels(as_untracked_predictions(gt), TrackerOptions(**options))
    return count_switches(gt, tracked), tracked


def switches_over_offsets(shared_data: Path, name: str, step: int, **options) -> int:
    """Switches summed over every phase of the subsampling (``step`` distinct sequences)."""
    return sum(
        count_switches(
            gt, track_labels(as_untracked_predictions(gt, seed=off), TrackerOptions(**options))
        )
        for off in range(step)
        for gt in [load_gt(shared_data, name, step, off)]
    )


def test_no_switches_on_three_flies_with_defaults(shared_data: Path) -> None:
    switches, tracked = run(shared_data, "three_flies.slp", 1)
    assert switches == 0
    assert [t.name for t in tracked.tracks] == ["track_0", "track_1", "track_2"]
    assert switches_over_offsets(shared_data, "three_flies.slp", 8) == 0


def test_three_flies_every_16th_frame_stays_within_measured_bound(shared_data: Path) -> None:
    # 336 chances to switch (16 phases x 7 steps x 3 flies); 23 measured with the defaults.
    assert switches_over_offsets(shared_data, "three_flies.slp", 16) <= 23


def test_single_node_animals_and_motion(shared_data: Path) -> None:
    # One node per zebrafish: no box, so the scale comes from the animals' spacing.
    switches, tracked = run(shared_data, "ten_zfish.slp", 1)
    assert switches == 0 and len(tracked.tracks) == 10
    # Fish swim straight, so extrapolating their velocity helps at a low frame rate.
    still = switches_over_offsets(shared_data, "ten_zfish.slp", 8, use_motion=False)
    moving = switches_over_offsets(shared_data, "ten_zfish.slp", 8, use_motion=True)
    assert moving < still


def test_two_flies_stress_and_all_similarities(shared_data: Path) -> None:
    for similarity in ("oks", "iou", "centroid"):
        switches, tracked = run(shared_data, "two_flies.slp", 4, similarity=similarity)
        assert switches == 0, similarity
        scores = [i.tracking_score for lf in tracked.labeled_frames for i in lf.instances]
        assert all(0.0 < s <= 1.0 for s in scores), similarity
        assert len(tracked.tracks) == 2, similarity


def test_similarity_measures_rank_the_true_match_first() -> None:
    pose = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 20.0], [np.nan, np.nan]])
    near = pose + 2.0
    far = pose + 40.0
    for fn in (lambda a, b: oks_similarity(a, b, 0.1), iou_similarity, centroid_similarity):
        sim = fn(pose[None], np.stack([far, near, pose]))
        assert sim.shape == (1, 3)
        assert sim[0, 0] < sim[0, 1] < sim[0, 2]
        assert math.isclose(sim[0, 2], 1.0)
    empty = np.full_like(pose, np.nan)
    assert oks_similarity(empty[None], pose[None], 0.1)[0, 0] == 0.0
    assert iou_similarity(empty[None], pose[None])[0, 0] == 0.0


def test_input_is_not_mutated_and_untracked_cases(shared_data: Path) -> None:
    gt = load_gt(shared_data, "two_flies.slp", 16)
    preds = as_untracked_predictions(gt, seed=3)
    video = preds.videos[0]
    skeleton = preds.skeleton
    # Out-of-order frames, an empty frame and an all-NaN instance.
    preds.labeled_frames.reverse()
    preds.labeled_frames.append(sio.LabeledFrame(video=video, frame_idx=999))
    nan_inst = sio.PredictedInstance.from_numpy(
        points_data=np.full((len(skeleton), 2), np.nan), skeleton=skeleton, score=0.5
    )
    preds.labeled_frames[0].instances.append(nan_inst)
    before = [
        (lf.frame_idx, [(i.track, i.numpy().copy()) for i in lf.instances])
        for lf in preds.labeled_frames
    ]

    tracked = track_labels(preds, TrackerOptions())

    after = [
        (lf.frame_idx, [(i.track, i.numpy()) for i in lf.instances]) for lf in preds.labeled_frames
    ]
    assert len(before) == len(after)
    for (f0, i0), (f1, i1) in zip(before, after, strict=True):
        assert f0 == f1 and len(i0) == len(i1)
        for (t0, p0), (t1, p1) in zip(i0, i1, strict=True):
            assert t0 is None and t1 is None
            assert np.array_equal(p0, p1, equal_nan=True)
    assert not preds.tracks
    assert [lf.frame_idx for lf in tracked.labeled_frames] == sorted(
        lf.frame_idx for lf in preds.labeled_frames
    )
    assert tracked.labeled_frames[-1].instances == []
    nan_out = [
        i for lf in tracked.labeled_frames for i in lf.instances if np.all(np.isnan(i.numpy()))
    ]
    assert len(nan_out) == 1 and nan_out[0].track is None
    assert count_switches(gt, tracked) == 0


def test_max_tracks_and_max_instances(shared_data: Path) -> None:
    gt = load_gt(shared_data, "three_flies.slp", 16)
    preds = as_untracked_predictions(gt)
    # Without a cap, a strict threshold at a low frame rate fragments tracks ...
    loose = track_labels(preds, TrackerOptions(min_similarity=0.9))
    assert len(loose.tracks) > 3
    # ... with a cap it never makes more than asked, and every instance still gets a track.
    capped = track_labels(preds, TrackerOptions(min_similarity=0.9, max_tracks=3))
    assert len(capped.tracks) == 3
    assert all(i.track is not None for lf in capped.labeled_frames for i in lf.instances)
    # Rejecting every match leaves only the fallback (nearest free track by centroid), which
    # alone keeps identities at the native frame rate; scores are then the real similarity.
    native = load_gt(shared_data, "three_flies.slp")
    fallback = track_labels(
        as_untracked_predictions(native), TrackerOptions(min_similarity=1.0, max_tracks=3)
    )
    assert count_switches(native, fallback) == 0
    assert all(
        0.0 < i.tracking_score < 1.0 for lf in fallback.labeled_frames[1:] for i in lf.instances
    )
    # Two tracks for three animals: one instance per frame is left without a track.
    two = track_labels(preds, TrackerOptions(max_tracks=2))
    assert len(two.tracks) == 2
    for lf in two.labeled_frames:
        assert sorted(i.track is None for i in lf.instances) == [False, False, True]
    # max_instances keeps the top-scoring instances of each frame.
    for lf in preds.labeled_frames:
        for k, inst in enumerate(lf.instances):
            inst.score = 0.9 - 0.1 * k
    kept = track_labels(preds, TrackerOptions(max_instances=2))
    for lf in kept.labeled_frames:
        assert sorted(i.score for i in lf.instances) == pytest.approx([0.8, 0.9])


def _gap_labels(shared_data: Path, gap: int) -> sio.Labels:
    """Two flies for 6 frames; fly F is then missing for ``gap`` frames and comes back."""
    gt = load_gt(shared_data, "two_flies.slp")
    frames = []
    for lf in gt.labeled_frames[: 6 + gap + 3]:
        insts = list(lf.instances)
        if 6 <= lf.frame_idx < 6 + gap:
            insts = [i for i in insts if i.track.name != "F"]
        frames.append(sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=insts))
    return sio.Labels(
        labeled_frames=frames, videos=gt.videos, skeletons=gt.skeletons, tracks=gt.tracks
    )


@pytest.mark.parametrize(("gap", "max_gap", "expect_tracks"), [(2, 3, 2), (4, 3, 3), (4, 5, 2)])
def test_max_gap_decides_whether_a_returning_track_keeps_its_id(
    shared_data: Path, gap: int, max_gap: int, expect_tracks: int
) -> None:
    gt = _gap_labels(shared_data, gap)
    tracked = track_labels(
        as_untracked_predictions(gt), TrackerOptions(window_size=5, max_gap=max_gap)
    )
    assert len(tracked.tracks) == expect_tracks
    names = {
        i.track.name
        for lf in tracked.labeled_frames
        if lf.frame_idx >= 6 + gap
        for i in lf.instances
    }
    assert ("track_2" in names) == (expect_tracks == 3)


def test_options_are_strict() -> None:
    with pytest.raises(TrackerOptionsError, match="'window_sise'.*did you mean 'window_size'"):
        TrackerOptions.from_dict({"window_sise": 3})
    with pytest.raises(TrackerOptionsError, match="'similarity'.*oks, iou, centroid.*'okz'"):
        TrackerOptions.from_dict({"similarity": "okz"})
    with pytest.raises(TrackerOptionsError, match="'window_size' must be an integer"):
        TrackerOptions.from_dict({"window_size": "5"})
    with pytest.raises(TrackerOptionsError, match="'use_motion' must be true or false"):
        TrackerOptions.from_dict({"use_motion": 1})
    with pytest.raises(TrackerOptionsError, match="'max_gap'"):
        TrackerOptions.from_dict({"window_size": 3, "max_gap": 4})
    with pytest.raises(TrackerOptionsError, match="'min_similarity' must be a number"):
        TrackerOptions.from_dict({"min_similarity": None})
    opts = TrackerOptions.from_dict({"window_size": 8, "max_tracks": 2, "min_similarity": 0})
    assert opts.effective_max_gap == 8 and opts.max_tracks == 2
    assert TrackerOptions.from_dict(opts.to_dict()) == opts
    assert isinstance(build_tracker(opts), ClassicalTracker)


def test_track_file_writes_slp_and_csv(shared_data: Path, tmp_path: Path) -> None:
    gt = load_gt(shared_data, "three_flies.slp", 8)
    in_path = tmp_path / "in.predictions.slp"
    sio.save_slp(as_untracked_predictions(gt), str(in_path))
    out_slp = tmp_path / "out" / "v.tracked.slp"
    out_csv = tmp_path / "out" / "v.csv"

    summary = track_file(in_path, out_slp, {"similarity": "oks"}, out_csv=out_csv)

    assert summary == {"n_frames": 16, "n_instances": 48, "n_tracks": 3}
    reloaded = sio.load_slp(str(out_slp), open_videos=False)
    assert [t.name for t in reloaded.tracks] == ["track_0", "track_1", "track_2"]
    assert count_switches(gt, reloaded) == 0
    table = pd.read_csv(out_csv)
    assert len(table) == 48
    assert list(table.columns[:5]) == ["video", "frame_idx", "track", "score", "tracking_score"]
    assert list(table.columns[5:8]) == ["head.x", "head.y", "head.score"]
    assert set(table["track"]) == {"track_0", "track_1", "track_2"}
    first = reloaded.labeled_frames[0].instances[0]
    row = table[(table.frame_idx == 0) & (table.track == first.track.name)].iloc[0]
    assert row["thorax.x"] == pytest.approx(first.numpy()[1, 0])
    assert sorted(p.name for p in out_slp.parent.iterdir()) == ["v.csv", "v.tracked.slp"]
    with pytest.raises(TrackerOptionsError, match="did you mean 'similarity'"):
        track_file(in_path, tmp_path / "x.slp", {"similarty": "oks"})
    assert not (tmp_path / "x.slp").exists()


def test_videos_are_tracked_independently_and_user_instances_pass_through(
    shared_data: Path,
) -> None:
    three = load_gt(shared_data, "three_flies.slp", 4)
    two = load_gt(shared_data, "two_flies.slp", 4)
    p3, p2 = as_untracked_predictions(three, seed=1), as_untracked_predictions(two, seed=2)
    user_track = sio.Track(name="track_0")
    user = sio.Instance.from_numpy(
        points_data=np.zeros((len(p2.skeleton), 2)), skeleton=p2.skeleton, track=user_track
    )
    p2.labeled_frames[0].instances.append(user)
    both = sio.Labels(
        labeled_frames=p3.labeled_frames + p2.labeled_frames,
        videos=p3.videos + p2.videos,
        skeletons=p3.skeletons,
    )

    tracked = track_labels(both, TrackerOptions())

    assert count_switches(three, tracked) == 0
    assert count_switches(two, tracked) == 0
    per_video = [
        {
            i.track.name
            for lf in tracked.labeled_frames
            if lf.video is v
            for i in lf.instances
            if isinstance(i, sio.PredictedInstance)
        }
        for v in both.videos
    ]
    # The user's own "track_0" keeps its name, so the tracker's names skip it.
    assert per_video == [{"track_1", "track_2", "track_3"}, {"track_1", "track_2"}]
    kept = [
        i
        for i in tracked.labeled_frames[len(p3.labeled_frames)].instances
        if not isinstance(i, sio.PredictedInstance)
    ]
    assert len(kept) == 1 and kept[0].track is user_track and kept[0] is not user
    first = [i for i in tracked.labeled_frames[0].instances]
    assert [i.tracking_score for i in first] == [1.0, 1.0, 1.0]
    later = [i.tracking_score for i in tracked.labeled_frames[1].instances]
    assert all(0.05 <= s < 1.0 for s in later)


def test_bad_input_is_named(shared_data: Path, tmp_path: Path) -> None:
    preds = as_untracked_predictions(load_gt(shared_data, "two_flies.slp", 32))
    video = preds.videos[0]
    preds.labeled_frames.append(sio.LabeledFrame(video=video, frame_idx=32))
    with pytest.raises(ValueError, match="frame 32 stored twice"):
        track_labels(preds, TrackerOptions())
    zfish = as_untracked_predictions(load_gt(shared_data, "ten_zfish.slp", 16))
    with pytest.raises(ValueError, match="'iou' needs a skeleton of at least two nodes"):
        track_labels(zfish, TrackerOptions(similarity="iou"))
    with pytest.raises(ValueError, match="missing.slp"):
        track_file(tmp_path / "missing.slp", tmp_path / "out.slp", {})
