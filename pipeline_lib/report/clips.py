"""Labelled video clips: a video's predictions drawn on its frames, as an MP4 a user can watch.

A table says how many tracks a video got; watching the animals keep (or trade) their colours
says whether they are right. sleap-io renders the clip (the same renderer and palette as the
report's example frames), so colours match between the two.
"""

from __future__ import annotations

import logging
import os

from pipeline_lib.io.atomic import atomic_path
from pipeline_lib.io.labels import load_labels
from pipeline_lib.report.frames import PALETTE

log = logging.getLogger(__name__)


def render_clip(
    slp_path: str | os.PathLike, out_mp4: str | os.PathLike, n_frames: int | None = None
) -> int:
    """Render the first ``n_frames`` frames (``None``: the whole video) of the video behind a
    predicted or tracked ``.slp`` with its skeletons in track colours; returns the number of
    frames written. The MP4 appears complete or not at all."""
    import sleap_io as sio

    labels = load_labels(slp_path, require_videos=True)
    if not labels.videos:
        raise ValueError(f"{slp_path}: no video to render a clip from")
    video = labels.videos[0]
    total = len(video)
    end = total if n_frames is None else min(total, int(n_frames))
    if end <= 0:
        raise ValueError(f"{slp_path}: video {video.filename} has no frames to render")
    fps = getattr(video.backend, "fps", None) if video.backend is not None else None
    with atomic_path(out_mp4) as tmp:  # keeps the .mp4 suffix the encoder goes by
        sio.render_video(
            labels,
            str(tmp),
            video=0,
            start=0,
            end=end,
            include_unlabeled=True,
            color_by="track" if labels.tracks else "instance",
            palette=PALETTE,
            fps=fps,
            show_progress=False,
        )
    log.info("Clip of %d frames written to %s", end, out_mp4)
    return end
