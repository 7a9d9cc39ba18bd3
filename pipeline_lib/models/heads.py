"""Output heads: small layers that turn backbone features into the outputs a model type predicts.

Each head declares the key it writes in the model's output dict, the stride of the backbone
features it reads and whether it reads decoder features (one map per output cell) or the
encoder's bottleneck (one vector per image). The model hands every head the right tensor, and
training and inference find the outputs by name.

Layer layouts follow sleap-nn (a 1x1 conv per map head; Linear layers for class vectors), so
the heads of sleap-nn checkpoints load tensor for tensor, in this order.
"""

from __future__ import annotations

import torch
from torch import nn


class Head(nn.Module):
    """Base class: a layer reading backbone features at ``output_stride``.

    Attributes:
        name: key of this head's tensor in the model output dict (e.g. ``"confmaps"``).
        reads_bottleneck: True for heads fed the encoder's bottleneck (``output_stride`` is then
            the backbone's ``max_stride``); False for heads fed decoder features.
        in_channels: channels of the backbone features the head reads.
        out_channels: channels (or classes) the head predicts.
        output_stride: stride of the feature map the head reads and of its output map.
    """

    name: str = ""
    reads_bottleneck: bool = False

    def __init__(self, in_channels: int, out_channels: int, output_stride: int):
        super().__init__()
        if out_channels < 1:
            raise ValueError(f"{type(self).__name__} needs >= 1 output channel, got {out_channels}")
        if in_channels < 1:
            raise ValueError(f"{type(self).__name__} needs >= 1 input channel, got {in_channels}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.output_stride = int(output_stride)


class _MapHead(Head):
    """A 1x1 conv from decoder features to ``out_channels`` maps (linear output)."""

    def __init__(self, in_channels: int, out_channels: int, output_stride: int):
        super().__init__(in_channels, out_channels, output_stride)
        self.conv = nn.Conv2d(self.in_channels, self.out_channels, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, out_channels, h, w)."""
        return self.conv(features)


class ConfmapsHead(_MapHead):
    """Confidence maps, one channel per predicted point (one for a centroid model).

    Linear output (no activation), as in SLEAP/sleap-nn: targets are Gaussians with peak 1 and
    the MSE loss is applied to the raw output.
    """

    name = "confmaps"


class PafsHead(_MapHead):
    """Part affinity fields: ``2 * n_edges`` channels ordered (edge0_x, edge0_y, edge1_x, ...).

    Linear output: PAF components are unit-vector components in [-1, 1], regressed with MSE.
    """

    name = "pafs"

    def __init__(self, in_channels: int, n_edges: int, output_stride: int):
        if n_edges < 1:
            raise ValueError(f"a PAF head needs at least one skeleton edge, got {n_edges}")
        super().__init__(in_channels, 2 * int(n_edges), output_stride)
        self.n_edges = int(n_edges)


class ClassMapsHead(_MapHead):
    """Identity maps, one channel per class, squashed to [0, 1] by a sigmoid.

    The sigmoid is part of the model as in SLEAP/sleap-nn (targets are Gaussians in [0, 1]
    trained with MSE), so loaded sleap-nn weights produce the maps they were trained to.
    """

    name = "class_maps"

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, n_classes, h, w) in [0, 1]."""
        return torch.sigmoid(self.conv(features))


class ClassVectorsHead(Head):
    """Identity classifier of a top-down crop, reading the encoder's bottleneck.

    Bottleneck (B, C, h, w) -> global max pool (``global_pool``, SLEAP/sleap-nn's choice, so their
    weights behave as trained) or flatten -> ``num_fc_layers`` x (Linear ``num_fc_units`` + ReLU)
    -> Linear ``n_classes``. Returns **logits** (train with cross-entropy; softmax them for
    probabilities). Without ``global_pool`` the flattened size is ``C * h * w``, fixed at build
    time by ``bottleneck_hw`` (the crop size divided by the backbone's ``max_stride``).
    """

    name = "class_vectors"
    reads_bottleneck = True

    def __init__(
        self,
        in_channels: int,
        n_classes: int,
        output_stride: int,
        num_fc_layers: int = 1,
        num_fc_units: int = 64,
        global_pool: bool = True,
        bottleneck_hw: tuple[int, int] | None = None,
    ):
        super().__init__(in_channels, n_classes, output_stride)
        if num_fc_layers < 0 or num_fc_units < 1:
            raise ValueError(
                "class_vectors.num_fc_layers must be >= 0 and num_fc_units >= 1, got "
                f"{num_fc_layers}, {num_fc_units}"
            )
        self.global_pool = bool(global_pool)
        if self.global_pool:
            self.bottleneck_hw = None
            features = self.in_channels
        else:
            if bottleneck_hw is None:
                raise ValueError(
                    "class_vectors.global_pool is false, so the classifier's input size depends "
                    "on the crop size: pass input_hw (the crop size) when building the model"
                )
            self.bottleneck_hw = (int(bottleneck_hw[0]), int(bottleneck_hw[1]))
            features = self.in_channels * self.bottleneck_hw[0] * self.bottleneck_hw[1]
        self.fc = nn.ModuleList()
        for _ in range(int(num_fc_layers)):
            self.fc.append(nn.Linear(features, int(num_fc_units)))
            features = int(num_fc_units)
        self.out = nn.Linear(features, self.out_channels)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, h, w) -> (B, n_classes) logits."""
        if self.global_pool:
            x = torch.amax(bottleneck, dim=(-2, -1))
        else:
            if tuple(bottleneck.shape[-2:]) != self.bottleneck_hw:
                raise ValueError(
                    f"class_vectors head was built for a {self.bottleneck_hw} bottleneck (from "
                    f"input_hw) but got {tuple(bottleneck.shape[-2:])}; the model input must be "
                    "the crop size it was built for (or use global_pool: true)"
                )
            x = torch.flatten(bottleneck, start_dim=1)
        for layer in self.fc:
            x = torch.relu(layer(x))
        return self.out(x)
