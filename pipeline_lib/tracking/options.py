"""Options of the classical tracker, loaded strictly from a plain dict (a config section).

A tracker option with a typo silently falling back to its default would change identities
without any sign, so unknown keys, wrong types and bad choices are errors that name the key
(and suggest the closest valid key).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_lib.config.loader import did_you_mean

METHODS = ("classical", "identity")
SIMILARITIES = ("oks", "iou", "centroid")


class TrackerOptionsError(ValueError):
    """A tracker option that cannot be used; the message names the key."""


@dataclass(frozen=True)
class TrackerOptions:
    """How the classical tracker matches instances to tracks.

    Windows and gaps are counted in processed frames: the frames of one video present in the
    labels, in frame order. A file predicted on every Nth frame therefore tracks as a video at
    1/N of the rate, and frames absent from the file do not count towards a gap.

    Attributes:
        method: ``"classical"`` (windowed Hungarian matching) or ``"identity"`` (keep the tracks a
            multi-class model assigned).
        window_size: how many past processed frames supply candidate instances of each track.
        similarity: ``"oks"`` (object keypoint similarity), ``"iou"`` (boxes of visible points)
            or ``"centroid"`` (distance of mean visible points, relative to animal size).
        min_similarity: matches scoring below this are rejected (the instance then starts a
            new track, or goes to a free track when ``max_tracks`` is reached).
        use_motion: shift each track's candidates by its constant velocity, estimated from its
            last two observations, to the current frame before comparing. Off by default: on
            the fly stress tests it removed as many switches (every 16th frame) as it added
            (every 8th frame); it does help animals that move straight (zebrafish).
        max_tracks: never create more tracks than this; ``None`` for no limit.
        max_gap: a track last seen more than this many processed frames ago is not matched
            (``None``: ``window_size``). Must not exceed ``window_size``.
        max_instances: keep only this many top-scoring instances per frame; ``None`` keeps all.
        oks_sigma: per-keypoint standard deviation of OKS, as a fraction of the animal's size
            (square root of its box area). Wide on purpose: it must cover how far a pose moves
            between frames, not labelling noise; 0.75 beat 0.1-0.5 and 1.0 on the fly tests.
    """

    method: str = "classical"
    window_size: int = 5
    similarity: str = "oks"
    min_similarity: float = 0.05
    use_motion: bool = False
    max_tracks: int | None = None
    max_gap: int | None = None
    max_instances: int | None = None
    oks_sigma: float = 0.75

    def __post_init__(self) -> None:
        _check_choice("method", self.method, METHODS)
        _check_choice("similarity", self.similarity, SIMILARITIES)
        check_int("window_size", self.window_size, minimum=1)
        check_int("max_tracks", self.max_tracks, minimum=1, optional=True)
        check_int("max_gap", self.max_gap, minimum=1, optional=True)
        check_int("max_instances", self.max_instances, minimum=1, optional=True)
        if not isinstance(self.use_motion, bool):
            raise TrackerOptionsError(
                f"Tracker option 'use_motion' must be true or false, got {self.use_motion!r}"
            )
        check_number("min_similarity", self.min_similarity, 0.0, 1.0)
        check_number("oks_sigma", self.oks_sigma, 0.0, math.inf, open_low=True)
        if self.max_gap is not None and self.max_gap > self.window_size:
            raise TrackerOptionsError(
                f"Tracker option 'max_gap' ({self.max_gap}) must not exceed 'window_size' "
                f"({self.window_size}): a track is only a candidate while it is in the window"
            )

    @property
    def effective_max_gap(self) -> int:
        """The gap limit in processed frames, with the ``None`` default resolved."""
        return self.window_size if self.max_gap is None else self.max_gap

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> TrackerOptions:
        """Build options from a config mapping; unknown keys and bad values raise an error."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise TrackerOptionsError(
                f"Tracker options must be a mapping, got {type(data).__name__}"
            )
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in valid:
                raise TrackerOptionsError(
                    f"Unknown tracker option '{key}'{did_you_mean(key, valid)} "
                    f"(valid options: {', '.join(valid)})"
                )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every option (for logs and resolved configs)."""
        return dataclasses.asdict(self)


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise TrackerOptionsError(
            f"Tracker option '{key}' must be one of {', '.join(choices)}; got {value!r}"
        )


def check_int(
    key: str,
    value: Any,
    minimum: int,
    optional: bool = False,
    error: type[TrackerOptionsError] = TrackerOptionsError,
) -> None:
    """An integer tracker option ``>= minimum`` (or null when ``optional``), else ``error``."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        allowed = "an integer or null" if optional else "an integer"
        raise error(f"Tracker option '{key}' must be {allowed}, got {value!r}")
    if value < minimum:
        raise error(f"Tracker option '{key}' must be >= {minimum}, got {value}")


def check_number(
    key: str,
    value: Any,
    low: float,
    high: float,
    open_low: bool = False,
    unit: str = "",
    error: type[TrackerOptionsError] = TrackerOptionsError,
) -> None:
    """A numeric tracker option within [low, high] ((low, high] with ``open_low``)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise error(f"Tracker option '{key}' must be a number, got {value!r}")
    too_low = value <= low if open_low else value < low
    if too_low or value > high:
        bound = f"> {low}" if open_low else f">= {low}"
        upper = "" if math.isinf(high) else f" and <= {high}"
        raise error(f"Tracker option '{key}' must be {bound}{upper}{unit}, got {value}")
