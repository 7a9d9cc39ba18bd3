"""The demo DAG end to end in a temporary folder, then rerun behaviour.

A reduced demo (short videos, a few training steps) keeps this to a couple of minutes on two
cores; the accuracy of the full demo is measured by `make demo`, not here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import pytest
import sleap_io as sio
import yaml
from helpers import reduced_demo_config

from pipeline_lib.tracking.gt_detections import as_untracked_predictions

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def _snakemake(workdir: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [
        str(exe),
        "-s",
        str(ROOT / "Snakefile"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        "--workflow-profile",
        "none",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    work = tmp_path_factory.mktemp("wf")
    config = reduced_demo_config(work)
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    run = _snakemake(work)
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    return work


def test_demo_dag_produces_every_output(finished_run: Path) -> None:
    res = finished_run / "results"
    for vid in ("demo_0", "demo_1"):
        tracked = res / f"tracks/{vid}.tracked.slp"
        assert tracked.exists() and (res / f"tracks/{vid}.tracked.csv").exists()
        labels = sio.load_slp(str(tracked), open_videos=False)
        assert labels.skeletons[0].node_names[0] == "nose"
        with h5py.File(res / f"tracks/{vid}.tracked.analysis.h5", "r") as h5:
            # (tracks, xy, nodes, frames); the shrunk models may find no animal at all
            assert h5["tracks"].shape[:3] == (len(labels.tracks), 2, 7)
        metrics = json.loads((res / f"tracks/{vid}.tracking_metrics.json").read_text())
        assert {"mota", "idf1", "hota", "id_switches"} <= set(metrics)
    for split in ("val", "test"):
        metrics = json.loads(
            (res / f"models/demo_centered_instance/metrics.{split}.json").read_text()
        )
        assert 0.0 <= metrics["oks_voc"]["mAP"] <= 1.0
    assert (res / "report/summary.md").exists()
    for model in ("demo_centroid", "demo_centered_instance"):
        assert (res / f"models/{model}/training_config.yaml").exists()
        assert (res / f"logs/train_model/{model}.log").exists()


def test_second_run_has_nothing_to_do(finished_run: Path) -> None:
    dry = _snakemake(finished_run, "-n")
    assert dry.returncode == 0, dry.stderr
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_changed_training_parameter_reruns_only_that_model_and_dependents(
    finished_run: Path,
) -> None:
    cfg_path = finished_run / "config/models/demo_centered_instance.yaml"
    original = cfg_path.read_text()
    cfg = yaml.safe_load(original)
    cfg["trainer_config"]["optimizer"]["lr"] = 0.0005
    cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    try:
        dry = _snakemake(finished_run, "-n")
        out = dry.stdout + dry.stderr
        assert dry.returncode == 0, out
        outputs = [ln.strip() for ln in out.splitlines() if ln.strip().startswith("output:")]
        joined = "\n".join(outputs)
        assert "demo_centered_instance/best.ckpt" in joined
        assert "demo_centroid/best.ckpt" not in joined  # the other model is untouched
        assert "predictions/demo_0.predictions.slp" in joined
        for upstream in ("splits/demo/train.slp", "cache/demo", "demo/labels.slp"):
            assert upstream not in joined
    finally:
        cfg_path.write_text(original)


def test_switching_to_the_tracking_transformer_trains_it_and_retracks_only(
    finished_run: Path, tmp_path: Path
) -> None:
    """tracking.method: gtr on a finished run: rule train_tracker trains a (tiny, positions-only)
    transformer on the demo labels and every video is tracked again with it; the pose models
    and predictions are reused."""
    work = tmp_path / "wf"
    shutil.copytree(finished_run, work, symlinks=True)
    gtr = yaml.safe_load((ROOT / "config/tracking/demo_gtr.yaml").read_text())
    gtr["model"].update({"d_model": 32, "nhead": 2, "dim_feedforward": 64})
    gtr["trainer"].update({"max_epochs": 2, "limit_train_batches": 2})
    gtr["tracker"]["use_vis_feats"] = False
    (work / "config/tracking").mkdir(parents=True)
    (work / "config/tracking/tiny_gtr.yaml").write_text(yaml.safe_dump(gtr, sort_keys=False))
    config = yaml.safe_load((work / "config/config.yaml").read_text())
    config["tracking"]["method"] = "gtr"
    config["tracking"]["gtr"] = {"config": "config/tracking/tiny_gtr.yaml"}
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    # The shrunk pose models find few animals; give the trackers the true poses, untracked,
    # as predictions (rewriting an output does not rerun the rule that made it).
    for vid in ("demo_0", "demo_1"):
        truth = sio.load_slp(str(work / f"results/demo/ground_truth/{vid}.slp"), open_videos=False)
        untracked = as_untracked_predictions(truth, seed=0)
        sio.save_slp(untracked, str(work / f"results/predictions/{vid}.predictions.slp"))

    run = _snakemake(work)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    ran = {
        ln.split()[1].rstrip(":")
        for ln in out.splitlines()
        if ln.startswith(("rule ", "localrule "))
    }
    assert {"train_tracker", "track_video"} <= ran
    assert not ran & {"train_model", "predict_video", "cache_images", "split_labels"}
    assert (work / "results/tracker/gtr/best.ckpt").exists()
    for vid in ("demo_0", "demo_1"):
        truth = sio.load_slp(str(work / f"results/demo/ground_truth/{vid}.slp"), open_videos=False)
        labels = sio.load_slp(str(work / f"results/tracks/{vid}.tracked.slp"), open_videos=False)
        assert len(labels.labeled_frames) == len(truth.labeled_frames)
        assert all(i.track is not None for lf in labels.labeled_frames for i in lf.instances)
        metrics = json.loads((work / f"results/tracks/{vid}.tracking_metrics.json").read_text())
        assert metrics["mota"] > 0.5  # every true pose is there; identities from a tiny model


def test_bad_config_fails_before_any_work(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "config/models", tmp_path / "config/models")
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["models"]["demo_centroid"]["config"] = "config/models/nope.yaml"
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(config))
    run = _snakemake(tmp_path, "-n")
    assert run.returncode != 0
    assert "nope.yaml" in run.stdout + run.stderr
    assert not (tmp_path / "results").exists()
    shutil.rmtree(tmp_path / ".snakemake", ignore_errors=True)


def test_report_html_shows_the_metric_values(finished_run: Path) -> None:
    """`snakemake --report` of a finished run: the numbers of pose_metrics.csv and
    tracking_metrics.csv are text on the report's HTML pages, which report.html embeds."""
    from pipeline_lib.report.tables import fmt

    run = _snakemake(finished_run, "--report", "report.html")
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]
    report = (finished_run / "report.html").read_text()
    out = finished_run / "results/report"
    for name in ("summary.html", "pose_accuracy.html", "tracking.html", "provenance.html"):
        assert name in report, f"{name} not registered in report.html"
    for csv_name, page in (
        ("pose_metrics.csv", "pose_accuracy.html"),
        ("tracking_metrics.csv", "tracking.html"),
    ):
        text = (out / page).read_text()
        header, *rows = [line.split(",") for line in (out / csv_name).read_text().splitlines()]
        assert rows, csv_name
        for row in rows:
            for key, cell in zip(header, row, strict=True):
                if cell and cell.lstrip("-").replace(".", "").replace("e-", "").isdigit():
                    value = fmt(float(cell) if "." in cell or "e" in cell else int(cell))
                    assert f">{value}<" in text, (csv_name, key, cell)
    assert "This run: predictor demo_centroid + demo_centered_instance" in report
    assert (out / "pose_figures/demo_centered_instance.test.png").is_file()
