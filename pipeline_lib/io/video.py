"""Opening videos (files or image folders) with errors that name the file."""

from __future__ import annotations

import os
from pathlib import Path

import sleap_io as sio

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".h5", ".hdf5")


class VideoError(ValueError):
    """A video that cannot be read; the message names the path."""


def open_video(path: str | os.PathLike) -> sio.Video:
    """Open a video file or a folder of images through sleap-io and check it has frames."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"Video not found: {path}")
    try:
        video = sio.load_video(str(path.resolve()))
        n_frames = video.shape[0] if video.shape is not None else 0
    except Exception as exc:
        raise VideoError(f"Could not open video {path}: {type(exc).__name__}: {exc}") from exc
    if not n_frames:
        raise VideoError(
            f"Video {path} has no readable frames: it is empty, or not a complete video file "
            "(a recording cut short before its index was written cannot be opened)"
        )
    return video
