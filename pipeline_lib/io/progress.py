"""Progress reporting for long steps (decoding, caching, inference).

A thin wrapper over tqdm so every stage shows progress the same way: a live bar on a terminal and,
in Snakemake log files, a line every few seconds with the count and the rate.
"""

from __future__ import annotations

import sys
import threading

from tqdm import tqdm


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
