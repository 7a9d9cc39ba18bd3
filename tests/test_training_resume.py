"""A training job killed mid-run resumes from its last checkpoint when rerun."""

from __future__ import annotations

import csv
import logging
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from pipeline_lib.data.cache import build_image_cache
from pipeline_lib.data.split import split_labels
from pipeline_lib.training.train import train_model

pytestmark = pytest.mark.slow

TRAIN_SNIPPET = """
import sys
from pipeline_lib.training.train import train_model
train_model(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], threads=1)
"""


def test_killed_training_resumes_from_last_checkpoint(shared_data, tmp_path, caplog):
    labels = shared_data / "dreem_assets/sleap/two_flies.slp"
    splits = {k: tmp_path / f"{k}.slp" for k in ("train", "val", "test")}
    split_labels([labels], splits["train"], splits["val"], splits["test"], 0.1, 0.0, None, 0, True)
    build_image_cache({k: str(splits[k]) for k in ("train", "val")}, tmp_path / "cache", 2)
    cfg = yaml.safe_load(
        (shared_data / "sleap_nn_assets/sample_configs/config_centroid_unet.yaml").read_text()
    )
    cfg["data_config"]["preprocessing"]["scale"] = 0.25
    cfg["model_config"]["backbone_config"]["unet"]["filters"] = 8
    cfg["trainer_config"].update(
        {"max_epochs": 8, "train_steps_per_epoch": 4, "enable_progress_bar": False, "seed": 0}
    )
    cfg["trainer_config"]["early_stopping"]["stop_training_on_plateau"] = False
    cfg_path = tmp_path / "centroid.yaml"
    cfg_path.write_text(yaml.safe_dump(cfg))
    run_dir = tmp_path / "run"
    args = [
        str(cfg_path),
        str(splits["train"]),
        str(splits["val"]),
        str(tmp_path / "cache"),
        str(run_dir),
    ]

    proc = subprocess.Popen([sys.executable, "-c", TRAIN_SNIPPET, *args], stderr=subprocess.DEVNULL)
    live_log = run_dir / "checkpoints/training_log.csv"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if live_log.exists() and len(live_log.read_text().splitlines()) >= 3:  # two epochs done
            break
        time.sleep(0.2)
    assert proc.poll() is None, "training finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (run_dir / "checkpoints/last.ckpt").exists()
    assert not (run_dir / "best.ckpt").exists()  # nothing published by a killed job
    epochs_before = len(live_log.read_text().splitlines()) - 1

    with caplog.at_level(logging.INFO, logger="pipeline_lib.training.train"):
        train_model(*args, threads=1)
    assert any("resuming from" in r.getMessage() for r in caplog.records)
    with open(run_dir / "training_log.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == list(range(8))
    assert int(rows[-1]["step"]) == 8 * 4
    assert epochs_before >= 2
    assert (run_dir / "best.ckpt").exists()
