"""Empty and suspicious results come with a warning that names the likely cause and the knob,
and outputs record how they were made (issue 18, items 4 and 5)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import sleap_io as sio

from pipeline_lib.cli import main
from pipeline_lib.tracking.gt_detections import as_untracked_predictions
from pipeline_lib.tracking.track import track_file

RUN_DIR = "sleap_nn_assets/model_ckpts/minimal_instance_single_instance"
LABELS = "sleap_nn_assets/datasets/minimal_instance.pkg.slp"
FLIES = "dreem_assets/sleap/two_flies.slp"


def test_predict_with_no_instance_names_the_peak_threshold(shared_data, tmp_path, caplog):
    out = tmp_path / "p.slp"
    argv = ["predict", "-i", str(shared_data / LABELS), "-m", str(shared_data / RUN_DIR)]
    with caplog.at_level(logging.WARNING):
        assert main([*argv, "-o", str(out), "--peak-threshold", "1.5", "--device", "cpu"]) == 0
    warning = [r.getMessage() for r in caplog.records if "No instance found" in r.getMessage()]
    assert warning and "--peak-threshold" in warning[0] and "trained" in warning[0]


def test_predictions_record_absolute_model_paths_and_config_hashes(shared_data, tmp_path, capsys):
    out = tmp_path / "p.slp"
    argv = ["predict", "-i", str(shared_data / LABELS), "-m", str(shared_data / RUN_DIR)]
    assert main([*argv, "-o", str(out), "--device", "cpu"]) == 0
    provenance = sio.load_slp(str(out), open_videos=False).provenance
    (model,) = provenance["models"]
    assert Path(model["path"]).is_absolute() and Path(model["path"]).is_dir()
    assert model["config"] == "training_config.yaml" and len(model["config_sha256"]) == 64
    assert all(Path(d).is_absolute() for d in provenance["model_dirs"])


def test_eval_with_no_match_says_why(shared_data, tmp_path, caplog, capsys):
    gt = sio.load_slp(str(shared_data / FLIES), open_videos=False)
    empty = tmp_path / "empty.slp"
    sio.save_slp(sio.Labels(videos=gt.videos, skeletons=gt.skeletons), str(empty))
    with caplog.at_level(logging.WARNING):
        argv = ["eval", "--gt", str(shared_data / FLIES), "--pred", str(empty)]
        assert main(argv) == 0
    n_gt = sum(len(lf.instances) for lf in gt.labeled_frames)
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"0 of {n_gt} ground-truth instances matched" in messages
    assert "--peak-threshold" in messages
    assert json.loads(capsys.readouterr().out)["mOKS"] is None


def test_many_more_tracks_than_animals_is_flagged(shared_data, tmp_path, caplog):
    source, out = tmp_path / "p.slp", tmp_path / "t.slp"
    flies = sio.load_slp(str(shared_data / FLIES), open_videos=False)
    sio.save_slp(as_untracked_predictions(flies), str(source))
    options = {"window_size": 1, "min_similarity": 1.0}  # nothing ever matches: a track each
    with caplog.at_level(logging.WARNING):
        summary = track_file(source, out, options)
    assert summary["n_tracks"] > 4
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert f"{summary['n_tracks']} tracks for at most 2 animals per frame" in messages
    assert "max_tracks" in messages


def test_tracked_file_records_tracker_and_analysis_h5_its_labels(shared_data, tmp_path):
    out, h5 = tmp_path / "t.slp", tmp_path / "t.analysis.h5"
    track_file(shared_data / FLIES, out, {"max_tracks": 2}, out_analysis_h5=h5)
    tracker = sio.load_slp(str(out), open_videos=False).provenance["tracker"]
    assert tracker["method"] == "classical" and tracker["model"] is None
    assert tracker["options"]["max_tracks"] == 2 and tracker["options"]["window_size"] == 5
    with h5py.File(h5, "r") as f:
        assert f["labels_path"][()].decode() == str(out)
