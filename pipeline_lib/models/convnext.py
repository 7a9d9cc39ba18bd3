"""ConvNeXt backbone: torchvision's ConvNeXt stages as the encoder, a UNet-style decoder on top.

Why torchvision's blocks: ImageNet weights (``pre_trained_weights``) then load by name, and the
blocks are maintained upstream. The encoder's ``features`` sequence has torchvision's layout
(stem, stage 0, downsample, stage 1, ...), so ``features.*`` tensors of a torchvision ConvNeXt
checkpoint land at ``encoder.features.*`` here (see :mod:`pipeline_lib.models.pretrained`).

Differences from torchvision's classifier, all for pose estimation: the stem patch conv uses
``stem_patch_kernel``/``stem_patch_stride`` (sleap-nn's default 4/2 instead of 4/4, so features
start at stride 2) with padding that keeps sizes exact; the input has ``in_channels`` channels;
no stochastic depth; no classifier. Strides, extra levels and decoder widths are described in
:mod:`pipeline_lib.models.decoder`.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.models.convnext import CNBlock, LayerNorm2d

from pipeline_lib.models.decoder import (
    StageBackbone,
    check_keys,
    resolve_arch,
    same_size_padding,
)

#: torchvision's architectures (``depths`` blocks per stage, ``channels`` per stage).
CONVNEXT_ARCHS: dict[str, dict[str, list[int]]] = {
    "tiny": {"depths": [3, 3, 9, 3], "channels": [96, 192, 384, 768]},
    "small": {"depths": [3, 3, 27, 3], "channels": [96, 192, 384, 768]},
    "base": {"depths": [3, 3, 27, 3], "channels": [128, 256, 512, 1024]},
    "large": {"depths": [3, 3, 27, 3], "channels": [192, 384, 768, 1536]},
}

CONVNEXT_DEFAULTS = {
    "pre_trained_weights": None,
    "in_channels": 1,
    "model_type": "tiny",
    "arch": None,
    "kernel_size": 3,
    "filters_rate": 2.0,
    "convs_per_block": 2,
    "up_interpolate": True,
    "stem_patch_kernel": 4,
    "stem_patch_stride": 2,
    "max_stride": 32,
    "output_stride": 1,
}


class ConvNeXtEncoder(nn.Module):
    """Stem + ConvNeXt stages; ``forward`` returns every stage's output (NCHW)."""

    def __init__(
        self,
        depths: list[int],
        channels: list[int],
        in_channels: int,
        stem_kernel: int,
        stem_stride: int,
        where: str,
    ):
        super().__init__()
        if len(depths) != len(channels) or not depths or min(depths) < 1 or min(channels) < 1:
            raise ValueError(
                f"{where}.arch: depths and channels must be equally long lists of positive "
                f"integers, got depths={depths}, channels={channels}"
            )
        norm = partial(LayerNorm2d, eps=1e-6)
        pad = same_size_padding(stem_kernel, stem_stride, f"{where}.stem_patch_kernel")
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, channels[0], stem_kernel, stride=stem_stride, padding=pad),
                norm(channels[0]),
            )
        ]
        self.stage_indices: list[int] = []
        for i, (depth, dim) in enumerate(zip(depths, channels, strict=True)):
            if i > 0:
                layers.append(
                    nn.Sequential(
                        norm(channels[i - 1]),
                        nn.Conv2d(channels[i - 1], dim, kernel_size=2, stride=2),
                    )
                )
            self.stage_indices.append(len(layers))
            layers.append(nn.Sequential(*(CNBlock(dim, 1e-6, 0.0) for _ in range(depth))))
        self.features = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image (B, C, H, W) -> [stage 0 output, stage 1 output, ...]."""
        stages: list[torch.Tensor] = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.stage_indices:
                stages.append(x)
        return stages


class ConvNeXt(StageBackbone):
    """ConvNeXt encoder + UNet-style decoder (``backbone_config.convnext``)."""

    config_name = "convnext"

    def __init__(
        self,
        depths: list[int],
        channels: list[int],
        in_channels: int = 1,
        stem_patch_kernel: int = 4,
        stem_patch_stride: int = 2,
        max_stride: int | None = 32,
        output_stride: int = 1,
        filters_rate: float = 2.0,
        convs_per_block: int = 2,
        kernel_size: int = 3,
        up_interpolate: bool = True,
        pre_trained_weights: str | None = None,
    ):
        super().__init__()
        where = "model_config.backbone_config.convnext"
        encoder = ConvNeXtEncoder(
            [int(d) for d in depths],
            [int(c) for c in channels],
            int(in_channels),
            int(stem_patch_kernel),
            int(stem_patch_stride),
            where,
        )
        self._build_frame(
            encoder,
            [int(c) for c in channels],
            in_channels=int(in_channels),
            stem_stride=int(stem_patch_stride),
            max_stride=max_stride,
            output_stride=int(output_stride),
            filters_rate=float(filters_rate),
            convs_per_block=int(convs_per_block),
            kernel_size=int(kernel_size),
            up_interpolate=bool(up_interpolate),
        )
        #: torchvision weights enum name to initialise the encoder from (loaded by build_model).
        self.pre_trained_weights = pre_trained_weights

    @classmethod
    def from_config(cls, config: dict, in_channels: int | None = None) -> ConvNeXt:
        """Build from ``backbone_config.convnext``; missing/null keys take sleap-nn defaults."""
        where = "model_config.backbone_config.convnext"
        check_keys(config, CONVNEXT_DEFAULTS, where)
        cfg = {**CONVNEXT_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        arch = resolve_arch(
            cfg["model_type"], config.get("arch"), CONVNEXT_ARCHS, ("depths", "channels"), where
        )
        return cls(
            depths=list(arch["depths"]),
            channels=list(arch["channels"]),
            in_channels=int(in_channels if in_channels is not None else cfg["in_channels"]),
            stem_patch_kernel=int(cfg["stem_patch_kernel"]),
            stem_patch_stride=int(cfg["stem_patch_stride"]),
            max_stride=int(cfg["max_stride"]),
            output_stride=int(cfg["output_stride"]),
            filters_rate=float(cfg["filters_rate"]),
            convs_per_block=int(cfg["convs_per_block"]),
            kernel_size=int(cfg["kernel_size"]),
            up_interpolate=bool(cfg["up_interpolate"]),
            pre_trained_weights=cfg["pre_trained_weights"],
        )
