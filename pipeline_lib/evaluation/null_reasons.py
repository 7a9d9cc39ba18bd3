"""Why a metric can have no value: the reasons written beside the nulls of a metrics file.

A metric that cannot be computed (a mean over no matched pair, a ratio with a zero
denominator) is NaN in memory and ``null`` in the JSON file (:mod:`pipeline_lib.io.json_io`);
these functions say, by key path, why each such key can be empty given the file's counts, so
someone reading ``metrics.test.json`` sees "no ground-truth instance matched a prediction"
instead of a bare ``null``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

NO_MATCH = "no ground-truth instance matched a prediction"


def pose_null_reasons(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Reasons for the nulls a pose metrics dict (``evaluate_frames``) can hold."""
    if not metrics.get("n_matched"):
        why = NO_MATCH
        if not metrics.get("n_pred_instances"):
            why += " (there are no predicted instances)"
        return {key: why for key in ("mOKS", "distance", "pck", "visibility", "per_node")}
    return {
        "distance": "no node visible in the ground truth has a visible matched prediction",
        "pck": "no node is visible in the matched ground-truth instances",
        "visibility.precision": "no node is predicted visible in the matched instances",
        "visibility.recall": "no node is visible in the matched ground-truth instances",
        "per_node": (
            "the node is never visible in the matched ground-truth instances, "
            "or never predicted where it is"
        ),
    }


def unmatched_warning(metrics: Mapping[str, Any], what: str) -> str | None:
    """The warning for pose metrics where no ground-truth instance matched a prediction (mOKS
    then has no value and mAP is 0), with the likely cause and the knob; None otherwise."""
    n_gt = int(metrics.get("n_gt_instances") or 0)
    if not n_gt or metrics.get("n_matched"):
        return None
    if not metrics.get("n_pred_instances"):
        cause = (
            "there are no predicted instances: lower --peak-threshold "
            "(inference.peak_threshold) or check that the model is trained"
        )
    else:
        cause = (
            f"the {metrics['n_pred_instances']} predicted instances lie elsewhere: check that "
            "the predictions belong to these videos and frames, and that the model is trained"
        )
    return f"{what}: 0 of {n_gt} ground-truth instances matched a prediction; {cause}"


def tracking_null_reasons(metrics: Mapping[str, Any]) -> dict[str, str]:
    """Reasons for the nulls a tracking metrics dict (``evaluate_tracking_frames``) can hold."""
    no_pred = "there are no predicted instances"
    return {
        "motp": no_pred if not metrics.get("num_pred") else NO_MATCH,
        "idp": no_pred,
        "idf1": "there are neither ground-truth nor predicted instances",
        "idr": "there are no ground-truth instances",
    }
