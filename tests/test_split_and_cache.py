"""Label splitting and the image cache on real SLEAP data."""

import hashlib

import numpy as np
import pytest
import sleap_io as sio

from pipeline_lib.data.cache import CacheError, build_image_cache, read_cached_frames
from pipeline_lib.data.split import split_labels
from pipeline_lib.io.labels import LabelsError, load_labels


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def _split(shared_data, out, seed=0, **kw):
    paths = {k: out / f"{k}.slp" for k in ("train", "val", "test")}
    args = dict(
        validation_fraction=0.1,
        test_fraction=0.2,
        test_labels_path=None,
        seed=seed,
        user_instances_only=True,
    )
    args.update(kw)
    summary = split_labels(
        [shared_data / "dreem_assets/sleap/two_flies.slp"],
        paths["train"],
        paths["val"],
        paths["test"],
        **args,
    )
    return paths, summary


def test_split_is_seeded_disjoint_and_complete(shared_data, tmp_path):
    paths, summary = _split(shared_data, tmp_path / "a")
    assert summary == {**summary, "n_frames": 128, "val": 13, "test": 26, "train": 89}
    idx = {
        k: {lf.frame_idx for lf in sio.load_slp(str(p), open_videos=False)}
        for k, p in paths.items()
    }
    assert (
        not (idx["train"] & idx["val"])
        and not (idx["train"] & idx["test"])
        and not (idx["val"] & idx["test"])
    )
    assert len(idx["train"] | idx["val"] | idx["test"]) == 128
    again, _ = _split(shared_data, tmp_path / "b")
    assert all(_md5(paths[k]) == _md5(again[k]) for k in paths)  # bitwise identical rerun
    other, _ = _split(shared_data, tmp_path / "c", seed=1)
    assert {lf.frame_idx for lf in sio.load_slp(str(other["val"]), open_videos=False)} != idx["val"]


def test_split_with_explicit_test_file(shared_data, tmp_path):
    paths, summary = _split(
        shared_data, tmp_path, test_labels_path=shared_data / "dreem_assets/sleap/three_flies.slp"
    )
    assert summary["test"] == 128 and summary["train"] + summary["val"] == 128


def test_split_errors_name_the_file(shared_data, tmp_path):
    bad = tmp_path / "broken.slp"
    bad.write_bytes(b"not hdf5 at all")
    with pytest.raises(LabelsError, match="broken.slp"):
        split_labels([bad], tmp_path / "t.slp", tmp_path / "v.slp", tmp_path / "x.slp")
    with pytest.raises(LabelsError, match="missing.slp"):
        split_labels(
            [tmp_path / "missing.slp"], tmp_path / "t.slp", tmp_path / "v.slp", tmp_path / "x.slp"
        )
    assert not (tmp_path / "t.slp").exists()


def test_cache_round_trip_is_lossless_and_detects_stale_labels(shared_data, tmp_path):
    paths, _ = _split(shared_data, tmp_path / "s")
    cache = tmp_path / "cache"
    manifest = build_image_cache({"val": str(paths["val"])}, cache, threads=2)
    assert manifest["splits"]["val"]["n_frames"] == 13
    frames = read_cached_frames(cache, "val", paths["val"])
    labels = sio.load_slp(str(paths["val"]))
    video = sio.load_video(str(shared_data / "dreem_assets/sleap/two_flies.mp4"))
    for lf, frame in zip(labels.labeled_frames[:3], frames[:3], strict=False):
        np.testing.assert_array_equal(frame, video[lf.frame_idx])
    first = _md5(cache / "val.h5")
    build_image_cache({"val": str(paths["val"])}, cache, threads=1)
    assert _md5(cache / "val.h5") == first  # bitwise identical rebuild
    with pytest.raises(CacheError, match="different version"):
        read_cached_frames(cache, "val", paths["train"])


def test_streamed_cache_equals_decoded_frames_and_private_cache_is_reused(shared_data, tmp_path):
    from pipeline_lib.data.cache import cache_matches, decode_labelled_frames, write_frame_cache
    from pipeline_lib.training.train import _private_frame_cache

    src = shared_data / "dreem_assets/sleap/two_flies.slp"
    paths = {k: tmp_path / f"{k}.slp" for k in ("train", "val", "test")}
    split_labels([src], paths["train"], paths["val"], paths["test"], 0.1, 0.8, None, 0, True)
    labels = load_labels(paths["train"])
    target = tmp_path / "frames.h5"
    n, nbytes = write_frame_cache(labels, paths["train"], target, threads=2)
    assert n == len(labels.labeled_frames) and nbytes == n * 1024 * 1024
    cached = read_cached_frames(tmp_path, "frames", paths["train"])
    decoded = decode_labelled_frames(labels, threads=2)
    assert all(np.array_equal(a, b) for a, b in zip(cached, decoded, strict=True))
    assert cache_matches(target, paths["train"]) and not cache_matches(target, paths["val"])

    work = tmp_path / "work"
    out = _private_frame_cache(work, {"train": paths["train"], "val": paths["val"]}, 2)
    stamp = (out / "train.h5").stat().st_mtime_ns
    _private_frame_cache(work, {"train": paths["train"], "val": paths["val"]}, 2)
    assert (out / "train.h5").stat().st_mtime_ns == stamp  # same labels: reused
    _private_frame_cache(work, {"train": paths["val"], "val": paths["val"]}, 2)
    assert cache_matches(out / "train.h5", paths["val"])  # other labels: rebuilt
