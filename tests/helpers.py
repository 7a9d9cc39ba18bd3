"""Small builders shared by several test files (imported as ``from helpers import ...``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from pipeline_lib.config.training_config import HEAD_NAMES

ROOT = Path(__file__).resolve().parents[1]

ALL_HEADS = HEAD_NAMES


def tiny_model_config(
    unet: dict | None = None,
    head: str = "single_instance",
    stride: int = 2,
    extra: dict | None = None,
    part_names: list[str] | None = None,
) -> dict:
    """A small sleap-nn-style ``model_config``: UNet with 4 filters and max stride 8, one head
    with confidence maps at ``stride``; ``unet`` overrides backbone fields and ``extra`` adds
    head sections (pafs, class maps, ...)."""
    backbone = {
        "in_channels": 1,
        "kernel_size": 3,
        "filters": 4,
        "filters_rate": 2.0,
        "max_stride": 8,
        "stem_stride": None,
        "middle_block": True,
        "up_interpolate": True,
        "stacks": 1,
        "convs_per_block": 2,
        "output_stride": stride,
    }
    backbone.update(unet or {})
    heads: dict = {k: None for k in ALL_HEADS}
    confmaps: dict = {"sigma": 2.5, "output_stride": stride}
    if part_names is not None:
        confmaps["part_names"] = part_names
    heads[head] = {"confmaps": confmaps, **(extra or {})}
    return {
        "init_weights": "default",
        "pretrained_backbone_weights": None,
        "pretrained_head_weights": None,
        "backbone_config": {"unet": backbone, "convnext": None, "swint": None},
        "head_configs": heads,
    }


#: sleap-nn's asset run directories (shared_data / "sleap_nn_assets/model_ckpts" / name), each
#: with a best.ckpt trained by sleap-nn on minimal_instance.pkg.slp.
SLEAP_NN_RUN_DIRS = [
    "minimal_instance_single_instance",
    "minimal_instance_centroid",
    "minimal_instance_centered_instance",
    "minimal_instance_bottomup",
    "minimal_instance_multiclass_bottomup",
    "minimal_instance_multiclass_centered_instance",
]


def reduced_demo_config(work: Path, epochs: int = 1) -> dict:
    """The workflow's demo made small enough for a test run in ``work``: 40-frame videos
    labelled every 2nd frame, and the project's model configs with 8-filter UNets trained
    ``epochs`` x 2 steps (written to ``work``). Early stopping is off, so every run trains
    exactly ``epochs`` epochs. Returns the pipeline config for the caller to adjust and write
    to ``work/config/config.yaml``."""
    (work / "config/models").mkdir(parents=True, exist_ok=True)
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["demo"].update({"n_frames": 40, "label_every": 2})
    config["inference"]["peak_threshold"] = 0.0  # a few training steps give weak but usable peaks
    for entry in config["models"].values():
        cfg = yaml.safe_load((ROOT / entry["config"]).read_text())
        cfg["model_config"]["backbone_config"]["unet"]["filters"] = 8
        tc = cfg["trainer_config"]
        tc.update(
            {
                "max_epochs": epochs,
                "min_train_steps_per_epoch": 2,
                "train_steps_per_epoch": 2,
                "enable_progress_bar": False,
            }
        )
        tc["early_stopping"]["stop_training_on_plateau"] = False
        (work / entry["config"]).write_text(yaml.safe_dump(cfg, sort_keys=False))
    return config


def snakemake_dry_run(*args: str) -> subprocess.CompletedProcess:
    """``snakemake -n --cores 1 ARGS`` on this project's workflow, output captured."""
    return subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "-n", "--cores", "1", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
