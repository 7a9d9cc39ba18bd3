"""Models the workflow is given rather than trains: ``models.<name>.run_dir`` in the config.

A lab with a model from the SLEAP GUI, ``sleap-nn train``, SLEAP <= 1.4 or an earlier run of
this pipeline only wants to predict and track; such a model is an input of the DAG and is never
rebuilt. Three folder layouts are recognised here, in one place for the parse-time checks and
for loading (:func:`pipeline_lib.training.run_dir.load_trained_model`):

* ``pipeline`` -- ``training_config.yaml`` + ``best.ckpt``: this pipeline's run directories and
  sleap-nn's (same format; the checkpoint tensors are matched by position and shape);
* ``sleap_nn_json`` -- ``training_config.json`` in sleap-nn's format + ``best.ckpt``;
* ``sleap_legacy`` -- SLEAP <= 1.4: ``training_config.json`` + ``best_model.h5`` (Keras UNet),
  converted on load by :mod:`pipeline_lib.config.legacy` and
  :mod:`pipeline_lib.models.legacy_keras`.

Everything here reads configs only (no torch), so checking hundreds of videos' worth of config
stays fast, and every problem is a :class:`WorkflowConfigError` naming the key and the path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pipeline_lib.config.yaml_io import load_yaml
from pipeline_lib.workflow_support import WorkflowConfigError

YAML_CONFIG, JSON_CONFIG = "training_config.yaml", "training_config.json"
CKPT, KERAS_WEIGHTS = "best.ckpt", "best_model.h5"
#: Heads whose crops are centred on an anchor found by a centroid model.
_TOPDOWN_HEADS = ("centered_instance", "multi_class_topdown")


@dataclass(frozen=True)
class ModelFolder:
    """A recognised model folder: where its config and weights are and what it predicts."""

    path: str
    layout: str  # "pipeline", "sleap_nn_json" or "sleap_legacy"
    config_file: str
    weights_file: str
    model_type: str
    nodes: tuple[str, ...] | None  # skeleton node names, when the config records them
    anchor_part: str | None  # centroid / top-down heads: the node crops are centred on
    in_channels: int | None  # None for SLEAP <= 1.4 folders (read from the weights on load)
    evaluate_on: str | None = None  # labelled frames to evaluate it on (config evaluate_on)

    @property
    def files(self) -> list[str]:
        """The files that are the model (inputs of the jobs that use it)."""
        return [self.weights_file, self.config_file]


def folder_layout(folder: str | os.PathLike) -> tuple[str, Path, Path]:
    """(layout, config file, weights file) of a model folder.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds a training config but no weights, or no known layout; the message
            lists what the folder holds.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"model folder not found: {folder}")
    yaml_cfg, json_cfg = folder / YAML_CONFIG, folder / JSON_CONFIG
    ckpt, keras = folder / CKPT, folder / KERAS_WEIGHTS
    if yaml_cfg.is_file() and ckpt.is_file():
        return "pipeline", yaml_cfg, ckpt
    if json_cfg.is_file() and (ckpt.is_file() or keras.is_file()):
        if _is_legacy_json(json_cfg):
            if keras.is_file():
                return "sleap_legacy", json_cfg, keras
        elif ckpt.is_file():
            return "sleap_nn_json", json_cfg, ckpt
    holds = ", ".join(sorted(p.name for p in folder.iterdir())) or "nothing"
    if yaml_cfg.is_file() or json_cfg.is_file():
        raise ValueError(
            f"model folder {folder} has a training config but no weights: expected {CKPT} "
            f"(this pipeline, sleap-nn) or {KERAS_WEIGHTS} (SLEAP <= 1.4); it holds {holds}"
        )
    raise ValueError(
        f"{folder} is not a model folder this pipeline recognises: expected {YAML_CONFIG} + "
        f"{CKPT} (this pipeline or sleap-nn), {JSON_CONFIG} + {CKPT} (sleap-nn) or "
        f"{JSON_CONFIG} + {KERAS_WEIGHTS} (SLEAP <= 1.4); it holds {holds}"
    )


def _is_legacy_json(path: Path) -> bool:
    """SLEAP <= 1.4 configs have ``model``/``data`` sections, sleap-nn's ``model_config``."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not readable JSON: {exc}") from None
    return isinstance(data, dict) and "model_config" not in data


def read_folder_config(folder: str | os.PathLike) -> tuple[str, dict[str, Any]]:
    """(layout, sleap-nn style config dict) of a model folder; SLEAP <= 1.4 configs converted."""
    layout, cfg_path, _ = folder_layout(folder)
    if layout == "sleap_legacy":
        from pipeline_lib.config.legacy import convert_legacy_config

        return layout, convert_legacy_config(cfg_path)
    config = load_yaml(cfg_path) if layout == "pipeline" else json.loads(cfg_path.read_text())
    if not isinstance(config, dict) or not isinstance(config.get("model_config"), dict):
        raise ValueError(f"{cfg_path} has no model_config section")
    return layout, config


def inspect_model_folder(name: str, folder: str, base_dir: str | os.PathLike = ".") -> ModelFolder:
    """Check ``models.<name>.run_dir`` and read what the checks of the predictor need."""
    where = f"config models.{name}.run_dir"
    path = Path(base_dir) / folder
    try:
        layout, config = read_folder_config(path)
        _, cfg_path, weights = folder_layout(path)
        heads = [k for k, v in config["model_config"].get("head_configs", {}).items() if v]
        if len(heads) != 1:
            raise ValueError(f"{cfg_path} should configure exactly one head, found {heads}")
    except FileNotFoundError:
        raise WorkflowConfigError(f"{where}: model folder not found: {folder}") from None
    except Exception as exc:  # ConfigError, ValueError, YAML errors: all name the file
        raise WorkflowConfigError(f"{where}: {exc}") from None
    head = config["model_config"]["head_configs"][heads[0]]
    confmaps = head.get("confmaps") or {}
    skeletons = (config.get("data_config") or {}).get("skeletons") or []
    backbone = next(
        (v for v in (config["model_config"].get("backbone_config") or {}).values() if v), {}
    )
    channels = backbone.get("in_channels") if layout != "sleap_legacy" else None
    return ModelFolder(
        path=os.path.normpath(folder),
        layout=layout,
        config_file=os.path.normpath(os.path.join(folder, cfg_path.name)),
        weights_file=os.path.normpath(os.path.join(folder, weights.name)),
        model_type=heads[0],
        nodes=_node_names(skeletons[0]) if skeletons else None,
        anchor_part=confmaps.get("anchor_part"),
        in_channels=int(channels) if channels else None,
    )


def inspect_given_models(
    models: Mapping[str, Mapping[str, Any]], base_dir: str | os.PathLike = "."
) -> dict[str, ModelFolder]:
    """Every ``run_dir`` model of ``config models``, checked; also that every other model has
    what training needs, and that no model mixes the two."""
    given: dict[str, ModelFolder] = {}
    for name, entry in models.items():
        trains = [k for k in ("config", "dataset") if entry.get(k)]
        if not entry.get("run_dir"):
            if len(trains) != 2:
                raise WorkflowConfigError(
                    f"config models.{name}: give run_dir (a trained model folder) or config + "
                    "dataset (a model to train)"
                )
            if entry.get("evaluate_on"):
                raise WorkflowConfigError(
                    f"config models.{name}.evaluate_on: only for run_dir models; a trained "
                    "model is evaluated on its dataset's held-out splits"
                )
            continue
        if trains:
            raise WorkflowConfigError(
                f"config models.{name}: run_dir (a trained model) and {' + '.join(trains)} (a "
                "model to train) exclude each other; keep one"
            )
        folder = inspect_model_folder(name, entry["run_dir"], base_dir)
        evaluate_on = entry.get("evaluate_on")
        if evaluate_on and not (Path(base_dir) / evaluate_on).is_file():
            raise WorkflowConfigError(
                f"config models.{name}.evaluate_on: labels file not found: {evaluate_on}"
            )
        given[name] = replace(folder, evaluate_on=evaluate_on)
    return given


def _node_names(skeleton: Mapping[str, Any]) -> tuple[str, ...]:
    return tuple(n["name"] if isinstance(n, dict) else str(n) for n in skeleton.get("nodes", []))


def describe_trained_model(
    entry: Mapping[str, Any],
    datasets: Mapping[str, Any],
    base_dir: str | os.PathLike = ".",
    produced: Collection[str] = (),
) -> ModelFolder | None:
    """What :func:`check_topdown_pair` needs of a model the DAG trains: its type and anchor
    part from its config, its skeleton from its dataset's first labels file (when that exists
    already). None when the config does not load (reported by ``check_models``)."""
    from pipeline_lib.config import ConfigError, load_training_config, model_type
    from pipeline_lib.io.labels import LabelsError, read_skeleton_nodes

    base = Path(base_dir)
    try:
        cfg = load_training_config(base / entry["config"])
    except (ConfigError, OSError):
        return None
    head = model_type(cfg)
    confmaps = getattr(getattr(cfg.model_config.head_configs, head), "confmaps", None)
    labels = (datasets.get(entry.get("dataset")) or {}).get("labels") or []
    nodes = None
    if labels and os.path.normpath(labels[0]) not in produced:
        try:
            nodes = tuple(read_skeleton_nodes(base / labels[0]))
        except LabelsError:
            pass  # reported by check_labels_skeletons, naming the dataset
    return ModelFolder(
        path=str(entry["config"]),
        layout="trained",
        config_file=str(entry["config"]),
        weights_file="",
        model_type=head,
        nodes=nodes,
        anchor_part=getattr(confmaps, "anchor_part", None),
        in_channels=None,
    )


def check_topdown_pair(predictor: Sequence[str], models: Mapping[str, ModelFolder]) -> None:
    """A centroid model and the top-down model after it must agree on the skeleton and on the
    anchor part, or the crops are centred on another point than the one the model learnt.
    ``models``: the predictor's given models and, when one of them is trained here, the other
    (:func:`describe_trained_model`)."""
    if len(predictor) != 2 or not all(name in models for name in predictor):
        return
    centroid, topdown = (models[n] for n in predictor)
    if centroid.model_type != "centroid" or topdown.model_type not in _TOPDOWN_HEADS:
        return
    pair = f"config predictor.models: {predictor[0]} ({centroid.path}) and {predictor[1]} ({topdown.path})"
    if centroid.nodes and topdown.nodes and centroid.nodes != topdown.nodes:
        raise WorkflowConfigError(
            f"{pair} have different skeletons: nodes {list(centroid.nodes)} vs "
            f"{list(topdown.nodes)}"
        )
    if centroid.anchor_part != topdown.anchor_part:
        raise WorkflowConfigError(
            f"{pair} use different anchor parts: {centroid.anchor_part!r} vs "
            f"{topdown.anchor_part!r} (null = the centre of the instance's bounding box)"
        )


def check_evaluate_on(given: Mapping[str, ModelFolder], predictor: Sequence[str]) -> None:
    """Only the predictor's last model is evaluated, with the whole predictor running (so a
    top-down pair is scored end to end); ``evaluate_on`` anywhere else would be ignored."""
    for name, folder in given.items():
        if folder.evaluate_on and (not predictor or name != predictor[-1]):
            raise WorkflowConfigError(
                f"config models.{name}.evaluate_on: only the predictor's last model is "
                f"evaluated (with the whole predictor {list(predictor)}); move evaluate_on there"
            )


def check_video_channels(
    given: Mapping[str, ModelFolder],
    predictor: Sequence[str],
    video_paths: Mapping[str, str],
    base_dir: str | os.PathLike = ".",
) -> None:
    """Videos must have channels the predictor's models can take.

    Grey and RGB convert into each other at inference, so only a model taking another number
    of channels (e.g. 2) needs the videos opened here (one header read each).
    """
    odd = [
        (n, given[n]) for n in predictor if n in given and given[n].in_channels not in (None, 1, 3)
    ]
    if not odd:
        return
    from pipeline_lib.io.video import open_video

    for vid, path in video_paths.items():
        try:
            shape = open_video(Path(base_dir) / path).shape
        except Exception:  # noqa: BLE001 -- an unreadable video is reported by its job
            continue
        channels = int(shape[-1]) if shape is not None and len(shape) == 4 else None
        for name, folder in odd:
            if channels is not None and channels != folder.in_channels:
                raise WorkflowConfigError(
                    f"video {vid} ({path}) has {channels} channel(s) but model {name} "
                    f"(config models.{name}.run_dir: {folder.path}) takes {folder.in_channels}; "
                    "only grey and RGB convert into each other"
                )
