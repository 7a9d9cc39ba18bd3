"""Opening videos (files or image folders) with errors that name the file.

A recording cut short (a copy interrupted, a camera that crashed, a full disk) is common. In an
MP4 / MOV file the index of the frames (the ``moov`` box) is usually written last, so a cut
file has none and not a single frame decodes; libraries then say "moov atom not found" or
report zero frames. :func:`check_video_index` recognises that from the file's top-level boxes
and says what to do. A file whose index comes first (``-movflags +faststart``, streaming
cameras) still opens when its end is cut: prediction then goes up to where the data breaks.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import sleap_io as sio

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".h5", ".hdf5")


#: Containers of the ISO base media file format (MP4 and QuickTime), whose boxes are checked.
ISO_MEDIA_SUFFIXES = (".mp4", ".m4v", ".mov", ".3gp")


class VideoError(ValueError):
    """A video that cannot be read; the message names the path."""


def open_video(path: str | os.PathLike) -> sio.Video:
    """Open a video file or a folder of images through sleap-io and check it has frames."""
    path = Path(path)
    if not path.exists():
        raise VideoError(f"Video not found: {path}")
    check_video_index(path)
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


def check_video_index(path: str | os.PathLike) -> None:
    """Raise :class:`VideoError` naming ``path`` when it is an MP4 / MOV file without a complete
    index (``moov`` box): a file cut short before its index was written, where no frame can be
    decoded. Other files, and files whose layout is not recognised, pass unchecked."""
    path = Path(path)
    if path.suffix.lower() not in ISO_MEDIA_SUFFIXES or not path.is_file():
        return
    problem = _index_problem(path)
    if problem is not None:
        raise VideoError(f"Video {path} is an incomplete file (no index); copy it again: {problem}")


def _index_problem(path: Path) -> str | None:
    """Why the top-level boxes of an ISO media file lack a usable ``moov``, or None."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos = 0
        while pos + 8 <= size:
            fh.seek(pos)
            box_size, box_type = struct.unpack(">I4s", fh.read(8))
            if box_size == 1:  # 64-bit size after the type
                box_size = struct.unpack(">Q", fh.read(8))[0] if pos + 16 <= size else 0
            elif box_size == 0:  # the box runs to the end of the file
                box_size = size - pos
            if box_size < 8 or not box_type.isalnum():
                return None  # not a box layout we understand: let the decoder judge
            if box_type == b"moov":
                if pos + box_size > size:
                    return (
                        f"the file ends {pos + box_size - size} bytes into its index ('moov' box)"
                    )
                return None
            pos += box_size
    return (
        f"no index ('moov' box) in its {size} bytes; the recording or copy was cut short "
        "before the index at its end was written"
    )
