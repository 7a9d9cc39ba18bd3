"""The demo's accuracy targets: the line that tells whether the pipeline still works end to end.

On the synthetic demo a healthy pipeline reaches pose mAP >= 0.8 on the test split and
MOTA >= 0.95 on every demo video; a missing or non-finite metric counts as a failure so a broken
stage cannot pass silently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

POSE_MAP_TARGET = 0.8
MOTA_TARGET = 0.95


def _check(name: str, value: float | None, threshold: float) -> dict[str, Any]:
    passed = value is not None and math.isfinite(value) and value >= threshold
    return {"name": name, "value": value, "threshold": threshold, "passed": bool(passed)}


def check_demo_targets(
    pose_rows: Sequence[dict[str, Any]],
    tracking_rows: Sequence[dict[str, Any]],
    demo_models: Sequence[str],
    demo_videos: Sequence[str],
    pose_map_target: float = POSE_MAP_TARGET,
    mota_target: float = MOTA_TARGET,
) -> dict[str, Any] | None:
    """PASS/FAIL of the demo targets, or None when the run includes no demo model or video."""
    if not demo_models and not demo_videos:
        return None
    checks = []
    for model in demo_models:
        row = next((r for r in pose_rows if r["model"] == model and r["split"] == "test"), None)
        checks.append(
            _check(
                f"pose mAP of {model} on test", None if row is None else row["mAP"], pose_map_target
            )
        )
    for video in demo_videos:
        row = next((r for r in tracking_rows if r["video"] == video), None)
        checks.append(_check(f"MOTA of {video}", None if row is None else row["mota"], mota_target))
    return {"passed": all(c["passed"] for c in checks), "checks": checks}


def targets_line(result: dict[str, Any] | None) -> str:
    """One Markdown line: ``**Demo targets: PASS** (...)``."""
    if result is None:
        return "Demo targets: not applicable (no demo model or video in this run)."
    parts = []
    for c in result["checks"]:
        value = "missing" if c["value"] is None else f"{c['value']:.3f}"
        mark = "ok" if c["passed"] else "FAILED"
        parts.append(f"{c['name']} = {value} (>= {c['threshold']:g}: {mark})")
    verdict = "PASS" if result["passed"] else "FAIL"
    return f"**Demo targets: {verdict}** — " + "; ".join(parts)
