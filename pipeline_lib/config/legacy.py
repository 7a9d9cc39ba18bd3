"""Convert a SLEAP <= 1.4 ``training_config.json`` into the sleap-nn layout this pipeline loads.

Why: users arrive with SLEAP-era projects whose models were configured in SLEAP's GUI. Converting
their ``training_config.json`` (or ``initial_config.json``) lets them retrain here, and lets a
legacy Keras model be rebuilt here to load its ``best_model.h5``
(:mod:`pipeline_lib.models.legacy_keras`). The result is a plain dict in sleap-nn's layout;
:func:`pipeline_lib.config.load_training_config` validates it as strictly as any YAML.

Strictness: every legacy key is either mapped or explicitly dropped below. A key that is neither
(a typo, or a field of a SLEAP version this table does not know) is reported with its dotted path,
so nothing is silently ignored. Missing keys take SLEAP's own defaults (not sleap-nn's, which
differ, e.g. 100 vs 10 epochs). Only UNet backbones convert, as in sleap-nn. Lossy conversions of
settings that are switched on are logged as warnings.

Mapping (legacy key -> sleap-nn key):

data.labels
    training_labels               -> data_config.train_labels_path (one-item list; null -> [])
    validation_labels             -> data_config.val_labels_path (one-item list or null)
    validation_fraction           -> data_config.validation_fraction
    test_labels                   -> data_config.test_file_path
    skeletons (jsonpickle)        -> data_config.skeletons, decoded with sleap-io and written in
                                     the form of ``pipeline_lib.training.run_dir.skeleton_to_dict``
    split_by_inds, training_inds, validation_inds, test_inds: dropped (index-based splits are not
        supported; a warning is logged when split_by_inds is true); search_path_hints: dropped
data.preprocessing
    ensure_rgb / ensure_grayscale -> data_config.preprocessing.ensure_rgb / ensure_grayscale;
                                     ensure_rgb also sets backbone in_channels to 3 (else 1)
    input_scaling                 -> data_config.preprocessing.scale
    resize_and_pad_to_target + target_height / target_width
                                  -> preprocessing.max_height / max_width (SLEAP's aspect-preserving
                                     resize-and-pad; null when resize_and_pad_to_target is false)
    imagenet_mode                 -> must be null (it only served pretrained encoders)
    pad_to_stride                 -> dropped (frames are always padded to max_stride here)
data.instance_cropping
    crop_size                     -> data_config.preprocessing.crop_size
    crop_size_detection_padding   -> data_config.preprocessing.crop_padding
                                     (min_crop_size is set to 0: SLEAP has no minimum)
    center_on_part                -> anchor_part of the centroid / centered_instance /
                                     multi_class_topdown confmaps head when the head has none
model.backbone
    unet.{filters, filters_rate, max_stride, stem_stride, middle_block, up_interpolate, stacks}
                                  -> model_config.backbone_config.unet (same names);
                                     kernel_size 3 and convs_per_block 2 (fixed in SLEAP)
    unet.output_stride            -> the finest output_stride of the map heads (SLEAP builds the
                                     decoder down to it; the two agree in SLEAP-written files)
    leap / hourglass / resnet / pretrained_encoder -> error (only UNet is supported)
model.heads (one non-null)        -> model_config.head_configs
    single_instance.{part_names, sigma, output_stride} -> single_instance.confmaps
    centroid.{anchor_part, sigma, output_stride}        -> centroid.confmaps
    centered_instance.{anchor_part, part_names, sigma, output_stride, loss_weight}
                                                        -> centered_instance.confmaps
    multi_instance.confmaps / .pafs{edges, sigma, output_stride, loss_weight}
                                                        -> bottomup.confmaps / .pafs
    multi_class_bottomup.confmaps / .class_maps{classes, sigma, output_stride, loss_weight}
                                                        -> multi_class_bottomup (same names)
    multi_class_topdown.confmaps / .class_vectors{classes, num_fc_layers, num_fc_units,
        global_pool, output_stride, loss_weight}        -> multi_class_topdown (same names)
    offset_refinement: dropped (refinement happens at inference here); loss_weight of the
        single-head models single_instance / centroid: dropped (nothing to weigh against)
model.base_checkpoint: dropped (warning when set; load its best_model.h5 with
    ``pipeline_lib.models.legacy_keras.load_keras_weights`` instead)
optimization
    batch_size                    -> trainer_config.train_data_loader / val_data_loader.batch_size
    online_shuffling              -> trainer_config.train_data_loader.shuffle
    preload_data                  -> data_config.data_pipeline_fw = torch_dataset_cache_img_memory
                                     (true) or torch_dataset (false)
    epochs                        -> trainer_config.max_epochs
    batches_per_epoch             -> trainer_config.train_steps_per_epoch
    min_batches_per_epoch         -> trainer_config.min_train_steps_per_epoch
    optimizer ("adam")            -> trainer_config.optimizer_name "Adam" (others: error)
    initial_learning_rate         -> trainer_config.optimizer.lr
    learning_rate_schedule (when reduce_on_plateau) -> trainer_config.lr_scheduler.
        reduce_lr_on_plateau{factor: reduction_factor, threshold: plateau_min_delta,
        threshold_mode: "abs" (Keras' min_delta is absolute), patience: plateau_patience,
        cooldown: plateau_cooldown, min_lr: min_learning_rate}; otherwise no scheduler
    early_stopping.{stop_training_on_plateau, plateau_min_delta, plateau_patience}
                                  -> trainer_config.early_stopping.{stop_training_on_plateau,
                                     min_delta, patience}
    hard_keypoint_mining.*        -> trainer_config.online_hard_keypoint_mining.* (same names)
    prefetch, shuffle_buffer_size, val_batches_per_epoch, min_val_batches_per_epoch: dropped
        (tf.data settings; validation always covers the whole validation set here)
optimization.augmentation_config -> data_config.augmentation_config; an on/off flag becomes a
    probability (on = 1.0: SLEAP applied every enabled augmentation to every sample; off = 0.0).
    data_config.use_augmentations_train is true when any augmentation is on.
    rotate, rotation_min_angle / rotation_max_angle -> geometric.rotation_p, rotation_min / max
    scale, scale_min / scale_max                     -> geometric.scale_p, scale_min / scale_max
    translate, translate_min / translate_max (pixels) -> geometric.translate_p and
        translate_width / translate_height = max(|min|, |max|) / image side, the side being the
        crop_size or target_height / target_width; unknown side -> translation off, warning
    uniform_noise, uniform_noise_min_val / max_val    -> intensity.uniform_noise_p, _min / _max
        (grey levels / 255: SLEAP adds them to 0..255 pixels, images are 0..1 here)
    gaussian_noise, gaussian_noise_mean / stddev      -> intensity.gaussian_noise_p, _mean / _std
        (also / 255)
    contrast, contrast_min_gamma / max_gamma          -> intensity.contrast_p, contrast_min / max
        (approximation: SLEAP's gamma range becomes the linear contrast-factor range)
    brightness, brightness_min_val / max_val          -> intensity.brightness_p, brightness_min /
        max = 1 + value / 255 (approximation: SLEAP adds grey levels, this pipeline multiplies;
        the two agree for a white pixel)
    affine_p is 0 (each geometric part has its own probability)
    random_crop (+ height / width), random_flip (+ flip_horizontal): dropped (not supported
        here; warning when switched on)
outputs
    run_name_prefix + run_name + run_name_suffix -> trainer_config.run_name (empty -> null)
    runs_folder                   -> trainer_config.ckpt_dir (empty -> null)
    save_outputs                  -> trainer_config.save_ckpt
    checkpointing.best_model      -> trainer_config.model_ckpt.save_top_k (1, or 0 when false)
    checkpointing.latest_model    -> trainer_config.model_ckpt.save_last
    save_visualizations           -> trainer_config.visualize_preds_during_training
    keep_viz_images               -> trainer_config.keep_viz
    zmq.publish_updates + publish_address        -> trainer_config.zmq.publish_port (or null)
    zmq.subscribe_to_controller + controller_address -> trainer_config.zmq.controller_port
    zmq.controller_polling_timeout -> trainer_config.zmq.controller_polling_timeout
    tags, log_to_csv, zip_outputs, checkpointing.{initial_model, every_epoch, final_model},
        tensorboard.*: dropped (this pipeline always writes training_log.csv)
top level
    name, description             -> name, description
    filename                      -> filename (the source path when converting a file)
    sleap_version                 -> dropped (sleap_nn_version stays null)
"""

from __future__ import annotations

import difflib
import json
import logging
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline_lib.config.loader import ConfigError
from pipeline_lib.io.skeleton import skeleton_to_dict

log = logging.getLogger(__name__)

LEGACY_CONFIG_NAMES = ("training_config.json", "initial_config.json")
SUPPORTED_BACKBONE = "unet"
LEGACY_BACKBONES = ("leap", "unet", "hourglass", "resnet", "pretrained_encoder")
# legacy head name -> sleap-nn head name
HEAD_NAME_MAP = {
    "single_instance": "single_instance",
    "centroid": "centroid",
    "centered_instance": "centered_instance",
    "multi_instance": "bottomup",
    "multi_class_bottomup": "multi_class_bottomup",
    "multi_class_topdown": "multi_class_topdown",
}
_MISSING = object()
_GREY_LEVELS = 255.0


def convert_legacy_config(source: str | os.PathLike | Mapping[str, Any]) -> dict[str, Any]:
    """Convert a SLEAP <= 1.4 training config to a sleap-nn config dict.

    Args:
        source: path of a ``training_config.json`` / ``initial_config.json``, a SLEAP model
            folder holding one (``training_config.json`` preferred), or the parsed JSON.

    Returns:
        A dict with ``data_config``, ``model_config``, ``trainer_config`` and the descriptive
        top-level keys, ready for :func:`pipeline_lib.config.load_training_config`.

    Raises:
        FileNotFoundError: the path (or a config inside the folder) does not exist.
        ConfigError: not valid JSON, not a SLEAP config, unknown keys, a non-UNet backbone, not
            exactly one head, or values that cannot be converted; every problem is listed, each
            with its legacy key path, and the file is named.
    """
    data, name = _read(source)
    reader = _LegacyReader(data)
    out: dict[str, Any] = {}
    out["data_config"] = _data_config(reader)
    out["model_config"] = _model_config(reader, out["data_config"])
    out["trainer_config"] = _trainer_config(reader)
    out["name"] = _text_or_empty(reader.get("name", ""))
    out["description"] = _text_or_empty(reader.get("description", ""))
    reader.drop("sleap_version")
    legacy_filename = reader.get("filename", "")
    out["filename"] = name if name is not None else _text_or_empty(legacy_filename)
    out["sleap_nn_version"] = None

    reader.problems.extend(reader.unhandled())
    if reader.problems:
        raise ConfigError(reader.problems, name)
    return out


def find_legacy_config(folder: str | os.PathLike) -> Path:
    """The legacy config inside a SLEAP model folder (``training_config.json`` preferred)."""
    folder = Path(folder)
    for candidate in LEGACY_CONFIG_NAMES:
        if (folder / candidate).is_file():
            return folder / candidate
    raise FileNotFoundError(
        f"No SLEAP training config in {folder}: expected one of {', '.join(LEGACY_CONFIG_NAMES)}"
    )


# --------------------------------------------------------------------------- reading


def _read(source: str | os.PathLike | Mapping[str, Any]) -> tuple[Mapping[str, Any], str | None]:
    """The parsed legacy config and the file it came from (None for a mapping)."""
    if isinstance(source, Mapping):
        data: Any = source
        name = None
    elif isinstance(source, str | os.PathLike):
        path = Path(source)
        if path.is_dir():
            path = find_legacy_config(path)
        if not path.is_file():
            raise FileNotFoundError(f"SLEAP training config not found: {path}")
        name = str(path)
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError([f"not valid JSON: {exc}"], name) from None
    else:
        raise TypeError(
            f"convert_legacy_config expects a path or a mapping, got {type(source).__name__}"
        )
    if not isinstance(data, Mapping):
        raise ConfigError(
            [f"expected a JSON object at the top level, got {type(data).__name__}"], name
        )
    if not {"data", "model", "optimization", "outputs"} & set(data):
        raise ConfigError(
            [
                "not a SLEAP (<= 1.4) training config: none of the sections data, model, "
                f"optimization, outputs is present (found: {', '.join(map(str, data)) or 'none'})"
            ],
            name,
        )
    return data, name


class _LegacyReader:
    """Reads a legacy config by dotted key path and remembers every key it handled.

    ``get`` marks a key (and everything under it) as handled, ``section`` returns a nested
    mapping without marking its contents, ``drop`` marks keys that are deliberately ignored.
    ``unhandled`` then lists every key of the file nobody looked at. Problems are collected so
    the user sees all of them at once.
    """

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.handled: set[str] = set()
        self.problems: list[str] = []

    def _lookup(self, path: str) -> Any:
        node: Any = self.data
        for key in path.split("."):
            if not isinstance(node, Mapping) or key not in node:
                return _MISSING
            node = node[key]
        return node

    def has(self, path: str) -> bool:
        """True when the file has a key at ``path`` (even a null one)."""
        return self._lookup(path) is not _MISSING

    def get(self, path: str, default: Any = None) -> Any:
        """The value at ``path`` (``default`` when missing); marks it handled."""
        self.handled.add(path)
        value = self._lookup(path)
        return default if value is _MISSING else value

    def section(self, path: str) -> Mapping[str, Any] | None:
        """The mapping at ``path``; None when missing or null. Anything else is a problem."""
        value = self._lookup(path)
        if value is _MISSING or value is None:
            self.handled.add(path)
            return None
        if not isinstance(value, Mapping):
            self.handled.add(path)
            self.problems.append(f"{path}: expected an object (section), got {_found(value)}")
            return None
        return value

    def drop(self, *paths: str) -> None:
        """Mark keys as deliberately not converted."""
        self.handled.update(paths)

    def number(self, path: str, default: float | None) -> float | None:
        """A numeric value (or null); a wrong type is recorded as a problem."""
        value = self.get(path, default)
        if value is None or (isinstance(value, numbers.Real) and not isinstance(value, bool)):
            return value
        self.problems.append(f"{path}: expected a number, got {_found(value)}")
        return default

    def flag(self, path: str, default: bool) -> bool:
        """A boolean; a wrong type is recorded as a problem."""
        value = self.get(path, default)
        if isinstance(value, bool):
            return value
        self.problems.append(f"{path}: expected true or false, got {_found(value)}")
        return default

    def unhandled(self) -> list[str]:
        """One problem per key of the file that was neither converted nor dropped."""
        problems: list[str] = []
        self._walk(self.data, "", problems)
        return problems

    def _walk(self, node: Mapping[str, Any], prefix: str, problems: list[str]) -> None:
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            if path in self.handled:
                continue
            if self._has_handled_below(path):
                if isinstance(value, Mapping):
                    self._walk(value, path, problems)
                else:
                    problems.append(f"{path}: expected an object (section), got {_found(value)}")
                continue
            siblings = [p.rsplit(".", 1)[-1] for p in self.handled if _parent(p) == prefix]
            close = difflib.get_close_matches(str(key), siblings, n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                f"{path}: unknown SLEAP config key, not converted{hint} (remove it, or convert "
                "by hand if it matters)"
            )

    def _has_handled_below(self, path: str) -> bool:
        return any(p.startswith(path + ".") for p in self.handled)


def _parent(path: str) -> str:
    return path.rsplit(".", 1)[0] if "." in path else ""


def _found(value: Any) -> str:
    text = "null" if value is None else f"{type(value).__name__} {value!r}"
    return text if len(text) <= 60 else text[:57] + "..."


def _text_or_empty(value: Any) -> Any:
    return "" if value is None else value


def _path_list(value: Any) -> list[Any]:
    """A labels path as sleap-nn's list of paths (null / empty -> no files)."""
    if value is None or value == "":
        return []
    return list(value) if isinstance(value, list) else [value]


# --------------------------------------------------------------------------- data_config


def _data_config(r: _LegacyReader) -> dict[str, Any]:
    labels = "data.labels"
    r.drop(f"{labels}.search_path_hints", f"{labels}.training_inds")
    r.drop(f"{labels}.validation_inds", f"{labels}.test_inds")
    if r.flag(f"{labels}.split_by_inds", False):
        log.warning(
            "SLEAP config uses an index-based split (data.labels.split_by_inds); this pipeline "
            "splits by validation_fraction or val_labels_path instead"
        )
    val = _path_list(r.get(f"{labels}.validation_labels"))
    pre = "data.preprocessing"
    if r.get(f"{pre}.imagenet_mode") is not None:
        r.problems.append(
            f"{pre}.imagenet_mode: ImageNet input normalisation served SLEAP's pretrained "
            "encoders, which are not supported; set it to null"
        )
    r.drop(f"{pre}.pad_to_stride")
    resize = r.flag(f"{pre}.resize_and_pad_to_target", True)
    crop = "data.instance_cropping"
    preprocessing = {
        "ensure_rgb": r.flag(f"{pre}.ensure_rgb", False),
        "ensure_grayscale": r.flag(f"{pre}.ensure_grayscale", False),
        "max_height": r.get(f"{pre}.target_height") if resize else None,
        "max_width": r.get(f"{pre}.target_width") if resize else None,
        "scale": r.get(f"{pre}.input_scaling", 1.0),
        "crop_size": r.get(f"{crop}.crop_size"),
        "min_crop_size": 0,
        "crop_padding": r.get(f"{crop}.crop_size_detection_padding", 16),
    }
    if not resize:
        r.drop(f"{pre}.target_height", f"{pre}.target_width")
    preload = r.flag("optimization.preload_data", True)
    augmentation = _augmentation(r, preprocessing)
    return {
        "train_labels_path": _path_list(r.get(f"{labels}.training_labels")),
        "val_labels_path": val or None,
        "validation_fraction": r.get(f"{labels}.validation_fraction", 0.1),
        "test_file_path": r.get(f"{labels}.test_labels"),
        "data_pipeline_fw": "torch_dataset_cache_img_memory" if preload else "torch_dataset",
        "preprocessing": preprocessing,
        "use_augmentations_train": _any_augmentation(augmentation),
        "augmentation_config": augmentation,
        "skeletons": _skeletons(r, f"{labels}.skeletons"),
    }


def _skeletons(r: _LegacyReader, path: str) -> list[dict[str, Any]] | None:
    """SLEAP's jsonpickle skeletons as the plain dicts this pipeline writes into run dirs."""
    raw = r.get(path)
    if raw is None or raw == []:
        return None
    from sleap_io.io.skeleton import SkeletonDecoder

    try:
        decoded = SkeletonDecoder().decode(raw)
    except Exception as exc:  # the decoder raises many types on malformed jsonpickle
        r.problems.append(f"{path}: cannot decode the SLEAP skeleton ({type(exc).__name__}: {exc})")
        return None
    skeletons = decoded if isinstance(decoded, list) else [decoded]
    return [skeleton_to_dict(skeleton) for skeleton in skeletons]


# --------------------------------------------------------------------------- model_config


def _model_config(r: _LegacyReader, data_config: dict[str, Any]) -> dict[str, Any]:
    backbone = _unet(r, data_config)
    heads = _heads(r, backbone)
    if r.get("model.base_checkpoint") is not None:
        log.warning(
            "SLEAP config sets model.base_checkpoint; it is not converted: load that model's "
            "best_model.h5 with pipeline_lib.models.legacy_keras.load_keras_weights instead"
        )
    return {
        "init_weights": "default",
        "pretrained_backbone_weights": None,
        "pretrained_head_weights": None,
        "backbone_config": {"unet": backbone, "convnext": None, "swint": None},
        "head_configs": heads,
        "total_params": None,
    }


def _unet(r: _LegacyReader, data_config: dict[str, Any]) -> dict[str, Any]:
    chosen = [name for name in LEGACY_BACKBONES if r.section(f"model.backbone.{name}") is not None]
    if chosen and chosen != [SUPPORTED_BACKBONE]:
        others = [name for name in chosen if name != SUPPORTED_BACKBONE]
        r.problems.append(
            f"model.backbone.{others[0]}: only UNet backbones can be converted from SLEAP "
            f"(<= 1.4) configs, as in sleap-nn; found {', '.join(chosen)}. Retrain with a UNet "
            "or write a sleap-nn config for a convnext / swint backbone"
        )
    elif not chosen:
        r.problems.append(
            f"model.backbone: no backbone is set; expected model.backbone.{SUPPORTED_BACKBONE}"
        )
    unet = "model.backbone.unet"
    r.drop(f"{unet}.output_stride")  # replaced by the finest head stride in _heads
    return {
        "in_channels": 3 if data_config["preprocessing"]["ensure_rgb"] else 1,
        "kernel_size": 3,
        "filters": r.get(f"{unet}.filters", 64),
        "filters_rate": r.get(f"{unet}.filters_rate", 2.0),
        "max_stride": r.get(f"{unet}.max_stride", 16),
        "stem_stride": r.get(f"{unet}.stem_stride"),
        "middle_block": r.get(f"{unet}.middle_block", True),
        "up_interpolate": r.get(f"{unet}.up_interpolate", False),
        "stacks": r.get(f"{unet}.stacks", 1),
        "convs_per_block": 2,
        "output_stride": r.get(f"{unet}.output_stride", 1),
    }


def _heads(r: _LegacyReader, backbone: dict[str, Any]) -> dict[str, Any]:
    """The one head, renamed and reshaped; also sets the backbone's output_stride."""
    out: dict[str, Any] = {name: None for name in HEAD_NAME_MAP.values()}
    chosen = [name for name in HEAD_NAME_MAP if r.section(f"model.heads.{name}") is not None]
    if len(chosen) != 1:
        found = ", ".join(chosen) if chosen else "none"
        r.problems.append(
            f"model.heads: exactly one of {', '.join(HEAD_NAME_MAP)} must be set; found {found}"
        )
        return out
    legacy = chosen[0]
    base = f"model.heads.{legacy}"
    anchor = r.get("data.instance_cropping.center_on_part")
    if legacy == "single_instance":
        head = {"confmaps": _confmaps(r, base, anchor=None, parts=True, weight=False)}
    elif legacy == "centroid":
        head = {"confmaps": _confmaps(r, base, anchor=anchor, parts=False, weight=False)}
    elif legacy == "centered_instance":
        head = {"confmaps": _confmaps(r, base, anchor=anchor, parts=True, weight=True)}
    elif legacy == "multi_instance":
        head = {
            "confmaps": _confmaps(r, f"{base}.confmaps", anchor=None, parts=True, weight=True),
            "pafs": {
                "edges": r.get(f"{base}.pafs.edges"),
                "sigma": r.get(f"{base}.pafs.sigma", 15.0),
                "output_stride": r.get(f"{base}.pafs.output_stride", 1),
                "loss_weight": r.get(f"{base}.pafs.loss_weight", 1.0),
            },
        }
    elif legacy == "multi_class_bottomup":
        maps = f"{base}.class_maps"
        head = {
            "confmaps": _confmaps(r, f"{base}.confmaps", anchor=None, parts=True, weight=True),
            "class_maps": {
                "classes": r.get(f"{maps}.classes"),
                "sigma": r.get(f"{maps}.sigma", 5.0),
                "output_stride": r.get(f"{maps}.output_stride", 1),
                "loss_weight": r.get(f"{maps}.loss_weight", 1.0),
            },
        }
    else:  # multi_class_topdown
        vec = f"{base}.class_vectors"
        head = {
            "confmaps": _confmaps(r, f"{base}.confmaps", anchor=anchor, parts=True, weight=True),
            "class_vectors": {
                "classes": r.get(f"{vec}.classes"),
                "num_fc_layers": r.get(f"{vec}.num_fc_layers", 1),
                "num_fc_units": r.get(f"{vec}.num_fc_units", 64),
                "global_pool": r.get(f"{vec}.global_pool", True),
                # the class vectors read the bottleneck, which sits at max_stride
                "output_stride": r.get(f"{vec}.output_stride", backbone["max_stride"]),
                "loss_weight": r.get(f"{vec}.loss_weight", 1.0),
            },
        }
    out[HEAD_NAME_MAP[legacy]] = head
    map_strides = [
        sub["output_stride"]
        for key, sub in head.items()
        if key != "class_vectors" and isinstance(sub["output_stride"], int)
    ]
    if map_strides:
        backbone["output_stride"] = min(map_strides)
    return out


def _confmaps(
    r: _LegacyReader, base: str, anchor: Any, parts: bool, weight: bool
) -> dict[str, Any]:
    """A confmaps section; ``anchor`` is instance_cropping.center_on_part (None: no anchor)."""
    r.drop(f"{base}.offset_refinement")
    out: dict[str, Any] = {}
    if parts:
        out["part_names"] = r.get(f"{base}.part_names")
    if anchor is not None or r.has(f"{base}.anchor_part"):
        own = r.get(f"{base}.anchor_part")
        if own is not None and anchor is not None and own != anchor:
            r.problems.append(
                f"{base}.anchor_part: {own!r} disagrees with data.instance_cropping."
                f"center_on_part {anchor!r}; set both to the same body part"
            )
        out["anchor_part"] = own if own is not None else anchor
    out["sigma"] = r.get(f"{base}.sigma", 5.0)
    out["output_stride"] = r.get(f"{base}.output_stride", 1)
    if weight:
        out["loss_weight"] = r.get(f"{base}.loss_weight", 1.0)
    else:
        r.drop(f"{base}.loss_weight")
    return out


# --------------------------------------------------------------------------- trainer_config


def _trainer_config(r: _LegacyReader) -> dict[str, Any]:
    opt = "optimization"
    r.drop(f"{opt}.prefetch", f"{opt}.shuffle_buffer_size")
    r.drop(f"{opt}.val_batches_per_epoch", f"{opt}.min_val_batches_per_epoch")
    batch_size = r.get(f"{opt}.batch_size", 8)
    optimizer = r.get(f"{opt}.optimizer", "adam")
    if not isinstance(optimizer, str) or optimizer.lower() != "adam":
        r.problems.append(
            f"{opt}.optimizer: only 'adam' converts (to optimizer_name 'Adam'), got {optimizer!r}"
        )
    schedule = f"{opt}.learning_rate_schedule"
    scheduler: dict[str, Any] = {
        "step_lr": None,
        "reduce_lr_on_plateau": None,
        "cosine_annealing_warmup": None,
        "linear_warmup_linear_decay": None,
    }
    if r.flag(f"{schedule}.reduce_on_plateau", False):
        scheduler["reduce_lr_on_plateau"] = {
            "threshold": r.get(f"{schedule}.plateau_min_delta", 1e-6),
            "threshold_mode": "abs",
            "cooldown": r.get(f"{schedule}.plateau_cooldown", 0),
            "patience": r.get(f"{schedule}.plateau_patience", 10),
            "factor": r.get(f"{schedule}.reduction_factor", 0.1),
            "min_lr": r.get(f"{schedule}.min_learning_rate", 1e-8),
        }
    else:
        r.drop(schedule)
    stop = f"{opt}.early_stopping"
    mining = f"{opt}.hard_keypoint_mining"
    out = "outputs"
    r.drop(f"{out}.tags", f"{out}.log_to_csv", f"{out}.zip_outputs", f"{out}.tensorboard")
    ckpt = f"{out}.checkpointing"
    r.drop(f"{ckpt}.initial_model", f"{ckpt}.every_epoch", f"{ckpt}.final_model")
    run_name = "".join(
        str(part)
        for part in (
            r.get(f"{out}.run_name_prefix", ""),
            r.get(f"{out}.run_name"),
            r.get(f"{out}.run_name_suffix"),
        )
        if part is not None
    )
    return {
        "train_data_loader": {
            "batch_size": batch_size,
            "shuffle": r.get(f"{opt}.online_shuffling", True),
            "num_workers": 0,
        },
        "val_data_loader": {"batch_size": batch_size, "shuffle": False, "num_workers": 0},
        "model_ckpt": {
            "save_top_k": 1 if r.flag(f"{ckpt}.best_model", True) else 0,
            "save_last": r.get(f"{ckpt}.latest_model", False),
        },
        "min_train_steps_per_epoch": r.get(f"{opt}.min_batches_per_epoch", 200),
        "train_steps_per_epoch": r.get(f"{opt}.batches_per_epoch"),
        "visualize_preds_during_training": r.get(f"{out}.save_visualizations", True),
        "keep_viz": r.get(f"{out}.keep_viz_images", False),
        "max_epochs": r.get(f"{opt}.epochs", 100),
        "save_ckpt": r.get(f"{out}.save_outputs", True),
        "ckpt_dir": r.get(f"{out}.runs_folder", "models") or None,
        "run_name": run_name or None,
        "optimizer_name": "Adam",
        "optimizer": {"lr": r.get(f"{opt}.initial_learning_rate", 1e-4), "amsgrad": False},
        "lr_scheduler": scheduler,
        "early_stopping": {
            "min_delta": r.get(f"{stop}.plateau_min_delta", 1e-6),
            "patience": r.get(f"{stop}.plateau_patience", 10),
            "stop_training_on_plateau": r.get(f"{stop}.stop_training_on_plateau", False),
        },
        "online_hard_keypoint_mining": {
            "online_mining": r.get(f"{mining}.online_mining", False),
            "hard_to_easy_ratio": r.get(f"{mining}.hard_to_easy_ratio", 2.0),
            "min_hard_keypoints": r.get(f"{mining}.min_hard_keypoints", 2),
            "max_hard_keypoints": r.get(f"{mining}.max_hard_keypoints"),
            "loss_scale": r.get(f"{mining}.loss_scale", 5.0),
        },
        "zmq": _zmq(r, f"{out}.zmq"),
    }


def _zmq(r: _LegacyReader, base: str) -> dict[str, Any]:
    """SLEAP's zmq addresses ('tcp://127.0.0.1:9001') become the ports sleap-nn configures."""
    ports: dict[str, int | None] = {}
    for flag, address, key, default in (
        ("publish_updates", "publish_address", "publish_port", "tcp://127.0.0.1:9001"),
        (
            "subscribe_to_controller",
            "controller_address",
            "controller_port",
            "tcp://127.0.0.1:9000",
        ),
    ):
        text = r.get(f"{base}.{address}", default)
        ports[key] = None
        if r.flag(f"{base}.{flag}", False):
            port = str(text).rsplit(":", 1)[-1]
            if port.isdigit():
                ports[key] = int(port)
            else:
                r.problems.append(
                    f"{base}.{address}: expected an address ending in ':<port>', got {text!r}"
                )
    return {
        "publish_port": ports["publish_port"],
        "controller_port": ports["controller_port"],
        "controller_polling_timeout": r.get(f"{base}.controller_polling_timeout", 10),
    }


# --------------------------------------------------------------------------- augmentation


_AUG = "optimization.augmentation_config"


def _augmentation(r: _LegacyReader, preprocessing: dict[str, Any]) -> dict[str, Any]:
    """``augmentation_config`` from SLEAP's flags and ranges (see the module docstring)."""

    def p(key: str) -> float:
        return 1.0 if r.flag(f"{_AUG}.{key}", False) else 0.0

    def value(key: str, default: float) -> float:
        got = r.number(f"{_AUG}.{key}", default)
        return default if got is None else float(got)

    intensity = {
        "uniform_noise_min": value("uniform_noise_min_val", 0.0) / _GREY_LEVELS,
        "uniform_noise_max": min(value("uniform_noise_max_val", 10.0) / _GREY_LEVELS, 1.0),
        "uniform_noise_p": p("uniform_noise"),
        "gaussian_noise_mean": value("gaussian_noise_mean", 5.0) / _GREY_LEVELS,
        "gaussian_noise_std": value("gaussian_noise_stddev", 1.0) / _GREY_LEVELS,
        "gaussian_noise_p": p("gaussian_noise"),
        "contrast_min": value("contrast_min_gamma", 0.5),
        "contrast_max": value("contrast_max_gamma", 2.0),
        "contrast_p": p("contrast"),
        "brightness_min": 1.0 + value("brightness_min_val", 0.0) / _GREY_LEVELS,
        "brightness_max": 1.0 + value("brightness_max_val", 10.0) / _GREY_LEVELS,
        "brightness_p": p("brightness"),
    }
    for name in ("contrast", "brightness"):
        if intensity[f"{name}_p"]:
            log.warning(
                "SLEAP %s augmentation is converted approximately (see pipeline_lib.config.legacy):"
                " check augmentation_config.intensity.%s_min / %s_max",
                name,
                name,
                name,
            )

    translate_p = p("translate")
    shift = max(abs(value("translate_min", -5.0)), abs(value("translate_max", 5.0)))
    translate_fraction = 0.0
    if translate_p:
        sides = (
            preprocessing["crop_size"],
            preprocessing["max_height"],
            preprocessing["max_width"],
        )
        side = next((s for s in sides if isinstance(s, int | float) and s > 0), None)
        if side is None:
            translate_p = 0.0
            log.warning(
                "SLEAP translate augmentation (in pixels) cannot be converted without an image "
                "size (crop_size or target_height / target_width); translation is switched off"
            )
        else:
            translate_fraction = min(shift / float(side), 1.0)
    geometric = {
        "rotation_min": value("rotation_min_angle", -180.0),
        "rotation_max": value("rotation_max_angle", 180.0),
        "rotation_p": p("rotate"),
        "scale_min": value("scale_min", 0.9),
        "scale_max": value("scale_max", 1.1),
        "scale_p": p("scale"),
        "translate_width": translate_fraction,
        "translate_height": translate_fraction,
        "translate_p": translate_p,
        "affine_p": 0.0,
    }
    r.drop(f"{_AUG}.random_crop_height", f"{_AUG}.random_crop_width", f"{_AUG}.flip_horizontal")
    for name in ("random_crop", "random_flip"):
        if p(name):
            log.warning(
                "SLEAP %s augmentation is not supported by this pipeline and was dropped", name
            )
    return {"intensity": intensity, "geometric": geometric}


def _any_augmentation(augmentation: dict[str, Any]) -> bool:
    """True when any converted augmentation has a non-zero probability."""
    return any(
        value > 0
        for group in augmentation.values()
        for key, value in group.items()
        if key.endswith("_p") and value is not None
    )
