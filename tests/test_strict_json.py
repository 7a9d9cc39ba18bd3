"""Metrics files are strict JSON: a metric without a value is ``null`` with the reason beside it,
never a bare ``NaN`` / ``Infinity`` that strict parsers reject."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from pipeline_lib.cli import main
from pipeline_lib.evaluation.tracking_metrics import evaluate_tracking, save_tracking_metrics
from pipeline_lib.io.atomic import write_json_atomic
from pipeline_lib.io.json_io import DEFAULT_REASON, WHY_NULL_KEY

FLIES = "dreem_assets/sleap/two_flies.slp"


def _strict_load(path: Path) -> dict:
    """Parse as a strict parser would: NaN, Infinity and -Infinity are errors."""

    def refuse(name: str):
        raise ValueError(f"{path} holds the non-JSON constant {name}")

    return json.loads(path.read_text(), parse_constant=refuse)


def _no_predictions(gt: sio.Labels, path: Path) -> Path:
    """A predictions file for ``gt``'s videos without a single instance."""
    sio.save_slp(sio.Labels(videos=gt.videos, skeletons=gt.skeletons, labeled_frames=[]), path)
    return path


def test_pose_metrics_without_any_match_are_null_with_the_reason(shared_data, tmp_path, capsys):
    gt_path = shared_data / FLIES
    gt = sio.load_slp(str(gt_path), open_videos=False)
    pred = _no_predictions(gt, tmp_path / "empty.slp")
    out = tmp_path / "metrics.json"
    argv = ["eval-pose", "--gt", str(gt_path), "--pred", str(pred), "--out", str(out)]
    assert main(argv) == 0

    metrics = _strict_load(out)
    assert metrics["n_matched"] == 0 and metrics["n_gt_instances"] == 256
    assert metrics["mOKS"] is None and metrics["distance"]["p50"] is None
    assert metrics["pck"]["pck"] == [None] * 10 and metrics["per_node"]["head"]["mPCK"] is None
    assert metrics["oks_voc"]["mAP"] == 0.0  # a real zero stays a number
    why = metrics[WHY_NULL_KEY]
    expected = "no ground-truth instance matched a prediction (there are no predicted instances)"
    assert why["mOKS"] == why["distance"] == why["per_node"] == expected
    printed = capsys.readouterr().out  # what the command prints is strict JSON too
    assert json.loads(printed, parse_constant=lambda c: pytest.fail(c))["mOKS"] is None


def test_tracking_metrics_without_predictions_are_null_with_the_reason(shared_data, tmp_path):
    gt = sio.load_slp(str(shared_data / FLIES), open_videos=False)
    pred = sio.load_slp(str(_no_predictions(gt, tmp_path / "empty.slp")), open_videos=False)
    out = tmp_path / "tracking_metrics.json"
    save_tracking_metrics(evaluate_tracking(gt, pred), out)
    metrics = _strict_load(out)
    assert metrics["motp"] is None and metrics["idp"] is None and metrics["misses"] == 256
    assert metrics[WHY_NULL_KEY] == {
        "motp": "there are no predicted instances",
        "idp": "there are no predicted instances",
    }


def test_any_json_we_write_has_no_bare_nan(tmp_path):
    out = tmp_path / "summary.json"
    data = {"loss": float("inf"), "curve": np.array([0.5, np.nan]), "n": np.int64(3)}
    write_json_atomic(out, data, why_null={"curve": "the second epoch did not validate"})
    assert _strict_load(out) == {
        "loss": None,
        "curve": [0.5, None],
        "n": 3,
        WHY_NULL_KEY: {"loss": DEFAULT_REASON, "curve": "the second epoch did not validate"},
    }
