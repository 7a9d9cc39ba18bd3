"""predict_video streams predictions to disk: resizable tables, no output after a failure."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import sleap_io as sio

from pipeline_lib.inference import predict as predict_module
from pipeline_lib.inference.predict import predict_video

RUN_DIRS = "sleap_nn_assets/model_ckpts"
VIDEO = "sleap_nn_assets/datasets/centered_pair_small.mp4"


def _models(shared_data):
    return [
        shared_data / RUN_DIRS / "minimal_instance_centroid",
        shared_data / RUN_DIRS / "minimal_instance_centered_instance",
    ]


def test_predictions_are_appended_and_read_back(shared_data, tmp_path):
    out = tmp_path / "pred.slp"
    summary = predict_video(
        _models(shared_data), shared_data / VIDEO, out, {"batch_size": 2}, frames="0-20"
    )
    with h5py.File(out) as f:
        assert f["pred_points"].maxshape == (None,)  # written by the stream writer
    labels = sio.load_slp(str(out))
    assert [lf.frame_idx for lf in labels] == list(range(21))
    assert summary["n_instances"] == sum(len(lf) for lf in labels) > 21
    assert labels.provenance["summary"]["n_frames"] == 21
    assert labels.provenance["video"] == str(shared_data / VIDEO)


def test_a_failure_mid_video_leaves_no_file(shared_data, tmp_path, monkeypatch):
    out = tmp_path / "pred.slp"
    out.write_bytes(b"earlier predictions")
    real = predict_module.make_predictor

    def failing_predictor(*args, **kwargs):
        predictor = real(*args, **kwargs)
        calls = {"n": 0}
        predict = predictor.predict

        def predict_then_fail(frames):
            calls["n"] += 1
            if calls["n"] == 3:
                raise RuntimeError("out of memory on batch 3")
            return predict(frames)

        predictor.predict = predict_then_fail
        return predictor

    monkeypatch.setattr(predict_module, "make_predictor", failing_predictor)
    with pytest.raises(RuntimeError, match="batch 3"):
        predict_video(
            _models(shared_data), shared_data / VIDEO, out, {"batch_size": 2}, frames="0-20"
        )
    assert out.read_bytes() == b"earlier predictions"
    assert [p.name for p in tmp_path.iterdir()] == ["pred.slp"]


def test_an_avi_predicts_like_the_mp4_it_was_made_from(shared_data, tmp_path):
    """AVI input (frames losslessly re-encoded from the mp4) gives the same predictions."""
    import subprocess

    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    avi = tmp_path / "clip.avi"
    subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-i", str(shared_data / VIDEO)]
        + ["-frames:v", "12", "-c:v", "png", str(avi)],
        check=True,
    )
    opts = {"precision": "32"}
    predict_video(_models(shared_data), avi, tmp_path / "avi.slp", opts)
    predict_video(
        _models(shared_data), shared_data / VIDEO, tmp_path / "mp4.slp", opts, frames="0-11"
    )
    from_avi, from_mp4 = (sio.load_slp(str(tmp_path / f"{n}.slp")) for n in ("avi", "mp4"))
    assert [lf.frame_idx for lf in from_avi] == [lf.frame_idx for lf in from_mp4] == list(range(12))
    for a, b in zip(from_avi, from_mp4, strict=True):
        assert len(a) == len(b)
        for ia, ib in zip(a.instances, b.instances, strict=True):
            np.testing.assert_allclose(ia.numpy(), ib.numpy(), atol=1e-4)  # NaNs must match
