"""Model assembly: backbone + head from a sleap-nn ``model_config`` section.

The model type is the one non-null entry of ``head_configs`` and the backbone the one non-null
entry of ``backbone_config`` (the design's "config is data" rule). Output is a dict keyed by head
name so every model type shares the training and inference code paths.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from pipeline_lib.models.heads import ConfmapsHead, Head
from pipeline_lib.models.unet import UNet

BACKBONES = ("unet", "convnext", "swint")
CONFMAP_MODEL_TYPES = ("single_instance", "centroid", "centered_instance")
LATER_MODEL_TYPES = ("bottomup", "multi_class_bottomup", "multi_class_topdown")
INIT_WEIGHTS = ("default", "xavier")


class PoseModel(nn.Module):
    """A backbone feeding one confidence-map head.

    Attributes:
        head_name: the model type (``"single_instance"``, ``"centroid"``, ...).
        in_channels, output_stride, max_stride: taken from the backbone.
    """

    def __init__(self, backbone: UNet, head: Head, head_name: str):
        super().__init__()
        head.check_stride(backbone.output_stride)
        if head.in_channels != backbone.out_channels:
            raise ValueError(
                f"{head.name} head reads {head.in_channels} channels but the backbone outputs "
                f"{backbone.out_channels}"
            )
        self.backbone = backbone
        self.head = head
        self.head_name = head_name
        self.in_channels = backbone.in_channels
        self.output_stride = backbone.output_stride
        self.max_stride = backbone.max_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C, H, W) in [0, 1] -> ``{"confmaps": (B, n, H / stride, W / stride)}``."""
        return {self.head.name: self.head(self.backbone(x))}


def _the_one_non_null(section: Mapping | None, where: str, allowed: tuple[str, ...]) -> str:
    """Name of the single non-null entry of a config section, or a clear error."""
    if not isinstance(section, Mapping):
        raise ValueError(f"model_config.{where} must be a mapping, got {type(section).__name__}")
    unknown = sorted(set(section) - set(allowed))
    if unknown:
        raise ValueError(f"Unknown key(s) in model_config.{where}: {unknown}; known: {allowed}")
    chosen = [k for k in allowed if section.get(k) is not None]
    if len(chosen) != 1:
        raise ValueError(
            f"model_config.{where} must have exactly one non-null entry among {allowed}, "
            f"got {chosen or 'none'}"
        )
    return chosen[0]


def _init_xavier(model: nn.Module) -> None:
    """Xavier-uniform conv weights, zero biases (sleap-nn's ``init_weights: xavier``)."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def build_model(model_config: dict, n_nodes: int, in_channels: int | None = None) -> PoseModel:
    """Build the network a sleap-nn ``model_config`` describes.

    Args:
        model_config: the ``model_config`` section as a plain dict (``init_weights``,
            ``backbone_config``, ``head_configs``; other keys such as ``total_params`` ignored).
        n_nodes: skeleton size; single_instance / centered_instance heads predict one map per
            node, the centroid head one map.
        in_channels: overrides the backbone's ``in_channels`` (the resolved channel count after
            ``ensure_rgb`` / ``ensure_grayscale``).

    Raises:
        NotImplementedError: ConvNeXt / SwinT backbones and bottomup / multi_class_bottomup /
            multi_class_topdown heads (not built yet).
        ValueError: anything else inconsistent in the config.
    """
    backbone_name = _the_one_non_null(
        model_config.get("backbone_config"), "backbone_config", BACKBONES
    )
    head_name = _the_one_non_null(
        model_config.get("head_configs"), "head_configs", CONFMAP_MODEL_TYPES + LATER_MODEL_TYPES
    )
    if backbone_name != "unet":
        raise NotImplementedError(
            f"backbone_config.{backbone_name} is not supported yet (ConvNeXt and SwinT backbones "
            "are planned); use backbone_config.unet"
        )
    if head_name in LATER_MODEL_TYPES:
        raise NotImplementedError(
            f"head_configs.{head_name} is not supported yet (bottomup, multi_class_bottomup and "
            "multi_class_topdown heads are planned); supported: "
            f"{', '.join(CONFMAP_MODEL_TYPES)}"
        )
    init = model_config.get("init_weights") or "default"
    if init not in INIT_WEIGHTS:
        raise ValueError(f"model_config.init_weights must be one of {INIT_WEIGHTS}, got {init!r}")

    backbone = UNet.from_config(model_config["backbone_config"]["unet"], in_channels=in_channels)

    head_cfg = model_config["head_configs"][head_name]
    confmaps_cfg = head_cfg.get("confmaps") if isinstance(head_cfg, Mapping) else None
    if not isinstance(confmaps_cfg, Mapping):
        raise ValueError(f"model_config.head_configs.{head_name}.confmaps must be a mapping")
    if head_name == "centroid":
        n_channels = 1
    else:
        part_names = confmaps_cfg.get("part_names")
        if part_names is not None and len(part_names) != n_nodes:
            raise ValueError(
                f"head_configs.{head_name}.confmaps.part_names lists {len(part_names)} parts but "
                f"the skeleton has {n_nodes} nodes"
            )
        n_channels = int(n_nodes)
    # An unset head stride can only mean "the backbone's"; any other value must match it.
    stride = confmaps_cfg.get("output_stride")
    head = ConfmapsHead(
        backbone.out_channels,
        n_channels,
        backbone.output_stride if stride is None else int(stride),
    )
    model = PoseModel(backbone, head, head_name)
    if init == "xavier":
        _init_xavier(model)
    return model


def count_parameters(model: nn.Module) -> int:
    """All parameters (trainable or not): what sleap-nn records as ``total_params``."""
    return sum(p.numel() for p in model.parameters())
