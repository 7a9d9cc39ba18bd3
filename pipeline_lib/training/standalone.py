"""A training run described by the sleap-nn config alone, as ``sleap-nn train config.yaml`` does.

Inside the workflow the DAG decides the splits and the run directory. Outside it a user's config
carries them: ``data_config.train_labels_path`` / ``val_labels_path`` (or a seeded
``validation_fraction`` split of the training files, or ``use_same_data_for_val``), and
``trainer_config.ckpt_dir`` / ``run_name`` for where the run goes. This module turns such a config
into the explicit inputs :func:`pipeline_lib.training.train.train_model` takes, writing the split
labels into the run directory (``labels_train_gt.slp``, ``labels_val_gt.slp``) so the run records
exactly what it was trained on.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline_lib.config import config_to_dict, load_training_config
from pipeline_lib.config.skeleton_fit import check_labels_fit
from pipeline_lib.data.split import merge_labels, split_labels
from pipeline_lib.io.atomic import write_json_atomic
from pipeline_lib.io.labels import save_labels
from pipeline_lib.training.run_dir import head_of

TRAIN_LABELS = "labels_train_gt.slp"
VAL_LABELS = "labels_val_gt.slp"
SPLIT_RECORD = "split.json"


@dataclass(frozen=True)
class StandaloneRun:
    """Explicit inputs of a config-only training run."""

    train_labels: Path
    val_labels: Path
    run_dir: Path
    seed: int


def run_dir_for(config: dict, now: float | None = None) -> Path:
    """``<ckpt_dir>/<run_name>``; ckpt_dir defaults to the working directory and run_name to
    ``<yymmdd_HHMMSS>.<model type>`` (sleap-nn's pattern), so two runs never share a folder."""
    tc = config["trainer_config"]
    name = tc.get("run_name")
    if not name:
        stamp = time.strftime("%y%m%d_%H%M%S", time.localtime(now))
        name = f"{stamp}.{head_of(config)[0]}"
    return Path(tc.get("ckpt_dir") or ".") / name


def prepare_standalone_run(
    config_path: str | os.PathLike,
    run_dir: str | os.PathLike | None = None,
    seed: int | None = None,
) -> StandaloneRun:
    """Resolve labels, validation split, seed and run directory from the config itself.

    The split seed is ``trainer_config.seed``, else ``seed``, else a random one; whichever it is
    is recorded in ``split.json`` beside the split files so the run can be repeated exactly.
    """
    user_cfg = load_training_config(config_path)
    cfg = config_to_dict(user_cfg)
    dc, tc = cfg["data_config"], cfg["trainer_config"]
    train_paths = _paths(dc.get("train_labels_path"))
    if not train_paths:
        raise ValueError(
            f"{config_path}: data_config.train_labels_path is empty; set it or pass --train"
        )
    for p in train_paths + _paths(dc.get("val_labels_path")):
        if not Path(p).exists():
            raise FileNotFoundError(f"{config_path}: labels file not found: {p}")
    # Skeletons and part names from the files' headers, before any labels are merged or split.
    check_labels_fit(user_cfg, train_paths + _paths(dc.get("val_labels_path")), str(config_path))
    split_seed = tc.get("seed") if tc.get("seed") is not None else seed
    if split_seed is None:
        split_seed = random.SystemRandom().randrange(2**31)
    out = Path(run_dir) if run_dir is not None else run_dir_for(cfg)
    out.mkdir(parents=True, exist_ok=True)
    train_out, val_out = out / TRAIN_LABELS, out / VAL_LABELS
    user_only = bool(dc.get("user_instances_only", True))
    val_paths = _paths(dc.get("val_labels_path"))
    if val_paths:
        save_labels(merge_labels(train_paths, user_only), train_out)
        save_labels(merge_labels(val_paths, user_only), val_out)
        how = "val_labels_path"
    elif dc.get("use_same_data_for_val"):
        merged = merge_labels(train_paths, user_only)
        save_labels(merged, train_out)
        save_labels(merged, val_out)
        how = "use_same_data_for_val"
    else:
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            split_labels(
                train_paths,
                train_out,
                val_out,
                Path(tmp) / "unused_test.slp",
                float(dc.get("validation_fraction", 0.1)),
                0.0,
                None,
                int(split_seed),
                user_only,
            )
        how = f"validation_fraction={dc.get('validation_fraction', 0.1)}"
    write_json_atomic(
        out / SPLIT_RECORD,
        {"seed": int(split_seed), "validation": how, "train_labels_path": train_paths},
    )
    return StandaloneRun(train_out, val_out, out, int(split_seed))


def _paths(value) -> list[str]:
    """A labels path option as a list (the guide allows one path or a list)."""
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [str(value)]
    return [str(v) for v in value]


def read_split_record(run_dir: str | os.PathLike) -> dict:
    """The seed and validation choice recorded by :func:`prepare_standalone_run`."""
    return json.loads((Path(run_dir) / SPLIT_RECORD).read_text())
