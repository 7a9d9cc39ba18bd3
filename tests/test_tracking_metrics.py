"""Tests for pipeline_lib.evaluation.tracking_metrics on hand-worked cases and real labels."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio

from pipeline_lib.evaluation.tracking_metrics import (
    METRIC_KEYS,
    DuplicateTrackError,
    TrackingFrame,
    evaluate_tracking,
    evaluate_tracking_frames,
    save_tracking_metrics,
)


def pose(x: float, y: float = 0.0) -> np.ndarray:
    """A 2-node instance whose centroid is (x, y)."""
    return np.array([[x - 1.0, y], [x + 1.0, y]])


def tf(gt: dict, pr: list[tuple], t: int = 0) -> TrackingFrame:
    """Frame from {gt_id: x} and [(pred_id or None, x)]."""
    gt_pts = np.array([pose(x) for x in gt.values()]).reshape(-1, 2, 2)
    pr_pts = np.array([pose(x) for _, x in pr]).reshape(-1, 2, 2)
    return TrackingFrame(list(gt), gt_pts, [p for p, _ in pr], pr_pts, frame_idx=t)


# ---------------------------------------------------------------- hand-worked cases


def test_perfect_tracking():
    frames = [
        tf({"A": 0.0 + t, "B": 100.0 - t}, [(1, 0.0 + t), (2, 100.0 - t)], t) for t in range(5)
    ]
    m = evaluate_tracking_frames(frames)
    assert tuple(m) == METRIC_KEYS
    assert m["mota"] == 1.0 and m["idf1"] == 1.0 and m["hota"] == 1.0
    assert m["deta"] == 1.0 and m["assa"] == 1.0 and m["motp"] == 0.0
    assert (m["num_gt"], m["num_pred"], m["num_frames"]) == (10, 10, 5)


def test_single_swap_counts_two_switches():
    # Frames 0-1: A->1, B->2; frames 2-3: the predicted ids are swapped.
    frames = [
        tf({"A": 0.0, "B": 100.0}, [(1, 0.0), (2, 100.0)], 0),
        tf({"A": 0.0, "B": 100.0}, [(1, 0.0), (2, 100.0)], 1),
        tf({"A": 0.0, "B": 100.0}, [(2, 0.0), (1, 100.0)], 2),
        tf({"A": 0.0, "B": 100.0}, [(2, 0.0), (1, 100.0)], 3),
    ]
    m = evaluate_tracking_frames(frames)
    assert m["id_switches"] == 2  # both GT tracks change partner once
    assert m["mota"] == pytest.approx(1 - 2 / 8)
    assert m["idf1"] == pytest.approx(0.5)  # best global pairing keeps 4 of 8 detections
    assert m["fragmentations"] == 0 and m["misses"] == 0 and m["false_positives"] == 0
    # AssA: each TP's pair shares 2 frames out of a union of 4 + 4 - 2 = 6 -> 1/3.
    assert m["deta"] == 1.0 and m["assa"] == pytest.approx(1 / 3)
    assert m["hota"] == pytest.approx(math.sqrt(1 / 3))


def test_gap_is_a_fragmentation():
    xs = [0.0, 1.0, 2.0, 3.0, 4.0]
    frames = [tf({"A": x}, [] if t == 2 else [(1, x)], t) for t, x in enumerate(xs)]
    m = evaluate_tracking_frames(frames)
    assert (m["fragmentations"], m["misses"], m["id_switches"]) == (1, 1, 0)
    assert m["mota"] == pytest.approx(0.8)
    # The animal itself absent for a frame is no fragmentation.
    absent = [
        tf({} if t == 2 else {"A": x}, [] if t == 2 else [(1, x)], t) for t, x in enumerate(xs)
    ]
    m2 = evaluate_tracking_frames(absent)
    assert (m2["fragmentations"], m2["misses"], m2["mota"]) == (0, 0, 1.0)
    # Coming back under a new id after the gap: one fragmentation and one switch.
    new_id = [tf({"A": x}, [] if t == 2 else [(1 if t < 2 else 7, x)], t) for t, x in enumerate(xs)]
    m3 = evaluate_tracking_frames(new_id)
    assert (m3["fragmentations"], m3["id_switches"]) == (1, 1)


def test_idf1_by_hand_with_untracked_false_positive():
    # GT A: 4 frames, predicted as track 1 for 3 frames then track 2; GT B: track 3 throughout;
    # an untracked prediction in frame 0.
    frames = []
    for t in range(4):
        pr = [(1 if t < 3 else 2, 0.0), (3, 100.0)] + ([(None, 50.0)] if t == 0 else [])
        frames.append(tf({"A": 0.0, "B": 100.0}, pr, t))
    m = evaluate_tracking_frames(frames)
    # IDTP = 3 (A<->1) + 4 (B<->3) = 7; 8 GT detections, 9 predictions.
    assert m["idf1"] == pytest.approx(14 / 17)
    assert m["idp"] == pytest.approx(7 / 9) and m["idr"] == pytest.approx(7 / 8)
    assert (m["id_switches"], m["false_positives"], m["misses"]) == (1, 1, 0)
    assert m["mota"] == pytest.approx(1 - 2 / 8)
    assert (m["num_pred"], m["num_pred_tracks"], m["num_gt_tracks"]) == (9, 3, 2)


def test_hota_by_hand():
    # GT A over 4 frames, predicted exactly as track 1 then track 2; GT B (2 frames) missed.
    frames = [
        tf({"A": 0.0, "B": 100.0} if t < 2 else {"A": 0.0}, [(1 if t < 2 else 2, 0.0)], t)
        for t in range(4)
    ]
    m = evaluate_tracking_frames(frames, match="exact")
    # DetA = TP / (TP + FN + FP) = 4 / 6; each TP: TPA 2 / (2 + FNA 2 + FPA 0) = 1/2.
    assert m["deta"] == pytest.approx(4 / 6) and m["assa"] == pytest.approx(0.5)
    assert m["hota"] == pytest.approx(math.sqrt(4 / 6 * 0.5))


def test_hota_averages_over_localisation_thresholds():
    # One prediction 5 px off with max_distance 20: similarity 0.75, a match for alpha 0.05..0.75
    # (15 of the 19 thresholds), a miss plus a false positive above.
    m = evaluate_tracking_frames([tf({"A": 0.0}, [(1, 5.0)])], max_distance=20.0)
    assert m["hota"] == pytest.approx(15 / 19) and m["deta"] == pytest.approx(15 / 19)
    assert m["assa"] == pytest.approx(15 / 19)
    assert m["mota"] == 1.0 and m["motp"] == pytest.approx(5.0)


def test_previous_partner_is_kept_while_valid():
    # Frame 1: prediction 2 lands on A, but A's partner 1 is still within 20 px: no switch.
    frames = [tf({"A": 0.0}, [(1, 0.0)], 0), tf({"A": 0.0}, [(1, 10.0), (2, 0.0)], 1)]
    m = evaluate_tracking_frames(frames)
    assert (m["id_switches"], m["false_positives"]) == (0, 1)
    assert m["motp"] == pytest.approx(5.0)
    # Out of range, the partner is dropped and the closer prediction takes over.
    far = [tf({"A": 0.0}, [(1, 0.0)], 0), tf({"A": 0.0}, [(1, 30.0), (2, 0.0)], 1)]
    assert evaluate_tracking_frames(far)["id_switches"] == 1


def test_match_modes():
    off = [tf({"A": 0.0}, [(1, 0.5)])]
    assert evaluate_tracking_frames(off, match="centroid")["misses"] == 0
    assert evaluate_tracking_frames(off, match="exact")["misses"] == 1
    assert evaluate_tracking_frames(off, match="centroid", max_distance=0.4)["misses"] == 1
    # OKS of a 2 px-wide pose shifted 0.5 px (area 0 -> eps): ~0, so OKS matching fails.
    assert evaluate_tracking_frames(off, match="oks")["misses"] == 1
    big = TrackingFrame(
        ["A"],
        np.array([[[0.0, 0.0], [100.0, 100.0]]]),
        [1],
        np.array([[[1.0, 0.0], [101.0, 100.0]]]),
    )
    m = evaluate_tracking_frames([big], match="oks", oks_threshold=0.9)
    assert m["misses"] == 0  # OKS = exp(-1 / 50) = 0.98
    assert evaluate_tracking_frames([big], match="oks", oks_threshold=0.99)["misses"] == 1
    with pytest.raises(ValueError, match="match must be one of"):
        evaluate_tracking_frames(off, match="iou")


def test_bad_input_is_named():
    dup = TrackingFrame(
        ["A", "A"], np.stack([pose(0), pose(50)]), [], np.zeros((0, 2, 2)), frame_idx=9
    )
    with pytest.raises(DuplicateTrackError, match="frame 9 ground truth: track 'A'"):
        evaluate_tracking_frames([dup])
    with pytest.raises(ValueError, match="No ground-truth"):
        evaluate_tracking_frames([tf({}, [(1, 0.0)])])


def test_save_tracking_metrics(tmp_path):
    m = evaluate_tracking_frames([tf({"A": 0.0}, [(1, 0.0)])])
    out = tmp_path / "tracks" / "metrics.json"
    save_tracking_metrics(m, out)
    assert json.loads(out.read_text()) == m
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]
    with pytest.raises(ValueError, match="lack keys"):
        save_tracking_metrics({"mota": 1.0}, tmp_path / "bad.json")


# ---------------------------------------------------------------- real labels


@pytest.fixture()
def two_flies(shared_data: Path):
    """Loader for the 2-fly labels (128 frames, tracks F and M)."""
    path = shared_data / "dreem_assets" / "sleap" / "two_flies.slp"
    return lambda: sio.load_slp(str(path), open_videos=False)


def test_real_labels_against_themselves(two_flies):
    gt, pr = two_flies(), two_flies()
    rng = np.random.default_rng(0)
    for lf in pr.labeled_frames:  # instance order must not matter
        lf.instances = [lf.instances[i] for i in rng.permutation(len(lf.instances))]
    m = evaluate_tracking(gt, pr)
    assert m["mota"] == 1.0 and m["id_switches"] == 0 and m["idf1"] == 1.0
    assert m["hota"] == 1.0
    assert (m["num_gt"], m["num_frames"], m["num_gt_tracks"]) == (256, 128, 2)
    assert evaluate_tracking(gt, pr, match="exact")["mota"] == 1.0


def test_real_labels_with_tracks_swapped_from_frame_64(two_flies):
    gt, pr = two_flies(), two_flies()
    f, m_track = pr.tracks
    for lf in pr.labeled_frames:
        if lf.frame_idx >= 64:
            for inst in lf.instances:
                inst.track = m_track if inst.track is f else f
    for match in ("centroid", "exact", "oks"):
        m = evaluate_tracking(gt, pr, match=match)
        assert m["id_switches"] == 2, match
        assert m["mota"] == pytest.approx(1 - 2 / 256)
        assert m["idf1"] == pytest.approx(0.5) and m["idf1"] < 1
        assert m["deta"] == 1.0 and m["assa"] < 1.0


def test_real_labels_untracked_prediction_is_false_positive(two_flies):
    gt, pr = two_flies(), two_flies()
    pr.labeled_frames[10].instances[0].track = None
    m = evaluate_tracking(gt, pr)
    assert (m["false_positives"], m["misses"], m["num_pred"]) == (1, 1, 256)
    assert m["mota"] == pytest.approx(1 - 2 / 256)
    # GT instances without a track are not ground truth.
    gt.labeled_frames[20].instances[0].track = None
    assert evaluate_tracking(gt, two_flies())["num_gt"] == 255
