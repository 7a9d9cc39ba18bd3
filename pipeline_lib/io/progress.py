"""Progress reporting for long steps (decoding, caching, inference).

A thin wrapper over tqdm so every stage shows progress the same way: a live bar on a terminal and,
in Snakemake log files, a line every few seconds with the count and the rate.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


class Progress:
    """Thread-safe counter with a tqdm bar on stderr; ``unit`` names what is counted."""

    def __init__(self, total: int | None, desc: str, unit: str = "frame") -> None:
        interactive = sys.stderr.isatty()
        self._bar = tqdm(
            total=total,
            desc=desc,
            unit=unit,
            file=sys.stderr,
            mininterval=0.5 if interactive else 10.0,
            dynamic_ncols=interactive,
            ascii=not interactive,
        )
        self._lock = threading.Lock()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more items."""
        with self._lock:
            self._bar.update(n)

    @property
    def rate(self) -> float | None:
        """Items per second so far, or None before anything was counted."""
        return self._bar.format_dict.get("rate")

    def close(self) -> None:
        """Print the final line."""
        self._bar.close()


def counted(items: list[T], desc: str, unit: str = "frame") -> Iterator[T]:
    """``items`` one by one with a :class:`Progress` over them (count, rate, ETA), ended even
    when the loop stops early; for loops such as tracking that have no batches of their own."""
    progress = Progress(len(items), desc, unit)
    try:
        for item in items:
            yield item
            progress.update()
    finally:
        progress.close()


def video_label(frames: Iterable) -> str:
    """The file name of the first frame's video, for a progress line ("track demo_0.mp4")."""
    for frame in frames:
        return os.path.basename(str(frame.video.filename))
    return "no frames"
