"""Options of the global tracking transformer's tracker, read strictly from DREEM's ``tracker:``.

The tracker turns the network's association logits into identities (see ``tracker.py``); these
options say how. They keep DREEM's names and meanings so a DREEM inference config can be used
as is: either the ``tracker:`` section itself or a whole config that contains one (the other
sections belong to the data, model and training code and are not read here).

A typo in a tracker option silently falling back to its default would change identities with
no sign, so unknown keys, wrong types and out-of-range values are errors naming the key, with
the closest valid key suggested. DREEM tracker options this tracker does not implement are
named as such rather than reported as typos.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline_lib.config.yaml_io import YamlFileError, parse_yaml
from pipeline_lib.tracking.options import (
    TrackerOptionsError,
    check_int,
    check_number,
    did_you_mean,
)

IOU_MODES = ("mult", "max")

# Keys of a whole DREEM config: seeing one of them (and no ``tracker``) means the caller passed
# a whole config without a tracker section, not a tracker section with typos.
_DREEM_TOP_LEVEL = (
    "model",
    "dataset",
    "dataloader",
    "trainer",
    "optimizer",
    "scheduler",
    "loss",
    "logging",
    "ckpt_path",
    "out_dir",
    "checkpointing",
    "runner",
)

# Options of recent DREEM trackers that this tracker does not have: refused by name.
_DREEM_UNSUPPORTED = (
    "distance_penalty_multiplier",
    "orientation_penalty_multiplier",
    "confidence_threshold",
    "temperature",
    "max_angle_diff",
    "front_nodes",
    "back_nodes",
    "enable_crop_saving",
    "verbose",
)


class GTRTrackerOptionsError(TrackerOptionsError):
    """A GTR tracker option that cannot be used; the message names the key."""


@dataclass(frozen=True)
class GTRTrackerOptions:
    """How association scores become tracks (DREEM's ``tracker:`` section).

    Time is counted in video frames (frame indices), not in processed frames: a file predicted
    on every 8th frame has gaps of 7 frames between consecutive processed frames, and
    ``max_gap`` and ``decay_time`` see them.

    Attributes:
        window_size: how many of its most recent instances each live track keeps as context
            for the network (DREEM's per-track queue). While every track is seen in every
            frame this is the last ``window_size`` frames; a track that goes missing keeps its
            last instances, so it can be recognised when it comes back (until ``max_gap``).
        use_vis_feats: give the network the image crops. ``False`` tracks from positions and
            time only: frames are then not even decoded.
        overlap_thresh: a query is only matched to a track whose trajectory score (the
            probability mass the network puts on that track's instances, in [0, 1]) exceeds
            this; otherwise it starts a new track. In [0, 1]: above 1 nothing could match.
        mult_thresh: DREEM's "weight threshold": the threshold for a track is
            ``overlap_thresh`` times the number of that track's instances in the window, so a
            track with much context must also win more of the query's probability.
        decay_time: weight ``decay_time ** (t - 1 - t_j)`` on the probability given to an
            instance of frame ``t_j`` when tracking frame ``t``: the previous frame counts
            fully, older evidence fades. In (0, 1]; ``None`` (or DREEM's 0) for no decay.
        iou: ``"mult"`` multiplies each trajectory score by the IoU of the query's box with
            the track's most recent box; ``"max"`` replaces it by ``max(score, IoU)``;
            ``None`` (or DREEM's ``""``) ignores boxes.
        max_center_dist: trajectory scores of tracks whose most recent centroid is farther
            from the query's centroid than this are set to 0. Always a fraction of the frame
            diagonal, in (0, 1] (0.1 on a 1024 x 1024 frame is 145 px): the network sees
            positions relative to the frame size, and one unit for every value avoids a rule
            that switches from fractions to pixels at some magnitude. ``None`` (or DREEM's 0)
            for no limit. Recent DREEM versions take pixels: divide those by the diagonal.
        persistent_tracking: keep the tracks across the chunks a long video is processed in
            (``GTRTracker(chunk_frames=...)``). ``False`` starts every chunk with no tracks,
            so its animals get new track names (no identity is claimed across chunks).
        max_gap: a track missing for more than this many consecutive video frames is
            retired: never matched again, its context dropped. ``None`` (DREEM's ``.inf``):
            tracks are never retired.
        max_tracks: at most this many live (unretired) tracks. Once reached, a query that
            would start a new track is forced onto the best-scoring live track not used in
            its frame (ties, e.g. all scores 0, go to the nearest). ``None``: no limit.
    """

    window_size: int = 8
    use_vis_feats: bool = True
    overlap_thresh: float = 0.01
    mult_thresh: bool = False
    decay_time: float | None = None
    iou: str | None = None
    max_center_dist: float | None = None
    persistent_tracking: bool = False
    max_gap: int | None = None
    max_tracks: int | None = None

    # DREEM's spellings of "off" are accepted and stored as None: ``iou: ""``,
    # ``decay_time: 0``, ``max_center_dist: 0``, ``max_gap: .inf`` and ``max_tracks: .inf``.
    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            object.__setattr__(self, f.name, _normalise(f.name, getattr(self, f.name)))
        _check_int("window_size", self.window_size, minimum=1)
        for key in ("use_vis_feats", "mult_thresh", "persistent_tracking"):
            _check_bool(key, getattr(self, key))
        _check_number("overlap_thresh", self.overlap_thresh, low=0.0, high=1.0)
        if self.decay_time is not None:
            _check_number("decay_time", self.decay_time, low=0.0, high=1.0, open_low=True)
        if self.max_center_dist is not None:
            _check_number(
                "max_center_dist",
                self.max_center_dist,
                low=0.0,
                high=1.0,
                open_low=True,
                unit=" (a fraction of the frame diagonal; divide a pixel distance by it)",
            )
        if self.iou is not None and self.iou not in IOU_MODES:
            raise GTRTrackerOptionsError(
                f"Tracker option 'iou' must be null, '', 'mult' or 'max'; got {self.iou!r}"
            )
        _check_int("max_gap", self.max_gap, minimum=0, optional=True)
        _check_int("max_tracks", self.max_tracks, minimum=1, optional=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> GTRTrackerOptions:
        """Options from a ``tracker:`` section, or from a whole DREEM config holding one."""
        if data is None:
            return cls()
        if not isinstance(data, Mapping):
            raise GTRTrackerOptionsError(
                f"Tracker options must be a mapping, got {type(data).__name__}"
            )
        if "tracker" in data:
            data = data["tracker"]
            if data is None:
                return cls()
            if not isinstance(data, Mapping):
                raise GTRTrackerOptionsError(
                    f"The config's 'tracker' section must be a mapping, got {type(data).__name__}"
                )
        elif any(key in _DREEM_TOP_LEVEL for key in data):
            raise GTRTrackerOptionsError(
                "The config has no 'tracker' section (it looks like a whole DREEM config, "
                f"with keys {', '.join(map(str, data))})"
            )
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key in valid:
                continue
            if key in _DREEM_UNSUPPORTED:
                raise GTRTrackerOptionsError(
                    f"Tracker option '{key}' is a DREEM option this tracker does not implement; "
                    f"remove it (supported options: {', '.join(valid)})"
                )
            raise GTRTrackerOptionsError(
                f"Unknown tracker option '{key}'{did_you_mean(key, valid)} "
                f"(valid options: {', '.join(valid)})"
            )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every option (for logs and resolved configs)."""
        return dataclasses.asdict(self)


def load_tracker_options(
    source: str | os.PathLike | Mapping[str, Any] | GTRTrackerOptions | None,
) -> GTRTrackerOptions:
    """Options from a YAML file (section or whole DREEM config), a mapping, or options."""
    if isinstance(source, GTRTrackerOptions):
        return source
    if source is None or isinstance(source, Mapping):
        return GTRTrackerOptions.from_dict(source)
    path = Path(source)
    try:
        text = path.read_text()
    except OSError as err:
        raise GTRTrackerOptionsError(f"Cannot read tracker config {str(path)!r}: {err}") from err
    try:
        data = parse_yaml(text, str(path))
    except YamlFileError as err:
        raise GTRTrackerOptionsError(f"Tracker config {str(path)!r}: {err.detail}") from None
    try:
        return GTRTrackerOptions.from_dict(data)
    except GTRTrackerOptionsError as err:
        raise GTRTrackerOptionsError(f"{path}: {err}") from err


def _normalise(key: str, value: Any) -> Any:
    """DREEM's ways of writing "off" -> None; everything else is checked as given."""
    if key == "iou" and isinstance(value, str):
        return None if value == "" else value.lower()
    if key in ("decay_time", "max_center_dist") and _is_number(value) and value == 0:
        return None
    if key in ("max_gap", "max_tracks") and _is_number(value) and value == math.inf:
        return None
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise GTRTrackerOptionsError(f"Tracker option '{key}' must be true or false, got {value!r}")


def _check_int(key: str, value: Any, minimum: int, optional: bool = False) -> None:
    check_int(key, value, minimum, optional, error=GTRTrackerOptionsError)


def _check_number(
    key: str, value: Any, low: float, high: float, open_low: bool = False, unit: str = ""
) -> None:
    check_number(key, value, low, high, open_low, unit, error=GTRTrackerOptionsError)
