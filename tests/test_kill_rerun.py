"""SIGKILL the whole workflow mid-training and mid-prediction, rerun the same command, and compare
with a run that was never interrupted.

What a user does after a crash, power loss or a killed SLURM head job: ``snakemake --unlock``
(Snakemake's lock outlives a SIGKILL; README, Troubleshooting) and then the same command again.
The rerun must finish, resume training from ``checkpoints/last.ckpt`` rather than start over,
never take a partly written file for a finished one, leave no temporary files behind, and give
the same metrics and predictions as the uninterrupted run (CPU, fixed seeds).

The reduced demo of tests/test_workflow_e2e.py, with enough epochs (~0.2 s each) that a kill
lands inside training, and the workflow's own default profile (``rerun-incomplete``). The two
runs take about three minutes on two cores.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import yaml
from helpers import reduced_demo_config

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow

EPOCHS = 12
MODELS = ("demo_centroid", "demo_centered_instance")
VIDEOS = ("demo_0", "demo_1")


def make_workdir(work: Path, epochs: int = EPOCHS) -> Path:
    """The reduced demo in ``work``, its models trained exactly ``epochs`` x 2 steps."""
    config = reduced_demo_config(work, epochs)
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return work


def snakemake_command(work: Path, *args: str) -> list[str]:
    """The command a user runs: this workflow with its default profile, on two cores."""
    return [
        str(Path(sys.executable).with_name("snakemake")),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(work),
        "--workflow-profile",
        str(ROOT / "profiles/default"),
        "--cores",
        "2",
        *args,
    ]


def run_snakemake(work: Path, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        snakemake_command(work, *args), capture_output=True, text=True, timeout=timeout
    )


def _live_processes(pgid: int) -> list[str]:
    """Processes of group ``pgid`` that are not zombies (Linux /proc; empty elsewhere)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[-1].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(text.split(" ", 1)[0])
    return alive


def kill_when(work: Path, ready, timeout: float = 600) -> subprocess.Popen:
    """Start the workflow in its own process group and SIGKILL the whole group (Snakemake and
    every job it started) as soon as ``ready()`` is true; fails if the run ended first."""
    out = (work / f"killed_run_{time.time_ns()}.out").open("w")
    proc = subprocess.Popen(
        snakemake_command(work), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline and not ready():
        time.sleep(0.05)
    assert proc.poll() is None, f"the workflow ended before the kill point; see {out.name}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    out.close()
    for _ in range(50):  # the jobs die with the group; give the kernel a moment
        if not _live_processes(proc.pid):
            break
        time.sleep(0.1)
    assert not _live_processes(proc.pid), "a job of the killed workflow is still running"
    return proc


def temporary_files(work: Path) -> list[Path]:
    """Files under their hidden temporary names (pipeline_lib.io.atomic.temporary_sibling)."""
    return sorted(p for p in (work / "results").rglob(".*") if ".tmp" in p.name)


def epoch_rows(path: Path) -> list[dict]:
    """training_log.csv rows without the wall-clock column."""
    with path.open() as fh:
        return [{k: v for k, v in r.items() if k != "elapsed_s"} for r in csv.DictReader(fh)]


def predictions_content(path: Path) -> dict[str, np.ndarray]:
    """What a predictions .slp says (frames, points, scores), independent of file metadata."""
    labels = sio.load_slp(str(path), open_videos=False)
    frames, points, scores = [], [], []
    for lf in sorted(labels.labeled_frames, key=lambda f: f.frame_idx):
        for inst in lf.instances:
            frames.append(lf.frame_idx)
            points.append(inst.numpy())
            scores.append(inst.score)
    return {
        "frames": np.asarray(frames),
        "points": np.asarray(points),
        "scores": np.asarray(scores),
    }


@dataclass
class Interrupted:
    work: Path
    killed_model: str
    rows_before_kill: list[dict]
    killed_videos: list[str]
    temporaries_after_kill: list[Path]
    incomplete_after_kill: list[Path]
    final_run: subprocess.CompletedProcess
    seconds: float


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    """The reduced demo run once, never interrupted."""
    work = make_workdir(tmp_path_factory.mktemp("uninterrupted"))
    run = run_snakemake(work)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return work


@pytest.fixture(scope="module")
def interrupted_run(tmp_path_factory) -> Interrupted:
    """The same demo killed after two training epochs of the first model, rerun and killed again
    while a video is being predicted, then rerun to the end."""
    started = time.time()
    work = make_workdir(tmp_path_factory.mktemp("interrupted"))
    models = work / "results/models"

    def training_mid_run() -> str | None:
        for m in MODELS:
            live = models / m / "checkpoints/training_log.csv"
            if live.exists() and len(live.read_text().splitlines()) >= 3:  # two epochs done
                return m
        return None

    kill_when(work, training_mid_run)
    killed_model = training_mid_run()
    assert killed_model is not None
    assert (models / killed_model / "checkpoints/last.ckpt").exists()
    assert not (models / killed_model / "best.ckpt").exists()  # nothing published yet
    rows = epoch_rows(models / killed_model / "checkpoints/training_log.csv")
    assert 2 <= len(rows) < EPOCHS

    unlock = run_snakemake(work, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    predictions = work / "results/predictions"
    first_seen: list[float] = []

    def predicting_for_a_second() -> bool:
        """A video's predictions are being written (prediction takes ~7 s per video)."""
        if not (predictions.exists() and any(predictions.glob(".*.tmp.slp"))):
            return False
        first_seen.append(time.time())
        return first_seen[-1] - first_seen[0] > 1.0

    kill_when(work, predicting_for_a_second)
    partial = sorted(predictions.glob(".*.tmp.slp"))
    killed_videos = [p.name[1:].split(".predictions.")[0] for p in partial]
    assert killed_videos and set(killed_videos) <= set(VIDEOS), partial
    for video in killed_videos:
        assert not (predictions / f"{video}.predictions.slp").exists()
    temporaries = temporary_files(work)
    incomplete = sorted((work / ".snakemake/incomplete").glob("*"))

    unlock = run_snakemake(work, "--unlock")
    assert unlock.returncode == 0, unlock.stderr[-2000:]
    final = run_snakemake(work)
    assert final.returncode == 0, final.stdout[-3000:] + final.stderr[-3000:]
    return Interrupted(
        work,
        killed_model,
        rows,
        killed_videos,
        temporaries,
        incomplete,
        final,
        time.time() - started,
    )


def test_killed_training_resumes_from_its_last_checkpoint(interrupted_run: Interrupted) -> None:
    run = interrupted_run
    model_dir = run.work / "results/models" / run.killed_model
    log = (run.work / f"results/logs/train_model/{run.killed_model}.log").read_text()
    assert f"resuming from results/models/{run.killed_model}/checkpoints/last.ckpt" in log
    assert "from scratch" not in log
    rows = epoch_rows(model_dir / "training_log.csv")
    assert [int(r["epoch"]) for r in rows] == list(range(EPOCHS))
    assert int(rows[-1]["step"]) == 2 * EPOCHS
    # The epochs trained before the kill are kept as they were, not trained again.
    assert rows[: len(run.rows_before_kill)] == run.rows_before_kill


def test_partial_prediction_is_never_taken_for_a_finished_one(
    interrupted_run: Interrupted,
) -> None:
    run = interrupted_run
    # At the kill: the video's predictions existed only under a temporary name, and Snakemake
    # had marked the job incomplete.
    assert run.incomplete_after_kill
    out = run.final_run.stdout + run.final_run.stderr
    for video in run.killed_videos:
        assert any(video in p.name for p in run.temporaries_after_kill)
        # The rerun predicted the video again (it did not trust anything of the killed job).
        path = f"results/predictions/{video}.predictions.slp"
        assert path in out
        labels = sio.load_slp(str(run.work / path), open_videos=False)
        assert len(labels.labeled_frames) == 40


def test_no_temporary_or_incomplete_files_remain(interrupted_run: Interrupted) -> None:
    work = interrupted_run.work
    assert temporary_files(work) == []
    assert not list((work / ".snakemake/incomplete").glob("*"))
    dry = run_snakemake(work, "-n")
    assert dry.returncode == 0 and "Nothing to be done" in dry.stdout + dry.stderr


def test_interrupted_run_matches_the_uninterrupted_one(
    interrupted_run: Interrupted, reference_run: Path
) -> None:
    work = interrupted_run.work
    for model in MODELS:
        assert epoch_rows(work / f"results/models/{model}/training_log.csv") == epoch_rows(
            reference_run / f"results/models/{model}/training_log.csv"
        ), model
    for split in ("val", "test"):
        rel = f"results/models/demo_centered_instance/metrics.{split}.json"
        assert json.loads((work / rel).read_text()) == json.loads((reference_run / rel).read_text())
    for video in VIDEOS:
        rel = f"results/predictions/{video}.predictions.slp"
        got, want = predictions_content(work / rel), predictions_content(reference_run / rel)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{video} {key}")
        rel = f"results/tracks/{video}.tracking_metrics.json"
        assert json.loads((work / rel).read_text()) == json.loads((reference_run / rel).read_text())


def test_provenance_is_written_and_reported(
    reference_run: Path, interrupted_run: Interrupted
) -> None:
    """Both runs record what made them; the same configs give the same hashes and seeds."""
    from pipeline_lib.provenance import KEYS

    records = [
        json.loads((work / "results/provenance.json").read_text())
        for work in (reference_run, interrupted_run.work)
    ]
    for record in records:
        assert set(KEYS) <= set(record)
        assert record["project"]["version"]
        assert set(record["config_files"]) == {
            "pipeline_config",
            "model_config:demo_centroid",
            "model_config:demo_centered_instance",
        }
        assert record["seeds"]["model:demo_centroid"] == 0
        # Each model's training job recorded where it ran.
        assert set(record["training_jobs"]) == {"demo_centroid", "demo_centered_instance"}
        for environment in record["training_jobs"].values():
            assert environment["hardware"]["cpu_count"] >= 1
    assert records[0]["config_files"] == records[1]["config_files"]
    assert records[0]["config_sha256"] == records[1]["config_sha256"]
    summary = (reference_run / "results/report/summary.md").read_text()
    assert "## Provenance" in summary
    assert records[0]["config_files"]["pipeline_config"]["sha256"][:12] in summary
    assert "| trained demo_centroid |" in summary
    report_json = json.loads((reference_run / "results/report/summary.json").read_text())
    assert report_json["provenance"] == records[0]
