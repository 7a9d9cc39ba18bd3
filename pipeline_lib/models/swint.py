"""Swin Transformer backbone: torchvision's Swin stages as the encoder, a UNet-style decoder.

Why torchvision's blocks: ImageNet weights (``pre_trained_weights``) then load by name. The
encoder mirrors torchvision's ``SwinTransformer``: ``features`` = patch embedding (conv,
channels-last permute, LayerNorm), then Swin stages with a ``PatchMerging`` between stages, and
a final ``norm`` on the last stage, so ``features.*`` and ``norm.*`` of a torchvision checkpoint
land at ``encoder.features.*`` / ``encoder.norm.*``.

Differences from torchvision's classifier: the patch conv has kernel ``patch_size`` but stride
``stem_patch_stride`` (sleap-nn's default 4/2: overlapping patches, features from stride 2)
with padding that keeps sizes exact; ``in_channels`` inputs; square ``window_size`` (Swin pads
feature maps to whole windows itself, so any input that is a multiple of ``max_stride`` works);
no stochastic depth; no classifier. Stage ``i`` has ``embed * 2**i`` channels. Strides, extra
levels and decoder widths are described in :mod:`pipeline_lib.models.decoder`.
"""

from __future__ import annotations

from functools import partial

import torch
from torch import nn
from torchvision.models.swin_transformer import PatchMerging, SwinTransformerBlock
from torchvision.ops.misc import Permute

from pipeline_lib.models.decoder import (
    StageBackbone,
    check_keys,
    resolve_arch,
    same_size_padding,
)

#: torchvision's architectures: patch-embedding width, blocks and attention heads per stage.
SWINT_ARCHS: dict[str, dict] = {
    "tiny": {"embed": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24]},
    "small": {"embed": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24]},
    "base": {"embed": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32]},
}

SWINT_DEFAULTS = {
    "pre_trained_weights": None,
    "in_channels": 1,
    "model_type": "tiny",
    "arch": None,
    "patch_size": 4,
    "window_size": 7,
    "kernel_size": 3,
    "filters_rate": 2.0,
    "convs_per_block": 2,
    "up_interpolate": True,
    "stem_patch_stride": 2,
    "max_stride": 32,
    "output_stride": 1,
}


def _swin_arch(arch: dict | None) -> dict | None:
    """Accept the guide's spelling ``channels`` for ``num_heads`` (the guide's example uses it)."""
    if not arch or "channels" not in arch:
        return arch
    arch = dict(arch)
    heads = arch.pop("channels")
    if arch.get("num_heads") not in (None, heads):
        raise ValueError(
            "model_config.backbone_config.swint.arch gives both num_heads and channels (its "
            f"alias) with different values: {arch['num_heads']} vs {heads}"
        )
    arch["num_heads"] = heads
    return arch


class SwinEncoder(nn.Module):
    """Patch embedding + Swin stages; ``forward`` returns every stage's output (NCHW)."""

    def __init__(
        self,
        embed: int,
        depths: list[int],
        num_heads: list[int],
        in_channels: int,
        patch_size: int,
        stem_stride: int,
        window_size: int,
        where: str,
    ):
        super().__init__()
        if len(depths) != len(num_heads) or not depths or min(depths) < 1 or min(num_heads) < 1:
            raise ValueError(
                f"{where}.arch: depths and num_heads must be equally long lists of positive "
                f"integers, got depths={depths}, num_heads={num_heads}"
            )
        if window_size < 1:
            raise ValueError(f"{where}.window_size must be >= 1, got {window_size}")
        self.stage_channels = [int(embed) * 2**i for i in range(len(depths))]
        for dim, heads in zip(self.stage_channels, num_heads, strict=True):
            if dim % heads:
                raise ValueError(
                    f"{where}.arch: stage width {dim} (embed * 2**stage) is not divisible by "
                    f"its {heads} attention heads"
                )
        norm = partial(nn.LayerNorm, eps=1e-5)
        pad = same_size_padding(patch_size, stem_stride, f"{where}.patch_size")
        layers: list[nn.Module] = [
            nn.Sequential(
                nn.Conv2d(in_channels, embed, patch_size, stride=stem_stride, padding=pad),
                Permute([0, 2, 3, 1]),
                norm(embed),
            )
        ]
        self.stage_indices: list[int] = []
        window = [int(window_size), int(window_size)]
        for i, (depth, heads) in enumerate(zip(depths, num_heads, strict=True)):
            dim = self.stage_channels[i]
            if i > 0:
                layers.append(PatchMerging(self.stage_channels[i - 1], norm))
            self.stage_indices.append(len(layers))
            blocks = [
                SwinTransformerBlock(
                    dim,
                    int(heads),
                    window_size=window,
                    shift_size=[0 if j % 2 == 0 else w // 2 for w in window],
                    norm_layer=norm,
                )
                for j in range(int(depth))
            ]
            layers.append(nn.Sequential(*blocks))
        self.features = nn.Sequential(*layers)
        self.norm = norm(self.stage_channels[-1])

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Image (B, C, H, W) -> [stage 0 output, ...] as NCHW (last one layer-normed)."""
        stages: list[torch.Tensor] = []
        last = self.stage_indices[-1]
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index == last:
                x = self.norm(x)
            if index in self.stage_indices:
                stages.append(x.permute(0, 3, 1, 2).contiguous())
        return stages


class SwinT(StageBackbone):
    """Swin Transformer encoder + UNet-style decoder (``backbone_config.swint``)."""

    config_name = "swint"

    def __init__(
        self,
        embed: int,
        depths: list[int],
        num_heads: list[int],
        in_channels: int = 1,
        patch_size: int = 4,
        stem_patch_stride: int = 2,
        window_size: int = 7,
        max_stride: int | None = 32,
        output_stride: int = 1,
        filters_rate: float = 2.0,
        convs_per_block: int = 2,
        kernel_size: int = 3,
        up_interpolate: bool = True,
        pre_trained_weights: str | None = None,
    ):
        super().__init__()
        where = "model_config.backbone_config.swint"
        encoder = SwinEncoder(
            int(embed),
            [int(d) for d in depths],
            [int(h) for h in num_heads],
            int(in_channels),
            int(patch_size),
            int(stem_patch_stride),
            int(window_size),
            where,
        )
        self._build_frame(
            encoder,
            encoder.stage_channels,
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
    def from_config(cls, config: dict, in_channels: int | None = None) -> SwinT:
        """Build from ``backbone_config.swint``; missing/null keys take sleap-nn defaults."""
        where = "model_config.backbone_config.swint"
        check_keys(config, SWINT_DEFAULTS, where)
        cfg = {**SWINT_DEFAULTS, **{k: v for k, v in config.items() if v is not None}}
        arch = resolve_arch(
            cfg["model_type"],
            _swin_arch(config.get("arch")),
            SWINT_ARCHS,
            ("embed", "depths", "num_heads"),
            where,
        )
        return cls(
            embed=int(arch["embed"]),
            depths=list(arch["depths"]),
            num_heads=list(arch["num_heads"]),
            in_channels=int(in_channels if in_channels is not None else cfg["in_channels"]),
            patch_size=int(cfg["patch_size"]),
            stem_patch_stride=int(cfg["stem_patch_stride"]),
            window_size=int(cfg["window_size"]),
            max_stride=int(cfg["max_stride"]),
            output_stride=int(cfg["output_stride"]),
            filters_rate=float(cfg["filters_rate"]),
            convs_per_block=int(cfg["convs_per_block"]),
            kernel_size=int(cfg["kernel_size"]),
            up_interpolate=bool(cfg["up_interpolate"]),
            pre_trained_weights=cfg["pre_trained_weights"],
        )
