"""Tests for pipeline_lib.evaluation.pose_metrics: sleap-nn parity and hand-worked cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from pipeline_lib.evaluation.pose_metrics import (
    FramePoses,
    compute_oks,
    evaluate_frames,
    evaluate_labels,
    instance_area,
    match_instances,
    save_pose_metrics,
)

NODES = ["a", "b", "c", "d"]
# A 100 x 100 px square: bounding-box area 1e4, so 2 * area * (2 * 0.025)^2 = 50.
SQUARE = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 100.0], [0.0, 100.0]])


def frame(gt, pr, scores=None, frame_idx=0) -> FramePoses:
    """One frame from lists of (n_nodes, 2) arrays."""
    gt = np.asarray(gt, dtype=float).reshape(-1, len(NODES), 2)
    pr = np.asarray(pr, dtype=float).reshape(-1, len(NODES), 2)
    scores = np.ones(len(pr)) if scores is None else np.asarray(scores, dtype=float)
    return FramePoses(gt=gt, pr=pr, scores=scores, frame_idx=frame_idx)


# ---------------------------------------------------------------- parity with sleap-nn 0.3.5


@pytest.fixture(scope="module")
def parity_labels(shared_data: Path) -> tuple[sio.Labels, sio.Labels]:
    gt = sio.load_slp(str(shared_data / "parity" / "two_flies.slp"), open_videos=False)
    pr = sio.load_slp(str(shared_data / "parity" / "two_flies_jitter2.pred.slp"), open_videos=False)
    return gt, pr


def test_parity_with_sleap_nn(parity_labels):
    gt, pr = parity_labels
    m = evaluate_labels(gt, pr)
    tol = dict(abs=1e-4)
    assert m["n_frames"] == 128 and m["n_gt_instances"] == 256 and m["n_matched"] == 256
    assert m["mOKS"] == pytest.approx(0.813399, **tol)
    assert m["oks_voc"]["mAP"] == pytest.approx(0.604461, **tol)
    assert m["oks_voc"]["mAR"] == pytest.approx(0.676953, **tol)
    ap = [
        0.986309,
        0.986309,
        0.965192,
        0.931002,
        0.893835,
        0.746485,
        0.420792,
        0.112997,
        0.001691,
        0.0,
    ]
    ar = [
        0.996094,
        0.996094,
        0.984375,
        0.96875,
        0.949219,
        0.863281,
        0.648438,
        0.324219,
        0.039062,
        0.0,
    ]
    assert m["oks_voc"]["AP"] == pytest.approx(ap, **tol)
    assert m["oks_voc"]["AR"] == pytest.approx(ar, **tol)
    assert m["oks_voc"]["thresholds"] == pytest.approx(np.arange(10) * 0.05 + 0.5)
    d = m["distance"]
    assert [d["avg"], d["p50"], d["p75"], d["p90"], d["p95"], d["p99"]] == pytest.approx(
        [2.499048, 2.354633, 3.305079, 4.279638, 4.794001, 5.849026], **tol
    )
    assert m["visibility"] == {
        "tp": 3070,
        "fp": 0,
        "tn": 258,
        "fn": 0,
        "precision": 1.0,
        "recall": 1.0,
    }
    pck = m["pck"]
    assert pck["mPCK_sleap_nn"] == pytest.approx(0.738011, **tol)
    assert pck["pck_sleap_nn"][4] == pytest.approx(0.885517, **tol)
    assert pck["pck_sleap_nn"][9] == pytest.approx(0.922476, **tol)
    # Ours divides by visible ground-truth nodes only: every visible point is within 6 px.
    assert pck["pck"][9] == 1.0
    assert pck["pck"][4] == pytest.approx(pck["pck_sleap_nn"][4] * 3328 / 3070, abs=1e-12)
    assert set(m) == {
        "n_frames",
        "n_gt_instances",
        "n_pred_instances",
        "n_matched",
        "mOKS",
        "oks_voc",
        "distance",
        "pck",
        "visibility",
        "per_node",
    }
    assert set(m["per_node"]) == set(gt.skeleton.node_names)
    assert m["per_node"]["head"]["n_visible"] == 256
    json.dumps(m)  # JSON-serialisable as returned


def test_score_ties_follow_prediction_order_within_frame(shared_data):
    """Tied scores keep prediction order; reversing it within frames gives sleap-nn's 0.6035."""
    pr = sio.load_slp(str(shared_data / "parity" / "two_flies_jitter2.pred.slp"), open_videos=False)
    gt = sio.load_slp(str(shared_data / "parity" / "two_flies.slp"), open_videos=False)
    for lf in pr.labeled_frames:
        lf.instances = lf.instances[::-1]
    m = evaluate_labels(gt, pr)
    assert m["oks_voc"]["mAP"] == pytest.approx(0.6035, abs=1e-4)
    assert m["mOKS"] == pytest.approx(0.813399, abs=1e-4)  # same pairs, other ranking


def test_user_instances_used_when_file_has_no_predictions(parity_labels):
    gt, _ = parity_labels
    m = evaluate_labels(gt, gt)
    assert m["oks_voc"]["mAP"] == pytest.approx(1.0) and m["mOKS"] == pytest.approx(1.0)
    assert m["visibility"]["fp"] == 0 and m["visibility"]["tn"] == 258


def test_missing_prediction_frame_counts_as_misses(parity_labels):
    gt, pr = parity_labels
    pr = sio.Labels(
        labeled_frames=[lf for lf in pr.labeled_frames if lf.frame_idx != 5],
        videos=pr.videos,
        skeletons=pr.skeletons,
        tracks=pr.tracks,
    )
    m = evaluate_labels(gt, pr)
    assert m["n_frames"] == 128 and m["n_gt_instances"] == 256
    assert m["n_matched"] == 254 and m["n_pred_instances"] == 254
    assert m["oks_voc"]["AR"][0] == pytest.approx(0.99609375 - 2 / 256)


def test_videos_paired_by_index_when_names_differ(parity_labels):
    gt, pr = parity_labels
    video = sio.Video(filename="renamed.mp4", open_backend=False)
    frames = [
        sio.LabeledFrame(video=video, frame_idx=lf.frame_idx, instances=lf.instances)
        for lf in pr.labeled_frames
    ]
    renamed = sio.Labels(labeled_frames=frames, videos=[video], skeletons=pr.skeletons)
    assert evaluate_labels(gt, renamed)["mOKS"] == pytest.approx(0.813399, abs=1e-4)
    two = sio.Labels(
        labeled_frames=frames,
        skeletons=pr.skeletons,
        videos=[video, sio.Video(filename="other.mp4", open_backend=False)],
    )
    with pytest.raises(ValueError, match="Cannot pair videos"):
        evaluate_labels(gt, two)


def test_save_pose_metrics_writes_json_and_exact_npz_name(parity_labels, tmp_path):
    gt, pr = parity_labels
    metrics, arrays = evaluate_labels(gt, pr, return_arrays=True)
    json_path = tmp_path / "metrics.test.json"
    npz_path = tmp_path / "per_match.arrays"  # numpy would append .npz to a plain name
    save_pose_metrics(metrics, json_path, npz_path, arrays)
    assert json.loads(json_path.read_text())["oks_voc"]["mAP"] == pytest.approx(0.604461, abs=1e-4)
    with np.load(npz_path) as data:
        assert data["distances"].shape == (256, 13)
        assert data["oks"].mean() == pytest.approx(metrics["mOKS"])
        assert list(data["node_names"]) == gt.skeleton.node_names
        assert data["video_names"].tolist() == ["two_flies.mp4"]
        assert data["voc_precisions"].shape == (10, 101)
    save_pose_metrics(metrics, tmp_path / "m.json", arrays=arrays)  # default: beside the JSON
    assert (tmp_path / "m.npz").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "m.json",
        "m.npz",
        "metrics.test.json",
        "per_match.arrays",
    ]
    with pytest.raises(ValueError, match="no arrays"):
        save_pose_metrics(metrics, tmp_path / "x.json", tmp_path / "x.npz")


# ---------------------------------------------------------------- hand-worked cases


def test_perfect_predictions_give_map_one():
    other = SQUARE + 300.0
    m = evaluate_frames([frame([SQUARE, other], [other, SQUARE])], NODES)
    assert m["mOKS"] == pytest.approx(1.0)
    assert m["oks_voc"]["mAP"] == pytest.approx(1.0)
    assert m["oks_voc"]["mAR"] == pytest.approx(1.0)
    assert m["distance"]["avg"] == 0.0 and m["distance"]["p99"] == 0.0
    assert m["pck"]["mPCK"] == 1.0 and m["visibility"]["tp"] == 8


def test_shift_by_known_distance_gives_known_oks():
    shifted = SQUARE + np.array([3.0, 4.0])  # every node 5 px off
    expected = math.exp(-25.0 / 50.0)
    assert compute_oks(SQUARE, shifted)[0, 0] == pytest.approx(expected)
    m = evaluate_frames([frame([SQUARE], [shifted])], NODES)
    assert m["mOKS"] == pytest.approx(expected)  # 0.6065: a match at 0.50..0.60 only
    assert m["oks_voc"]["AR"] == pytest.approx([1, 1, 1] + [0] * 7)
    assert m["distance"]["p50"] == pytest.approx(5.0)
    assert m["pck"]["pck"] == pytest.approx([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])  # d < t


def test_per_node_sigma_and_scale():
    shifted = SQUARE.copy()
    shifted[0] += [0.0, 2.0]
    shifted[1] += [0.0, 4.0]
    sigma = np.array([0.025, 0.05, 0.025, 0.025])
    # scale=400 px^2: node a: exp(-4 / (2*400*0.0025)), node b: exp(-16 / (2*400*0.01))
    ks = [math.exp(-4 / 2.0), math.exp(-16 / 8.0), 1.0, 1.0]
    assert compute_oks(SQUARE, shifted, stddev=sigma, scale=400.0)[0, 0] == pytest.approx(
        np.mean(ks)
    )
    assert instance_area(SQUARE)[0] == 1e4
    with pytest.raises(ValueError, match="oks_stddev"):
        compute_oks(SQUARE, shifted, stddev=[0.1, 0.2])


def test_false_positive_lowers_precision():
    other = SQUARE + 300.0
    decoy = SQUARE + 900.0  # far from everything: OKS 0, stays unmatched
    confident_fp = evaluate_frames(
        [frame([SQUARE, other], [SQUARE, other, decoy], scores=[0.5, 0.5, 0.9])], NODES
    )
    assert confident_fp["n_matched"] == 2 and confident_fp["n_pred_instances"] == 3
    # ranks: FP, TP, TP -> precision envelope 2/3 at every recall point
    assert confident_fp["oks_voc"]["mAP"] == pytest.approx(2 / 3)
    assert confident_fp["oks_voc"]["mAR"] == pytest.approx(1.0)
    timid_fp = evaluate_frames(
        [frame([SQUARE, other], [SQUARE, other, decoy], scores=[0.5, 0.5, 0.1])], NODES
    )
    assert timid_fp["oks_voc"]["mAP"] == pytest.approx(1.0)  # FP after full recall is free


def test_missed_instance_lowers_recall():
    other = SQUARE + 300.0
    m = evaluate_frames([frame([SQUARE, other], [other])], NODES)
    assert m["n_matched"] == 1
    assert m["oks_voc"]["AR"] == pytest.approx([0.5] * 10)
    assert m["oks_voc"]["mAP"] == pytest.approx(51 / 101)  # precision 1 up to recall 0.50
    # A frame with ground truth but no prediction at all is missed too.
    m2 = evaluate_frames([frame([SQUARE], [SQUARE]), frame([other], [], frame_idx=1)], NODES)
    assert m2["oks_voc"]["mAR"] == pytest.approx(0.5) and m2["n_frames"] == 2


def test_nan_nodes():
    gt = SQUARE.copy()
    gt[3] = np.nan  # not labelled: excluded from OKS, distances and our PCK
    pr = SQUARE.copy()
    pr[2] = np.nan  # predicted missing where GT is visible: OKS 0 for that node
    m, arrays = evaluate_frames([frame([gt], [pr])], NODES, return_arrays=True)
    assert m["mOKS"] == pytest.approx(2 / 3)
    assert compute_oks(gt, SQUARE)[0, 0] == pytest.approx(1.0)
    assert np.isnan(arrays["distances"][0, 2]) and np.isnan(arrays["distances"][0, 3])
    assert m["distance"]["avg"] == 0.0
    assert m["visibility"] == {
        "tp": 2,
        "fp": 1,
        "tn": 0,
        "fn": 1,
        "precision": pytest.approx(2 / 3),
        "recall": pytest.approx(2 / 3),
    }
    assert m["pck"]["pck"] == pytest.approx([2 / 3] * 10)
    assert m["pck"]["pck_sleap_nn"] == pytest.approx([0.5] * 10)
    assert m["per_node"]["c"]["pck5"] == 0.0 and m["per_node"]["d"]["n_visible"] == 0
    assert math.isnan(m["per_node"]["d"]["distance_p50"])
    # A ground-truth instance with no visible node is not an instance to find.
    empty = np.full((4, 2), np.nan)
    m2 = evaluate_frames([frame([SQUARE, empty], [SQUARE])], NODES)
    assert m2["n_gt_instances"] == 1 and m2["oks_voc"]["mAP"] == pytest.approx(1.0)


def test_greedy_matching_follows_score_order():
    gt = np.stack([SQUARE, SQUARE + [6.0, 0.0]])
    pr = np.stack([SQUARE + [6.0, 0.0], SQUARE + [3.0, 0.0]])
    oks = compute_oks(gt, pr)
    # The higher-scored prediction 1 sits halfway: it takes GT 0 (first on the tie),
    # leaving GT 1 to prediction 0, although prediction 0 fits GT 1 perfectly either way.
    match = match_instances(oks, np.array([0.2, 0.9]))
    assert match.pr_order.tolist() == [1, 0]
    assert match.gt_idx.tolist() == [0, 1] and match.pr_idx.tolist() == [1, 0]
    # A match threshold above the halfway OKS leaves prediction 1 unmatched (a false positive).
    strict = match_instances(oks, np.array([0.2, 0.9]), threshold=0.9)
    assert strict.pr_idx.tolist() == [0] and strict.gt_idx.tolist() == [1]
    assert strict.pr_match_oks.tolist() == [0.0, 1.0]


def test_bad_input_names_the_frame():
    with pytest.raises(ValueError, match="Frame 7"):
        evaluate_frames([frame([SQUARE], [SQUARE], scores=[np.nan], frame_idx=7)], NODES)
    with pytest.raises(ValueError, match="expected 4 nodes"):
        evaluate_frames([FramePoses(gt=SQUARE[:3][None], pr=SQUARE[None], scores=[1.0])], NODES)
    with pytest.raises(ValueError, match="No ground-truth"):
        evaluate_frames([frame([], [SQUARE])], NODES)
