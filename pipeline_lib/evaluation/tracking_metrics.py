"""Multi-animal tracking accuracy: CLEAR-MOT, identity (IDF1) and HOTA metrics.

Pose metrics say whether the animals were found; these say whether each one kept its
identity over time, which is what a tracker is for. All three families are computed here with
numpy and ``scipy.optimize.linear_sum_assignment`` (``motmetrics`` 1.4 works with numpy 2.4
and agrees with this code on CLEAR-MOT and IDF1, but HOTA needs its own code anyway, and one
implementation with one matching rule keeps the families consistent).

Pairing a ground-truth (GT) and a predicted instance in a frame (``match``):

* ``"centroid"``: centroids (mean of visible points) at most ``max_distance`` px apart;
  similarity for HOTA ``1 - d / max_distance`` (clipped at 0).
* ``"oks"``: OKS (COCO form, see pose_metrics) of at least ``oks_threshold``; similarity = OKS.
* ``"exact"``: identical coordinates (NaN where the other is NaN; 1e-6 px tolerance) for
  ground-truth-detection tests; similarity 1 or 0.

Definitions:

* **CLEAR-MOT** (Bernardin & Stiefelhagen 2008). Per frame, a GT track keeps its previous
  partner if that pairing is still valid and was the latest one for both; the rest are paired
  by the Hungarian algorithm (highest similarity among valid pairs). An **ID switch** is a GT
  track matched to a different predicted track than at its last match; a **fragmentation**
  is a GT track going from matched to unmatched while present and being matched again later.
  ``MOTA = 1 - (misses + false positives + ID switches) / num_gt``. ``MOTP`` is the mean
  centroid distance (px) of matched pairs, whatever ``match`` is (lower is better).
* **IDF1 / IDP / IDR** (Ristani et al. 2016): one global one-to-one assignment of GT to
  predicted tracks maximising the frames in which the paired tracks are validly close
  (IDTP); every other GT detection is an IDFN, every other prediction an IDFP.
* **HOTA** (Luiten et al. 2021): for each localisation threshold alpha = 0.05..0.95 the frame
  matching maximises alignment-weighted similarity; ``DetA = TP / (TP + FN + FP)``,
  ``AssA`` = mean over TPs of ``TPA / (TPA + FNA + FPA)``, ``HOTA = sqrt(DetA * AssA)``; the
  reported values are means over alpha.

Predictions without a track take part in no matching: each is a false positive (and an IDFP).
Ground-truth instances without a track, or with no visible point, are not ground truth.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import sleap_io as sio
from scipy.optimize import linear_sum_assignment

from pipeline_lib.evaluation.null_reasons import tracking_null_reasons
from pipeline_lib.evaluation.pose_metrics import (
    DEFAULT_OKS_STDDEV,
    compute_oks,
    instance_points,
    pair_videos,
    video_name,
)
from pipeline_lib.io.atomic import write_json_atomic

MATCH_MODES = ("centroid", "oks", "exact")
HOTA_ALPHAS = np.round(np.arange(0.05, 0.96, 0.05), 2)
EXACT_TOLERANCE = 1e-6
_INVALID_COST = 1e6  # above any sum of valid costs (each <= 1), so valid pairs come first

METRIC_KEYS = (
    "mota",
    "motp",
    "idf1",
    "idp",
    "idr",
    "hota",
    "deta",
    "assa",
    "id_switches",
    "fragmentations",
    "false_positives",
    "misses",
    "num_gt",
    "num_pred",
    "num_frames",
    "num_gt_tracks",
    "num_pred_tracks",
)


@dataclass(frozen=True)
class TrackingFrame:
    """One frame's GT and predicted instances with their track ids, in time order.

    ``gt_points`` is ``(n_gt, n_nodes, 2)``, ``pr_points`` ``(n_pr, n_nodes, 2)``; ids are any
    hashable values (GT and prediction id spaces are independent); a prediction id of
    ``None`` means untracked. ``frame_idx`` / ``video_idx`` only name the frame in errors.
    """

    gt_ids: Sequence[Hashable]
    gt_points: np.ndarray
    pr_ids: Sequence[Hashable | None]
    pr_points: np.ndarray
    frame_idx: int = 0
    video_idx: int = 0


@dataclass(frozen=True)
class _Pairs:
    """A frame reduced to what the metrics need: integer ids and pairwise scores."""

    gt: np.ndarray  # (n_gt,) GT track index
    pr: np.ndarray  # (n_tr,) predicted track index of the tracked predictions
    n_untracked: int
    sim: np.ndarray  # (n_gt, n_tr) similarity in [0, 1]
    valid: np.ndarray  # (n_gt, n_tr) pair allowed for CLEAR-MOT / IDF1
    dist: np.ndarray  # (n_gt, n_tr) centroid distance, px


def pair_scores(
    gt_points: np.ndarray,
    pr_points: np.ndarray,
    match: str = "centroid",
    max_distance: float = 20.0,
    oks_threshold: float = 0.5,
    oks_stddev: float = DEFAULT_OKS_STDDEV,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Similarity, validity and centroid distance of every GT / prediction pair of a frame."""
    if match not in MATCH_MODES:
        raise ValueError(f"match must be one of {MATCH_MODES}, got {match!r}")
    if max_distance <= 0:
        raise ValueError(f"max_distance must be positive, got {max_distance}")
    dist = np.linalg.norm(_centroids(gt_points)[:, None] - _centroids(pr_points)[None], axis=-1)
    if len(gt_points) == 0 or len(pr_points) == 0:
        empty = np.zeros((len(gt_points), len(pr_points)))
        return empty, empty.astype(bool), empty
    if match == "centroid":
        valid = dist <= max_distance  # NaN compares False
        sim = np.where(valid, np.clip(1.0 - dist / max_distance, 0.0, 1.0), 0.0)
    elif match == "oks":
        sim = np.nan_to_num(compute_oks(gt_points, pr_points, stddev=oks_stddev), nan=0.0)
        valid = sim >= oks_threshold
    else:
        same_nan = np.isnan(gt_points)[:, None] == np.isnan(pr_points)[None]
        diff = np.abs(gt_points[:, None] - pr_points[None])
        close = np.where(np.isnan(diff), True, diff <= EXACT_TOLERANCE)
        valid = (same_nan & close).all(axis=(-2, -1))
        sim = valid.astype(np.float64)
    return sim, valid, dist


def evaluate_tracking_frames(
    frames: Sequence[TrackingFrame],
    match: str = "centroid",
    max_distance: float = 20.0,
    oks_threshold: float = 0.5,
    oks_stddev: float = DEFAULT_OKS_STDDEV,
) -> dict[str, float | int]:
    """All tracking metrics from per-frame arrays, frames in time order (the array core)."""
    gt_index: dict[Hashable, int] = {}
    pr_index: dict[Hashable, int] = {}
    pairs: list[_Pairs] = []
    for frame in frames:
        where = f"video {frame.video_idx} frame {frame.frame_idx}"
        gt_pts = _points(frame.gt_points, len(frame.gt_ids), f"{where} ground truth")
        pr_pts = _points(frame.pr_points, len(frame.pr_ids), f"{where} predictions")
        if any(g is None for g in frame.gt_ids):
            raise ValueError(f"{where}: a ground-truth instance has no track id")
        _check_unique(list(frame.gt_ids), f"{where} ground truth")
        _check_unique([i for i in frame.pr_ids if i is not None], f"{where} predictions")
        has_points = ~np.isnan(gt_pts).any(axis=-1).all(axis=-1)
        gt_ids = [g for g, keep in zip(frame.gt_ids, has_points, strict=True) if keep]
        gt_pts = gt_pts[has_points]
        tracked = np.array([i is not None for i in frame.pr_ids], dtype=bool)
        pr_ids = [i for i in frame.pr_ids if i is not None]
        if len(gt_pts) and len(pr_pts) and gt_pts.shape[1] != pr_pts.shape[1]:
            raise ValueError(
                f"{where}: ground truth has {gt_pts.shape[1]} nodes but "
                f"predictions have {pr_pts.shape[1]}"
            )
        sim, valid, dist = pair_scores(
            gt_pts, pr_pts[tracked], match, max_distance, oks_threshold, oks_stddev
        )
        pairs.append(
            _Pairs(
                gt=np.array([gt_index.setdefault(g, len(gt_index)) for g in gt_ids], dtype=int),
                pr=np.array([pr_index.setdefault(p, len(pr_index)) for p in pr_ids], dtype=int),
                n_untracked=int((~tracked).sum()),
                sim=sim,
                valid=valid,
                dist=dist,
            )
        )
    num_gt = sum(len(p.gt) for p in pairs)
    if num_gt == 0:
        raise ValueError(
            "No ground-truth instances with a track and visible points to evaluate tracking against"
        )
    num_pred = sum(len(p.pr) + p.n_untracked for p in pairs)
    clear = clear_mot(pairs, len(gt_index))
    identity = identity_metrics(pairs, len(gt_index), len(pr_index))
    hota_scores = hota(pairs, len(gt_index), len(pr_index))
    metrics: dict[str, float | int] = {
        "mota": 1.0 - (clear["misses"] + clear["false_positives"] + clear["id_switches"]) / num_gt,
        "motp": clear["motp"],
        **identity,
        **hota_scores,
        "id_switches": clear["id_switches"],
        "fragmentations": clear["fragmentations"],
        "false_positives": clear["false_positives"],
        "misses": clear["misses"],
        "num_gt": int(num_gt),
        "num_pred": int(num_pred),
        "num_frames": len(pairs),
        "num_gt_tracks": len(gt_index),
        "num_pred_tracks": len(pr_index),
    }
    return {key: metrics[key] for key in METRIC_KEYS}


def clear_mot(pairs: Sequence[_Pairs], n_gt_tracks: int) -> dict[str, float | int]:
    """CLEAR-MOT counts (misses, false positives, ID switches, fragmentations) and MOTP."""
    last_pr_of_gt: dict[int, int] = {}
    last_gt_of_pr: dict[int, int] = {}
    matched_runs: list[list[bool]] = [[] for _ in range(n_gt_tracks)]
    misses = false_positives = switches = 0
    dist_sum, n_matches = 0.0, 0
    for p in pairs:
        rows: list[int] = []
        cols: list[int] = []
        col_of_pr = {int(t): j for j, t in enumerate(p.pr)}
        for i, g in enumerate(p.gt):
            h = last_pr_of_gt.get(int(g))
            j = col_of_pr.get(h) if h is not None else None
            if j is not None and last_gt_of_pr.get(h) == int(g) and p.valid[i, j]:
                rows.append(i)
                cols.append(j)
        free_r = np.setdiff1d(np.arange(len(p.gt)), rows)
        free_c = np.setdiff1d(np.arange(len(p.pr)), cols)
        if len(free_r) and len(free_c):
            sub_valid = p.valid[np.ix_(free_r, free_c)]
            cost = np.where(sub_valid, 1.0 - p.sim[np.ix_(free_r, free_c)], _INVALID_COST)
            r, c = linear_sum_assignment(cost)
            keep = sub_valid[r, c]
            rows.extend(free_r[r[keep]].tolist())
            cols.extend(free_c[c[keep]].tolist())
        for i, j in zip(rows, cols, strict=True):
            g, h = int(p.gt[i]), int(p.pr[j])
            if g in last_pr_of_gt and last_pr_of_gt[g] != h:
                switches += 1
            last_pr_of_gt[g] = h
            last_gt_of_pr[h] = g
            dist_sum += float(p.dist[i, j])
        matched = set(rows)
        for i, g in enumerate(p.gt):
            matched_runs[int(g)].append(i in matched)
        n_matches += len(rows)
        misses += len(p.gt) - len(rows)
        false_positives += len(p.pr) - len(cols) + p.n_untracked
    return {
        "misses": misses,
        "false_positives": false_positives,
        "id_switches": switches,
        "fragmentations": sum(_count_fragmentations(run) for run in matched_runs),
        "motp": dist_sum / n_matches if n_matches else float("nan"),
    }


def identity_metrics(
    pairs: Sequence[_Pairs], n_gt_tracks: int, n_pr_tracks: int
) -> dict[str, float]:
    """IDF1, IDP and IDR from one global optimal assignment of GT to predicted tracks."""
    overlap = np.zeros((n_gt_tracks, n_pr_tracks))
    for p in pairs:
        gi, pj = np.nonzero(p.valid)
        np.add.at(overlap, (p.gt[gi], p.pr[pj]), 1.0)
    idtp = 0.0
    if overlap.size:
        r, c = linear_sum_assignment(overlap, maximize=True)
        idtp = float(overlap[r, c].sum())
    n_gt = sum(len(p.gt) for p in pairs)
    n_pr = sum(len(p.pr) + p.n_untracked for p in pairs)
    return {
        "idf1": 2 * idtp / (n_gt + n_pr) if n_gt + n_pr else float("nan"),
        "idp": idtp / n_pr if n_pr else float("nan"),
        "idr": idtp / n_gt if n_gt else float("nan"),
    }


def hota(
    pairs: Sequence[_Pairs],
    n_gt_tracks: int,
    n_pr_tracks: int,
    alphas: np.ndarray = HOTA_ALPHAS,
) -> dict[str, float]:
    """HOTA, DetA and AssA, each averaged over the localisation thresholds ``alphas``."""
    # Global alignment: how much each GT/predicted track pair overlaps over the whole video,
    # measured with per-frame similarities normalised like a soft IoU.
    gt_count = np.zeros(n_gt_tracks)
    pr_count = np.zeros(n_pr_tracks)
    soft = np.zeros((n_gt_tracks, n_pr_tracks))
    for p in pairs:
        gt_count[p.gt] += 1
        pr_count[p.pr] += 1
        if p.sim.size:
            denom = p.sim.sum(axis=0, keepdims=True) + p.sim.sum(axis=1, keepdims=True) - p.sim
            frac = np.divide(p.sim, denom, out=np.zeros_like(p.sim), where=denom > 1e-12)
            soft[np.ix_(p.gt, p.pr)] += frac
    union = gt_count[:, None] + pr_count[None] - soft
    alignment = np.divide(soft, union, out=np.zeros_like(soft), where=union > 0)

    n_a = len(alphas)
    tp, fn, fp = np.zeros(n_a), np.zeros(n_a), np.zeros(n_a)
    matches = np.zeros((n_a, n_gt_tracks, n_pr_tracks))
    for p in pairs:
        fp += p.n_untracked
        if not len(p.gt) or not len(p.pr):
            fn += len(p.gt)
            fp += len(p.pr)
            continue
        r, c = linear_sum_assignment(alignment[np.ix_(p.gt, p.pr)] * p.sim, maximize=True)
        for a, alpha in enumerate(alphas):
            ok = p.sim[r, c] >= alpha - 1e-12
            tp[a] += ok.sum()
            fn[a] += len(p.gt) - ok.sum()
            fp[a] += len(p.pr) - ok.sum()
            np.add.at(matches[a], (p.gt[r[ok]], p.pr[c[ok]]), 1.0)
    det_a = tp / np.maximum(1.0, tp + fn + fp)
    ass_a = np.zeros(n_a)
    for a in range(n_a):
        m = matches[a]
        track_union = np.maximum(1.0, gt_count[:, None] + pr_count[None] - m)
        ass_a[a] = (m * (m / track_union)).sum() / max(1.0, tp[a])
    return {
        "hota": float(np.mean(np.sqrt(det_a * ass_a))),
        "deta": float(det_a.mean()),
        "assa": float(ass_a.mean()),
    }


def evaluate_tracking(
    gt: sio.Labels,
    pr: sio.Labels,
    match: str = "centroid",
    max_distance: float = 20.0,
    oks_threshold: float = 0.5,
    oks_stddev: float = DEFAULT_OKS_STDDEV,
) -> dict[str, float | int]:
    """Tracking metrics of predicted labels against GT labels with track identities.

    Evaluates the labelled GT frames in (video, frame_idx) order; videos are paired as in
    pose_metrics (file name, else position). A labelled frame without a predicted frame has
    no predictions; predicted frames that are not labelled in the GT are not evaluated. GT
    instances are the tracked instances (user or predicted); every instance of a predicted
    frame is a prediction, untracked ones being false positives. Nodes are paired by name.
    """
    if len(gt.skeletons) != 1:
        raise ValueError(
            f"Ground-truth labels must have exactly one skeleton, found {len(gt.skeletons)}"
        )
    node_names = gt.skeletons[0].node_names
    video_map = pair_videos(gt, pr)
    gt_video = {id(v): i for i, v in enumerate(gt.videos)}
    pr_video = {id(v): i for i, v in enumerate(pr.videos)}
    pr_frames: dict[tuple[int, int], list[sio.Instance]] = {}
    for lf in pr.labeled_frames:
        pr_frames.setdefault((pr_video[id(lf.video)], int(lf.frame_idx)), []).extend(lf.instances)
    gt_frames: dict[tuple[int, int], list[sio.Instance]] = {}
    for lf in gt.labeled_frames:
        key = (gt_video[id(lf.video)], int(lf.frame_idx))
        gt_frames.setdefault(key, []).extend(i for i in lf.instances if i.track is not None)
    gt_track_ids = _track_ids(gt)
    pr_track_ids = _track_ids(pr)

    frames = []
    for vi, fi in sorted(gt_frames):
        where = f"video {vi} ({video_name(gt.videos[vi])}) frame {fi}"
        gt_insts = gt_frames[(vi, fi)]
        pr_insts = pr_frames.get((video_map[vi], fi), [])
        gt_ids = [gt_track_ids[id(i.track)] for i in gt_insts]
        pr_ids = [None if i.track is None else pr_track_ids[id(i.track)] for i in pr_insts]
        frames.append(
            TrackingFrame(
                gt_ids=gt_ids,
                gt_points=instance_points(gt_insts, node_names, where),
                pr_ids=pr_ids,
                pr_points=instance_points(pr_insts, node_names, where),
                frame_idx=fi,
                video_idx=vi,
            )
        )
    if not frames:
        raise ValueError("The ground-truth labels have no labelled frames to evaluate")
    return evaluate_tracking_frames(
        frames,
        match=match,
        max_distance=max_distance,
        oks_threshold=oks_threshold,
        oks_stddev=oks_stddev,
    )


def save_tracking_metrics(metrics: dict[str, float | int], json_path: str | os.PathLike) -> None:
    """Write the tracking metrics as JSON, atomically."""
    missing = [k for k in METRIC_KEYS if k not in metrics]
    if missing:
        raise ValueError(f"Tracking metrics for {json_path} lack keys {missing}")
    write_json_atomic(json_path, metrics, why_null=tracking_null_reasons(metrics))


class DuplicateTrackError(ValueError):
    """One track id used by two instances of the same frame: identities are ambiguous."""


def _count_fragmentations(matched: list[bool]) -> int:
    """Times a present track goes from matched to unmatched and is matched again later."""
    run = np.asarray(matched, dtype=bool)
    if run.sum() == 0:
        return 0
    last = np.nonzero(run)[0][-1]
    run = run[: last + 1]
    return int((run[:-1] & ~run[1:]).sum())


def _centroids(points: np.ndarray) -> np.ndarray:
    """Mean of each instance's visible points, ``(n, 2)``; NaN where none is visible."""
    if len(points) == 0:
        return np.zeros((0, 2))
    visible = ~np.isnan(points).any(axis=-1, keepdims=True)
    total = np.where(visible, points, 0.0).sum(axis=1)
    count = visible.sum(axis=1)
    return np.divide(total, count, out=np.full_like(total, np.nan), where=count > 0)


def _points(points: np.ndarray, n: int, what: str) -> np.ndarray:
    """Validate ``(n, n_nodes, 2)`` float points (empty allowed)."""
    arr = np.asarray(points, dtype=np.float64)
    if n == 0 and arr.size == 0:
        return arr.reshape(0, arr.shape[1] if arr.ndim == 3 else 1, 2)
    if arr.ndim != 3 or arr.shape[-1] != 2 or arr.shape[0] != n:
        raise ValueError(f"{what}: expected points of shape ({n}, n_nodes, 2), got {arr.shape}")
    return arr


def _check_unique(ids: list[Hashable], what: str) -> None:
    """Raise if a track id occurs twice in one frame."""
    seen: set[Hashable] = set()
    for i in ids:
        if i in seen:
            raise DuplicateTrackError(f"{what}: track {i!r} is used by more than one instance")
        seen.add(i)


def _track_ids(labels: sio.Labels) -> dict[int, tuple[int, str]]:
    """Map each Track object (by identity) to ``(index, name)``: unique, and readable in errors.

    Tracks are compared by identity, not name, so two tracks that share a name stay apart.
    """
    ids = {id(t): (k, t.name) for k, t in enumerate(labels.tracks)}
    for lf in labels.labeled_frames:
        for inst in lf.instances:
            if inst.track is not None and id(inst.track) not in ids:
                ids[id(inst.track)] = (len(ids), inst.track.name)
    return ids
