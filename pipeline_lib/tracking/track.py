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
    save_labels(tracked, out_slp)
    if out_csv is not None:
        save_table_csv(tracked, out_csv)
    if out_analysis_h5 is not None:
        save_analysis_h5(tracked, out_analysis_h5)
    used = {
        id(i.track) for lf in tracked.labeled_frames for i in lf.instances if i.track is not None
    }
    return {
        "n_frames": len(tracked.labeled_frames),
        "n_instances": sum(len(lf.instances) for lf in tracked.labeled_frames),
        "n_tracks": len(used),
    }
