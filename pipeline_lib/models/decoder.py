"""The UNet-style decoder and backbone frame shared by the ConvNeXt and Swin backbones.

Why a shared frame: ConvNeXt and Swin differ only in their encoder stages; how those stages are
turned into pose features (extra levels up to ``max_stride``, a decoder with skip connections
down to ``output_stride``, the backbone interface the model and heads use) is the same, and is
the same as the UNet's, so heads work on any backbone unchanged.

How strides map (``s = stem_patch_stride``, ``n`` = number of encoder stages, ``c_i`` their
channels, ``E = s * 2**(n - 1)``):

* the stem (a patch conv) takes the image to stride ``s``; stage ``i`` runs at stride
  ``s * 2**i`` (a 2x downsampling sits between consecutive stages), so the encoder ends at
  ``E`` (``s = 2`` with 4 stages: 2, 4, 8, 16; torchvision's ImageNet ``s = 4``: 4 .. 32);
* ``max_stride`` is the network's total stride (images are padded to a multiple of it). It
  must be ``E`` times a power of two. Each doubling above ``E`` is one *extra level*: a 2x2
  max-pool and ``convs_per_block`` x (conv of ``kernel_size`` + ReLU) at width
  ``w(stride)``. sleap-nn's documented default (``max_stride: 32`` with ``s = 2``) therefore
  gives one extra level; ``max_stride: 16`` gives none;
* the output at ``max_stride`` is the *bottleneck* (class-vector heads read it);
* the decoder goes from ``max_stride`` down to ``output_stride``. A block to stride ``t``
  upsamples x2 (bilinear, or a learned transposed conv without ``up_interpolate``), puts the
  skip in front when there is an encoder feature at ``t`` (the stage output, or an extra
  level's output), then refines with ``convs_per_block`` convs to ``w(t)`` channels. Strides
  below ``s`` have no skip.

Widths: ``w(t) = int(c_0 * filters_rate ** log2(t / s))``: the first stage's width at the stem
stride, scaled by ``filters_rate`` per level up or down (with torchvision's architectures and
``filters_rate: 2`` this equals each stage's own width).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from pipeline_lib.models.unet import ConvBlock, UpBlock, check_backbone_input


def log2_exact(value: int, where: str) -> int:
    """log2 of a positive power of two, or a config error naming ``where``."""
    if int(value) != value or value < 1 or int(value) & (int(value) - 1):
        raise ValueError(f"{where} must be a positive power of two, got {value!r}")
    return int(math.log2(int(value)))


def same_size_padding(kernel: int, stride: int, where: str) -> int:
    """Symmetric padding that makes a strided conv output exactly ``H / stride``.

    ``floor((H + 2p - k) / s) + 1 == H / s`` for ``H`` a multiple of ``s`` needs
    ``k - s <= 2p < k``; an even kernel with stride 1 has no such ``p``.
    """
    pad = max(0, math.ceil((kernel - stride) / 2))
    if not (kernel - stride <= 2 * pad < kernel):
        raise ValueError(
            f"{where}: a {kernel}x{kernel} patch kernel with stride {stride} cannot keep the "
            "feature size an exact fraction of the image; use an odd kernel or a larger stride"
        )
    return pad


class Decoder(nn.Module):
    """UNet decoder from ``top_stride`` down to ``output_stride`` with optional skips.

    Args:
        in_channels: channels of the input at ``top_stride``.
        top_stride: stride of the input (the bottleneck).
        output_stride: stride of the last block's output.
        skip_channels: ``{stride: channels}`` of the skip features available.
        width: refine-conv width of the block to a given stride.
        convs_per_block, kernel_size, up_interpolate: as in the UNet.

    Attributes:
        stride_channels: ``{stride: channels}`` of every output, ``top_stride`` included.
    """

    def __init__(
        self,
        in_channels: int,
        top_stride: int,
        output_stride: int,
        skip_channels: dict[int, int],
        width: Callable[[int], int],
        convs_per_block: int,
        kernel_size: int,
        up_interpolate: bool,
    ):
        super().__init__()
        self.top_stride = int(top_stride)
        self.blocks = nn.ModuleList()
        self.block_strides: list[int] = []
        self.stride_channels: dict[int, int] = {self.top_stride: int(in_channels)}
        channels = int(in_channels)
        stride = self.top_stride
        while stride > output_stride:
            stride //= 2
            block = UpBlock(
                channels,
                skip_channels.get(stride, 0),
                width(stride),
                convs_per_block,
                kernel_size,
                up_interpolate,
            )
            self.blocks.append(block)
            self.block_strides.append(stride)
            channels = self.stride_channels[stride] = block.out_channels
        self.out_channels = channels

    def forward(self, x: torch.Tensor, skips: dict[int, torch.Tensor]) -> dict[int, torch.Tensor]:
        """Return ``{stride: features}`` from ``top_stride`` (the input) to ``output_stride``."""
        outputs = {self.top_stride: x}
        for stride, block in zip(self.block_strides, self.blocks, strict=True):
            x = block(x, skips.get(stride) if block.skip_channels else None)
            outputs[stride] = x
        return outputs


class StageBackbone(nn.Module):
    """Encoder stages + extra levels + decoder, with the UNet's backbone interface.

    Subclasses build ``encoder``: a module whose forward returns the list of stage outputs
    (NCHW), stage ``i`` at stride ``stem_stride * 2**i`` with ``stage_channels[i]`` channels.

    Attributes:
        in_channels, max_stride, output_stride, stem_stride: as configured.
        encoder_stride: stride at the end of the encoder stages (``E`` in the module docstring).
        out_channels: channels of the features at ``output_stride``.
        bottleneck_channels: channels at ``max_stride``.
        stride_channels: ``{stride: channels}`` of the decoder outputs, ``max_stride`` down to
            ``output_stride``; heads at coarser strides read these.
    """

    config_name = ""

    def _build_frame(
        self,
        encoder: nn.Module,
        stage_channels: list[int],
        in_channels: int,
        stem_stride: int,
        max_stride: int | None,
        output_stride: int,
        filters_rate: float,
        convs_per_block: int,
        kernel_size: int,
        up_interpolate: bool,
    ) -> None:
        """Check the strides, then build the extra levels and the decoder around ``encoder``."""
        where = f"model_config.backbone_config.{self.config_name}"
        stem = log2_exact(stem_stride, f"{where}.stem_patch_stride")
        out = log2_exact(output_stride, f"{where}.output_stride")
        if not stage_channels:
            raise ValueError(f"{where}: the architecture needs at least one stage")
        encoder_stride = 2 ** (stem + len(stage_channels) - 1)
        if max_stride is None:
            max_stride = encoder_stride
        top = log2_exact(max_stride, f"{where}.max_stride")
        if max_stride < encoder_stride:
            raise ValueError(
                f"{where}.max_stride ({max_stride}) is below the stride the encoder reaches: "
                f"stem_patch_stride {stem_stride} x 2**({len(stage_channels)} stages - 1) = "
                f"{encoder_stride}; set max_stride to {encoder_stride} or a larger power of two"
            )
        if out > top:
            raise ValueError(
                f"{where}.output_stride ({output_stride}) cannot exceed max_stride ({max_stride})"
            )
        if min(convs_per_block, in_channels) < 1:
            raise ValueError(
                f"{where}.convs_per_block and in_channels must be >= 1, got "
                f"{convs_per_block}, {in_channels}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                f"{where}.kernel_size must be odd for 'same' padding, got {kernel_size}"
            )
        if filters_rate <= 0:
            raise ValueError(f"{where}.filters_rate must be > 0, got {filters_rate}")

        self.in_channels = int(in_channels)
        self.stem_stride = int(stem_stride)
        self.encoder_stride = encoder_stride
        self.max_stride = int(max_stride)
        self.output_stride = int(output_stride)
        self.encoder = encoder
        first = int(stage_channels[0])

        def width(stride: int) -> int:
            return max(1, int(first * filters_rate ** (math.log2(stride) - stem)))

        skip_channels = {2 ** (stem + i): int(c) for i, c in enumerate(stage_channels[:-1])}
        channels = int(stage_channels[-1])
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)
        self.extra_levels = nn.ModuleList()
        stride = encoder_stride
        while stride < max_stride:
            skip_channels[stride] = channels
            stride *= 2
            block = ConvBlock(channels, width(stride), convs_per_block, kernel_size)
            self.extra_levels.append(block)
            channels = block.out_channels
        self.bottleneck_channels = channels
        self.decoder = Decoder(
            channels,
            self.max_stride,
            self.output_stride,
            skip_channels,
            width,
            convs_per_block,
            kernel_size,
            up_interpolate,
        )
        self.stride_channels: dict[int, int] = dict(self.decoder.stride_channels)
        self.out_channels: int = self.decoder.out_channels

    def _check_input(self, x: torch.Tensor) -> None:
        check_backbone_input(x, self.in_channels, self.max_stride, type(self).__name__)

    def forward_features(self, x: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Run the network; return ({stride: decoder features}, bottleneck)."""
        self._check_input(x)
        stages = self.encoder(x)
        skips = {self.stem_stride * 2**i: f for i, f in enumerate(stages[:-1])}
        x = stages[-1]
        stride = self.encoder_stride
        for block in self.extra_levels:
            skips[stride] = x
            x = block(self.pool(x))
            stride *= 2
        return self.decoder(x, skips), x

    def forward(
        self, x: torch.Tensor, return_bottleneck: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Features at ``output_stride``; optionally the bottleneck too."""
        outputs, bottleneck = self.forward_features(x)
        if return_bottleneck:
            return outputs[self.output_stride], bottleneck
        return outputs[self.output_stride]


def check_keys(config: dict, known: dict, where: str) -> None:
    """Unknown keys raise, so a typo does not silently build a different network."""
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise ValueError(f"Unknown key(s) in {where}: {unknown}; known keys: {sorted(known)}")


def resolve_arch(
    model_type: str | None,
    arch: dict | None,
    presets: dict[str, dict],
    keys: tuple[str, ...],
    where: str,
) -> dict:
    """The architecture to build: an explicit non-empty ``arch`` wins over ``model_type``.

    (``model_type`` always has a default, so a user who writes ``arch`` means it.)
    """
    if arch:
        if not isinstance(arch, dict):
            raise ValueError(f"{where}.arch must be a mapping with keys {list(keys)}, got {arch!r}")
        missing = [k for k in keys if arch.get(k) is None]
        unknown = sorted(set(arch) - set(keys))
        if missing or unknown:
            raise ValueError(
                f"{where}.arch needs exactly the keys {list(keys)}; missing {missing}, "
                f"unknown {unknown}"
            )
        return dict(arch)
    name = model_type or "tiny"
    if name not in presets:
        raise ValueError(f"{where}.model_type must be one of {sorted(presets)}, got {name!r}")
    return dict(presets[name])
