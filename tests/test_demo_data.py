"""The synthetic demo dataset: files, determinism, label/pixel agreement and motion realism.

The demo must be learnable (labels sit exactly on visible features) and a fair tracking test
(smooth motion, animals that come close but do not pile up), so both are checked here.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sleap_io as sio

from pipeline_lib.data.demo import (
    NODE_NAMES,
    SKELETON_NAME,
    demo_skeleton,
    demo_video_ids,
    make_demo_dataset,
    simulate_demo_video,
)
from pipeline_lib.io.labels import load_labels

SMALL = dict(seed=3, n_videos=2, n_frames=24, n_animals=3, frame_size=(256, 256), label_every=4)
NOSE, CENTER, TAIL_BASE = (NODE_NAMES.index(n) for n in ("nose", "body_center", "tail_base"))


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    return make_demo_dataset(tmp_path_factory.mktemp("demo"), **SMALL)


@pytest.fixture(scope="module")
def default_videos():
    """The default demo's two videos, in memory (seed 0, 200 frames, 3 animals)."""
    return [simulate_demo_video(0, i) for i in range(2)]


def _decode(path) -> np.ndarray:
    video = sio.load_video(str(path))
    frames = np.stack([video[i] for i in range(len(video))])
    video.close()
    return frames


def _body_length(points: np.ndarray) -> np.ndarray:
    """Nose -> neck -> centre -> tail base path length, per frame and animal."""
    spine = points[..., [NOSE, NODE_NAMES.index("neck"), CENTER, TAIL_BASE], :]
    return np.linalg.norm(np.diff(spine, axis=-2), axis=-1).sum(axis=-1)


def test_video_ids_are_known_before_files_exist():
    assert demo_video_ids(3) == ["demo_0", "demo_1", "demo_2"]
    with pytest.raises(ValueError):
        demo_video_ids(0)


def test_skeleton_is_a_named_tree_with_left_right_symmetry():
    skeleton = demo_skeleton()
    assert skeleton.name == SKELETON_NAME
    assert skeleton.node_names == list(NODE_NAMES)
    assert len(skeleton.edges) == len(NODE_NAMES) - 1
    reached = {"body_center"}
    for _ in NODE_NAMES:
        reached |= {e.destination.name for e in skeleton.edges if e.source.name in reached}
    assert reached == set(NODE_NAMES)
    assert [{n.name for n in s.nodes} for s in skeleton.symmetries] == [{"ear_left", "ear_right"}]


def test_layout_and_counts(small_demo):
    ids = demo_video_ids(SMALL["n_videos"])
    assert list(small_demo.videos) == ids and list(small_demo.ground_truth) == ids
    root = small_demo.labels.parent
    assert small_demo.labels == root / "labels.slp"
    for vid in ids:
        assert small_demo.videos[vid] == root / "videos" / f"{vid}.mp4"
        assert small_demo.ground_truth[vid] == root / "ground_truth" / f"{vid}.slp"
    assert not list(root.rglob(".*.tmp*")), "temporary files left behind"

    labels = load_labels(small_demo.labels)
    assert labels.skeleton.name == SKELETON_NAME
    assert len(labels.videos) == SMALL["n_videos"]
    assert [t.name for t in labels.tracks] == ["animal_0", "animal_1", "animal_2"]
    track_of = {t.name: t for t in labels.tracks}
    labelled_idx = list(range(0, SMALL["n_frames"], SMALL["label_every"]))
    for video in labels.videos:
        frames = labels.find(video)
        assert sorted(lf.frame_idx for lf in frames) == labelled_idx
        for lf in frames:
            assert len(lf.user_instances) == SMALL["n_animals"] and not lf.predicted_instances
            # one Track object per animal name, shared by all videos
            assert all(inst.track is track_of[inst.track.name] for inst in lf.instances)
            assert all(inst.points["visible"].all() for inst in lf.instances)
        assert tuple(video.shape) == (SMALL["n_frames"], 256, 256, 1)
        assert video[labelled_idx[-1]].shape == (256, 256, 1)


def test_ground_truth_tracks_every_frame_uniquely(small_demo):
    for vid, path in small_demo.ground_truth.items():
        gt = load_labels(path)
        assert gt.videos[0].filename == str(small_demo.videos[vid])
        assert sorted(lf.frame_idx for lf in gt.labeled_frames) == list(range(SMALL["n_frames"]))
        for lf in gt.labeled_frames:
            names = [inst.track.name for inst in lf.instances]
            assert sorted(names) == ["animal_0", "animal_1", "animal_2"]


def test_files_hold_the_simulated_poses_and_pixels_exactly(small_demo):
    """Labels equal the simulation; the lossless video decodes to the rendered frames."""
    labels = load_labels(small_demo.labels)
    for index, vid in enumerate(demo_video_ids(SMALL["n_videos"])):
        rendered = simulate_demo_video(SMALL["seed"], index, SMALL["n_frames"])
        decoded = _decode(small_demo.videos[vid])
        assert decoded.shape == rendered.frames.shape + (1,)
        error = np.abs(decoded[..., 0].astype(int) - rendered.frames)
        assert error.max() == 0, f"mean abs {error.mean():.3f}, max {error.max()}"

        gt = load_labels(small_demo.ground_truth[vid])
        for source, every in ((gt, 1), (labels, SMALL["label_every"])):
            for lf in source.find(source.videos[index if source is labels else 0]):
                by_track = {i.track.name: i.numpy() for i in lf.instances}
                assert lf.frame_idx % every == 0
                for a in range(SMALL["n_animals"]):
                    np.testing.assert_allclose(
                        by_track[f"animal_{a}"], rendered.points[lf.frame_idx, a], atol=1e-4
                    )


def test_instance_order_does_not_reveal_identity(small_demo):
    gt = load_labels(small_demo.ground_truth["demo_0"])
    orders = {tuple(i.track.name for i in lf.instances) for lf in gt.labeled_frames}
    assert len(orders) > 1


def test_same_seed_same_dataset_other_seed_differs(tmp_path):
    args = dict(n_videos=1, n_frames=8, label_every=2)
    first = make_demo_dataset(tmp_path / "a", seed=5, **args)
    again = make_demo_dataset(tmp_path / "b", seed=5, **args)
    other = make_demo_dataset(tmp_path / "c", seed=6, **args)
    points = [load_labels(p.labels).numpy() for p in (first, again, other)]
    np.testing.assert_array_equal(points[0], points[1])
    assert not np.allclose(points[0], points[2])
    frames = [_decode(p.videos["demo_0"]) for p in (first, again, other)]
    np.testing.assert_array_equal(frames[0], frames[1])
    assert not np.array_equal(frames[0], frames[2])


def test_default_demo_animals_stay_in_frame_and_move_smoothly(default_videos):
    for demo in default_videos:
        points = demo.points
        assert points.shape == (200, 3, len(NODE_NAMES), 2)
        assert points.min() >= 0 and points.max() <= 255
        steps = np.linalg.norm(np.diff(points, axis=0), axis=-1)
        assert steps.max() < 12.0  # any node, any frame
        assert steps[..., CENTER].max() < 6.0
        assert np.median(steps[..., CENTER]) > 0.5  # and they do move
        length = _body_length(points)
        assert 44 < np.median(length) < 60


def test_default_demo_has_close_approaches_but_no_pileups(default_videos):
    closest = []
    for demo in default_videos:
        centers = demo.points[:, :, CENTER]
        length = np.median(_body_length(demo.points))
        for a, b in itertools.combinations(range(centers.shape[1]), 2):
            closest.append(np.linalg.norm(centers[:, a] - centers[:, b], axis=-1).min() / length)
    assert min(closest) < 1.0  # well inside the 1.5 body lengths the tracker must handle
    assert min(closest) > 0.4  # no animal sits on top of another


def test_labels_sit_on_the_drawn_features(default_videos):
    """The dark spot on the body centre is centred on the label to a fraction of a pixel.

    Checked on the top-most animal (never occluded); a half-pixel convention slip would fail.
    """
    for demo in default_videos:
        errors = []
        for frame, pose in zip(demo.frames.astype(float), demo.points[:, -1], strict=True):
            x, y = pose[CENTER]
            xi, yi = int(round(x)), int(round(y))
            yy, xx = np.mgrid[yi - 4 : yi + 5, xi - 4 : xi + 5]
            darkness = np.clip(200.0 - frame[yi - 4 : yi + 5, xi - 4 : xi + 5], 0, None)
            darkness *= (xx - x) ** 2 + (yy - y) ** 2 <= 4.5**2
            errors.append(
                np.hypot(
                    (darkness * xx).sum() / darkness.sum() - x,
                    (darkness * yy).sum() / darkness.sum() - y,
                )
            )
        assert max(errors) < 0.15
        # the nose dot is the brightest thing near the nose label
        noses = np.rint(demo.points[:, -1, NOSE]).astype(int)
        values = demo.frames[np.arange(len(noses)), noses[:, 1], noses[:, 0]]
        assert values.min() > 225


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="multiples of 16"):
        simulate_demo_video(0, 0, n_frames=2, frame_size=(250, 256))
    with pytest.raises(ValueError, match="label_every"):
        make_demo_dataset(tmp_path, label_every=0)
