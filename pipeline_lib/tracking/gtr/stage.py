"""The ``train_tracker`` stage: train the tracking transformer on the workflow's tracked labels.

The pipeline config names a training config in DREEM's shape and the labels to train on; the
labels replace the config's own ``dataset`` file lists (each labels file's videos are the ones
it references), so one training config serves any project.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Sequence
from typing import Any

from pipeline_lib.config.yaml_io import load_yaml


def workflow_tracker_config(
    config_path: str | os.PathLike,
    train_labels: Sequence[str | os.PathLike],
    val_labels: Sequence[str | os.PathLike] = (),
) -> dict[str, Any]:
    """The training config of ``config_path`` with its datasets pointed at the given labels.

    Every other dataset option (crop size, anchors, clip length, augmentations, ...) is kept.
    Without ``val_labels`` the config's validation dataset is dropped rather than left pointing
    at files of another project.
    """
    data = load_yaml(config_path) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{config_path}: a tracker training config must be a mapping")
    data = copy.deepcopy(data)
    datasets = data.setdefault("dataset", {}) or {}
    data["dataset"] = datasets
    for key, labels in (("train_dataset", train_labels), ("val_dataset", val_labels)):
        if not labels:
            if key == "train_dataset":
                raise ValueError(f"{config_path}: no labels to train the tracker on")
            datasets.pop(key, None)
            continue
        section = dict(datasets.get(key) or datasets.get("train_dataset") or {})
        for stale in ("slp_files", "video_files", "dir"):
            section.pop(stale, None)
        section["slp_files"] = [os.fspath(p) for p in labels]
        if key == "val_dataset":
            section["mode"] = "val"
            section.pop("augmentations", None)
        datasets[key] = section
    return data


def run_train_tracker(
    config_path: str | os.PathLike,
    train_labels: Sequence[str | os.PathLike],
    val_labels: Sequence[str | os.PathLike],
    run_dir: str | os.PathLike,
    threads: int = 1,
    seed: int | None = None,
) -> dict[str, Any]:
    """Train into ``run_dir`` from ``config_path`` on ``train_labels`` (rule train_tracker)."""
    from pipeline_lib.tracking.gtr.training import train_tracker

    config = workflow_tracker_config(config_path, train_labels, val_labels)
    return train_tracker(config, run_dir, threads=threads, seed=seed)
