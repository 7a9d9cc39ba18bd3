"""File-level tracking: predictions ``.slp`` in, tracked ``.slp`` (and a tidy CSV) out.

This is what the ``track_video`` stage and the CLI call. It only needs an object with
``track(labels) -> labels``, so a learned tracker can be used through the same function.

Methods: ``classical`` and ``identity`` take :class:`TrackerOptions`; ``gtr`` (the trained
global tracking transformer) takes ``model`` (its run directory), optionally ``device``, and
any of its tracker options (DREEM's names, see
:class:`~pipeline_lib.tracking.gtr.config.GTRTrackerOptions`) to override the run's own. The
GTR options are routed to their own strict parser rather than added to ``TrackerOptions``:
several share a name with a classical option but not its meaning (``window_size`` counts a
track's recent instances, ``max_gap`` video frames rather than processed frames), and one
dataclass holding both would accept options the chosen method ignores.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping
from typing import Any, Protocol

import sleap_io as sio

from pipeline_lib.config.loader import did_you_mean
from pipeline_lib.io.labels import load_labels, save_labels
from pipeline_lib.io.tables import save_analysis_h5, save_table_csv
from pipeline_lib.tracking.classical import ClassicalTracker
from pipeline_lib.tracking.identity import IdentityTracker
from pipeline_lib.tracking.options import METHODS, TrackerOptions, TrackerOptionsError

log = logging.getLogger(__name__)

GTR_METHOD = "gtr"
ALL_METHODS = (*METHODS, GTR_METHOD)


class Tracker(Protocol):
    """Anything that assigns identities: returns new Labels, leaves its input unchanged."""

    def track(self, labels: sio.Labels) -> sio.Labels: ...


def build_tracker(options: Mapping[str, Any] | TrackerOptions | None) -> Tracker:
    """Make the tracker that ``options`` (a config mapping or parsed options) describes.

    ``{"method": "gtr", "model": RUN_DIR, "device": "auto", ...}`` loads a trained tracking
    transformer; the other keys override its tracker options.
    """
    if isinstance(options, Mapping) and options.get("method") == GTR_METHOD:
        return _build_gtr_tracker(options)
    if isinstance(options, Mapping) and "method" in options:
        method = options["method"]
        if method not in ALL_METHODS:
            hint = did_you_mean(method, ALL_METHODS)
            raise TrackerOptionsError(
                f"Tracker option 'method' must be one of {', '.join(ALL_METHODS)}; "
                f"got {method!r}{hint}"
            )
    if not isinstance(options, TrackerOptions):
        options = TrackerOptions.from_dict(options)
    if options.method == "classical":
        return ClassicalTracker(options)
    if options.method == "identity":
        return IdentityTracker()
    raise ValueError(f"No tracker for method {options.method!r}")  # pragma: no cover


def _build_gtr_tracker(options: Mapping[str, Any]) -> Tracker:
    """The GTR tracker of ``options['model']`` (a run directory) with the other keys as
    tracker-option overrides. Imported here: loading torch models is not free."""
    from pipeline_lib.tracking.gtr.inference import make_gtr_tracker

    rest = {k: v for k, v in options.items() if k not in ("method", "model", "device")}
    run_dir = options.get("model")
    if not run_dir:
        raise TrackerOptionsError(
            "Tracker method 'gtr' needs 'model': the run directory of a trained tracking "
            "transformer (pipeline-lib train-tracker)"
        )
    return make_gtr_tracker(run_dir, rest, device=options.get("device") or "auto")


def track_file(
    in_path: str | os.PathLike,
    out_slp: str | os.PathLike,
    options: Mapping[str, Any] | TrackerOptions | None = None,
    out_csv: str | os.PathLike | None = None,
    tracker: Tracker | None = None,
    out_analysis_h5: str | os.PathLike | None = None,
) -> dict[str, int]:
    """Track the predictions in ``in_path`` and write ``out_slp`` (and ``out_csv``, SLEAP's
    analysis HDF5 ``out_analysis_h5``) atomically.

    ``tracker`` overrides ``options`` (for trackers built elsewhere, e.g. from a trained
    model). Options are validated before the file is read, so a typo fails fast.
    Returns ``n_frames``, ``n_instances`` and ``n_tracks`` of the output.
    """
    if tracker is None:
        tracker = build_tracker(options)
    labels = load_labels(in_path, require_videos=False)
    tracked = tracker.track(labels)
    tracked.provenance = {**tracked.provenance, "tracker": tracker_provenance(options, tracker)}
    save_labels(tracked, out_slp)
    if out_csv is not None:
        save_table_csv(tracked, out_csv)
    if out_analysis_h5 is not None:
        save_analysis_h5(tracked, out_analysis_h5, out_slp)
    used = {
        id(i.track) for lf in tracked.labeled_frames for i in lf.instances if i.track is not None
    }
    summary = {
        "n_frames": len(tracked.labeled_frames),
        "n_instances": sum(len(lf.instances) for lf in tracked.labeled_frames),
        "n_tracks": len(used),
    }
    warn_suspicious_tracks(summary, tracked, in_path)
    return summary


def tracker_provenance(
    options: Mapping[str, Any] | TrackerOptions | None, tracker: Tracker
) -> dict[str, Any]:
    """How a tracked file was made, for its ``provenance["tracker"]``: the method, every option
    as the tracker resolved it (defaults included) and, for a trained tracker, its folder
    (absolute) and the sha256 of its config."""
    from pipeline_lib.provenance import model_record

    resolved = getattr(tracker, "options", None)
    values = dataclasses.asdict(resolved) if dataclasses.is_dataclass(resolved) else {}
    if isinstance(options, Mapping) and options.get("method") == GTR_METHOD:
        from pipeline_lib.tracking.gtr.run_config import TRACKER_CONFIG

        model = model_record(options["model"], TRACKER_CONFIG)
        return {"method": GTR_METHOD, "options": values, "model": model}
    if not values and options is not None:
        parsed = (
            options if isinstance(options, TrackerOptions) else TrackerOptions.from_dict(options)
        )
        values = parsed.to_dict()
    method = values.get("method") or type(tracker).__name__
    return {"method": method, "options": values, "model": None}


#: More tracks than this many times the most animals seen in one frame gets a warning.
TRACKS_PER_ANIMAL_WARNING = 2


def warn_suspicious_tracks(summary: dict[str, int], tracked: sio.Labels, source) -> None:
    """A warning, with the knobs, when tracking found no instance or made many more tracks
    than there are animals (identities then break at every gap or crossing)."""
    if summary["n_instances"] == 0:
        log.warning(
            "%s: no instances to track; the predictions are empty (see the predict step's "
            "warning: check --peak-threshold or whether the model is trained)",
            source,
        )
        return
    animals = max(len(lf.instances) for lf in tracked.labeled_frames)
    if summary["n_tracks"] > TRACKS_PER_ANIMAL_WARNING * animals:
        log.warning(
            "%s: %d tracks for at most %d animals per frame; identities break often. Set "
            "max_tracks to the number of animals, or raise window_size / lower "
            "min_similarity (tracker options)",
            source,
            summary["n_tracks"],
            animals,
        )
