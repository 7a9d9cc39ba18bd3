"""The command line reaches the same functions as the workflow."""

import json

import pytest

from pipeline_lib.cli import main


def test_eval_pose_reproduces_parity_numbers(shared_data, tmp_path, capsys):
    out = tmp_path / "m.json"
    code = main(
        [
            "eval-pose",
            "--gt",
            str(shared_data / "parity/two_flies.slp"),
            "--pred",
            str(shared_data / "parity/two_flies_jitter2.pred.slp"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["oks_voc"]["mAP"] == pytest.approx(0.604461, abs=1e-4)
    assert json.loads(out.read_text())["mOKS"] == pytest.approx(0.813399, abs=1e-4)
    assert (tmp_path / "m.npz").exists()


def test_split_then_track_from_the_command_line(shared_data, tmp_path, capsys):
    labels = shared_data / "dreem_assets/sleap/two_flies.slp"
    assert main(["split", str(labels), "--out-dir", str(tmp_path / "s"), "--seed", "3"]) == 0
    assert json.loads(capsys.readouterr().out)["n_frames"] == 128
    out = tmp_path / "t.slp"
    assert main(["track", str(labels), "--out", str(out), "--options", '{"max_tracks": 2}']) == 0
    assert out.exists()


def test_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["split", str(tmp_path / "missing.slp"), "--out-dir", str(tmp_path)]) == 1
    assert "missing.slp" in capsys.readouterr().err
