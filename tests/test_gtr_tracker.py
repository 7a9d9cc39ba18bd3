"""Tests of the GTR tracker with stand-in association models.

The network is replaced by small fake models (an oracle reading ground-truth ids, one that
prefers the wrong animal, one scoring centroid distance, ...) so each tracker rule can be shown
in isolation: every option gets a situation where changing only that option changes the output
in the expected direction. Inputs are shuffled, track-free PredictedInstances made from ground
truth (``as_untracked_predictions``), so keeping list order wins nothing.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import sleap_io as sio
import torch

from pipeline_lib.tracking.gt_detections import (
    as_untracked_predictions,
    count_switches,
    load_subsampled,
)
from pipeline_lib.tracking.gtr.config import GTRTrackerOptions
from pipeline_lib.tracking.gtr.detections import Detections
from pipeline_lib.tracking.gtr.tracker import (
    GTRTracker,
    association_probabilities,
    box_iou,
)
from pipeline_lib.tracking.track import track_file

FLY_DIR = Path("dreem_assets") / "sleap"
CROP = 8


# ---------------------------------------------------------------------------------------------
# Detections from ground truth, and fake association models
# ---------------------------------------------------------------------------------------------


def _key(frame_idx: int, points: np.ndarray) -> tuple:
    return (int(frame_idx), *np.round(np.nan_to_num(points, nan=-1e6), 3).ravel().tolist())


# True track of every detection gt_featurize made, by (frame, anchor position): the oracle's
# view of the truth of window instances, whose track_ids the tracker replaces with its own.
TRUTH_AT: dict[tuple, int] = {}


def _position_keys(dets: Detections) -> list[tuple]:
    return [
        (int(f), *np.round(c, 3).tolist())
        for f, c in zip(dets.frames.tolist(), dets.centroids.numpy(), strict=True)
    ]


def gt_featurize(gt: sio.Labels, image_hw: tuple[int, int]):
    """A featurize that knows each instance's true track (for oracle models).

    Boxes are the visible points' extent, centroids their mean. Crops are zeros without an
    image, else the CROP x CROP patch of the image at the centroid. Records what it was given.
    """
    names = sorted({i.track.name for lf in gt.labeled_frames for i in lf.instances if i.track})
    truth = {
        _key(lf.frame_idx, inst.numpy()): names.index(inst.track.name)
        for lf in gt.labeled_frames
        for inst in lf.instances
        if inst.track is not None
    }
    images: list[np.ndarray | None] = []
    TRUTH_AT.clear()

    def featurize(lf: sio.LabeledFrame, image: np.ndarray | None) -> Detections:
        images.append(image)
        pts = np.stack([inst.numpy() for inst in lf.instances]).astype(np.float64)
        n = len(pts)
        centroids = np.nanmean(pts, axis=1)
        boxes = np.concatenate([np.nanmin(pts, axis=1), np.nanmax(pts, axis=1)], axis=1)
        crops = np.zeros((n, 1, CROP, CROP), dtype=np.float32)
        if image is not None:
            for k, (x, y) in enumerate(centroids):
                x0, y0 = int(round(x)) - CROP // 2, int(round(y)) - CROP // 2
                patch = image[max(y0, 0) : y0 + CROP, max(x0, 0) : x0 + CROP, 0]
                crops[k, 0, : patch.shape[0], : patch.shape[1]] = patch / 255.0
        ids = [truth.get(_key(lf.frame_idx, p), -1) for p in pts]
        hw = image.shape[:2] if image is not None else image_hw
        dets = Detections(
            crops=torch.from_numpy(crops),
            boxes=torch.tensor(boxes, dtype=torch.float32),
            centroids=torch.tensor(centroids, dtype=torch.float32),
            frames=torch.full((n,), lf.frame_idx, dtype=torch.int64),
            track_ids=torch.tensor(ids, dtype=torch.int64),
            scores=torch.ones(n),
            image_hw=(int(hw[0]), int(hw[1])),
        )
        TRUTH_AT.update(zip(_position_keys(dets), ids, strict=True))
        return dets

    featurize.images = images  # type: ignore[attr-defined]
    return featurize


class OracleModel:
    """Logit ``same`` for window instances of the query's true track, ``other`` otherwise.

    ``OracleModel(same=0, other=2)`` is a model that prefers the wrong animal.

    The window's ``track_ids`` are the tracker's own assignments, so the truth of every
    instance is looked up where gt_featurize recorded it.
    """

    def __init__(self, same: float = 10.0, other: float = -10.0) -> None:
        self.same, self.other = same, other
        self.flags: list[bool] = []

    def associate(self, window: Detections, query: Detections, use_vis_feats: bool = True):
        self.flags.append(use_vis_feats)
        window_truth = torch.tensor([TRUTH_AT.get(k, -2) for k in _position_keys(window)])
        query_truth = torch.tensor([TRUTH_AT.get(k, -3) for k in _position_keys(query)])
        same = query_truth[:, None] == window_truth[None, :]
        return torch.where(same, torch.tensor(self.same), torch.tensor(self.other))


class ConstantModel:
    """The same logit for every pair: the network has no opinion."""

    def __init__(self, logit: float) -> None:
        self.logit = logit

    def associate(self, window: Detections, query: Detections, use_vis_feats: bool = True):
        return torch.full((len(query), len(window)), self.logit)


class DistanceModel:
    """Logits ``offset - distance / scale`` between centroids (px): positions only."""

    def __init__(self, scale: float, offset: float = 0.0) -> None:
        self.scale, self.offset = scale, offset

    def associate(self, window: Detections, query: Detections, use_vis_feats: bool = True):
        return self.offset - torch.cdist(query.centroids, window.centroids) / self.scale


class ReferenceModel:
    """Recognises an animal only from its instance in frame ``ref`` (+8; else -8)."""

    def __init__(self, ref: int = 0) -> None:
        self.ref = ref

    def associate(self, window: Detections, query: Detections, use_vis_feats: bool = True):
        same = query.track_ids[:, None] == window.track_ids[None, :]
        known = same & (window.frames[None, :] == self.ref)
        return torch.where(known, torch.tensor(8.0), torch.tensor(-8.0))


class AppearanceModel:
    """Matches by crop brightness when it may use visual features, else by distance."""

    def __init__(self) -> None:
        self.flags: list[bool] = []

    def associate(self, window: Detections, query: Detections, use_vis_feats: bool = True):
        self.flags.append(use_vis_feats)
        if not use_vis_feats:
            return DistanceModel(scale=5.0, offset=5.0).associate(window, query)
        q = query.crops.flatten(1).mean(1)
        w = window.crops.flatten(1).mean(1)
        return 5.0 - 100.0 * (q[:, None] - w[None, :]).abs()


def synthetic_gt(
    paths: dict[str, dict[int, tuple[float, float]]],
    half: float = 2.0,
    video: sio.Video | None = None,
) -> sio.Labels:
    """Ground truth of two-node animals: ``paths[name][frame] = (x, y)`` centre, box 2*half."""
    skeleton = sio.Skeleton(["a", "b"])
    tracks = {name: sio.Track(name=name) for name in paths}
    video = video if video is not None else sio.Video(filename="synthetic.mp4", open_backend=False)
    frames = []
    for f in sorted({f for path in paths.values() for f in path}):
        instances = [
            sio.Instance.from_numpy(
                np.array([[x - half, y - half], [x + half, y + half]]),
                skeleton=skeleton,
                track=tracks[name],
            )
            for name, path in paths.items()
            if f in path
            for x, y in [path[f]]
        ]
        frames.append(sio.LabeledFrame(video=video, frame_idx=f, instances=instances))
    return sio.Labels(
        labeled_frames=frames, videos=[video], skeletons=[skeleton], tracks=list(tracks.values())
    )


def run(
    gt: sio.Labels,
    model,
    seed: int = 0,
    image_hw: tuple[int, int] = (100, 100),
    chunk_frames: int = 1000,
    **options,
) -> sio.Labels:
    """Track the shuffled, track-free version of ``gt`` (positions only unless told)."""
    options.setdefault("use_vis_feats", False)
    tracker = GTRTracker(
        model, GTRTrackerOptions(**options), gt_featurize(gt, image_hw), chunk_frames=chunk_frames
    )
    return tracker.track(as_untracked_predictions(gt, seed=seed))


def track_names(tracked: sio.Labels) -> list[str]:
    """Track names used by the output instances, in order of first use."""
    names: list[str] = []
    for lf in tracked.labeled_frames:
        for inst in lf.instances:
            if inst.track is not None and inst.track.name not in names:
                names.append(inst.track.name)
    return names


def names_by_frame(tracked: sio.Labels) -> dict[int, list[str | None]]:
    """Output track name of each instance per frame, instances sorted by x."""
    out = {}
    for lf in tracked.labeled_frames:
        insts = sorted(lf.instances, key=lambda i: float(np.nanmean(i.numpy()[:, 0])))
        out[lf.frame_idx] = [i.track.name if i.track is not None else None for i in insts]
    return out


def static(x: float, y: float, frames) -> dict[int, tuple[float, float]]:
    return {f: (x, y) for f in frames}


# ---------------------------------------------------------------------------------------------
# Real flies
# ---------------------------------------------------------------------------------------------


def fly_gt(shared_data: Path, name: str, step: int) -> sio.Labels:
    return load_subsampled(shared_data / FLY_DIR / name, step)


@pytest.mark.parametrize(("name", "step"), [("two_flies.slp", 8), ("three_flies.slp", 4)])
def test_oracle_model_makes_no_switches_on_real_flies(
    shared_data: Path, name: str, step: int
) -> None:
    gt = fly_gt(shared_data, name, step)
    tracked = run(gt, OracleModel(), image_hw=(1024, 1024))
    assert count_switches(gt, tracked) == 0
    assert len(track_names(tracked)) == len(gt.tracks)
    scores = [i.tracking_score for lf in tracked.labeled_frames[1:] for i in lf.instances]
    assert min(scores) > 0.99  # the oracle's probability for the right track


def test_tracker_follows_a_model_that_prefers_the_wrong_fly(shared_data: Path) -> None:
    gt = fly_gt(shared_data, "two_flies.slp", 8)
    tracked = run(gt, OracleModel(same=0.0, other=10.0), image_hw=(1024, 1024), window_size=1)
    # Each track's context is its last fly, so every frame after the first swaps the two
    # identities: 2 switches per frame.
    assert count_switches(gt, tracked) == 2 * (len(gt.labeled_frames) - 1)
    assert len(track_names(tracked)) == 2


def test_window_track_ids_are_the_trackers_own_assignments(shared_data: Path) -> None:
    """The model reads each window instance's track (its motion) from the tracker's output so
    far, never from ids the input detections happened to carry."""
    seen: list[tuple[tuple, int]] = []

    class Recording(OracleModel):
        def associate(self, window, query, use_vis_feats=True):
            seen.extend(zip(_position_keys(window), window.track_ids.tolist(), strict=True))
            return super().associate(window, query, use_vis_feats)

    gt = fly_gt(shared_data, "three_flies.slp", 8)
    featurize = gt_featurize(gt, (1024, 1024))

    def featurize_with_other_ids(lf, image):
        dets = featurize(lf, image)
        dets.track_ids = dets.track_ids + 100
        return dets

    tracked = GTRTracker(Recording(), {"use_vis_feats": False}, featurize_with_other_ids).track(
        as_untracked_predictions(gt, seed=1)
    )
    output_track = {}
    for lf in tracked.labeled_frames:
        dets = featurize(lf, None)
        names = [int(i.track.name.removeprefix("track_")) for i in lf.instances]
        output_track.update(zip(_position_keys(dets), names, strict=True))
    assert seen and all(output_track[key] == track for key, track in seen)
    assert count_switches(gt, tracked) == 0


def test_visual_features_decode_the_real_video_only_when_used(shared_data: Path) -> None:
    full = sio.load_slp(str(shared_data / FLY_DIR / "two_flies.slp"))  # video opened
    gt = sio.Labels(
        labeled_frames=[lf for lf in full.labeled_frames if lf.frame_idx % 32 == 0],  # 4 decodes
        videos=full.videos,
        skeletons=full.skeletons,
        tracks=full.tracks,
    )
    for use_vis_feats in (True, False):
        model = OracleModel()
        featurize = gt_featurize(gt, (1024, 1024))
        options = GTRTrackerOptions(use_vis_feats=use_vis_feats)
        tracked = GTRTracker(model, options, featurize).track(as_untracked_predictions(gt))
        assert count_switches(gt, tracked) == 0
        assert set(model.flags) == {use_vis_feats}
        if use_vis_feats:
            assert all(im is not None and im.shape == (1024, 1024, 1) for im in featurize.images)
            assert any(im.max() > 0 for im in featurize.images)
        else:
            assert featurize.images == [None] * len(gt.labeled_frames)


def test_track_file_accepts_the_gtr_tracker(shared_data: Path, tmp_path: Path) -> None:
    gt = fly_gt(shared_data, "three_flies.slp", 16)
    src = tmp_path / "untracked.slp"
    sio.save_slp(as_untracked_predictions(gt, seed=3), str(src))
    tracker = GTRTracker(OracleModel(), {"use_vis_feats": False}, gt_featurize(gt, (1024, 1024)))
    summary = track_file(src, tmp_path / "tracked.slp", tracker=tracker)
    assert summary["n_tracks"] == 3
    tracked = sio.load_slp(str(tmp_path / "tracked.slp"), open_videos=False)
    assert count_switches(gt, tracked) == 0


# ---------------------------------------------------------------------------------------------
# One test per option: changing only that option changes the output as expected
# ---------------------------------------------------------------------------------------------


def test_window_size_is_how_much_of_each_track_the_model_sees() -> None:
    # The model recognises the animal only from its frame-0 instance.
    gt = synthetic_gt({"A": static(20, 20, range(6))})
    long = run(gt, ReferenceModel(ref=0), window_size=8)
    short = run(gt, ReferenceModel(ref=0), window_size=2)
    assert track_names(long) == ["track_0"]
    # With 2 instances per track, frame 0 leaves the window after frame 2: new tracks from 3.
    assert [names_by_frame(short)[f][0] for f in range(6)] == [
        "track_0",
        "track_0",
        "track_0",
        "track_1",
        "track_2",
        "track_3",
    ]


def test_use_vis_feats_keeps_identities_through_a_crossing(tmp_path: Path) -> None:
    # Two squares of different brightness swap sides between frames 0 and 1: by position
    # each is closer to where the other was; by appearance they are unmistakable.
    centres = {"dark": [(30, 50), (60, 50), (90, 50)], "bright": [(70, 50), (40, 50), (10, 50)]}
    shade = {"dark": 90, "bright": 220}
    paths = []
    for f in range(3):
        image = np.zeros((100, 100), dtype=np.uint8)
        for name, points in centres.items():
            x, y = points[f]
            image[y - 5 : y + 6, x - 5 : x + 6] = shade[name]
        paths.append(str(tmp_path / f"{f:03d}.png"))
        cv2.imwrite(paths[-1], image)
    video = sio.Video.from_filename(paths)
    gt = synthetic_gt(
        {name: dict(enumerate(points)) for name, points in centres.items()}, video=video
    )
    truth = {
        f: [n for n, _ in sorted(((n, p[f][0]) for n, p in centres.items()), key=lambda t: t[1])]
        for f in range(3)
    }

    def identity_pairs(tracked: sio.Labels) -> set[tuple[str, str]]:
        by_frame = names_by_frame(tracked)
        return {(g, o) for f in range(3) for g, o in zip(truth[f], by_frame[f], strict=True)}

    model = AppearanceModel()
    seen = run(gt, model, use_vis_feats=True)
    blind = run(gt, model, use_vis_feats=False)
    assert model.flags == [True, True, False, False]
    assert len(identity_pairs(seen)) == 2  # each animal kept one track
    assert len(identity_pairs(blind)) == 4  # positions alone swapped them


def test_overlap_thresh_decides_between_matching_and_a_new_track() -> None:
    # A 30 px jump: the distance model gives the old track probability ~0.05.
    gt = synthetic_gt({"A": {0: (20, 20), 1: (50, 20)}})
    low = run(gt, DistanceModel(scale=10.0), overlap_thresh=0.01)
    high = run(gt, DistanceModel(scale=10.0), overlap_thresh=0.1)
    assert track_names(low) == ["track_0"]
    assert 0.01 < low.labeled_frames[1].instances[0].tracking_score < 0.1
    assert track_names(high) == ["track_0", "track_1"]


def test_mult_thresh_scales_the_threshold_with_the_tracks_window_instances() -> None:
    # Constant logits 0: with n window instances the track gets n / (n + 1) (rest: no match).
    gt = synthetic_gt({"A": static(20, 20, range(6))})
    plain = run(gt, ConstantModel(0.0), overlap_thresh=0.3, mult_thresh=False)
    weighted = run(gt, ConstantModel(0.0), overlap_thresh=0.3, mult_thresh=True)
    assert track_names(plain) == ["track_0"]
    # 1/2 > 0.3 and 2/3 > 0.6 match, 3/4 < 0.9 does not: frame 3 starts a new track.
    assert [names_by_frame(weighted)[f][0] for f in range(4)] == [
        "track_0",
        "track_0",
        "track_0",
        "track_1",
    ]
    # With one instance per track the multiplier is 1: no difference.
    single = run(gt, ConstantModel(0.0), overlap_thresh=0.3, mult_thresh=True, window_size=1)
    assert track_names(single) == ["track_0"]


def test_decay_time_fades_old_evidence() -> None:
    # Seen in frames 0-2, then something appears at the same place in frame 12.
    gt = synthetic_gt({"A": {0: (20, 20), 1: (20, 20), 2: (20, 20), 12: (22, 20)}})
    kept = run(gt, DistanceModel(scale=10.0))
    faded = run(gt, DistanceModel(scale=10.0), decay_time=0.5)
    assert track_names(kept) == ["track_0"]
    assert track_names(faded) == ["track_0", "track_1"]  # 0.5 ** 9 leaves < 0.01
    # The previous frame always counts fully: consecutive frames are unaffected.
    steady = synthetic_gt({"A": static(20, 20, range(4))})
    assert track_names(run(steady, DistanceModel(scale=10.0), decay_time=0.5)) == ["track_0"]


def test_iou_mult_and_max_reweight_a_model_that_prefers_the_wrong_animal() -> None:
    wrong = OracleModel(same=0.0, other=2.0)  # probability ~0.79 on the other animal
    # Boxes of 10 px moving 3 px per frame: IoU 0.54 with the own track's last box.
    moving = synthetic_gt(
        {
            "A": {f: (20 + 3 * f, 50) for f in range(4)},
            "B": {f: (80 + 3 * f, 50) for f in range(4)},
        },
        half=5.0,
    )
    assert count_switches(moving, run(moving, wrong)) > 0
    assert count_switches(moving, run(moving, wrong, iou="mult")) == 0  # 0.79 * IoU 0 = 0
    assert count_switches(moving, run(moving, wrong, iou="max")) > 0  # max(0.11, 0.54) < 0.79
    # Static boxes: IoU 1 with the own track, so "max" now wins over the model too.
    still = synthetic_gt({"A": static(20, 50, range(4)), "B": static(80, 50, range(4))}, half=5.0)
    assert count_switches(still, run(still, wrong)) > 0
    assert count_switches(still, run(still, wrong, iou="max")) == 0


def test_max_center_dist_rules_out_far_tracks() -> None:
    # A confident model that matches anything; a detection far away in frame 2.
    gt = synthetic_gt({"A": {0: (10, 10), 1: (10, 10), 3: (12, 10)}, "B": {2: (90, 90)}})
    free = run(gt, ConstantModel(5.0))
    near = run(gt, ConstantModel(5.0), max_center_dist=0.1)  # 14 px on a 100 x 100 frame
    assert track_names(free) == ["track_0"]
    assert [names_by_frame(near)[f][0] for f in range(4)] == [
        "track_0",
        "track_0",
        "track_1",
        "track_0",  # the far track is filtered out, the near one still matches
    ]


def test_persistent_tracking_carries_tracks_across_chunks() -> None:
    gt = synthetic_gt({"A": static(20, 20, range(10))})
    kept = run(gt, OracleModel(), chunk_frames=5, persistent_tracking=True)
    fresh = run(gt, OracleModel(), chunk_frames=5, persistent_tracking=False)
    assert track_names(kept) == ["track_0"]
    by_frame = names_by_frame(fresh)
    assert {by_frame[f][0] for f in range(5)} == {"track_0"}
    assert {by_frame[f][0] for f in range(5, 10)} == {"track_1"}  # a new name, no claim
    # Within one chunk the option changes nothing.
    assert track_names(run(gt, OracleModel(), persistent_tracking=False)) == ["track_0"]


def test_max_gap_retires_tracks_missing_too_long() -> None:
    # Frames 3, 4 and 5 are missing: a gap of 3 video frames.
    gt = synthetic_gt({"A": static(20, 20, [0, 1, 2, 6, 7])})
    assert track_names(run(gt, OracleModel())) == ["track_0"]
    assert track_names(run(gt, OracleModel(), max_gap=3)) == ["track_0"]
    assert track_names(run(gt, OracleModel(), max_gap=2)) == ["track_0", "track_1"]
    # A retired track is not forced on either: it no longer counts against max_tracks.
    assert track_names(run(gt, OracleModel(), max_gap=2, max_tracks=1)) == [
        "track_0",
        "track_1",
    ]


def test_max_tracks_forces_queries_onto_existing_tracks() -> None:
    # A model with no confidence: every detection would start a new track.
    gt = synthetic_gt(
        {
            "A": {f: (20 + 2 * f, 20) for f in range(5)},
            "B": {f: (80 - 2 * f, 80) for f in range(5)},
        }
    )
    unlimited = run(gt, ConstantModel(-10.0))
    limited = run(gt, ConstantModel(-10.0), max_tracks=2)
    assert len(track_names(unlimited)) == 10
    assert sorted(track_names(limited)) == ["track_0", "track_1"]
    # Both tracks score the same (near 0), so each detection goes to the nearest track.
    assert count_switches(gt, limited) == 0


def test_max_tracks_leaves_extra_instances_untracked_lowest_score_first() -> None:
    skeleton = sio.Skeleton(["a", "b"])
    video = sio.Video(filename="synthetic.mp4", open_backend=False)
    instances = [
        sio.PredictedInstance.from_numpy(
            np.array([[x, 10.0], [x + 4, 14.0]]), skeleton=skeleton, score=score
        )
        for x, score in [(10.0, 0.5), (40.0, 0.9), (70.0, 0.7)]
    ]
    labels = sio.Labels(
        labeled_frames=[sio.LabeledFrame(video=video, frame_idx=0, instances=instances)],
        videos=[video],
        skeletons=[skeleton],
    )
    tracker = GTRTracker(
        ConstantModel(0.0),
        GTRTrackerOptions(use_vis_feats=False, max_tracks=2),
        gt_featurize(labels, (100, 100)),
    )
    out = tracker.track(labels).labeled_frames[0].instances
    assert [i.track.name if i.track else None for i in out] == [None, "track_0", "track_1"]
    assert [i.tracking_score for i in out] == [0.0, 1.0, 1.0]


# ---------------------------------------------------------------------------------------------
# Contract: inputs, outputs, errors
# ---------------------------------------------------------------------------------------------


def test_input_is_unchanged_and_untrackable_or_user_instances_pass_through() -> None:
    gt = synthetic_gt({"A": static(20, 20, range(3))})
    labels = as_untracked_predictions(gt)
    skeleton = labels.skeletons[0]
    hidden = sio.PredictedInstance.from_numpy(np.full((2, 2), np.nan), skeleton=skeleton, score=1.0)
    user_track = sio.Track(name="track_0")  # a user track taking the first name
    user = sio.Instance.from_numpy(np.array([[60.0, 60], [64, 64]]), skeleton, track=user_track)
    labels.labeled_frames[1].instances.extend([hidden, user])
    before = [[(i.track, i.numpy().copy()) for i in lf.instances] for lf in labels.labeled_frames]
    tracker = GTRTracker(OracleModel(), {"use_vis_feats": False}, gt_featurize(gt, (100, 100)))
    out = tracker.track(labels)
    after = [[(i.track, i.numpy()) for i in lf.instances] for lf in labels.labeled_frames]
    for b_frame, a_frame in zip(before, after, strict=True):
        for (bt, bp), (at, ap) in zip(b_frame, a_frame, strict=True):
            assert bt is at and np.array_equal(bp, ap, equal_nan=True)
    frame1 = out.labeled_frames[1].instances
    assert frame1[0].track is user_track  # user instances first, unchanged
    by_kind = {type(i).__name__ + str(np.isnan(i.numpy()).all()): i for i in frame1[1:]}
    assert by_kind["PredictedInstanceTrue"].track is None
    assert by_kind["PredictedInstanceFalse"].track.name == "track_1"  # skips the user's name
    assert [t.name for t in out.tracks] == ["track_0", "track_1"]


def test_instances_featurize_drops_stay_untracked() -> None:
    gt = synthetic_gt({"A": static(20, 20, range(3)), "B": static(70, 20, range(3))})
    inner = gt_featurize(gt, (100, 100))

    def drop_right_animal(lf, image):
        dets = inner(lf, image)
        keep = np.nonzero(dets.centroids[:, 0].numpy() < 50)[0]
        return dets.select(torch.from_numpy(keep)), keep

    tracker = GTRTracker(OracleModel(), {"use_vis_feats": False}, drop_right_animal)
    out = tracker.track(as_untracked_predictions(gt))
    for lf in out.labeled_frames:
        names = {float(i.numpy()[0, 0]): i.track for i in lf.instances}
        assert names[18.0].name == "track_0" and names[68.0] is None


def test_featurize_and_model_errors_name_the_frame() -> None:
    gt = synthetic_gt({"A": static(20, 20, range(2)), "B": static(70, 20, range(2))})
    inner = gt_featurize(gt, (100, 100))

    def one_short(lf, image):
        dets = inner(lf, image)
        return dets.select(torch.arange(len(dets) - 1))

    tracker = GTRTracker(OracleModel(), {"use_vis_feats": False}, one_short)
    with pytest.raises(ValueError, match=r"1 detections for frame 0 of 'synthetic.mp4'"):
        tracker.track(as_untracked_predictions(gt))

    class Transposed(OracleModel):
        def associate(self, window, query, use_vis_feats=True):
            return super().associate(window, query, use_vis_feats).T[:, :1]

    tracker = GTRTracker(Transposed(), {"use_vis_feats": False}, inner)
    with pytest.raises(ValueError, match=r"for frame 1; expected logits of shape \(2, 2\)"):
        tracker.track(as_untracked_predictions(gt))

    with pytest.raises(RuntimeError, match=r"frame 0 of 'synthetic.mp4'.*use_vis_feats: false"):
        GTRTracker(OracleModel(), {"use_vis_feats": True}, inner).track(
            as_untracked_predictions(gt)
        )
    with pytest.raises(TypeError, match="associate"):
        GTRTracker(object(), None, inner)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="chunk_frames"):
        GTRTracker(OracleModel(), None, inner, chunk_frames=0)


def test_model_is_evaluated_in_eval_mode_and_its_mode_restored() -> None:
    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.scale = torch.nn.Parameter(torch.tensor(10.0))
            self.modes: list[bool] = []

        def associate(self, window, query, use_vis_feats=True):
            self.modes.append(self.training)
            same = query.track_ids[:, None] == window.track_ids[None, :]
            return torch.where(same, self.scale, -self.scale)

    net = Net().train()
    gt = synthetic_gt({"A": static(20, 20, range(3))})
    out = run(gt, net)
    assert net.modes == [False, False] and net.training
    assert track_names(out) == ["track_0"]


def test_no_match_logit_comes_from_the_model_unless_given() -> None:
    # A model whose learned "no match" logit dwarfs its association logits: nothing matches.
    gt = synthetic_gt({"A": static(20, 20, range(3))})
    sceptic = OracleModel(same=2.0, other=-2.0)
    sceptic.no_match_logit = torch.tensor(20.0)  # type: ignore[attr-defined]
    assert len(track_names(run(gt, sceptic))) == 3
    featurize = gt_featurize(gt, (100, 100))
    options = GTRTrackerOptions(use_vis_feats=False)
    tracker = GTRTracker(sceptic, options, featurize, no_match_logit=0.0)
    assert track_names(tracker.track(as_untracked_predictions(gt))) == ["track_0"]
    assert GTRTracker(OracleModel(), options, featurize).no_match_logit == 0.0


def test_association_probabilities_and_box_iou() -> None:
    logits = np.array([[0.0, 0.0, 0.0], [10.0, -10.0, 0.0]])
    probs = association_probabilities(logits)
    assert np.allclose(probs[0], 0.25)  # three instances and "no match", all at logit 0
    assert probs[1, 0] > 0.99 and np.all(probs.sum(axis=1) < 1)
    assert np.allclose(association_probabilities(logits, no_match_logit=-50.0).sum(axis=1), 1)
    a = np.array([[0.0, 0, 10, 10]])
    b = np.array([[5.0, 0, 15, 10], [20, 20, 30, 30], [np.nan, np.nan, np.nan, np.nan]])
    assert np.allclose(box_iou(a, b), [[1 / 3, 0.0, 0.0]])
