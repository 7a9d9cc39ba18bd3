"""Frame selection strings such as ``"0-99,150,200-209"`` (inclusive ranges and single frames)."""

from __future__ import annotations

from collections.abc import Sequence


def parse_frame_selection(selection: str | None, n_frames: int) -> list[int]:
    """Sorted, de-duplicated frame indices of ``selection`` (all frames when None or empty).

    Raises a ValueError naming the offending part for malformed text or frames outside the
    video, so a typo is not silently turned into "predict nothing".
    """
    if selection is None or not str(selection).strip():
        return list(range(n_frames))
    frames: set[int] = set()
    for part in str(selection).split(","):
        part = part.strip()
        try:
            if "-" in part:
                start_text, end_text = part.split("-", 1)
                start, end = int(start_text), int(end_text)
            else:
                start = end = int(part)
        except ValueError:
            raise ValueError(
                f"Bad frame selection '{part}' in '{selection}': use e.g. 0-99,150"
            ) from None
        if start > end:
            raise ValueError(f"Frame range '{part}' runs backwards")
        if start < 0 or end >= n_frames:
            raise ValueError(f"Frames '{part}' are outside the video's 0-{n_frames - 1}")
        frames.update(range(start, end + 1))
    return sorted(frames)


def format_frame_selection(frames: Sequence[int]) -> str:
    """Frame indices as a selection string such as ``"56-127"`` or ``"3,10-12"`` (what
    :func:`parse_frame_selection` reads), short even for long runs."""
    parts: list[str] = []
    values = sorted(set(int(f) for f in frames))
    start = prev = None
    for f in values:
        if prev is not None and f == prev + 1:
            prev = f
            continue
        if start is not None:
            parts.append(str(start) if start == prev else f"{start}-{prev}")
        start = prev = f
    if start is not None:
        parts.append(str(start) if start == prev else f"{start}-{prev}")
    return ",".join(parts)
