"""Empty and suspicious results, each stated with its likely cause and the setting to change.

A run can finish with numbers that say nothing: no instance found, none matched the ground
truth, NaN metrics, or far more tracks than animals. A table cell reading ``n/a`` or ``0`` does
not tell a user what to do, so the report lists these as warnings at the top of its summary
page (and in the job log), each naming the model, split or video and the knob.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

#: With no expected number of animals, a video with more than this many tracks per animal
#: seen at once is flagged.
TRACKS_PER_ANIMAL_LIMIT = 2

PEAK_HINT = (
    "lower inference.peak_threshold, or train longer (an undertrained model gives weak peaks)"
)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and not math.isfinite(value))


def pose_warnings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Warnings for evaluated models: empty split, nothing predicted, nothing matched, NaN."""
    out = []
    for r in rows:
        where = f"{r['model']} on {r['split']}"
        n_gt, n_pred, n_matched = r.get("n_gt_instances"), r.get("n_pred_instances"), r["n_matched"]
        if not r.get("n_frames"):
            out.append(
                f"{where}: no labelled frames to evaluate; raise the dataset's "
                f"{'test' if r['split'] == 'test' else 'validation'}_fraction to get metrics"
            )
        elif not n_pred:
            out.append(f"{where}: no instance predicted on {r['n_frames']} frames; {PEAK_HINT}")
        elif not n_matched:
            out.append(
                f"{where}: 0 of {n_gt} ground-truth instances matched ({n_pred} predicted); "
                f"{PEAK_HINT}, and check the skeleton matches the labels"
            )
        elif any(_missing(r.get(k)) for k in ("mOKS", "mAP")):
            out.append(
                f"{where}: mOKS or mAP is NaN with {n_matched} matches; see its metrics file"
            )
    return out


def expected_tracks_flag(row: Mapping[str, Any], expected: int | None) -> str | None:
    """Why a video's track count looks wrong, or None. With ``expected`` animals known (the
    video's or tracking's ``max_tracks``) any excess counts; otherwise more than
    TRACKS_PER_ANIMAL_LIMIT tracks per animal seen at once."""
    n_tracks = row.get("n_tracks") or 0
    if expected is not None:
        if n_tracks > expected:
            return (
                f"{n_tracks} tracks for {expected} animal{'s' if expected > 1 else ''}: identities "
                "broke up; check the "
                "tracker settings (tracking.window_size, tracking.max_gap)"
            )
        return None
    seen = row.get("max_instances_per_frame") or 0
    if seen and n_tracks > TRACKS_PER_ANIMAL_LIMIT * seen:
        return (
            f"{n_tracks} tracks while at most {seen} animals are seen in a frame: identities "
            "broke up; set tracking.max_tracks (or a manifest's max_tracks) to the number of "
            "animals"
        )
    return None


def video_warnings(rows: Sequence[Mapping[str, Any]], peak_threshold: float | None) -> list[str]:
    """Warnings for predicted/tracked videos: no instance at all, too many tracks."""
    out = []
    now = "" if peak_threshold is None else f" (now {peak_threshold:g})"
    hint = PEAK_HINT.replace("peak_threshold", "peak_threshold" + now, 1)
    for r in rows:
        if not r.get("n_instances"):
            # frames without an instance are not written, so an empty result has no frames
            out.append(f"{r['video']}: no instance predicted in any frame; {hint}")
        if r.get("track_flag"):
            out.append(f"{r['video']}: {r['track_flag']}")
    return out


def tracking_warnings(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Tracking metrics that could not be computed (no prediction or no ground truth)."""
    return [
        f"{r['video']}: MOTA/IDF1 are NaN: no tracked instance or no ground truth to compare; "
        "see the video's warnings above"
        for r in rows
        if _missing(r.get("mota")) or _missing(r.get("idf1"))
    ]


def all_warnings(
    pose_rows: Sequence[Mapping[str, Any]],
    video_rows: Sequence[Mapping[str, Any]],
    tracking_rows: Sequence[Mapping[str, Any]],
    peak_threshold: float | None = None,
) -> list[str]:
    """Every warning of a run, pose first, in a stable order."""
    return [
        *pose_warnings(pose_rows),
        *video_warnings(video_rows, peak_threshold),
        *tracking_warnings(tracking_rows),
    ]
