"""Detections of frames and training clips for the tracking transformer (gtr.instances/.data).

Real data: the DREEM fly videos (two_flies: 128 labelled frames, tracks F and M, 13 nodes,
1024x1024 grey; three_flies) and the Cell Tracking Challenge folder of the DREEM microscopy
assets. Synthetic points test the anchor rules where the expected centre is known exactly.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import sleap_io as sio
import torch

from pipeline_lib.tracking.gtr.data import (
    ClipDataset,
    ClipDatasetOptions,
    DatasetOptionsError,
    collate,
    instance_dropout,
    node_dropout,
    pair_by_stem,
    parse_augmentations,
    rotate_frame,
    rotate_points,
)
from pipeline_lib.tracking.gtr.detections import Detections
from pipeline_lib.tracking.gtr.instances import (
    detections_from_frame,
    labels_frame_detections,
)

NODES = ["head", "thorax", "tail"]


@pytest.fixture(scope="module")
def flies(shared_data: Path) -> Path:
    root = shared_data / "dreem_assets" / "sleap"
    if not (root / "two_flies.slp").is_file():
        pytest.skip(f"DREEM fly assets not found in {root}")
    return root


@pytest.fixture(scope="module")
def two_flies_frame(flies: Path) -> tuple[np.ndarray, sio.LabeledFrame, list[str]]:
    labels = sio.load_slp(str(flies / "two_flies.slp"))
    lf = labels[0]
    image = np.asarray(labels.videos[0][int(lf.frame_idx)])
    image = image if image.ndim == 3 else image[..., None]
    return image, lf, list(labels.skeleton.node_names)


def fly_options(flies: Path, **overrides) -> dict:
    options = {
        "slp_files": [str(flies / "two_flies.slp")],
        "video_files": [str(flies / "two_flies.mp4")],
        "clip_length": 4,
        "crop_size": 32,
        "padding": 5,
        "mode": "val",
        "seed": 7,
    }
    options.update(overrides)
    return options


def rows(d: Detections) -> list[tuple[int, int]]:
    """Order-independent view of a clip: (frame, track) per detection."""
    return sorted(zip(d.frames.tolist(), d.track_ids.tolist(), strict=True))


def sort_by_frame_track(d: Detections) -> Detections:
    key = d.frames * 1000 + d.track_ids
    return d.select(torch.argsort(key))


def grey_frame(h: int = 60, w: int = 80) -> np.ndarray:
    """A frame where every pixel value encodes its position (to check crops by content)."""
    yy, xx = np.mgrid[0:h, 0:w]
    return ((yy * 7 + xx * 3) % 256).astype(np.uint8)[..., None]


# ============================================================================ instances


def test_node_anchor_centres_on_the_node_and_crop_is_the_frame_slice() -> None:
    image = grey_frame()
    points = np.array([[[10.0, 12.0], [30.2, 20.7], [50.0, 30.0]]])
    det, kept = detections_from_frame(points, image, 3, NODES, "thorax", "drop", 9, 0)
    assert kept.tolist() == [0]
    assert det.centroids[0].tolist() == pytest.approx([30.2, 20.7])
    # Rounded anchor (30, 21) sits at index 4 of a 9-pixel crop: the crop is frame[17:26, 26:35].
    expected = image[17:26, 26:35, 0].astype(np.float32) / 255.0
    assert det.crops.shape == (1, 1, 9, 9)
    np.testing.assert_array_equal(det.crops[0, 0].numpy(), expected)
    assert det.frames.tolist() == [3] and det.image_hw == (60, 80)
    assert det.track_ids.tolist() == [-1] and det.scores.tolist() == [1.0]


def test_crop_at_the_frame_border_is_zero_padded() -> None:
    image = grey_frame()
    points = np.array([[[1.0, 2.0], [np.nan, np.nan], [5.0, 5.0]]])
    det, _ = detections_from_frame(points, image, 0, NODES, "head", "drop", 8, 0)
    crop = det.crops[0, 0].numpy()
    # Offset (1 - 4, 2 - 4) = (-3, -2): two rows and three columns lie outside the frame.
    assert (crop[:2] == 0).all() and (crop[:, :3] == 0).all()
    np.testing.assert_array_equal(crop[2:, 3:], image[0:6, 0:5, 0] / np.float32(255.0))


def test_list_anchor_is_the_mean_of_its_visible_nodes() -> None:
    image = grey_frame()
    points = np.array(
        [
            [[10.0, 10.0], [20.0, 30.0], [40.0, 40.0]],
            [[np.nan, np.nan], [20.0, 30.0], [40.0, 40.0]],
        ]
    )
    det, kept = detections_from_frame(points, image, 0, NODES, ["head", "thorax"], "drop", 8, 0)
    assert kept.tolist() == [0, 1]
    assert det.centroids.tolist() == [[15.0, 20.0], [20.0, 30.0]]


def test_int_anchor_draws_visible_nodes_with_the_rng() -> None:
    image = grey_frame()
    points = np.array([[[10.0, 10.0], [20.0, 30.0], [np.nan, np.nan]]])
    means = []
    for seed in range(20):
        det, _ = detections_from_frame(
            points, image, 0, NODES, 1, "drop", 8, 0, rng=np.random.default_rng(seed)
        )
        means.append(tuple(det.centroids[0].tolist()))
    # One node each time, never the hidden one; both visible nodes are drawn over 20 seeds.
    assert set(means) == {(10.0, 10.0), (20.0, 30.0)}
    again, _ = detections_from_frame(
        points, image, 0, NODES, 1, "drop", 8, 0, rng=np.random.default_rng(3)
    )
    assert tuple(again.centroids[0].tolist()) == means[3]
    # More nodes asked than visible: all visible nodes.
    det, _ = detections_from_frame(points, image, 0, NODES, 5, "drop", 8, 0)
    assert det.centroids[0].tolist() == [15.0, 20.0]


def test_no_anchor_or_centroid_keyword_uses_the_pose_centroid() -> None:
    image = grey_frame()
    points = np.array([[[10.0, 10.0], [np.nan, np.nan], [40.0, 22.0]]])
    for anchors in (None, "centroid", "midpoint"):
        det, _ = detections_from_frame(points, image, 0, NODES, anchors, "drop", 8, 0)
        assert det.centroids[0].tolist() == [25.0, 16.0]
    # A skeleton with a node called "centroid" (microscopy labels) means that node.
    det, _ = detections_from_frame(
        points, image, 0, ["a", "centroid", "b"], "centroid", "drop", 8, 0
    )
    assert len(det) == 0


def test_unknown_anchor_names_the_skeleton_nodes() -> None:
    points = np.zeros((1, 3, 2))
    with pytest.raises(ValueError, match=r"\['thorx'\].*'head', 'thorax', 'tail'"):
        detections_from_frame(points, grey_frame(), 0, NODES, "thorx", "drop", 8, 0)
    with pytest.raises(ValueError, match="handle_missing must be one of drop, ignore, centroid"):
        detections_from_frame(points, grey_frame(), 0, NODES, "head", "skip", 8, 0)


def test_handle_missing_modes() -> None:
    image = grey_frame()
    points = np.array(
        [
            [[10.0, 10.0], [20.0, 20.0], [30.0, 10.0]],  # anchor visible
            [[50.0, 40.0], [np.nan, np.nan], [60.0, 50.0]],  # anchor (thorax) missing
            [[np.nan, np.nan]] * 3,  # nothing visible: dropped in every mode
        ]
    )
    tracks = np.array([4, 5, 6])
    drop, kept = detections_from_frame(
        points, image, 0, NODES, "thorax", "drop", 8, 2, track_ids=tracks
    )
    assert kept.tolist() == [0] and drop.track_ids.tolist() == [4]

    ignore, kept = detections_from_frame(
        points, image, 0, NODES, "thorax", "ignore", 8, 2, track_ids=tracks
    )
    assert kept.tolist() == [0, 1] and ignore.track_ids.tolist() == [4, 5]
    assert torch.isnan(ignore.centroids[1]).all() and torch.isnan(ignore.boxes[1]).all()
    assert (ignore.crops[1] == 0).all() and (ignore.crops[0] != 0).any()
    assert torch.isfinite(ignore.centroids[0]).all()

    centroid, kept = detections_from_frame(
        points, image, 0, NODES, "thorax", "centroid", 8, 2, track_ids=tracks
    )
    assert kept.tolist() == [0, 1]
    assert centroid.centroids.tolist() == [[20.0, 20.0], [55.0, 45.0]]
    assert centroid.boxes[1].tolist() == [48.0, 38.0, 62.0, 52.0]


def test_padding_grows_the_box_of_visible_points() -> None:
    points = np.array([[[10.0, 12.0], [np.nan, np.nan], [30.5, 40.0]]])
    tight, _ = detections_from_frame(points, grey_frame(), 0, NODES, None, "drop", 8, 0)
    padded, _ = detections_from_frame(points, grey_frame(), 0, NODES, None, "drop", 8, 7)
    assert tight.boxes[0].tolist() == [10.0, 12.0, 30.5, 40.0]
    assert padded.boxes[0].tolist() == [3.0, 5.0, 37.5, 47.0]


def test_real_frame_crops_channels_and_image_free_detections(two_flies_frame) -> None:
    image, lf, nodes = two_flies_frame
    points = np.stack([inst.numpy() for inst in lf.instances])
    det, kept = detections_from_frame(points, image, 0, nodes, "thorax", "drop", 48, 0)
    assert det.crops.shape == (2, 1, 48, 48) and det.crops.dtype == torch.float32
    for k in range(2):
        x, y = np.round(points[k, nodes.index("thorax")]).astype(int)
        window = image[y - 24 : y + 24, x - 24 : x + 24, 0] / np.float32(255.0)
        np.testing.assert_array_equal(det.crops[k, 0].numpy(), window)
    rgb, _ = detections_from_frame(
        points, np.repeat(image, 3, axis=2), 0, nodes, "thorax", "drop", 48, 0
    )
    assert rgb.crops.shape == (2, 3, 48, 48)
    blind, _ = detections_from_frame(
        points, None, 0, nodes, "thorax", "drop", 48, 0, image_hw=(1024, 1024), channels=3
    )
    assert blind.crops.shape == (2, 3, 48, 48) and (blind.crops == 0).all()
    assert torch.equal(blind.centroids, det.centroids) and torch.equal(blind.boxes, det.boxes)
    with pytest.raises(ValueError, match="frame 9: without an image, image_hw"):
        detections_from_frame(points, None, 9, nodes, "thorax", "drop", 48, 0)


def test_labels_frame_detections_maps_tracks_and_scores(two_flies_frame) -> None:
    image, lf, nodes = two_flies_frame
    det, kept = labels_frame_detections(
        lf, image, anchors="thorax", crop_size=32, track_index={"F": 0, "M": 1}
    )
    assert kept.tolist() == [0, 1]
    assert det.track_ids.tolist() == [{"F": 0, "M": 1}[i.track.name] for i in lf.instances]
    skeleton = lf.instances[0].skeleton
    predicted = sio.PredictedInstance.from_numpy(
        lf.instances[0].numpy(), skeleton=skeleton, score=0.25, track=sio.Track("X")
    )
    frame = sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=[predicted])
    det, _ = labels_frame_detections(frame, image, crop_size=32)
    assert det.scores.tolist() == [0.25] and det.track_ids.tolist() == [-1]
    with pytest.raises(ValueError, match=r"frame 0: track 'X' is not in the track index"):
        labels_frame_detections(frame, image, crop_size=32, track_index={"F": 0})


# ============================================================================ options


def test_unknown_options_and_augmentations_are_named() -> None:
    with pytest.raises(DatasetOptionsError, match=r"'clip_lenght'; did you mean 'clip_length'"):
        ClipDatasetOptions.from_dict({"slp_files": ["a.slp"], "clip_lenght": 4})
    with pytest.raises(DatasetOptionsError, match=r"'Rotation'; did you mean 'Rotate'.*GaussNoise"):
        parse_augmentations({"Rotation": {"limit": 10}})
    with pytest.raises(DatasetOptionsError, match=r"'limits' of augmentation 'Rotate'.*limit, p"):
        parse_augmentations({"Rotate": {"limits": 10}})
    with pytest.raises(DatasetOptionsError, match="odd ints >= 3"):
        parse_augmentations({"GaussianBlur": {"blur_limit": [3, 6]}})
    with pytest.raises(DatasetOptionsError, match=r"unknown key 'dir.suffix'"):
        ClipDatasetOptions.from_dict({"dir": {"path": "x", "suffix": ".slp"}})
    with pytest.raises(DatasetOptionsError, match="n_chunks' above 1 must be an int"):
        ClipDatasetOptions.from_dict({"slp_files": ["a.slp"], "n_chunks": 1.5})
    with pytest.raises(DatasetOptionsError, match="parallel lists"):
        ClipDatasetOptions.from_dict({"slp_files": ["a.slp", "b.slp"], "video_files": ["a.mp4"]})
    parsed = parse_augmentations({"Rotate": {"limit": 45}, "MotionBlur": {"blur_limit": 5}})
    assert parsed["Rotate"] == {"limit": (-45.0, 45.0), "p": 0.5}
    assert parsed["MotionBlur"]["blur_limit"] == (3, 5)


def test_unknown_anchor_fails_before_decoding(flies: Path) -> None:
    with pytest.raises(DatasetOptionsError, match=r"anchors' for .*two_flies.slp.*'thorax'"):
        ClipDataset(fly_options(flies, anchors="thorx"))


# ============================================================================ clips


def test_chunking_clip_length_and_one_clip_per_video(flies: Path) -> None:
    ds = ClipDataset(fly_options(flies, clip_length=30))
    assert len(ds) == 5  # 128 labelled frames: 4 x 30 + 8
    assert [len(ds.clip_frames(i)) for i in range(5)] == [30, 30, 30, 30, 8]
    assert ds.clip_frames(1).tolist() == list(range(30, 60))
    whole = ClipDataset(fly_options(flies, chunk=False))
    assert len(whole) == 1 and whole.clip_frames(0).tolist() == list(range(128))
    clip = ClipDataset(fly_options(flies, clip_length=3))[5]
    assert rows(clip) == [(f, t) for f in (15, 16, 17) for t in (0, 1)]
    assert clip.crops.shape == (6, 1, 32, 32) and clip.image_hw == (1024, 1024)


def test_n_chunks_fraction_count_and_seed(flies: Path) -> None:
    def starts(**kw) -> list[int]:
        ds = ClipDataset(fly_options(flies, clip_length=8, **kw))
        return [int(ds.clip_frames(i)[0]) for i in range(len(ds))]

    assert len(starts()) == 16
    assert len(starts(n_chunks=0.25)) == 4
    assert len(starts(n_chunks=3)) == 3
    assert len(starts(n_chunks=1)) == 16  # 1 is the whole set, as in DREEM
    assert len(starts(n_chunks=100)) == 16
    a, b = starts(n_chunks=5, seed=1), starts(n_chunks=5, seed=1)
    assert a == b and a == sorted(a)
    assert any(starts(n_chunks=5, seed=s) != a for s in (2, 3, 4))


AUGS = {
    "Rotate": {"limit": 40, "p": 0.5},
    "GaussNoise": {"std_range": [0.02, 0.05], "p": 0.5},
    "InstanceDropout": {"p": 0.3, "n": 1},
    "NodeDropout": {"p": 0.3, "n": 2},
}


def test_same_seed_and_index_give_the_same_clip(flies: Path) -> None:
    one = ClipDataset(fly_options(flies, mode="train", augmentations=AUGS, anchors=2))
    two = ClipDataset(fly_options(flies, mode="train", augmentations=AUGS, anchors=2))
    a, b = one[2], two[2]
    for name in ("crops", "boxes", "centroids", "frames", "track_ids"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    two.set_epoch(1)
    assert not torch.equal(two[2].crops, a.crops)  # a new epoch draws new augmentations
    other = ClipDataset(fly_options(flies, seed=8, mode="train", augmentations=AUGS, anchors=2))
    assert not torch.equal(other[2].crops, a.crops)


@pytest.mark.parametrize("cache_mb", [1024.0, 0.0, 1.5])
def test_decoded_frames_are_kept_up_to_the_budget(flies: Path, cache_mb: float) -> None:
    """Training rereads every clip each epoch: frames decoded once are kept in memory up to
    frame_cache_mb (a 1024x1024 grey fly frame is 1 MiB), and what a clip holds does not
    depend on whether its frames came from the decoder or from memory."""
    augs = {**AUGS, "GaussNoise": {"std_range": [0.05, 0.1], "p": 1.0}}
    uncached = ClipDataset(fly_options(flies, mode="train", augmentations=augs), frame_cache_mb=0)
    ds = ClipDataset(fly_options(flies, mode="train", augmentations=augs), frame_cache_mb=cache_mb)
    decoded = []
    for seq in ds.sequences:
        original = seq.frames.read
        seq.frames.read = lambda row, original=original: decoded.append(row) or original(row)
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        uncached.set_epoch(epoch)
        for idx in (0, 1):
            a, b = ds[idx], uncached[idx]
            for name in ("crops", "boxes", "centroids", "frames", "track_ids"):
                assert torch.equal(getattr(a, name), getattr(b, name)), (epoch, idx, name)
    expected = {1024.0: 8, 0.0: 16, 1.5: 15}[cache_mb]  # 2 clips of 4 frames, read twice
    assert len(decoded) == expected
    assert ds._frame_cache_used <= cache_mb * 2**20


def test_val_mode_applies_no_augmentation(flies: Path) -> None:
    heavy = {name: {"p": 1.0} for name in ("GaussianBlur", "GaussNoise", "InstanceDropout")}
    plain = ClipDataset(fly_options(flies))[1]
    val = ClipDataset(fly_options(flies, augmentations=heavy))[1]
    for name in ("crops", "boxes", "centroids", "frames", "track_ids", "scores"):
        assert torch.equal(getattr(plain, name), getattr(val, name)), name


def compare_to_val(flies: Path, augmentations: dict, clip: int = 1) -> tuple[Detections, ...]:
    """(val clip, train clip with ``augmentations``), both sorted by frame and track."""
    val = ClipDataset(fly_options(flies, anchors="thorax"))[clip]
    train = ClipDataset(
        fly_options(flies, anchors="thorax", mode="train", augmentations=augmentations)
    )[clip]
    return sort_by_frame_track(val), sort_by_frame_track(train)


@pytest.mark.parametrize(
    "name,params",
    [
        ("GaussianBlur", {"blur_limit": [5, 7]}),
        ("MotionBlur", {"blur_limit": [5, 7]}),
        ("RandomBrightnessContrast", {"brightness_limit": [0.2, 0.3], "contrast_limit": 0.2}),
        ("GaussNoise", {"std_range": [0.05, 0.1]}),
    ],
)
def test_photometric_augmentations_change_pixels_only(flies: Path, name: str, params) -> None:
    val, train = compare_to_val(flies, {name: {**params, "p": 1.0}})
    for field in ("boxes", "centroids", "frames", "track_ids", "scores"):
        assert torch.equal(getattr(val, field), getattr(train, field)), field
    diff = (val.crops - train.crops).abs()
    assert diff.mean() > 0.005, f"{name} left the crops unchanged"


def test_instance_dropout_removes_instances_only(flies: Path) -> None:
    val, train = compare_to_val(flies, {"InstanceDropout": {"p": 1.0, "n": 1}})
    assert len(val) == 8 and len(train) == 4  # one of the two flies in each of 4 frames
    assert train.frames.tolist() == [4, 5, 6, 7]
    for k in range(len(train)):
        same = (val.frames == train.frames[k]) & (val.track_ids == train.track_ids[k])
        match = val.select(same)
        assert torch.equal(match.crops[0], train.crops[k])
        assert torch.equal(match.boxes[0], train.boxes[k])
    counts = [instance_dropout(5, 0.9, 2, np.random.default_rng(s)).sum() for s in range(20)]
    assert min(counts) >= 3  # never more than n dropped


def test_node_dropout_hides_nodes_before_boxes(flies: Path) -> None:
    val = sort_by_frame_track(ClipDataset(fly_options(flies))[1])
    train = sort_by_frame_track(
        ClipDataset(
            fly_options(flies, mode="train", augmentations={"NodeDropout": {"p": 1.0, "n": 4}})
        )[1]
    )
    assert rows(val) == rows(train)
    assert torch.equal(val.track_ids, train.track_ids)
    # Boxes of fewer points shrink or stay; pose centroids move.
    assert (train.boxes[:, :2] >= val.boxes[:, :2] - 1e-4).all()
    assert (train.boxes[:, 2:] <= val.boxes[:, 2:] + 1e-4).all()
    assert not torch.equal(train.boxes, val.boxes)
    assert not torch.equal(train.centroids, val.centroids)
    pts = np.zeros((3, 13, 2))
    pts[0, :5] = np.nan
    hidden = np.isnan(node_dropout(pts, 1.0, 3, np.random.default_rng(0))).all(-1).sum(1)
    assert hidden.tolist() == [8, 3, 3]  # 5 already hidden + 3 more; never more than n


def test_rotate_keeps_points_on_their_image_content(two_flies_frame) -> None:
    image, lf, _ = two_flies_frame
    points = np.stack([inst.numpy() for inst in lf.instances])

    def sample(frame: np.ndarray, pts: np.ndarray) -> np.ndarray:
        p = pts.reshape(-1, 2).astype(np.float32)
        p = p[np.isfinite(p).all(axis=1)]
        grey = frame[..., 0].astype(np.float32)
        return cv2.remap(grey, p[:, :1], p[:, 1:], cv2.INTER_LINEAR).ravel()

    before = sample(image, points)
    for angle in (30.0, -70.0):
        rotated, moved = rotate_frame(image, points, angle)
        assert rotated.shape == image.shape and rotated.dtype == np.uint8
        after = sample(rotated, moved)
        assert np.abs(after - before).max() < 16 and np.abs(after - before).mean() < 4
        _, wrong = rotate_frame(image, points, -angle)
        assert np.abs(sample(rotated, wrong) - before).mean() > 30  # the check can fail
    # A point rotated out of the frame is no longer visible.
    _, gone = rotate_frame(image, np.array([[[2.0, 2.0]]]), 45.0)
    assert np.isnan(gone).all()


def test_rotate_in_a_clip_turns_boxes_and_centroids_by_one_angle(flies: Path) -> None:
    val = sort_by_frame_track(ClipDataset(fly_options(flies, crop_size=16))[1])
    train = sort_by_frame_track(
        ClipDataset(
            fly_options(
                flies,
                crop_size=16,
                mode="train",
                augmentations={"Rotate": {"limit": [25, 25], "p": 1}},
            )
        )[1]
    )
    assert rows(val) == rows(train)
    matrix = cv2.getRotationMatrix2D((511.5, 511.5), 25.0, 1.0)
    expected = val.centroids.double().numpy() @ matrix[:, :2].T + matrix[:, 2]
    np.testing.assert_allclose(train.centroids.numpy(), expected, atol=1e-3)
    # The centre pixels of each crop show the same animal as before rotating.
    c = 8
    centre = (slice(None), 0, slice(c - 1, c + 2), slice(c - 1, c + 2))
    assert (train.crops[centre].mean((1, 2)) - val.crops[centre].mean((1, 2))).abs().max() < 0.06


# ============================================================================ sources


def test_dir_pairs_labels_and_videos_by_stem(flies: Path, tmp_path: Path) -> None:
    links = {
        "b_two.slp": "two_flies.slp",
        "a_three.mp4": "three_flies.mp4",
        "b_two.mp4": "two_flies.mp4",
        "a_three.slp": "three_flies.slp",
    }
    order = list(links)
    random.Random(5).shuffle(order)
    for name in order:
        (tmp_path / name).symlink_to(flies / links[name])
    spec = {"path": str(tmp_path), "labels_suffix": ".slp", "vid_suffix": ".mp4"}
    pairs = pair_by_stem(tmp_path, ".slp", ".mp4")
    assert [(p.name, v.name) for p, v in pairs] == [
        ("a_three.slp", "a_three.mp4"),
        ("b_two.slp", "b_two.mp4"),
    ]
    ds = ClipDataset({"dir": spec, "chunk": False, "mode": "val", "crop_size": 16})
    assert [Path(p).name for p, _ in (ds.clip_source(0), ds.clip_source(1))] == [
        "a_three.slp",
        "b_two.slp",
    ]
    assert Path(ds.clip_source(0)[1]).name == "a_three.mp4"
    three = ClipDataset({"dir": spec, "clip_length": 2, "mode": "val", "crop_size": 16})[0]
    assert sorted(set(three.track_ids.tolist())) == [0, 1, 2]

    (tmp_path / "c_lonely.slp").symlink_to(flies / "two_flies.slp")
    with pytest.raises(ValueError, match=r"labels file .*c_lonely.slp has no video 'c_lonely.mp4'"):
        ClipDataset({"dir": spec})
    (tmp_path / "c_lonely.slp").unlink()
    (tmp_path / "d_orphan.mp4").symlink_to(flies / "two_flies.mp4")
    with pytest.raises(ValueError, match=r"video .*d_orphan.mp4 has no labels file"):
        ClipDataset({"dir": spec})


def test_user_instances_win_and_duplicate_tracks_are_dropped(flies: Path, tmp_path: Path) -> None:
    labels = sio.load_slp(str(flies / "two_flies.slp"))
    labels.videos[0].replace_filename(str(flies / "two_flies.mp4"), open=False)
    first, second = labels[0], labels[1]
    skeleton = labels.skeleton
    # Frame 0: a leftover prediction next to the user instances is not ground truth.
    first.instances.append(
        sio.PredictedInstance.from_numpy(first.instances[0].numpy() + 3, skeleton=skeleton)
    )
    # Frame 1: two user instances of one track; the first is kept.
    second.instances.append(
        sio.Instance.from_numpy(
            second.instances[0].numpy() + 3, skeleton=skeleton, track=second.instances[0].track
        )
    )
    path = tmp_path / "edited.slp"
    labels.save(str(path))
    clip = ClipDataset(
        {"slp_files": [str(path)], "clip_length": 2, "mode": "val", "crop_size": 16}
    )[0]
    assert rows(clip) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert (clip.scores == 1.0).all()


def test_ctc_microscopy_clip_loads(shared_data: Path) -> None:
    root = shared_data / "dreem_assets" / "microscopy" / "cell_tracking"
    if not root.is_dir():
        pytest.skip(f"CTC assets not found at {root}")
    ds = ClipDataset(
        {
            "source": "ctc",
            "gt_images": [str(root / "test_0_GT" / "TRA")],
            "raw_images": [str(root / "test_0")],
            "clip_length": 4,
            "crop_size": 24,
            "padding": 2,
            "mode": "val",
        }
    )
    assert len(ds) == 3 and ds.channels == 1  # 11 frames: 4 + 4 + 3
    clip = ds[0]
    assert clip.image_hw == (592, 608)
    assert clip.frames.unique().tolist() == [0, 1, 2, 3]
    assert len(clip) == 20 + 20 + 20 + 20 and (clip.track_ids >= 0).all()
    # One-node cells: the box is the centroid grown by the padding on every side.
    np.testing.assert_allclose(clip.boxes[:, :2].numpy(), clip.centroids.numpy() - 2, atol=1e-4)
    image = np.asarray(sio.load_video([str(p) for p in sorted((root / "test_0").glob("*.tif"))])[0])
    first = clip.select(clip.frames == 0)
    margin = torch.minimum(first.centroids, torch.tensor([608.0, 592.0]) - first.centroids)
    k = int(margin.min(dim=1).values.argmax())  # the cell farthest from the frame border
    x, y = np.round(first.centroids[k].numpy()).astype(int)
    window = image[y - 12 : y + 12, x - 12 : x + 12, 0] / np.float32(255.0)
    np.testing.assert_array_equal(first.crops[k, 0].numpy(), window)


def test_isbi_tracks_with_their_image_folder(shared_data: Path) -> None:
    folder = shared_data / "dreem_assets" / "microscopy" / "isbi" / "microtubules"
    xml = folder / "MICROTUBULE snr 7 density low.xml"
    if not xml.is_file():
        pytest.skip(f"ISBI assets not found at {folder}")
    options = {"source": "ISBI", "tracks": [str(xml)], "videos": [str(folder)]}
    ds = ClipDataset({**options, "clip_length": 4, "crop_size": 16, "mode": "val"})
    assert [ds.clip_frames(i).tolist() for i in range(len(ds))] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8],
    ]  # the ground truth runs past the 9 images shipped; frames 9+ are dropped by the reader
    clip = ds[2]
    assert clip.image_hw == (512, 512) and len(clip) > 0 and (clip.frames == 8).all()
    with pytest.raises(DatasetOptionsError, match="needs 'videos' parallel to 'tracks'"):
        ClipDataset({"source": "isbi", "tracks": [str(xml)]})


def test_workers_read_lazily_and_collate_keeps_clips(flies: Path) -> None:
    ds = ClipDataset(fly_options(flies, mode="train", augmentations=AUGS, n_chunks=2))
    assert len(pickle.dumps(ds)) < 500_000  # arrays and paths, no decoded frames or readers
    local = ds[1]
    ds.close()
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=1, collate_fn=collate)
    (batch,) = list(loader)
    assert isinstance(batch, list) and len(batch) == 2
    assert all(isinstance(d, Detections) for d in batch)
    assert torch.equal(batch[1].crops, local.crops)  # the worker draws what this process drew
    with pytest.raises(TypeError, match="item 0 is dict"):
        collate([{}])


# ============================================================================ without decoding


@pytest.fixture(scope="module")
def flies_with_shape(flies: Path, tmp_path_factory) -> Path:
    """two_flies.slp saved with its video's shape, so nothing needs to open the video."""
    labels = sio.load_slp(str(flies / "two_flies.slp"), open_videos=False)
    labels.videos[0].replace_filename(str(flies / "two_flies.mp4"), open=False)
    labels.videos[0].backend_metadata["shape"] = (128, 1024, 1024, 1)
    path = tmp_path_factory.mktemp("shape") / "two_flies_shape.slp"
    sio.save_slp(labels, str(path))
    return path


def _refuse(*args, **kwargs):
    raise AssertionError("the video was opened or read")


def test_without_decoding_the_video_is_never_opened(
    flies: Path, flies_with_shape: Path, monkeypatch
) -> None:
    import pipeline_lib.tracking.gtr.data as data_module
    from pipeline_lib.data.frame_source import FrameSource

    monkeypatch.setattr(data_module, "VideoFrameSource", _refuse)
    monkeypatch.setattr(FrameSource, "read", _refuse)
    monkeypatch.setattr(sio.Video, "open", _refuse)
    augs = {**AUGS, "GaussianBlur": {"p": 1.0}, "RandomBrightnessContrast": {"p": 1.0}}
    for overrides in ({}, {"mode": "train", "augmentations": augs}):
        options = {
            "slp_files": [str(flies_with_shape)],
            "clip_length": 4,
            "crop_size": 24,
            "seed": 7,
            "mode": "val",
            **overrides,
        }
        ds = ClipDataset(options, decode_frames=False)
        assert ds.channels == 1 and len(ds) == 32
        clips = [ds[i] for i in range(len(ds))]
        assert all(c.image_hw == (1024, 1024) for c in clips)
        crops = torch.cat([c.crops for c in clips])
        assert crops.shape[1:] == (1, 24, 24) and len(crops) > 150
        assert not crops.any()
    assert ds.clip_source(0) == (str(flies_with_shape), str(flies / "two_flies.mp4"))
    ds.close()


def test_without_decoding_positions_equal_the_decoding_path(flies: Path, monkeypatch) -> None:
    """Same seed: same instances and positions (int anchors, dropouts, Rotate), zero crops.

    two_flies.slp stores no video shape: the dataset opens the video once to read it, but
    never decodes a frame.
    """
    from pipeline_lib.data.frame_source import FrameSource

    augs = {
        "Rotate": {"limit": [20, 40], "p": 1.0},
        "GaussNoise": {"std_range": [0.02, 0.05], "p": 0.5},
        "MotionBlur": {"p": 0.5},
        "InstanceDropout": {"p": 0.3, "n": 1},
        "NodeDropout": {"p": 0.5, "n": 3},
    }
    settings = [{}, {"mode": "train", "augmentations": augs}]
    decoded = [ClipDataset(fly_options(flies, anchors=2, **s)) for s in settings]
    expected = [[ds[i] for i in (0, 5)] for ds in decoded]
    monkeypatch.setattr(FrameSource, "read", _refuse)
    for s, clips in zip(settings, expected, strict=True):
        ds = ClipDataset(fly_options(flies, anchors=2, **s), decode_frames=False)
        assert ds.channels == 1
        for want, got in zip(clips, (ds[0], ds[5]), strict=True):
            for name in ("boxes", "centroids", "frames", "track_ids", "scores"):
                assert torch.equal(getattr(want, name), getattr(got, name)), (s, name)
            assert got.image_hw == want.image_hw == (1024, 1024)
            assert got.crops.shape == want.crops.shape and not got.crops.any()
            assert want.crops.mean() > 0.05  # the decoding path did read pixels
    # The rotation really moved the points (so the equality above covers Rotate).
    val, train = expected[0][0], expected[1][0]
    assert not torch.equal(val.centroids[: len(train)], train.centroids)


def test_rotate_points_is_the_point_part_of_rotate_frame() -> None:
    image = grey_frame(60, 80)
    points = np.array([[[10.0, 5.0], [40.0, 30.0], [np.nan, np.nan]], [[1, 1], [79, 59], [9, 9]]])
    for angle in (-35.0, 12.5, 90.0):
        _, moved = rotate_frame(image, points, angle)
        np.testing.assert_array_equal(rotate_points(points, angle, (60, 80)), moved)
    assert np.isnan(rotate_points(points, 45.0, (60, 80))[1, 0]).all()  # corner leaves
