"""Small builders shared by several test files (imported as ``from helpers import ...``)."""

from __future__ import annotations

from pipeline_lib.config.training_config import HEAD_NAMES

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
