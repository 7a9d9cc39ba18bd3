"""A stopped stage never looks like success: SIGTERM (what a batch scheduler sends at its time
limit) and SIGINT end training, tracker training and prediction with a one-line message and a
non-zero exit, keep the checkpoints a rerun resumes from, and publish nothing."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from pipeline_lib.data.split import split_labels
from pipeline_lib.training.train import train_model

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "pipeline_lib.cli"]


def _start(argv: list[str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [*CLI, *argv], stdout=subprocess.DEVNULL, stderr=log.open("w"), cwd=ROOT, text=True
    )


def _signal_when(proc: subprocess.Popen, ready, signum: int, timeout: float = 300) -> int:
    """Send ``signum`` once ``ready()`` holds; the process's exit status."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline and not ready():
        time.sleep(0.1)
    assert proc.poll() is None, "the command ended before it could be stopped"
    proc.send_signal(signum)
    return proc.wait(timeout=120)


def _epochs_logged(path: Path, n: int):
    return lambda: path.exists() and len(path.read_text().splitlines()) > n


@pytest.mark.slow
def test_sigterm_stops_pose_training_and_the_rerun_resumes(shared_data, tmp_path, caplog):
    labels = shared_data / "dreem_assets/sleap/two_flies.slp"
    train, val, test = (tmp_path / f"{k}.slp" for k in ("train", "val", "test"))
    split_labels([labels], train, val, test, 0.1, 0.0, None, 0, True)
    cfg = yaml.safe_load(
        (shared_data / "sleap_nn_assets/sample_configs/config_centroid_unet.yaml").read_text()
    )
    cfg["data_config"]["preprocessing"]["scale"] = 0.25
    cfg["model_config"]["backbone_config"]["unet"]["filters"] = 8
    cfg["trainer_config"].update(
        {"max_epochs": 6, "train_steps_per_epoch": 4, "enable_progress_bar": False, "seed": 0}
    )
    cfg["trainer_config"]["early_stopping"]["stop_training_on_plateau"] = False
    config = tmp_path / "centroid.yaml"
    config.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    argv = ["train", str(config), "--train", str(train), "--val", str(val)]
    stderr = tmp_path / "stderr.txt"

    proc = _start([*argv, "--run-dir", str(run_dir)], stderr)
    live_log = run_dir / "checkpoints/training_log.csv"
    status = _signal_when(proc, _epochs_logged(live_log, 1), signal.SIGTERM)

    assert status == 128 + signal.SIGTERM, stderr.read_text()
    message = (
        f"pipeline-lib train: error: Training was interrupted by SIGTERM; its checkpoints in "
        f"{run_dir / 'checkpoints'} are kept: rerun the same command to resume"
    )
    assert message in stderr.read_text().splitlines()
    assert "Traceback" not in stderr.read_text()
    assert (run_dir / "checkpoints/last.ckpt").exists()
    assert not (run_dir / "best.ckpt").exists()
    assert not (run_dir / "training_config.yaml").exists()

    with caplog.at_level(logging.INFO, logger="pipeline_lib.training.train"):
        train_model(config, train, val, None, run_dir, threads=1)
    assert any("resuming from" in r.getMessage() for r in caplog.records)
    assert (run_dir / "best.ckpt").exists()
    assert len((run_dir / "training_log.csv").read_text().splitlines()) == 1 + 6


@pytest.mark.slow
def test_sigint_stops_tracker_training(shared_data, tmp_path):
    """SIGINT (Ctrl-C) on train-tracker: Lightning's own handling ends in sys.exit(1), which
    said nothing; now the message names the signal and the kept checkpoints."""
    flies = shared_data / "dreem_assets/sleap"
    config = {
        "model": {"d_model": 32, "nhead": 2, "dim_feedforward": 64},
        "dataset": {
            "train_dataset": {
                "slp_files": [str(flies / "two_flies.slp")],
                "video_files": [str(flies / "two_flies.mp4")],
                "clip_length": 8,
            },
            "val_dataset": {
                "slp_files": [str(flies / "two_flies.slp")],
                "video_files": [str(flies / "two_flies.mp4")],
                "clip_length": 8,
                "mode": "val",
            },
        },
        "trainer": {"max_epochs": 200, "limit_train_batches": 4, "seed": 0},
        "tracker": {"use_vis_feats": False, "window_size": 4},
    }
    path = tmp_path / "tracker.yaml"
    path.write_text(yaml.safe_dump(config))
    run_dir = tmp_path / "gtr"
    stderr = tmp_path / "stderr.txt"
    proc = _start(["train-tracker", str(path), "--run-dir", str(run_dir)], stderr)
    status = _signal_when(
        proc, _epochs_logged(run_dir / "checkpoints/training_log.csv", 2), signal.SIGINT
    )
    assert status == 128 + signal.SIGINT, stderr.read_text()
    text = stderr.read_text()
    assert "pipeline-lib train-tracker: error: Training was interrupted by SIGINT" in text
    assert "rerun the same command to resume" in text
    assert (run_dir / "checkpoints/last.ckpt").exists()
    assert not (run_dir / "best.ckpt").exists()


def test_sigterm_stops_prediction_without_a_partial_file(shared_data, tmp_path):
    models = shared_data / "sleap_nn_assets/model_ckpts"
    video = shared_data / "sleap_nn_assets/datasets/centered_pair_small.mp4"
    out = tmp_path / "out" / "pred.slp"
    argv = [
        "predict",
        str(models / "minimal_instance_centroid"),
        str(models / "minimal_instance_centered_instance"),
        "--video",
        str(video),
        "--out",
        str(out),
    ]
    stderr = tmp_path / "stderr.txt"
    proc = _start(argv, stderr)
    started = lambda: out.parent.is_dir() and any(out.parent.iterdir())  # noqa: E731
    status = _signal_when(proc, started, signal.SIGTERM)
    assert status == 128 + signal.SIGTERM, stderr.read_text()
    lines = stderr.read_text().replace("\r", "\n").splitlines()  # the progress bar uses \r
    assert (
        "pipeline-lib predict: error: Interrupted by SIGTERM; rerun the same command to start "
        "again" in lines
    )
    assert "Traceback" not in stderr.read_text()
    assert list(out.parent.iterdir()) == []  # neither pred.slp nor its partial temporary


JOB = """
import os, signal, sys, time
from types import SimpleNamespace
sys.path.insert(0, sys.argv[2])
from _common import run_stage

def stage(smk):
    print("stage started", flush=True)
    if sys.argv[3] == "disk":
        from pipeline_lib.io.atomic import write_text_atomic
        import pipeline_lib.io.atomic as atomic, errno
        def full(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")
        atomic.Path.write_text = full
        write_text_atomic(os.path.join(os.path.dirname(sys.argv[1]), "out.txt"), "x")
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(30)

smk = SimpleNamespace(log=[sys.argv[1]], threads=1, rule="demo_rule", output=[],
                      resources=SimpleNamespace(gpu=0), wildcards={})
run_stage(smk, stage)
"""


@pytest.mark.parametrize(
    ("kind", "line", "status"),
    [
        ("sigterm", "Interrupted by SIGTERM; rerun the same command to start again", 143),
        ("disk", "No space left on device while writing {out}", 1),
    ],
)
def test_workflow_job_reports_a_known_failure_in_one_line(tmp_path, kind, line, status):
    """The DAG's job (workflow/scripts/_common.run_stage): the log ends with one line and no
    traceback, and the job's exit status is non-zero."""
    log = tmp_path / "logs" / "job.log"
    result = subprocess.run(
        [sys.executable, "-c", JOB, str(log), str(ROOT / "workflow/scripts"), kind],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    text = log.read_text()
    assert result.returncode == status, text
    assert text.strip().splitlines()[-1].endswith(line.format(out=tmp_path / "logs/out.txt"))
    assert "Traceback" not in text
    assert not (tmp_path / "logs/out.txt").exists()
