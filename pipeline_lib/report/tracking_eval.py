"""One call from two ``.slp`` files to a tracking-metrics JSON, for the evaluate_tracking rule.

Tracking metrics only need coordinates and identities, so the videos are not required to exist
(ground truth is often stored away from the footage).
"""

from __future__ import annotations

import os
from typing import Any

from pipeline_lib.io.labels import load_labels


def evaluate_tracking_files(
    gt_path: str | os.PathLike,
    pred_path: str | os.PathLike,
    out_json: str | os.PathLike,
    **kwargs: Any,
) -> dict[str, Any]:
    """Score the tracks of ``pred_path`` against the true identities in ``gt_path``.

    ``kwargs`` go to ``evaluate_tracking`` (e.g. ``match``, ``max_distance``).
    """
    from pipeline_lib.evaluation.tracking_metrics import evaluate_tracking, save_tracking_metrics

    gt = load_labels(gt_path, require_videos=False)
    pr = load_labels(pred_path, require_videos=False)
    metrics = evaluate_tracking(gt, pr, **kwargs)
    save_tracking_metrics(metrics, out_json)
    return metrics
