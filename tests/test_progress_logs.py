"""What a user reads in a training job's log while it runs: one progress line per epoch with
an ETA, every line once, no third-party adverts (issue 18, item 3)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import reduced_demo_config

from pipeline_lib.logs import epoch_line, format_duration

ROOT = Path(__file__).resolve().parents[1]
EPOCHS = 3


@pytest.fixture(scope="module")
def training_log(tmp_path_factory) -> str:
    """The job log of one reduced centroid training run through Snakemake."""
    work = tmp_path_factory.mktemp("progress")
    config = reduced_demo_config(work, epochs=EPOCHS)
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    snakemake = Path(sys.executable).with_name("snakemake")
    run = subprocess.run(
        [str(snakemake), "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--cores", "2"]
        + ["--workflow-profile", "none", "results/models/demo_centroid/best.ckpt"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return (work / "results/logs/train_model/demo_centroid.log").read_text()


@pytest.mark.slow
def test_training_log_has_one_line_per_epoch_with_eta(training_log: str) -> None:
    lines = re.findall(
        r"epoch (\d+)/(\d+): train_loss \S+, val_loss \S+, .* s/epoch, ETA \S+", training_log
    )
    assert [int(e) for e, _ in lines] == list(range(1, EPOCHS + 1)), training_log
    assert {int(m) for _, m in lines} == {EPOCHS}


@pytest.mark.slow
def test_training_log_has_no_duplicate_lines_or_adverts(training_log: str) -> None:
    messages = [
        re.sub(r"^(\S+ \S+ \w+ \S+: |[A-Z]+: )", "", line)
        for line in training_log.splitlines()
        if line.strip()
    ]
    repeated = sorted({m for m in messages if messages.count(m) > 1})
    assert not repeated, repeated
    assert "litlogger" not in training_log
    assert "LeafSpec" not in training_log


def test_epoch_line_prints_small_losses_readably() -> None:
    line = epoch_line(3, 40, {"train_loss": 1.234e-4, "val_loss": float("nan")}, 12.34, 456.0)
    assert line == "epoch 3/40: train_loss 0.000123, 12.3 s/epoch, ETA 7m36s"
    assert format_duration(3725) == "1h02m"


def test_tracking_reports_frames_done_and_rate(shared_data, tmp_path, capsys):
    from pipeline_lib.tracking.track import track_file

    labels = shared_data / "dreem_assets/sleap/two_flies.slp"
    summary = track_file(labels, tmp_path / "t.slp", {"max_tracks": 2})
    err = capsys.readouterr().err
    n = summary["n_frames"]
    assert re.search(rf"track \S+: 100%.*{n}/{n} .*frame/s", err), err
