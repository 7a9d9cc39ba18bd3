"""Typed schema of a training job config, in sleap-nn's YAML layout, with its documented defaults.

Why this shape: a user's existing sleap-nn YAML must load here unchanged, so the section names,
nesting, field names, defaults and key order mirror sleap-nn's configuration guide (where the
guide's sample block and its field list disagree, the field list's "Default:" wins). Each field's
value constraints (allowed strings, bounds, powers of two) live in the field's metadata, right
next to the field, so the loader can validate every section generically; checks that involve two
fields are declared per class in ``ORDERED_PAIRS`` or done by the loader's semantic pass.

Metadata keys understood by ``pipeline_lib.config.loader``:
    choices    allowed string values (other types in a union are not affected)
    ge/gt/le   numeric bounds (applied to every number of a list field too)
    pow2       the value must be a positive power of two
    pairs      every item of the list must have exactly two elements
    normalise  callable applied to the raw value before type checking
    note       text appended to the "expected ..." part of a type error

A section may be ``None`` only where its type says ``| None`` (augmentations, backbones, heads,
learning-rate schedulers); a non-optional section given as ``null`` takes its defaults.
"""

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

HEAD_NAMES: tuple[str, ...] = (
    "single_instance",
    "centroid",
    "centered_instance",
    "bottomup",
    "multi_class_bottomup",
    "multi_class_topdown",
)
BACKBONE_NAMES: tuple[str, ...] = ("unet", "convnext", "swint")
SCHEDULER_NAMES: tuple[str, ...] = (
    "step_lr",
    "reduce_lr_on_plateau",
    "cosine_annealing_warmup",
    "linear_warmup_linear_decay",
)

_SEGMENTATION_MESSAGE = (
    "segmentation heads are not supported by this pipeline (pose estimation only); "
    "remove '{key}' or set it to null and configure one of: " + ", ".join(HEAD_NAMES)
)


def _value(default: Any, **constraints: Any) -> Any:
    """A scalar field with a default and validation metadata."""
    return field(default=default, metadata=constraints)


def _list(**constraints: Any) -> Any:
    """A list field that defaults to an empty list (a fresh one per instance)."""
    return field(default_factory=list, metadata=constraints)


def _section(cls: type) -> Any:
    """A nested, non-optional section that defaults to all of its own defaults."""
    return field(default_factory=cls)


def _paths_list(value: Any) -> Any:
    """Accept one path as well as a list of paths; ``null`` means no files."""
    if value is None:
        return []
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return value


def _paths_list_or_none(value: Any) -> Any:
    """Like ``_paths_list`` but keeps ``null`` (meaning: split validation off the train set)."""
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    return value


def _version_text(value: Any) -> Any:
    """YAML reads ``sleap_nn_version: 0.1`` as a float; a version is text."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return value


_PROB = {"ge": 0.0, "le": 1.0}
_PATHS_NOTE = "(a single path is also accepted)"


# --------------------------------------------------------------------------- data_config


@dataclass
class PreprocessingConfig:
    """How frames are coerced and resized before they reach the model."""

    ensure_rgb: bool = False
    ensure_grayscale: bool = False
    max_height: int | None = _value(None, gt=0)
    max_width: int | None = _value(None, gt=0)
    scale: float = _value(1.0, gt=0.0)
    crop_size: int | None = _value(None, gt=0)
    min_crop_size: int | None = _value(100, ge=0)
    crop_padding: int | None = _value(None, ge=0)


@dataclass
class IntensityConfig:
    """Photometric augmentations (noise, contrast, brightness)."""

    ORDERED_PAIRS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("uniform_noise_min", "uniform_noise_max"),
        ("contrast_min", "contrast_max"),
        ("brightness_min", "brightness_max"),
    )

    uniform_noise_min: float = _value(0.0, ge=0.0)
    uniform_noise_max: float = _value(1.0, le=1.0)
    uniform_noise_p: float = _value(0.0, **_PROB)
    gaussian_noise_mean: float = 0.0
    gaussian_noise_std: float = _value(1.0, ge=0.0)
    gaussian_noise_p: float = _value(0.0, **_PROB)
    contrast_min: float = _value(0.9, ge=0.0)
    contrast_max: float = 1.1
    contrast_p: float = _value(0.0, **_PROB)
    brightness_min: float = _value(1.0, ge=0.0)
    brightness_max: float = 1.0
    brightness_p: float = _value(0.0, **_PROB)


@dataclass
class GeometricConfig:
    """Spatial augmentations applied to images and keypoints together.

    ``rotation_p``/``scale_p``/``translate_p`` (newer sleap-nn) give each affine component its
    own probability; when null the joint ``affine_p`` applies.
    """

    ORDERED_PAIRS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("rotation_min", "rotation_max"),
        ("scale_min", "scale_max"),
        ("erase_scale_min", "erase_scale_max"),
        ("erase_ratio_min", "erase_ratio_max"),
        ("mixup_lambda_min", "mixup_lambda_max"),
    )

    rotation_min: float = _value(-15.0, ge=-180.0, le=180.0)
    rotation_max: float = _value(15.0, ge=-180.0, le=180.0)
    rotation_p: float | None = _value(None, **_PROB)
    scale_min: float = _value(0.9, gt=0.0)
    scale_max: float = _value(1.1, gt=0.0)
    scale_p: float | None = _value(None, **_PROB)
    translate_width: float = _value(0.0, **_PROB)
    translate_height: float = _value(0.0, **_PROB)
    translate_p: float | None = _value(None, **_PROB)
    affine_p: float = _value(0.0, **_PROB)
    erase_scale_min: float = _value(0.0001, **_PROB)
    erase_scale_max: float = _value(0.01, **_PROB)
    erase_ratio_min: float = _value(1.0, gt=0.0)
    erase_ratio_max: float = _value(1.0, gt=0.0)
    erase_p: float = _value(0.0, **_PROB)
    mixup_lambda_min: float = _value(0.01, **_PROB)
    mixup_lambda_max: float = _value(0.05, **_PROB)
    mixup_p: float = _value(0.0, **_PROB)


@dataclass
class AugmentationConfig:
    """Training-time augmentations; a null group means that group is off."""

    intensity: IntensityConfig | None = None
    geometric: GeometricConfig | None = None


@dataclass
class DataConfig:
    """Where labels come from, how they are cached, preprocessed and augmented.

    ``skeletons`` is sleap-nn's serialised skeleton list, kept as raw data: it is written by
    training (the resolved skeleton) and read back by inference, not interpreted here.
    """

    train_labels_path: list[str] = _list(normalise=_paths_list, note=_PATHS_NOTE)
    val_labels_path: list[str] | None = _value(
        None, normalise=_paths_list_or_none, note=_PATHS_NOTE
    )
    validation_fraction: float = _value(0.1, **_PROB)
    use_same_data_for_val: bool = False
    test_file_path: str | None = None
    provider: str = _value("LabelsReader", choices=("LabelsReader",))
    user_instances_only: bool = True
    data_pipeline_fw: str = _value(
        "torch_dataset",
        choices=(
            "torch_dataset",
            "torch_dataset_cache_img_memory",
            "torch_dataset_cache_img_disk",
        ),
    )
    cache_img_path: str | None = None
    use_existing_imgs: bool = False
    delete_cache_imgs_after_training: bool = True
    parallel_caching: bool = True
    cache_workers: int = _value(0, ge=0)
    preprocessing: PreprocessingConfig = _section(PreprocessingConfig)
    use_augmentations_train: bool = False
    augmentation_config: AugmentationConfig | None = None
    skeletons: list[dict[str, Any]] | dict[str, Any] | None = None


# --------------------------------------------------------------------------- model_config


@dataclass
class UNetConfig:
    """UNet encoder-decoder backbone."""

    in_channels: int = _value(1, gt=0)
    kernel_size: int = _value(3, gt=0)
    filters: int = _value(32, gt=0)
    filters_rate: float = _value(1.5, gt=0.0)
    max_stride: int = _value(16, pow2=True)
    stem_stride: int | None = _value(None, pow2=True)
    middle_block: bool = True
    up_interpolate: bool = True
    stacks: int = _value(1, gt=0)
    convs_per_block: int = _value(2, gt=0)
    output_stride: int = _value(1, pow2=True)


@dataclass
class ConvNextConfig:
    """ConvNeXt encoder with a UNet-style decoder.

    ``arch`` (``depths``/``channels``) overrides the architecture picked by ``model_type``.
    """

    pre_trained_weights: str | None = _value(
        None,
        choices=(
            "ConvNeXt_Base_Weights",
            "ConvNeXt_Tiny_Weights",
            "ConvNeXt_Small_Weights",
            "ConvNeXt_Large_Weights",
        ),
    )
    in_channels: int = _value(1, gt=0)
    model_type: str = _value("tiny", choices=("tiny", "small", "base", "large"))
    arch: dict[str, Any] | None = None
    kernel_size: int = _value(3, gt=0)
    filters_rate: float = _value(2.0, gt=0.0)
    convs_per_block: int = _value(2, gt=0)
    up_interpolate: bool = True
    stem_patch_kernel: int = _value(4, gt=0)
    stem_patch_stride: int = _value(2, gt=0)
    max_stride: int = _value(32, pow2=True)
    output_stride: int = _value(1, pow2=True)


@dataclass
class SwinTConfig:
    """Swin Transformer encoder with a UNet-style decoder.

    ``arch`` (``embed``, ``depths``, per-stage heads) overrides the one picked by ``model_type``.
    """

    pre_trained_weights: str | None = _value(
        None, choices=("Swin_T_Weights", "Swin_S_Weights", "Swin_B_Weights")
    )
    in_channels: int = _value(1, gt=0)
    model_type: str = _value("tiny", choices=("tiny", "small", "base"))
    arch: dict[str, Any] | None = None
    patch_size: int = _value(4, gt=0)
    window_size: int = _value(7, gt=0)
    kernel_size: int = _value(3, gt=0)
    filters_rate: float = _value(2.0, gt=0.0)
    convs_per_block: int = _value(2, gt=0)
    up_interpolate: bool = True
    stem_patch_stride: int = _value(2, gt=0)
    max_stride: int = _value(32, pow2=True)
    output_stride: int = _value(1, pow2=True)


@dataclass
class BackboneConfig:
    """Exactly one of the three backbones is set; the others are null."""

    UNSUPPORTED_KEYS: ClassVar[dict[str, str]] = {
        "pretrained": (
            "pretrained (Hugging Face) backbones are not supported by this pipeline; "
            "remove 'pretrained' or set it to null and configure one of: "
            + ", ".join(BACKBONE_NAMES)
            + " (convnext/swint accept pre_trained_weights)"
        ),
    }

    unet: UNetConfig | None = None
    convnext: ConvNextConfig | None = None
    swint: SwinTConfig | None = None


@dataclass
class SingleInstanceConfMapsConfig:
    """Confidence maps of every body part of the one animal in the frame."""

    part_names: list[str] | None = None
    sigma: float = _value(5.0, gt=0.0)
    output_stride: int = _value(1, pow2=True)


@dataclass
class CentroidConfMapsConfig:
    """Confidence map of one anchor point per animal (first stage of top-down)."""

    anchor_part: str | None = None
    sigma: float = _value(5.0, gt=0.0)
    output_stride: int = _value(1, pow2=True)


@dataclass
class CenteredInstanceConfMapsConfig:
    """Body-part confidence maps in a crop centred on one animal's anchor (top-down)."""

    part_names: list[str] | None = None
    anchor_part: str | None = None
    sigma: float = _value(5.0, gt=0.0)
    output_stride: int = _value(1, pow2=True)
    loss_weight: float | None = _value(None, ge=0.0)


@dataclass
class BottomUpConfMapsConfig:
    """Body-part confidence maps of all animals in the full frame (bottom-up)."""

    part_names: list[str] | None = None
    sigma: float = _value(5.0, gt=0.0)
    output_stride: int = _value(1, pow2=True)
    loss_weight: float | None = _value(None, ge=0.0)


@dataclass
class PAFConfig:
    """Part affinity fields; ``edges`` are [source, destination] pairs of names or indices."""

    edges: list[list[str | int]] | None = _value(None, pairs=True)
    sigma: float = _value(15.0, gt=0.0)
    output_stride: int = _value(1, pow2=True)
    loss_weight: float | None = _value(None, ge=0.0)


@dataclass
class ClassMapsConfig:
    """Per-identity confidence maps (multi-class bottom-up); classes default to track names."""

    classes: list[str] | None = None
    sigma: float = _value(5.0, gt=0.0)
    output_stride: int = _value(1, pow2=True)
    loss_weight: float | None = _value(None, ge=0.0)


@dataclass
class ClassVectorsConfig:
    """Per-crop identity classifier (multi-class top-down); classes default to track names."""

    classes: list[str] | None = None
    num_fc_layers: int = _value(1, gt=0)
    num_fc_units: int = _value(64, gt=0)
    global_pool: bool = True
    output_stride: int = _value(16, pow2=True)
    loss_weight: float | None = _value(None, ge=0.0)


@dataclass
class SingleInstanceConfig:
    confmaps: SingleInstanceConfMapsConfig = _section(SingleInstanceConfMapsConfig)


@dataclass
class CentroidConfig:
    confmaps: CentroidConfMapsConfig = _section(CentroidConfMapsConfig)


@dataclass
class CenteredInstanceConfig:
    confmaps: CenteredInstanceConfMapsConfig = _section(CenteredInstanceConfMapsConfig)


@dataclass
class BottomUpConfig:
    confmaps: BottomUpConfMapsConfig = _section(BottomUpConfMapsConfig)
    pafs: PAFConfig = _section(PAFConfig)


@dataclass
class MultiClassBottomUpConfig:
    confmaps: BottomUpConfMapsConfig = _section(BottomUpConfMapsConfig)
    class_maps: ClassMapsConfig = _section(ClassMapsConfig)


@dataclass
class MultiClassTopDownConfig:
    confmaps: CenteredInstanceConfMapsConfig = _section(CenteredInstanceConfMapsConfig)
    class_vectors: ClassVectorsConfig = _section(ClassVectorsConfig)


@dataclass
class HeadConfigs:
    """Exactly one head is set; its name is the model type."""

    UNSUPPORTED_KEYS: ClassVar[dict[str, str]] = {
        key: _SEGMENTATION_MESSAGE.format(key=key)
        for key in (
            "bottomup_segmentation",
            "semantic_segmentation",
            "centered_instance_segmentation",
        )
    }

    single_instance: SingleInstanceConfig | None = None
    centroid: CentroidConfig | None = None
    centered_instance: CenteredInstanceConfig | None = None
    bottomup: BottomUpConfig | None = None
    multi_class_bottomup: MultiClassBottomUpConfig | None = None
    multi_class_topdown: MultiClassTopDownConfig | None = None


@dataclass
class ModelConfig:
    """Architecture: weight initialisation, one backbone and one head."""

    init_weights: str = _value("default", choices=("default", "xavier"))
    pretrained_backbone_weights: str | None = None
    pretrained_head_weights: str | None = None
    backbone_config: BackboneConfig = _section(BackboneConfig)
    head_configs: HeadConfigs = _section(HeadConfigs)
    total_params: int | None = _value(None, ge=0)


# --------------------------------------------------------------------------- trainer_config


@dataclass
class DataLoaderConfig:
    batch_size: int = _value(1, gt=0)
    shuffle: bool = False
    num_workers: int = _value(0, ge=0)


@dataclass
class ModelCkptConfig:
    save_top_k: int = _value(1, ge=-1)
    save_last: bool | None = None


@dataclass
class WandBConfig:
    """Weights & Biases logging; ``api_key`` is masked when the config is saved."""

    entity: str | None = None
    project: str | None = None
    name: str | None = None
    save_viz_imgs_wandb: bool = False
    api_key: str | None = None
    wandb_mode: str | None = None
    prv_runid: str | None = None
    group: str | None = None
    current_run_id: str | None = None


@dataclass
class OptimizerConfig:
    lr: float = _value(1e-3, gt=0.0)
    amsgrad: bool = False


@dataclass
class StepLRConfig:
    step_size: int = _value(10, gt=0)
    gamma: float = _value(0.1, gt=0.0)


@dataclass
class ReduceLROnPlateauConfig:
    threshold: float = _value(1e-4, ge=0.0)
    threshold_mode: str = _value("rel", choices=("rel", "abs"))
    cooldown: int = _value(0, ge=0)
    patience: int = _value(10, ge=0)
    factor: float = _value(0.1, gt=0.0, le=1.0)
    min_lr: float | list[float] = _value(0.0, ge=0.0)


@dataclass
class CosineAnnealingWarmupConfig:
    """Linear warm-up from ``warmup_start_lr`` to the optimizer's lr, then cosine decay to
    ``eta_min``; ``max_epochs`` null means ``trainer_config.max_epochs``."""

    warmup_epochs: int = _value(5, ge=0)
    max_epochs: int | None = _value(None, gt=0)
    warmup_start_lr: float = _value(0.0, ge=0.0)
    eta_min: float = _value(0.0, ge=0.0)


@dataclass
class LinearWarmupLinearDecayConfig:
    """Linear warm-up from ``warmup_start_lr`` to the optimizer's lr, then linear decay to
    ``end_lr``; ``max_epochs`` null means ``trainer_config.max_epochs``."""

    warmup_epochs: int = _value(5, ge=0)
    max_epochs: int | None = _value(None, gt=0)
    warmup_start_lr: float = _value(0.0, ge=0.0)
    end_lr: float = _value(0.0, ge=0.0)


@dataclass
class LRSchedulerConfig:
    """At most one scheduler is set; all null means a constant learning rate."""

    step_lr: StepLRConfig | None = None
    reduce_lr_on_plateau: ReduceLROnPlateauConfig | None = None
    cosine_annealing_warmup: CosineAnnealingWarmupConfig | None = None
    linear_warmup_linear_decay: LinearWarmupLinearDecayConfig | None = None


@dataclass
class EarlyStoppingConfig:
    min_delta: float = _value(0.0, ge=0.0)
    patience: int = _value(1, ge=0)
    stop_training_on_plateau: bool = False


@dataclass
class HardKeypointMiningConfig:
    online_mining: bool = False
    hard_to_easy_ratio: float = _value(2.0, gt=0.0)
    min_hard_keypoints: int = _value(2, ge=0)
    max_hard_keypoints: int | None = _value(None, ge=0)
    loss_scale: float = _value(5.0, gt=0.0)


@dataclass
class ZMQConfig:
    """Ports for the SLEAP GUI's live loss plot and stop button; null disables each."""

    publish_port: int | None = _value(None, gt=0, le=65535)
    controller_port: int | None = _value(None, gt=0, le=65535)
    controller_polling_timeout: int = _value(10, ge=0)


@dataclass
class EvalConfig:
    """Pose metrics (OKS mAP etc.) on the validation set during training."""

    enabled: bool = False
    frequency: int = _value(1, gt=0)
    oks_stddev: float = _value(0.025, gt=0.0)
    oks_scale: float | None = _value(None, gt=0.0)
    match_threshold: float = _value(50.0, gt=0.0)


@dataclass
class TrainerConfig:
    """Optimisation, checkpointing, logging and hardware."""

    train_data_loader: DataLoaderConfig = _section(DataLoaderConfig)
    val_data_loader: DataLoaderConfig = _section(DataLoaderConfig)
    model_ckpt: ModelCkptConfig = _section(ModelCkptConfig)
    trainer_devices: int | str | None = _value(
        None, gt=0, choices=("auto",), note="(or a device count >= 1, or null)"
    )
    trainer_device_indices: list[int] | None = _value(None, ge=0)
    trainer_accelerator: str = _value("auto", choices=("cpu", "gpu", "cuda", "mps", "auto"))
    profiler: str | None = _value(None, choices=("advanced", "passthrough", "pytorch", "simple"))
    trainer_strategy: str = "auto"
    enable_progress_bar: bool = True
    min_train_steps_per_epoch: int = _value(200, gt=0)
    train_steps_per_epoch: int | None = _value(None, gt=0)
    visualize_preds_during_training: bool = False
    keep_viz: bool = False
    max_epochs: int = _value(10, gt=0)
    seed: int | None = None
    use_wandb: bool = False
    save_ckpt: bool = False
    ckpt_dir: str | None = None
    run_name: str | None = None
    resume_ckpt_path: str | None = None
    wandb: WandBConfig = _section(WandBConfig)
    optimizer_name: str = _value("Adam", choices=("Adam", "AdamW"))
    optimizer: OptimizerConfig = _section(OptimizerConfig)
    lr_scheduler: LRSchedulerConfig = _section(LRSchedulerConfig)
    early_stopping: EarlyStoppingConfig = _section(EarlyStoppingConfig)
    online_hard_keypoint_mining: HardKeypointMiningConfig = _section(HardKeypointMiningConfig)
    zmq: ZMQConfig = _section(ZMQConfig)
    eval: EvalConfig = _section(EvalConfig)


# --------------------------------------------------------------------------- whole job


@dataclass
class TrainingJobConfig:
    """One training job: the three sections plus sleap-nn's descriptive top-level keys."""

    data_config: DataConfig = _section(DataConfig)
    model_config: ModelConfig = _section(ModelConfig)
    trainer_config: TrainerConfig = _section(TrainerConfig)
    name: str | None = ""
    description: str | None = ""
    sleap_nn_version: str | None = _value(None, normalise=_version_text)
    filename: str | None = ""


def is_section(tp: Any) -> bool:
    """True when ``tp`` is one of the schema's section classes (a dataclass type)."""
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)
