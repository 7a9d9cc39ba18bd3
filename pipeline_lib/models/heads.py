"""Output heads: small layers that turn backbone features into the maps a model type predicts.

Each head declares the output stride it works at and the key it writes in the model's output
dict, so the model can hand it the right backbone features and the training/inference code can
find its output by name. Only confidence-map heads exist now; PAF, class-map and class-vector
heads will subclass :class:`Head` the same way.
"""

from __future__ import annotations

import torch
from torch import nn


class Head(nn.Module):
    """Base class: a layer reading backbone features at ``output_stride``.

    Attributes:
        name: key of this head's tensor in the model output dict (e.g. ``"confmaps"``).
        in_channels: channels of the backbone features the head reads.
        out_channels: channels the head predicts.
        output_stride: stride of the feature map the head reads and of its output.
    """

    name: str = ""

    def __init__(self, in_channels: int, out_channels: int, output_stride: int):
        super().__init__()
        if out_channels < 1:
            raise ValueError(f"{type(self).__name__} needs >= 1 output channel, got {out_channels}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.output_stride = int(output_stride)

    def check_stride(self, backbone_output_stride: int) -> None:
        """Fail with a config-level message when the head and backbone strides disagree."""
        if self.output_stride != int(backbone_output_stride):
            raise ValueError(
                f"{self.name} head output_stride ({self.output_stride}) differs from the "
                f"backbone output_stride ({backbone_output_stride}); set both to the same value "
                "in the model config (head_configs.<model type>.<head>.output_stride and "
                "backbone_config.<backbone>.output_stride)"
            )


class ConfmapsHead(Head):
    """Confidence maps: a 1x1 conv from decoder features to one channel per predicted point.

    Linear output (no activation), as in SLEAP/sleap-nn: targets are Gaussians with peak 1 and
    the MSE loss is applied to the raw output.
    """

    name = "confmaps"

    def __init__(self, in_channels: int, out_channels: int, output_stride: int):
        super().__init__(in_channels, out_channels, output_stride)
        self.conv = nn.Conv2d(self.in_channels, self.out_channels, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, out_channels, h, w)."""
        return self.conv(features)
