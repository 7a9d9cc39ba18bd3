"""predict_video streams predictions to disk: resizable tables, no output after a failure."""

from __future__ import annotations

import h5py
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
