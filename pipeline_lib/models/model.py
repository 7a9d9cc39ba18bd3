"""Model assembly: backbone + heads from a sleap-nn ``model_config`` section.

The model type is the one non-null entry of ``head_configs`` and the backbone the one non-null
entry of ``backbone_config`` (the design's "config is data" rule). Output is a dict keyed by head
name so every model type shares the training and inference code paths:

==========================  ==============================================================
model type                  outputs
==========================  ==============================================================
single_instance             confmaps (B, n_nodes, h, w)
centroid                    confmaps (B, 1, h, w)
centered_instance           confmaps (B, n_nodes, h, w)
bottomup                    confmaps, pafs (B, 2 * n_edges, h', w') (edge0_x, edge0_y, ...)
multi_class_bottomup        confmaps, class_maps (B, n_classes, h', w') in [0, 1]
multi_class_topdown         confmaps, class_vectors (B, n_classes) logits
==========================  ==============================================================

Every map head reads the decoder features at its own ``output_stride`` (so confmaps and PAFs
may differ); the class-vector head reads the encoder's bottleneck at ``max_stride``. The head
order (confmaps first) is sleap-nn's, so sleap-nn checkpoints map onto ours tensor by tensor.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from pipeline_lib.models.heads import (
    ClassMapsHead,
    ClassVectorsHead,
    ConfmapsHead,
    Head,
    PafsHead,
)

if TYPE_CHECKING:
    from pipeline_lib.models.convnext import ConvNeXt
    from pipeline_lib.models.swint import SwinT
    from pipeline_lib.models.unet import UNet

    Backbone = UNet | ConvNeXt | SwinT

log = logging.getLogger(__name__)

#: Backbone name -> "module:class". Imported on first use: ConvNeXt and SwinT build on
#: torchvision, whose import costs ~1.5 s that UNet models (and every prediction job) skip.
BACKBONES: dict[str, str] = {
    "unet": "pipeline_lib.models.unet:UNet",
    "convnext": "pipeline_lib.models.convnext:ConvNeXt",
    "swint": "pipeline_lib.models.swint:SwinT",
}


def backbone_class(name: str) -> type:
    """The backbone class registered as ``name`` in :data:`BACKBONES`."""
    module, cls = BACKBONES[name].split(":")
    return getattr(importlib.import_module(module), cls)


#: The head sections each model type must have, confmaps first.
MODEL_TYPES: dict[str, tuple[str, ...]] = {
    "single_instance": ("confmaps",),
    "centroid": ("confmaps",),
    "centered_instance": ("confmaps",),
    "bottomup": ("confmaps", "pafs"),
    "multi_class_bottomup": ("confmaps", "class_maps"),
    "multi_class_topdown": ("confmaps", "class_vectors"),
}
CONFMAP_MODEL_TYPES = ("single_instance", "centroid", "centered_instance")
INIT_WEIGHTS = ("default", "xavier")


class PoseModel(nn.Module):
    """A backbone feeding one or more heads; ``forward`` returns ``{head name: tensor}``.

    Attributes:
        head_name: the model type (``"single_instance"``, ``"bottomup"``, ...).
        head_names: output keys in order (``("confmaps", "pafs")`` for bottomup).
        heads: the head modules by output key.
        output_strides: ``{output key: stride}`` of the map outputs (class vectors have none).
        output_stride: the confidence maps' stride.
        in_channels, max_stride: taken from the backbone.
    """

    def __init__(self, backbone: Backbone, heads: Sequence[Head], head_name: str):
        super().__init__()
        if not heads or heads[0].name != "confmaps":
            raise ValueError("a PoseModel needs a confmaps head first")
        names = [h.name for h in heads]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate head names {names}")
        available = sorted(backbone.stride_channels)
        for head in heads:
            if head.reads_bottleneck:
                expected, where = backbone.bottleneck_channels, "bottleneck"
            else:
                if head.output_stride not in backbone.stride_channels:
                    raise ValueError(
                        f"head_configs.{head_name}.{head.name}.output_stride "
                        f"({head.output_stride}) is not produced by the backbone: its decoder "
                        f"outputs strides {available} (from output_stride "
                        f"{backbone.output_stride} to max_stride {backbone.max_stride}); change "
                        "the head's output_stride or the backbone's output_stride/max_stride"
                    )
                expected = backbone.stride_channels[head.output_stride]
                where = f"stride-{head.output_stride} decoder output"
            if head.in_channels != expected:
                raise ValueError(
                    f"{head.name} head reads {head.in_channels} channels but the backbone's "
                    f"{where} has {expected}"
                )
        map_strides = [h.output_stride for h in heads if not h.reads_bottleneck]
        if backbone.output_stride not in map_strides:
            raise ValueError(
                f"the backbone output_stride ({backbone.output_stride}) is finer than every "
                f"head's output_stride {sorted(set(map_strides))}, so its last decoder levels "
                "would be unused: set backbone_config.<backbone>.output_stride to the finest "
                f"head stride ({min(map_strides)})"
            )
        self.backbone = backbone
        self.heads = nn.ModuleDict({h.name: h for h in heads})
        self.head_name = head_name
        self.head_names: tuple[str, ...] = tuple(names)
        self.output_strides: dict[str, int] = {
            h.name: h.output_stride for h in heads if not h.reads_bottleneck
        }
        self.output_stride = self.output_strides["confmaps"]
        self.in_channels = backbone.in_channels
        self.max_stride = backbone.max_stride

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C, H, W) in [0, 1] -> ``{"confmaps": (B, n, H / stride, W / stride), ...}``."""
        features, bottleneck = self.backbone.forward_features(x)
        # Heads run outside autocast, in their parameters' precision: they are cheap, and bf16
        # outputs quantise confidence maps to ~1/256 steps, which cost accuracy when training.
        with torch.autocast(x.device.type, enabled=False):
            return {
                name: head(
                    _as_dtype_of(
                        head, bottleneck if head.reads_bottleneck else features[head.output_stride]
                    )
                )
                for name, head in self.heads.items()
            }


def _as_dtype_of(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype of ``module``'s parameters (bf16 features into an fp32 head)."""
    param = next(module.parameters(), None)
    return x if param is None or x.dtype == param.dtype else x.to(param.dtype)


def _the_one_non_null(section: Mapping | None, where: str, allowed: Sequence[str]) -> str:
    """Name of the single non-null entry of a config section, or a clear error."""
    if not isinstance(section, Mapping):
        raise ValueError(f"model_config.{where} must be a mapping, got {type(section).__name__}")
    # An unknown entry set to null names a choice not taken (sleap-nn 0.3.5 writes e.g.
    # ``backbone_config.pretrained: null`` and null segmentation heads): nothing to build.
    unknown = sorted(k for k in set(section) - set(allowed) if section[k] is not None)
    if unknown:
        raise ValueError(
            f"Unknown key(s) in model_config.{where}: {unknown}; known: {list(allowed)}"
        )
    chosen = [k for k in allowed if section.get(k) is not None]
    if len(chosen) != 1:
        raise ValueError(
            f"model_config.{where} must have exactly one non-null entry among {list(allowed)}, "
            f"got {chosen or 'none'}"
        )
    return chosen[0]


def _init_xavier(model: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every conv and linear layer (sleap-nn's
    ``init_weights: xavier``); norms and Swin's position-bias tables keep their own init."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _count(given: int | None, listed: Sequence | None, what: str, where: str) -> int:
    """A head size from the argument or the config list; both given must agree."""
    if listed is not None and given is not None and len(listed) != int(given):
        raise ValueError(f"{where} lists {len(listed)} {what} but {given} were given")
    if given is not None:
        return int(given)
    if listed is not None:
        return len(listed)
    raise ValueError(f"{where} is null: pass the number of {what} when building the model")


def _int_or(value: object, default: int) -> int:
    """A config integer whose null means the sleap-nn default."""
    return default if value is None else int(value)  # type: ignore[arg-type]


def _build_heads(
    head_name: str,
    head_cfg: Mapping,
    backbone: Backbone,
    n_nodes: int,
    n_edges: int | None,
    n_classes: int | None,
    input_hw: tuple[int, int] | None,
) -> list[Head]:
    """The heads of one model type, confmaps first, at their configured strides."""
    where = f"model_config.head_configs.{head_name}"
    sections = {}
    for key in MODEL_TYPES[head_name]:
        section = head_cfg.get(key) if isinstance(head_cfg, Mapping) else None
        if not isinstance(section, Mapping):
            raise ValueError(f"{where}.{key} must be a mapping")
        sections[key] = section

    def stride_of(key: str) -> int:
        # An unset head stride means "the backbone's".
        value = sections[key].get("output_stride")
        return backbone.output_stride if value is None else int(value)

    def channels_at(stride: int) -> int:
        # Unknown strides are reported by PoseModel with the list of available ones.
        return backbone.stride_channels.get(stride, backbone.out_channels)

    confmaps = sections["confmaps"]
    if head_name == "centroid":
        n_maps = 1
    else:
        n_maps = _count(n_nodes, confmaps.get("part_names"), "part_names", f"{where}.confmaps")
    s = stride_of("confmaps")
    heads: list[Head] = [ConfmapsHead(channels_at(s), n_maps, s)]
    if "pafs" in sections:
        edges = _count(n_edges, sections["pafs"].get("edges"), "edges", f"{where}.pafs.edges")
        s = stride_of("pafs")
        heads.append(PafsHead(channels_at(s), edges, s))
    if "class_maps" in sections:
        classes = _count(
            n_classes, sections["class_maps"].get("classes"), "classes", f"{where}.class_maps"
        )
        s = stride_of("class_maps")
        heads.append(ClassMapsHead(channels_at(s), classes, s))
    if "class_vectors" in sections:
        cv = sections["class_vectors"]
        classes = _count(n_classes, cv.get("classes"), "classes", f"{where}.class_vectors")
        stride = cv.get("output_stride")
        if stride is not None and int(stride) != backbone.max_stride:
            log.warning(
                "%s.class_vectors.output_stride is %s but class vectors always read the "
                "bottleneck at max_stride %s; the value is ignored",
                where,
                stride,
                backbone.max_stride,
            )
        global_pool = cv.get("global_pool")
        global_pool = True if global_pool is None else bool(global_pool)
        bottleneck_hw = None
        if input_hw is not None:
            h, w = (int(v) for v in input_hw)
            if h % backbone.max_stride or w % backbone.max_stride:
                raise ValueError(
                    f"input_hw {h}x{w} (the crop size) must be a multiple of max_stride "
                    f"{backbone.max_stride}"
                )
            bottleneck_hw = (h // backbone.max_stride, w // backbone.max_stride)
        heads.append(
            ClassVectorsHead(
                backbone.bottleneck_channels,
                classes,
                backbone.max_stride,
                num_fc_layers=_int_or(cv.get("num_fc_layers"), 1),
                num_fc_units=_int_or(cv.get("num_fc_units"), 64),
                global_pool=global_pool,
                bottleneck_hw=bottleneck_hw,
            )
        )
    return heads


def build_model(
    model_config: dict,
    n_nodes: int,
    in_channels: int | None = None,
    n_edges: int | None = None,
    n_classes: int | None = None,
    input_hw: tuple[int, int] | None = None,
    load_pre_trained_weights: bool = True,
) -> PoseModel:
    """Build the network a sleap-nn ``model_config`` describes.

    Args:
        model_config: the ``model_config`` section as a plain dict (``init_weights``,
            ``backbone_config``, ``head_configs``; ``total_params`` and the
            ``pretrained_*_weights`` paths are ignored here; see
            :func:`pipeline_lib.models.pretrained.load_pretrained` for the latter).
        n_nodes: skeleton size; confmaps heads predict one map per node (centroid: one map).
        in_channels: overrides the backbone's ``in_channels`` (the resolved channel count after
            ``ensure_rgb`` / ``ensure_grayscale``).
        n_edges: skeleton edges for a bottomup PAF head (else the length of ``pafs.edges``).
        n_classes: identities for class-map / class-vector heads (else the ``classes`` list).
        input_hw: model input size; needed only by a class-vector head with
            ``global_pool: false`` (its first Linear layer's size depends on it): the crop size.
        load_pre_trained_weights: load ``backbone_config.<convnext|swint>.pre_trained_weights``
            (ImageNet, from a local file) into the encoder. Pass False when the weights are
            about to be replaced anyway (loading a trained model for inference).

    Raises:
        ValueError: anything inconsistent in the config, naming the key.
        FileNotFoundError: ImageNet weights requested but not found locally (says where to
            put which file).
    """
    backbone_name = _the_one_non_null(
        model_config.get("backbone_config"), "backbone_config", tuple(BACKBONES)
    )
    head_name = _the_one_non_null(
        model_config.get("head_configs"), "head_configs", tuple(MODEL_TYPES)
    )
    init = model_config.get("init_weights") or "default"
    if init not in INIT_WEIGHTS:
        raise ValueError(f"model_config.init_weights must be one of {INIT_WEIGHTS}, got {init!r}")

    backbone_cfg = model_config["backbone_config"][backbone_name]
    if not isinstance(backbone_cfg, Mapping):
        raise ValueError(f"model_config.backbone_config.{backbone_name} must be a mapping")
    backbone = backbone_class(backbone_name).from_config(
        dict(backbone_cfg), in_channels=in_channels
    )
    heads = _build_heads(
        head_name,
        model_config["head_configs"][head_name],
        backbone,
        n_nodes,
        n_edges,
        n_classes,
        input_hw,
    )
    model = PoseModel(backbone, heads, head_name)
    if init == "xavier":
        _init_xavier(model)
    weights = getattr(backbone, "pre_trained_weights", None)
    if weights and load_pre_trained_weights:
        from pipeline_lib.models.pretrained import load_imagenet_weights

        load_imagenet_weights(backbone, weights)
    return model


def count_parameters(model: nn.Module) -> int:
    """All parameters (trainable or not): what sleap-nn records as ``total_params``."""
    return sum(p.numel() for p in model.parameters())
