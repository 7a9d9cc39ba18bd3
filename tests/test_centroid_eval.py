"""A top-down predictor's centroid model scored on its own, with a real sleap-nn centroid model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.evaluation.evaluate import evaluate_model
from pipeline_lib.io.labels import load_labels
from pipeline_lib.report.inputs import load_pose_row
from pipeline_lib.report.pose_figures import load_matches

RUN_DIR = "sleap_nn_assets/model_ckpts/minimal_instance_centroid"
LABELS = "sleap_nn_assets/datasets/minimal_instance.pkg.slp"


def test_centroid_model_is_scored_on_its_anchors(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "metrics.val.json"
    metrics = evaluate_model(
        [shared_data / RUN_DIR],
        shared_data / LABELS,
        out,
        tmp_path / "metrics.val.npz",
        tmp_path / "labels_pr.val.slp",
        options={"peak_threshold": 0.2},
    )
    assert metrics["anchor"] == "bbox centre"  # the model's anchor_part is null
    assert metrics["n_gt_instances"] == 2 and metrics["n_matched"] == 2
    assert metrics["distance"]["p90"] < 2.0  # px: the anchors land on the animals
    assert metrics["oks_voc"]["mAP"] == pytest.approx(1.0)
    row = load_pose_row("centroid/val", out)  # the report reads it like a pose model's
    assert row["n_matched"] == 2 and row["mPCK"] > 0.5
    matches = load_matches(tmp_path / "metrics.val.npz")
    assert matches["nodes"] == ["bbox centre"] and matches["distances"].shape == (2, 1)
    predicted = load_labels(tmp_path / "labels_pr.val.slp", require_videos=False)
    (lf,) = predicted.labeled_frames
    assert len(lf.instances) == 2
    assert all(np.isfinite(i.numpy()).all(axis=1).sum() == 1 for i in lf.instances)
