"""PredictionsWriter must produce .slp files that read exactly like ``sio.save_slp``'s."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import sleap_io as sio

from pipeline_lib.io.slp_stream import PredictionsWriter

SLEAP_DIR = Path("dreem_assets") / "sleap"


def _fake_predictions(labels: sio.Labels, n_videos: int, seed: int = 0) -> list[dict]:
    """One dict of writer arguments per user-labelled frame, made to look like predictions.

    Scores are random; some points are missing (NaN, and once only y is NaN), every ninth
    frame has no instances, instances get a track (or none) at random, and some frames go to
    the second video.
    """
    rng = np.random.default_rng(seed)
    out = []
    for k, lf in enumerate(labels.labeled_frames):
        points = np.stack([inst.numpy() for inst in lf.user_instances]).astype(np.float64)
        if k % 9 == 4:
            points = points[:0]
        n_inst, n_nodes = points.shape[:2]
        points[rng.random((n_inst, n_nodes)) < 0.15] = np.nan
        if k == 2:
            points[0, 1, 1] = np.nan  # x present, y missing: sleap-io keeps it "visible"
        tracks = [None if t == 2 else int(t) for t in rng.integers(0, 3, n_inst)]
        out.append(
            {
                "frame_idx": lf.frame_idx,
                "points": points,
                "point_scores": rng.random((n_inst, n_nodes)),
                "instance_scores": rng.random(n_inst),
                "video_index": int(k % 5 == 3) if n_videos > 1 else 0,
                "track_indices": tracks,
                "tracking_scores": np.array(
                    [np.nan if t is None else rng.random() for t in tracks]
                ),
            }
        )
    return out


def _as_labeled_frame(pred: dict, videos, skeleton, tracks) -> sio.LabeledFrame:
    """The same frame built the way pipeline_lib's predictors build frames for sio.save_slp."""
    instances = [
        sio.PredictedInstance.from_numpy(
            pred["points"][i],
            skeleton=skeleton,
            point_scores=pred["point_scores"][i],
            score=float(pred["instance_scores"][i]),
            track=None if t is None else tracks[t],
            tracking_score=None if t is None else float(pred["tracking_scores"][i]),
        )
        for i, t in enumerate(pred["track_indices"])
    ]
    return sio.LabeledFrame(
        video=videos[pred["video_index"]], frame_idx=pred["frame_idx"], instances=instances
    )


def _assert_struct_equal(a: np.ndarray, b: np.ndarray, name: str) -> None:
    assert a.dtype == b.dtype, name
    assert a.shape == b.shape, name
    for field in a.dtype.names:
        np.testing.assert_array_equal(a[field], b[field], err_msg=f"{name}.{field}")


def _tiny(tmp_path: Path) -> tuple[list[sio.Video], sio.Skeleton]:
    """A video reference and 3-node skeleton that need no data files."""
    video = sio.Video(filename=str(tmp_path / "clip.mp4"), open_backend=False)
    return [video], sio.Skeleton(["head", "thorax", "tail"])


def test_matches_save_slp(shared_data: Path, tmp_path: Path) -> None:
    source = sio.load_slp(str(shared_data / SLEAP_DIR / "two_flies.slp"), open_videos=False)
    videos = [
        sio.load_video(str(shared_data / SLEAP_DIR / "two_flies.mp4")),
        sio.load_video(str(shared_data / SLEAP_DIR / "three_flies.mp4")),
    ]
    skeleton = source.skeleton
    tracks = [sio.Track("F"), sio.Track("M")]
    provenance = {"model_dirs": ["models/a"], "inference_options": {"peak_threshold": 0.2}}
    preds = _fake_predictions(source, n_videos=2)

    streamed = tmp_path / "streamed.slp"
    with PredictionsWriter(
        streamed, videos, skeleton, tracks, provenance=provenance, flush_every=7
    ) as writer:
        for pred in preds:
            writer.add(**pred)
    non_empty = [p for p in preds if len(p["points"])]
    assert writer.n_frames == len(non_empty) > 3 * 7
    assert writer.n_instances == sum(len(p["points"]) for p in preds)

    reference = tmp_path / "reference.slp"
    frames = [_as_labeled_frame(p, videos, skeleton, tracks) for p in non_empty]
    sio.save_slp(
        sio.Labels(
            labeled_frames=frames,
            videos=videos,
            skeletons=[skeleton],
            tracks=tracks,
            provenance=dict(provenance),
        ),
        str(reference),
        embed=False,
    )

    got = sio.load_slp(str(streamed), open_videos=False)
    want = sio.load_slp(str(reference), open_videos=False)
    assert [v.filename for v in got.videos] == [v.filename for v in want.videos]
    assert got.skeleton.node_names == want.skeleton.node_names
    assert got.skeleton.edge_inds == want.skeleton.edge_inds
    assert [t.name for t in got.tracks] == [t.name for t in want.tracks]
    assert {k: v for k, v in got.provenance.items() if k != "filename"} == provenance
    assert len(got.labeled_frames) == len(want.labeled_frames) == len(non_empty)
    for lf_got, lf_want in zip(got.labeled_frames, want.labeled_frames, strict=True):
        assert lf_got.frame_idx == lf_want.frame_idx
        assert lf_got.video.filename == lf_want.video.filename
        assert len(lf_got.instances) == len(lf_want.instances)
        for a, b in zip(lf_got.instances, lf_want.instances, strict=True):
            assert type(a) is type(b) is sio.PredictedInstance
            np.testing.assert_array_equal(a.numpy(), b.numpy())
            np.testing.assert_array_equal(a.points["score"], b.points["score"])
            np.testing.assert_array_equal(a.points["visible"], b.points["visible"])
            np.testing.assert_array_equal(a.score, b.score)
            np.testing.assert_array_equal(a.tracking_score, b.tracking_score)
            assert (a.track and a.track.name) == (b.track and b.track.name)

    with h5py.File(streamed, "r") as fs, h5py.File(reference, "r") as fr:
        assert set(fs.keys()) == set(fr.keys())
        for name in ("frames", "instances", "points", "pred_points"):
            _assert_struct_equal(fs[name][:], fr[name][:], name)
        for name in ("videos_json", "tracks_json", "provenance_json"):
            np.testing.assert_array_equal(fs[name][()], fr[name][()], err_msg=name)
        assert dict(fs["metadata"].attrs) == dict(fr["metadata"].attrs)


def test_exception_leaves_existing_file_and_no_temp(tmp_path: Path) -> None:
    videos, skeleton = _tiny(tmp_path)
    path = tmp_path / "out.slp"
    path.write_bytes(b"previous predictions")
    with pytest.raises(RuntimeError, match="model crashed"):
        with PredictionsWriter(path, videos, skeleton, flush_every=1) as writer:
            writer.add(0, np.ones((1, 3, 2)), np.ones((1, 3)), np.ones(1))
            assert list(tmp_path.glob(".out.*.tmp.slp"))
            raise RuntimeError("model crashed")
    assert path.read_bytes() == b"previous predictions"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.slp"]


def test_path_appears_only_on_close(tmp_path: Path) -> None:
    videos, skeleton = _tiny(tmp_path)
    path = tmp_path / "sub" / "new.slp"
    with PredictionsWriter(path, videos, skeleton, flush_every=1) as writer:
        writer.add(5, np.ones((2, 3, 2)), np.ones((2, 3)), np.ones(2))
        assert not path.exists()
    assert path.exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["new.slp"]
    assert [lf.frame_idx for lf in sio.load_slp(str(path), open_videos=False)] == [5]


def test_rejects_duplicate_frames_and_bad_shapes(tmp_path: Path) -> None:
    videos, skeleton = _tiny(tmp_path)
    ok = (np.ones((1, 3, 2)), np.ones((1, 3)), np.ones(1))
    writer = PredictionsWriter(tmp_path / "out.slp", videos, skeleton)
    try:
        writer.add(3, *ok)
        with pytest.raises(ValueError, match="frame 3 of video 0 .* already added"):
            writer.add(3, *ok)
        writer.add(4, np.ones((0, 3, 2)), np.ones((0, 3)), np.ones(0))
        with pytest.raises(ValueError, match="frame 4 .* already added"):
            writer.add(4, *ok)  # a frame without instances still counts as added
        with pytest.raises(ValueError, match=r"frame 7 .*\(1, 4, 2\).*3 nodes"):
            writer.add(7, np.ones((1, 4, 2)), np.ones((1, 4)), np.ones(1))
        with pytest.raises(ValueError, match=r"point_scores of frame 8 .*\(2, 3\)"):
            writer.add(8, np.ones((1, 3, 2)), np.ones((2, 3)), np.ones(1))
        with pytest.raises(ValueError, match="Track index 0 of frame 9 .* out of range"):
            writer.add(9, *ok, track_indices=[0])
        with pytest.raises(ValueError, match="video_index 1 is out of range"):
            writer.add(9, *ok, video_index=1)
        writer.add(8, *ok)  # failed adds did not mark frames 7-9 as added
        writer.add(9, *ok)
        writer.close()
        assert (writer.n_frames, writer.n_instances) == (3, 3)
        with pytest.raises(RuntimeError, match="already closed"):
            writer.add(10, *ok)
    finally:
        writer.abort()


def test_rejects_embedded_videos(shared_data: Path, tmp_path: Path) -> None:
    labels = sio.load_slp(str(shared_data / SLEAP_DIR / "two_flies.slp"))
    labels.labeled_frames = labels.labeled_frames[:1]
    pkg = tmp_path / "one.pkg.slp"
    sio.save_slp(labels, str(pkg), embed="user", verbose=False)
    for open_videos in (True, False):
        embedded = sio.load_slp(str(pkg), open_videos=open_videos)
        with pytest.raises(ValueError, match=r"embedded.*\(sio.save_slp\)"):
            PredictionsWriter(tmp_path / "out.slp", embedded.videos, embedded.skeleton)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["one.pkg.slp"]


@pytest.mark.parametrize("initial", [{}, {"model": "m1", "threshold": 0.2}])
def test_close_merges_provenance(tmp_path: Path, initial: dict) -> None:
    videos, skeleton = _tiny(tmp_path)
    path = tmp_path / "out.slp"
    with PredictionsWriter(path, videos, skeleton, provenance=initial) as writer:
        writer.add(0, np.ones((1, 3, 2)), np.ones((1, 3)), np.ones(1))
        writer.close(
            provenance_update={"seconds": 1.5, "n_frames": np.int64(1), "fps": float("nan")}
        )
    provenance = sio.load_slp(str(path), open_videos=False).provenance
    provenance.pop("filename")
    assert provenance == {**initial, "seconds": 1.5, "n_frames": 1, "fps": None}


def test_large_provenance_lives_in_dataset_only(tmp_path: Path) -> None:
    videos, skeleton = _tiny(tmp_path)
    path = tmp_path / "out.slp"
    with PredictionsWriter(path, videos, skeleton, provenance={"a": 1}) as writer:
        writer.close(provenance_update={"log": "x" * 70_000})
    assert sio.load_slp(str(path), open_videos=False).provenance["log"] == "x" * 70_000
    with h5py.File(path, "r") as f:
        assert len(f["metadata"].attrs["json"]) < 64_000


def test_buffer_stays_small(tmp_path: Path) -> None:
    videos, skeleton = _tiny(tmp_path)
    path = tmp_path / "long.slp"
    points, scores, inst_scores = np.ones((2, 3, 2)), np.ones((2, 3)), np.ones(2)
    most_buffered = 0
    with PredictionsWriter(path, videos, skeleton, flush_every=64) as writer:
        for frame_idx in range(5000):
            writer.add(frame_idx, points, scores, inst_scores)
            most_buffered = max(most_buffered, writer.buffered_frames)
    assert most_buffered == 63
    with h5py.File(path, "r") as f:
        assert f["frames"].shape == (5000,)
        assert f["instances"].shape == (10_000,)
        assert f["pred_points"].shape == (30_000,)
        np.testing.assert_array_equal(f["frames"]["frame_idx"], np.arange(5000))
