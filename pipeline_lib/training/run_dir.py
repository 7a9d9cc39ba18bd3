"""The run directory is the model: its layout, and loading a trained model back from it.

    {run_dir}/
        initial_config.yaml    the config as the user wrote it
        training_config.yaml   the resolved config (skeleton, crop size, channels, parameter count)
        best.ckpt              weights with the lowest validation loss (final output)
        training_log.csv       one row per epoch (final output)
        checkpoints/           working state while training: best/last checkpoints, the live log
                               and the fingerprint that decides whether a rerun may resume
        stopped.ckpt           training state when the GUI's controller sent "stop"
        viz/                   prediction images per epoch (visualize_preds_during_training;
                               kept only with keep_viz)

Inference needs nothing but this folder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import sleap_io as sio
import torch

from pipeline_lib.io.skeleton import skeleton_from_dict
from pipeline_lib.models.model import PoseModel, build_model
from pipeline_lib.models.pretrained import map_checkpoint_part, read_checkpoint_state

INITIAL_CONFIG = "initial_config.yaml"
TRAINING_CONFIG = "training_config.yaml"
BEST_CKPT = "best.ckpt"
TRAINING_LOG = "training_log.csv"
WORK_DIR = "checkpoints"
VIZ_DIR = "viz"
STOPPED_CKPT = "stopped.ckpt"


def head_of(config: dict) -> tuple[str, dict]:
    """The one non-null head of a config dict: (name, its section)."""
    heads = [(k, v) for k, v in config["model_config"]["head_configs"].items() if v is not None]
    if len(heads) != 1:
        raise ValueError(f"Expected exactly one head, found {[k for k, _ in heads]}")
    return heads[0]


def backbone_of(model_config: dict) -> tuple[str, dict]:
    """The one non-null backbone of a ``model_config`` dict: (name, its section)."""
    found = [(k, v) for k, v in model_config["backbone_config"].items() if v is not None]
    if len(found) != 1:
        raise ValueError(f"Expected exactly one backbone, found {[k for k, _ in found]}")
    return found[0]


def head_classes(head_config: dict) -> list[str]:
    """Class (track) names of a resolved multi-class head; empty for other heads."""
    for name in ("class_maps", "class_vectors"):
        sec = head_config.get(name)
        if sec is not None:
            return list(sec.get("classes") or [])
    return []


@dataclass
class TrainedModel:
    """A model loaded from its run directory, ready for inference."""

    run_dir: Path
    config: dict
    model: PoseModel
    skeleton: sio.Skeleton
    head: str
    head_config: dict

    @property
    def preprocessing(self) -> dict:
        return self.config["data_config"]["preprocessing"]

    @property
    def confmaps_config(self) -> dict:
        return self.head_config["confmaps"]

    @property
    def classes(self) -> list[str]:
        return head_classes(self.head_config)


def load_trained_model(
    run_dir: str | os.PathLike, device: str | torch.device = "cpu"
) -> TrainedModel:
    """Rebuild the network from ``training_config.yaml`` and load ``best.ckpt`` into it.

    A sleap-nn run directory works too: its config is the same format (YAML, or JSON in older
    versions), and its checkpoint's tensors are matched to ours by position and shape (see
    ``map_checkpoint_part``). A SLEAP <= 1.4 folder (``training_config.json`` +
    ``best_model.h5``) is converted (:mod:`pipeline_lib.given_models` tells the layouts apart).
    """
    from pipeline_lib.given_models import folder_layout, read_folder_config

    run_dir = Path(run_dir)
    cfg_path, ckpt_path = run_dir / TRAINING_CONFIG, run_dir / BEST_CKPT
    if not cfg_path.exists() and run_dir.is_dir():
        layout, cfg_path, ckpt_path = folder_layout(run_dir)
        if layout == "sleap_legacy":
            return _load_legacy_folder(run_dir, device)
    for p in (cfg_path, ckpt_path):
        if not p.exists():
            raise FileNotFoundError(
                f"Model folder {run_dir} has no {p.name}; was training finished?"
            )
    config = read_folder_config(run_dir)[1]
    head, head_cfg = head_of(config)
    _refuse_unsupported_head_options(head_cfg, cfg_path)
    skeletons = config["data_config"].get("skeletons") or []
    if not skeletons:
        raise ValueError(f"{cfg_path} has no data_config.skeletons; it is not a resolved config")
    skeleton = skeleton_from_dict(skeletons[0])
    n_nodes = (
        1
        if head == "centroid"
        else len(head_cfg["confmaps"].get("part_names") or skeleton.node_names)
    )
    pafs = head_cfg.get("pafs")
    crop = config["data_config"]["preprocessing"].get("crop_size")
    model = build_model(
        config["model_config"],
        n_nodes=n_nodes,
        n_edges=len(pafs["edges"]) if pafs else None,
        n_classes=len(head_classes(head_cfg)) or None,
        input_hw=(int(crop), int(crop)) if crop else None,
        load_pre_trained_weights=False,  # best.ckpt holds the trained weights
    )
    state = read_checkpoint_state(ckpt_path)
    weights: dict[str, torch.Tensor] = {}
    for part in ("backbone", "head"):
        mapped, _ = map_checkpoint_part(model, state, part, str(ckpt_path))
        weights.update(mapped)
    model.load_state_dict(weights)
    model.eval().to(device)
    return TrainedModel(run_dir, config, model, skeleton, head, head_cfg)


def _load_legacy_folder(folder: Path, device: str | torch.device) -> TrainedModel:
    """A SLEAP <= 1.4 model folder, converted: config from its JSON, weights from Keras."""
    from pipeline_lib.models.legacy_keras import load_legacy_model

    config, model, _ = load_legacy_model(folder)
    head, head_cfg = head_of(config)
    skeletons = config["data_config"].get("skeletons") or []
    if not skeletons:
        raise ValueError(f"{folder}: the SLEAP config records no skeleton")
    model.eval().to(device)
    return TrainedModel(folder, config, model, skeleton_from_dict(skeletons[0]), head, head_cfg)


#: Head options of newer sleap-nn versions that change what the network outputs; a run
#: directory using them would predict wrongly here, so it is refused instead.
_OUTPUT_CHANGING_HEAD_OPTIONS = ("use_sigmoid_activation",)


def _refuse_unsupported_head_options(head_cfg: dict, cfg_path: Path) -> None:
    for section_name, section in head_cfg.items():
        for key in _OUTPUT_CHANGING_HEAD_OPTIONS:
            if isinstance(section, dict) and section.get(key):
                raise ValueError(
                    f"{cfg_path}: head option {section_name}.{key} is set; this pipeline does "
                    "not implement it, so the model's outputs would be misread"
                )
