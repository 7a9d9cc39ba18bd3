"""Rule track_batch: track several videos' predictions in one job (one interpreter and import;
:mod:`pipeline_lib.batch` stages, fingerprints and reports the videos)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline_lib.batch import run_batch


def track_batch(
    videos: Mapping[str, Mapping[str, Any]],
    tracker_files: Sequence[str] = (),
    code: str = "",
) -> dict[str, Any]:
    """Track each video of ``videos`` (id -> ``{"predictions", "options", "staged": {"slp",
    "csv", "analysis_h5"}, "outputs": {the same names}}``) into its staged files, linked to
    ``outputs``. A tracker is built per video, as a job per
    video would, so no state carries over from one video to the next."""
    from pipeline_lib.tracking.track import track_file

    def run_one(vid: str, item: Mapping[str, Any]) -> None:
        staged = item["staged"]
        track_file(
            videos[vid]["predictions"],
            staged["slp"],
            options=dict(videos[vid]["options"]),
            out_csv=staged["csv"],
            out_analysis_h5=staged["analysis_h5"],
        )

    items = {
        vid: {
            "inputs": [video["predictions"], *tracker_files],
            "params": {"options": dict(video["options"])},
            "staged": dict(video["staged"]),
            "outputs": dict(video["outputs"]),
        }
        for vid, video in videos.items()
    }
    return run_batch(items, run_one, code, what="tracks")
