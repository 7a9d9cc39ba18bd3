"""Reading the files a report is built from, with errors that name the file and the key.

The report is the last step of a long run; a metrics file with a missing or renamed key must
fail with a message that says which file and which key, not with a bare ``KeyError``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline_lib.evaluation.tracking_metrics import METRIC_KEYS
from pipeline_lib.io.labels import load_labels

TRAINING_LOG_COLUMNS = ("epoch", "train_loss", "val_loss")
TRACKING_KEYS = ("mota", "idf1", "id_switches", "hota")
# Every other key the tracking metrics file carries; read when present.
TRACKING_OPTIONAL_KEYS = tuple(k for k in METRIC_KEYS if k not in TRACKING_KEYS)


class ReportInputError(ValueError):
    """An input of the report that cannot be used; the message names the file and key."""


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """Load a JSON object; ``null`` metrics (and the bare NaN of files older than the strict
    writer) are read as "no value"."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(f"Metrics file not found: {path}")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ReportInputError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ReportInputError(f"{path} must hold a JSON object, got {type(data).__name__}")
    return data


def _get(data: Mapping[str, Any], dotted: str, path: str | os.PathLike) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise ReportInputError(f"{path}: missing key '{dotted}'")
        node = node[part]
    return node


def _number(value: Any, key: str, path: str | os.PathLike) -> int | float | None:
    """A metric as a number (counts stay integers); None (JSON null) stays None, anything
    non-numeric is an error."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportInputError(f"{path}: key '{key}' must be a number, got {value!r}")
    return value if isinstance(value, int) else float(value)


def split_pose_key(key: str) -> tuple[str, str]:
    """``"model/split"`` -> ``("model", "split")``."""
    model, sep, split = key.rpartition("/")
    if not sep or not model or not split:
        raise ReportInputError(f"Pose metrics key {key!r} must look like 'model/split'")
    return model, split


def load_pose_row(key: str, path: str | os.PathLike) -> dict[str, Any]:
    """One row of the pose table from a ``metrics.{split}.json`` written by evaluate_model."""
    model, split = split_pose_key(key)
    data = read_json(path)
    fields = {
        "n_frames": "n_frames",
        "n_gt_instances": "n_gt_instances",
        "n_pred_instances": "n_pred_instances",
        "n_matched": "n_matched",
        "mOKS": "mOKS",
        "mAP": "oks_voc.mAP",
        "mAR": "oks_voc.mAR",
        "dist_p50": "distance.p50",
        "dist_p90": "distance.p90",
        "mPCK": "pck.mPCK",
    }
    row: dict[str, Any] = {"model": model, "split": split}
    for name, dotted in fields.items():
        value = _number(_get(data, dotted, path), dotted, path)
        row[name] = int(value) if name.startswith("n_") and value is not None else value
    return row


def load_tracking_row(video: str, path: str | os.PathLike) -> dict[str, Any]:
    """One row of the tracking table from a ``{video}.tracking_metrics.json``."""
    data = read_json(path)
    row: dict[str, Any] = {"video": video}
    for key in TRACKING_KEYS:
        row[key] = _number(_get(data, key, path), key, path)
    for key in TRACKING_OPTIONAL_KEYS:
        if key in data:
            row[key] = _number(data[key], key, path)
    return row


def load_training_log(path: str | os.PathLike) -> pd.DataFrame:
    """A ``training_log.csv`` with at least epoch, train_loss and val_loss columns."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(f"Training log not found: {path}")
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"Training log {path} is not a readable CSV: {exc}") from exc
    missing = [c for c in TRAINING_LOG_COLUMNS if c not in frame.columns]
    if missing:
        raise ReportInputError(
            f"Training log {path}: missing column(s) {missing}; has {list(frame.columns)}"
        )
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            converted = pd.to_numeric(frame[column], errors="coerce")
            if converted.isna().sum() > frame[column].isna().sum():
                raise ReportInputError(f"Training log {path}: column '{column}' is not numeric")
            frame[column] = converted
    return frame


def _finite(values: pd.Series) -> pd.Series:
    return values[values.apply(lambda v: v is not None and math.isfinite(v))]


def training_summary(model: str, frame: pd.DataFrame) -> dict[str, Any]:
    """Epochs run, best validation loss and its epoch, last train loss, wall time."""
    val = _finite(frame["val_loss"].astype(float))
    train = _finite(frame["train_loss"].astype(float))
    best_idx = val.idxmin() if len(val) else None
    elapsed = _finite(frame["elapsed_s"].astype(float)) if "elapsed_s" in frame else pd.Series()
    return {
        "model": model,
        "epochs": int(frame["epoch"].nunique()),
        "best_val_loss": float(val[best_idx]) if best_idx is not None else None,
        "best_epoch": int(frame.loc[best_idx, "epoch"]) if best_idx is not None else None,
        "final_train_loss": float(train.iloc[-1]) if len(train) else None,
        "elapsed_s": float(elapsed.max()) if len(elapsed) else None,
    }


def video_counts(video: str, path: str | os.PathLike) -> dict[str, Any]:
    """Frames, instances and tracks in a predicted or tracked ``.slp``."""
    labels = load_labels(path, require_videos=False)
    per_frame = [len(lf.instances) for lf in labels.labeled_frames]
    tracks = set()
    untracked = 0
    for lf in labels.labeled_frames:
        for inst in lf.instances:
            if inst.track is None:
                untracked += 1
            else:
                tracks.add(id(inst.track))
    n_instances = int(sum(per_frame))
    scores = [
        float(inst.score)
        for lf in labels.labeled_frames
        for inst in lf.instances
        if getattr(inst, "score", None) is not None
    ]
    return {
        "video": video,
        "mean_instance_score": sum(scores) / len(scores) if scores else None,
        "n_frames": len(per_frame),
        "n_instances": n_instances,
        "instances_per_frame": n_instances / len(per_frame) if per_frame else None,
        "max_instances_per_frame": max(per_frame) if per_frame else 0,
        "n_tracks": len(tracks),
        "n_untracked_instances": untracked,
    }
