"""The whole configuration of a tracking-transformer run, in the shape of a DREEM training config.

One YAML file says what to train on, what network to train, how, and how the trained network
then tracks::

    model:       the network (GTRModelConfig; DREEM's ``model:`` keys)
    dataset:     train_dataset / val_dataset / test_dataset (ClipDatasetOptions each)
    dataloader:  train_dataloader / val_dataloader / test_dataloader: shuffle, num_workers,
                 batch_size
    trainer:     max_epochs, max_steps, accelerator, devices, check_val_every_n_epoch,
                 limit_train_batches, limit_val_batches, gradient_clip_val, seed, precision
    optimizer:   name (Adam / AdamW), lr, weight_decay, betas, eps
    scheduler:   ReduceLROnPlateau (mode, factor, patience, threshold, threshold_mode,
                 cooldown, min_lr) or null
    tracker:     GTRTrackerOptions (DREEM's ``tracker:`` keys); ``window_size`` and
                 ``use_vis_feats`` also shape training

Only ``dataset.train_dataset`` is required. Strictness is the rule throughout: a misspelt key
silently falling back to its default would change what the model learns with no trace, so an
unknown key is an error naming its path (``trainer.max_epoch``) with the closest valid key. Keys
that DREEM configs carry but this trainer does not implement (``loss``, ``logging``,
``early_stopping``, ``checkpointing``, ``runner``, ``trainer.log_every_n_steps``, ...) are refused
by name, saying what happens here instead; a null value asks for nothing and is accepted. The
few DREEM keys whose value states what this trainer always does (``trainer.enable_checkpointing:
true``, ``trainer.limit_test_batches: 1.0``) are accepted at that value only.

Relative paths in the dataset sections are relative to the config file's folder (the working
directory for a mapping); the resolved config written into a run directory holds absolute paths,
so it can be read from anywhere.

``model.embedding_meta.temp.max_window`` (the frame offset the time embedding is scaled by) must
cover every window the model sees. When the config does not set it, it is resolved to the
largest of the model's default (32), the tracker's window span in processed frames
(``tracker.window_size + 1``: the window plus the current frame) and, once training has read
the clips, the longest training window in video frames (see :func:`resolve_max_window`). The
resolved config records the value, so tracking uses what training used.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_lib.config.loader import did_you_mean
from pipeline_lib.config.yaml_io import YamlFileError, load_yaml
from pipeline_lib.io.atomic import write_yaml_atomic
from pipeline_lib.tracking.gtr.config import GTRTrackerOptions
from pipeline_lib.tracking.gtr.data import ClipDatasetOptions
from pipeline_lib.tracking.gtr.model import GTRModelConfig, TempEmbeddingConfig

__all__ = [
    "DataloaderOptions",
    "OptimizerOptions",
    "RunConfig",
    "TRACKER_CONFIG",
    "RunConfigError",
    "SchedulerOptions",
    "TrainerOptions",
    "load_run_config",
    "resolve_max_window",
    "write_resolved_config",
]

TRACKER_CONFIG = "tracker_config.yaml"  # the resolved config's name in a run directory
SECTIONS = ("model", "dataset", "dataloader", "trainer", "optimizer", "scheduler", "tracker")
DATASET_KEYS = ("train_dataset", "val_dataset", "test_dataset")
DATALOADER_KEYS = ("train_dataloader", "val_dataloader", "test_dataloader")
OPTIMIZERS = ("Adam", "AdamW")
SCHEDULERS = ("ReduceLROnPlateau",)
PRECISIONS = ("32", "bf16-mixed", "16-mixed", "auto")
DATASET_PATH_KEYS = ("slp_files", "video_files", "tracks", "videos", "raw_images", "gt_images")

# DREEM training-config keys this trainer does not implement, with what happens instead. They
# are refused by name (unless null) rather than reported as typos or silently ignored.
_DREEM_REFUSED: dict[str, dict[str, str]] = {
    "": {
        "loss": "the loss is fixed: cross-entropy over the window's tracks plus a learned "
        "no-match logit (pipeline_lib.tracking.gtr.loss)",
        "logging": "metrics go to training_log.csv in the run directory; no experiment logger",
        "early_stopping": "training runs for trainer.max_epochs / max_steps",
        "checkpointing": "the run directory keeps best.ckpt (lowest val loss) and "
        "checkpoints/last.ckpt for resuming",
        "runner": "tracking metrics are not computed during training",
        "view_batch": "batches are not drawn",
        "ckpt_path": "a rerun of the same config resumes from checkpoints/last.ckpt by itself",
        "out_dir": "the run directory is given to train_tracker / --run-dir",
    },
    "trainer": {
        "min_epochs": "training runs exactly max_epochs / max_steps",
        "log_every_n_steps": "metrics are logged once per epoch (training_log.csv)",
        "strategy": "Lightning's default strategy for the devices is used",
        "num_nodes": "training runs on one machine",
        "accumulate_grad_batches": "each batch is one optimizer step",
        "val_check_interval": "validation runs every check_val_every_n_epoch epochs",
        "enable_progress_bar": "no progress bar is shown",
        "deterministic": "runs are made reproducible by trainer.seed",
        "profiler": "training is not profiled",
    },
    "dataloader": {
        "pin_memory": "batches are moved to the device by the training module",
        "persistent_workers": "workers restart every epoch so that they see its augmentations",
        "prefetch_factor": "PyTorch's default prefetching is used",
        "drop_last": "every clip is used",
    },
    "optimizer": {
        "momentum": "only Adam and AdamW are available",
        "amsgrad": "plain Adam / AdamW updates are used",
    },
    "scheduler": {
        "T_0": "only ReduceLROnPlateau is available",
        "T_max": "only ReduceLROnPlateau is available",
        "step_size": "only ReduceLROnPlateau is available",
        "gamma": "only ReduceLROnPlateau is available",
    },
}

# DREEM ``model.embedding_meta`` keys the network does not have.
_DREEM_REFUSED_MODEL_META = {
    "embedding_agg_method": "the visual, position and time embeddings are always summed",
}

# DREEM keys whose value can only state what this trainer always does: accepted at that value.
_DREEM_FIXED: dict[str, dict[str, Any]] = {
    "trainer": {"enable_checkpointing": True, "limit_test_batches": 1.0},
}


class RunConfigError(ValueError):
    """A run-config value that cannot be used; the message names its key path."""


# ----------------------------------------------------------------------------------------------
# Sections
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DataloaderOptions:
    """One ``dataloader.*_dataloader`` section.

    Attributes:
        shuffle: visit the clips in a new seeded order each epoch (train) or in order.
        num_workers: DataLoader worker processes decoding clips (0: in the training process).
        batch_size: clips per optimizer step; the loss is the mean over all query detections
            of the batch's clips.
    """

    shuffle: bool = False
    num_workers: int = 0
    batch_size: int = 1

    def __post_init__(self) -> None:
        _check_bool("dataloader.shuffle", self.shuffle)
        _check_int("dataloader.num_workers", self.num_workers, 0)
        _check_int("dataloader.batch_size", self.batch_size, 1)


@dataclass(frozen=True)
class TrainerOptions:
    """``trainer``: a strict subset of Lightning's Trainer arguments.

    Attributes:
        max_epochs: passes over the training clips (None: until ``max_steps``).
        max_steps: optimizer steps to stop after (None: no limit). One of the two must be set.
        accelerator: Lightning accelerator: ``auto`` (CUDA, then MPS, then CPU), ``cpu``,
            ``gpu``/``cuda`` or ``mps``.
        devices: devices to train on: an int, a list of GPU indices, or ``auto``.
        check_val_every_n_epoch: validate every this many epochs.
        limit_train_batches / limit_val_batches: a fraction (float in (0, 1]) or a count (int)
            of the batches of each epoch / validation pass.
        gradient_clip_val: clip the gradient norm to this (None: no clipping).
        seed: seed of weights, clip order and augmentations (None: the ``seed`` argument of
            :func:`train_tracker`, else unseeded).
        precision: ``32`` (default: tiny transformers gain nothing from autocast on CPUs),
            ``bf16-mixed``, ``16-mixed`` or ``auto`` (bf16 on CPUs with native bf16).
    """

    max_epochs: int | None = 20
    max_steps: int | None = None
    accelerator: str = "auto"
    devices: int | str | list[int] = 1
    check_val_every_n_epoch: int = 1
    limit_train_batches: float | int = 1.0
    limit_val_batches: float | int = 1.0
    gradient_clip_val: float | None = None
    seed: int | None = None
    precision: str = "32"

    def __post_init__(self) -> None:
        if self.max_epochs is not None:
            _check_int("trainer.max_epochs", self.max_epochs, 1)
        if self.max_steps is not None and self.max_steps != -1:
            _check_int("trainer.max_steps", self.max_steps, 1)
        if self.max_epochs is None and self.max_steps in (None, -1):
            raise RunConfigError("trainer needs max_epochs or max_steps: training would not end")
        if self.accelerator not in ("auto", "cpu", "gpu", "cuda", "mps"):
            raise RunConfigError(
                f"trainer.accelerator must be auto, cpu, gpu, cuda or mps; got {self.accelerator!r}"
            )
        devices = self.devices
        if isinstance(devices, list):
            if not devices or not all(_is_int(d) and d >= 0 for d in devices):
                raise RunConfigError(f"trainer.devices list must hold GPU indices, got {devices}")
        elif devices != "auto":
            _check_int("trainer.devices", devices, 1)
        _check_int("trainer.check_val_every_n_epoch", self.check_val_every_n_epoch, 1)
        for key in ("limit_train_batches", "limit_val_batches"):
            _check_limit(f"trainer.{key}", getattr(self, key))
        if self.gradient_clip_val is not None:
            _check_number("trainer.gradient_clip_val", self.gradient_clip_val, 0.0, open_low=True)
        if self.seed is not None:
            _check_int("trainer.seed", self.seed, 0)
        if str(self.precision) not in PRECISIONS:
            raise RunConfigError(
                f"trainer.precision must be one of {', '.join(PRECISIONS)}; got {self.precision!r}"
            )
        object.__setattr__(self, "precision", str(self.precision))


@dataclass(frozen=True)
class OptimizerOptions:
    """``optimizer``: Adam or AdamW (DREEM's key names and defaults).

    ``weight_decay`` is L2 added to the gradient for Adam and decoupled decay for AdamW (what
    the two PyTorch optimizers do).
    """

    name: str = "Adam"
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise RunConfigError(
                f"optimizer.name must be one of {', '.join(OPTIMIZERS)}{did_you_mean(self.name, OPTIMIZERS)}"
                f"; got {self.name!r}"
            )
        _check_number("optimizer.lr", self.lr, 0.0, open_low=True)
        _check_number("optimizer.weight_decay", self.weight_decay, 0.0)
        _check_number("optimizer.eps", self.eps, 0.0, open_low=True)
        betas = self.betas
        if (
            isinstance(betas, str)
            or not isinstance(betas, list | tuple)
            or len(betas) != 2
            or not all(_is_number(b) and 0.0 <= b < 1.0 for b in betas)
        ):
            raise RunConfigError(f"optimizer.betas must be two numbers in [0, 1), got {betas!r}")
        object.__setattr__(self, "betas", (float(betas[0]), float(betas[1])))


@dataclass(frozen=True)
class SchedulerOptions:
    """``scheduler``: ReduceLROnPlateau on the validation loss (the training loss without a
    validation set), stepped after each validation. Key names are PyTorch's, as in DREEM."""

    name: str = "ReduceLROnPlateau"
    mode: str = "min"
    factor: float = 0.5
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    cooldown: int = 0
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in SCHEDULERS:
            raise RunConfigError(
                f"scheduler.name must be ReduceLROnPlateau (or the scheduler section null); "
                f"got {self.name!r}"
            )
        if self.mode != "min":
            raise RunConfigError(
                f"scheduler.mode must be 'min' (the monitored value is a loss); got {self.mode!r}"
            )
        _check_number("scheduler.factor", self.factor, 0.0, 1.0, open_low=True, open_high=True)
        _check_int("scheduler.patience", self.patience, 0)
        _check_number("scheduler.threshold", self.threshold, 0.0)
        if self.threshold_mode not in ("rel", "abs"):
            raise RunConfigError(
                f"scheduler.threshold_mode must be 'rel' or 'abs'; got {self.threshold_mode!r}"
            )
        _check_int("scheduler.cooldown", self.cooldown, 0)
        _check_number("scheduler.min_lr", self.min_lr, 0.0)


@dataclass(frozen=True)
class RunConfig:
    """A loaded, checked run config (see the module docstring).

    Attributes:
        base_dir: folder that relative dataset paths are resolved against.
        max_window_auto: True when ``model.embedding_meta.temp.max_window`` was not set by the
            config and may be raised to fit the training windows (:func:`resolve_max_window`).
    """

    model: GTRModelConfig
    train_dataset: ClipDatasetOptions
    val_dataset: ClipDatasetOptions | None = None
    test_dataset: ClipDatasetOptions | None = None
    train_dataloader: DataloaderOptions = field(
        default_factory=lambda: DataloaderOptions(shuffle=True)
    )
    val_dataloader: DataloaderOptions = field(default_factory=DataloaderOptions)
    test_dataloader: DataloaderOptions = field(default_factory=DataloaderOptions)
    trainer: TrainerOptions = field(default_factory=TrainerOptions)
    optimizer: OptimizerOptions = field(default_factory=OptimizerOptions)
    scheduler: SchedulerOptions | None = None
    tracker: GTRTrackerOptions = field(default_factory=GTRTrackerOptions)
    base_dir: Path | None = None
    max_window_auto: bool = False

    def dataset_base_dir(self) -> Path:
        """The folder relative dataset paths are resolved against."""
        return self.base_dir if self.base_dir is not None else Path.cwd()

    def to_dict(self) -> dict[str, Any]:
        """The config as plain YAML-able data in the DREEM shape, dataset paths absolute.

        :func:`load_run_config` reads it back to an equal config (with ``max_window`` set).
        """
        datasets = {"train_dataset": self._dataset_dict(self.train_dataset)}
        loaders = {"train_dataloader": dataclasses.asdict(self.train_dataloader)}
        for split in ("val", "test"):
            options = getattr(self, f"{split}_dataset")
            if options is not None:
                datasets[f"{split}_dataset"] = self._dataset_dict(options)
                loaders[f"{split}_dataloader"] = dataclasses.asdict(
                    getattr(self, f"{split}_dataloader")
                )
        return _plain(
            {
                "model": self.model.to_dict(),
                "dataset": datasets,
                "dataloader": loaders,
                "trainer": dataclasses.asdict(self.trainer),
                "optimizer": dataclasses.asdict(self.optimizer),
                "scheduler": None if self.scheduler is None else dataclasses.asdict(self.scheduler),
                "tracker": self.tracker.to_dict(),
            }
        )

    def _dataset_dict(self, options: ClipDatasetOptions) -> dict[str, Any]:
        data = options.to_dict()
        base = self.dataset_base_dir()
        for key in DATASET_PATH_KEYS + ("gt_list",):
            data[key] = _absolute(data[key], base)
        if data.get("dir") is not None:
            data["dir"] = {**data["dir"], "path": _absolute(data["dir"]["path"], base)}
        return data


# ----------------------------------------------------------------------------------------------
# Loading and writing
# ----------------------------------------------------------------------------------------------


def load_run_config(source: str | os.PathLike | Mapping[str, Any] | RunConfig) -> RunConfig:
    """A checked :class:`RunConfig` from a YAML file, a mapping, or a RunConfig (returned as is).

    Errors raise :class:`RunConfigError` (or the section's own error type, all ValueErrors)
    naming the file and the key path.
    """
    if isinstance(source, RunConfig):
        return source
    if isinstance(source, Mapping):
        return _from_mapping(source, None)
    path = Path(source)
    try:
        data = load_yaml(path)
    except OSError as err:
        raise RunConfigError(f"Cannot read tracker run config {str(path)!r}: {err}") from err
    except YamlFileError as err:
        raise RunConfigError(f"Tracker run config {str(path)!r}: {err.detail}") from None
    try:
        return _from_mapping(data, path.resolve().parent)
    except ValueError as err:
        raise type(err)(f"{path}: {err}") from err


def write_resolved_config(config: RunConfig, path: str | os.PathLike) -> None:
    """Write ``config.to_dict()`` as YAML, atomically (a killed job leaves no partial file)."""
    write_yaml_atomic(path, config.to_dict())


def resolve_max_window(config: RunConfig, training_span: int) -> RunConfig:
    """The config with ``max_window`` raised to ``training_span`` when it was not configured.

    ``training_span`` is the longest training window in video frames, from its first frame to
    the query frame inclusive. A configured ``max_window`` is never changed: the time embedding
    then extrapolates beyond it (sinusoids continue; the learned embedding is linear past 1).
    """
    temp = config.model.embedding_meta.temp
    if not config.max_window_auto or training_span <= temp.max_window:
        return config
    return _with_max_window(config, int(training_span))


def _from_mapping(data: Any, base_dir: Path | None) -> RunConfig:
    if not isinstance(data, Mapping):
        raise RunConfigError(
            f"a tracker run config must be a mapping of sections, got {type(data).__name__}"
        )
    _check_keys("", data, SECTIONS)
    dataset = _section(data, "dataset")
    _check_keys("dataset", dataset, DATASET_KEYS)
    if dataset.get("train_dataset") is None:
        raise RunConfigError("dataset.train_dataset is required (the clips to train on)")
    datasets = {key: _dataset(dataset, key) for key in DATASET_KEYS}
    loaders_section = _section(data, "dataloader")
    _check_keys("dataloader", loaders_section, DATALOADER_KEYS)
    loaders = {
        key: _options(
            DataloaderOptions,
            f"dataloader.{key}",
            loaders_section.get(key),
            "dataloader",
            {"shuffle": key == "train_dataloader"},
        )
        for key in DATALOADER_KEYS
    }
    trainer = _options(TrainerOptions, "trainer", data.get("trainer"), "trainer")
    optimizer = _options(OptimizerOptions, "optimizer", data.get("optimizer"), "optimizer")
    scheduler = None
    if data.get("scheduler") is not None:
        scheduler = _options(SchedulerOptions, "scheduler", data["scheduler"], "scheduler")
    tracker_section = data.get("tracker")
    if tracker_section is not None and not isinstance(tracker_section, Mapping):
        raise RunConfigError(f"tracker must be a mapping, got {type(tracker_section).__name__}")
    try:
        tracker = GTRTrackerOptions.from_dict(tracker_section)
    except ValueError as err:
        raise type(err)(f"tracker section: {err}") from err
    model = GTRModelConfig.from_dict(_without_refused_model_keys(data.get("model")))
    config = RunConfig(
        model=model,
        train_dataset=datasets["train_dataset"],
        val_dataset=datasets["val_dataset"],
        test_dataset=datasets["test_dataset"],
        train_dataloader=loaders["train_dataloader"],
        val_dataloader=loaders["val_dataloader"],
        test_dataloader=loaders["test_dataloader"],
        trainer=trainer,
        optimizer=optimizer,
        scheduler=scheduler,
        tracker=tracker,
        base_dir=base_dir,
        max_window_auto=not _max_window_given(data.get("model")) and model_uses_time(model),
    )
    if config.max_window_auto:
        needed = max(TempEmbeddingConfig().max_window, tracker.window_size + 1)
        if needed > model.embedding_meta.temp.max_window:
            config = _with_max_window(config, needed)
    return config


def _without_refused_model_keys(model: Any) -> Any:
    """The ``model`` mapping without null DREEM keys the network does not have; refuses them
    when set (the network's own loader would only call them unknown)."""
    if not isinstance(model, Mapping):
        return model
    meta = model.get("embedding_meta")
    if not isinstance(meta, Mapping):
        return model
    meta = dict(meta)
    for key, reason in _DREEM_REFUSED_MODEL_META.items():
        if key not in meta:
            continue
        if meta.pop(key) is not None:
            raise RunConfigError(
                f"'model.embedding_meta.{key}' is a DREEM option this network does not "
                f"implement: {reason}. Remove it (or set it to null)"
            )
    return {**model, "embedding_meta": meta}


def model_uses_time(model: GTRModelConfig) -> bool:
    """True when the network embeds time (its ``max_window`` matters)."""
    return model.embedding_meta.temp.mode != "off"


def _with_max_window(config: RunConfig, max_window: int) -> RunConfig:
    meta = config.model.embedding_meta
    temp = dataclasses.replace(meta.temp, max_window=int(max_window))
    model = dataclasses.replace(config.model, embedding_meta=dataclasses.replace(meta, temp=temp))
    return dataclasses.replace(config, model=model)


def _max_window_given(model: Any) -> bool:
    """Whether the raw ``model`` mapping sets ``embedding_meta.temp.max_window``."""
    if not isinstance(model, Mapping):
        return False
    meta = model.get("embedding_meta")
    temp = meta.get("temp") if isinstance(meta, Mapping) else None
    return isinstance(temp, Mapping) and temp.get("max_window") is not None


def _dataset(section: Mapping[str, Any], key: str) -> ClipDatasetOptions | None:
    value = section.get(key)
    if value is None:
        return None
    try:
        return ClipDatasetOptions.from_dict(value)
    except ValueError as err:
        raise type(err)(f"dataset.{key}: {err}") from err


def _section(data: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RunConfigError(f"{key} must be a mapping, got {type(value).__name__}")
    return value


def _options(
    cls: type, path: str, value: Any, refused_group: str, defaults: Mapping[str, Any] | None = None
) -> Any:
    """``cls`` from a section mapping: unknown keys with did-you-mean, DREEM keys by name."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise RunConfigError(f"{path} must be a mapping, got {type(value).__name__}")
    valid = [f.name for f in dataclasses.fields(cls)]
    fixed = _DREEM_FIXED.get(refused_group, {})
    kwargs = dict(defaults or {})
    for key, item in value.items():
        if key in fixed:
            if item is not None and item != fixed[key]:
                raise RunConfigError(
                    f"{path}.{key} is a DREEM option this trainer does not implement; it can "
                    f"only be {_yaml(fixed[key])} (what happens here) or absent, got {item!r}"
                )
            continue
        _check_key(path, key, valid, refused_group, item)
        if item is not None or key in ("max_epochs", "max_steps", "gradient_clip_val", "seed"):
            kwargs[key] = item
    try:
        return cls(**kwargs)
    except RunConfigError as err:
        # The checks name the section kind ("dataloader.shuffle"); name the section itself.
        message = str(err)
        if path != refused_group and message.startswith(f"{refused_group}."):
            message = path + message[len(refused_group) :]
        raise RunConfigError(message) from err


def _check_keys(path: str, data: Mapping[str, Any], valid: tuple[str, ...]) -> None:
    """Keys of a section that only holds sub-sections (or of the top level)."""
    group = "" if path == "" else f"<{path}>"  # only the top level has refused DREEM keys
    for key, value in data.items():
        _check_key(path, key, valid, group, value)


def _check_key(path: str, key: Any, valid: Any, refused_group: str, value: Any) -> None:
    if key in valid:
        return
    full = f"{path}.{key}" if path else str(key)
    refused = _DREEM_REFUSED.get(refused_group, {})
    if key in refused:
        if value is None:
            return
        raise RunConfigError(
            f"'{full}' is a DREEM option this trainer does not implement: {refused[key]}. "
            "Remove it (or set it to null)"
        )
    raise RunConfigError(
        f"Unknown key '{full}'{did_you_mean(key, valid)} (valid keys: {', '.join(map(str, valid))})"
    )


# ----------------------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------------------


def _absolute(value: Any, base: Path) -> Any:
    """Paths (possibly nested in lists) resolved against ``base``; None stays None."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        return [_absolute(v, base) for v in value]
    path = Path(value)
    return str(path if path.is_absolute() else (base / path).resolve())


def _plain(value: Any) -> Any:
    """Tuples -> lists and Paths -> strings, recursively (yaml.safe_dump takes neither)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def _yaml(value: Any) -> str:
    return (
        "null" if value is None else str(value).lower() if isinstance(value, bool) else repr(value)
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        raise RunConfigError(f"{key} must be true or false, got {value!r}")


def _check_int(key: str, value: Any, minimum: int) -> None:
    if not _is_int(value):
        raise RunConfigError(f"{key} must be an integer, got {value!r}")
    if value < minimum:
        raise RunConfigError(f"{key} must be >= {minimum}, got {value}")


def _check_number(
    key: str,
    value: Any,
    low: float,
    high: float = math.inf,
    open_low: bool = False,
    open_high: bool = False,
) -> None:
    if not _is_number(value) or math.isnan(value):
        raise RunConfigError(f"{key} must be a number, got {value!r}")
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if too_low or too_high:
        lower = f"> {low:g}" if open_low else f">= {low:g}"
        upper = (
            "" if math.isinf(high) else (f" and < {high:g}" if open_high else f" and <= {high:g}")
        )
        raise RunConfigError(f"{key} must be {lower}{upper}, got {value}")


def _check_limit(key: str, value: Any) -> None:
    """A Lightning batch limit: a fraction in (0, 1] (float) or a count >= 1 (int)."""
    if _is_int(value):
        if value < 1:
            raise RunConfigError(f"{key} as a count of batches must be >= 1, got {value}")
        return
    if not _is_number(value) or not 0.0 < float(value) <= 1.0:
        raise RunConfigError(
            f"{key} must be a fraction in (0, 1] or an int count of batches, got {value!r}"
        )
