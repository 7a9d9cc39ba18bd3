"""UNet backbone with the same fields, layer widths and parameter counts as sleap-nn's UNet.

Why parity matters: a sleap-nn ``training_config.yaml`` must build the same network here, so the
``total_params`` sleap-nn records matches and sleap-nn weights can later be loaded tensor for
tensor. The layout below reproduces sleap-nn's for ``stem_stride: null, stacks: 1`` (every UNet
checkpoint shipped with sleap-nn uses that); the other two fields are built as documented rather
than as sleap-nn's code happens to behave (see *stem* and *stacks*).

Layout (``L = log2(max_stride)``, ``S = log2(stem_stride)``, ``O = log2(output_stride)``,
widths ``f(l) = int(filters * filters_rate ** l)`` for a level at stride ``2**l``):

* **stem** (only with ``stem_stride``): levels ``l = 0 .. S-1``, each ``convs_per_block`` x
  (conv ``kernel_size``, 'same' padding, ReLU) with ``f(l)`` filters, then a 2x2 max-pool. The
  stem downsamples cheaply and gives **no** skip connections (that is what makes it a stem rather
  than more encoder levels); ``max_stride`` remains the total stride, so the encoder has
  ``L - S`` levels.
* **encoder**: levels ``l = S .. L-1``, same block shape, each output kept as the skip for stride
  ``2**l``, then a 2x2 max-pool.
* **middle block** (``middle_block: true``) at stride ``max_stride``: ``convs_per_block - 1``
  "expand" convs to ``f(L)`` then one "contract" conv at ``f(L)``. Its output (or the last pooled
  encoder output without a middle block) is the *bottleneck*, which class-vector heads use.
* **decoder**: from ``max_stride`` down to ``output_stride``; a block to stride ``2**l`` upsamples
  by 2 (bilinear with ``up_interpolate: true``; otherwise a 3x3 stride-2 transposed conv to
  ``f(l)`` + ReLU, kernel 3 whatever ``kernel_size`` is, as in sleap-nn), concatenates
  ``[skip, upsampled]`` (skip first, sleap-nn's order, so loaded weights line up) when this stack
  has a skip at that stride, then ``convs_per_block`` refine convs at ``f(l)``.
* **stacks** > 1: stacks run in sequence. Stack 0 starts at the stem output; every later stack
  takes the previous stack's decoder output (stride ``output_stride``) as its input, has encoder
  levels ``O .. L-1`` (same widths rule) with its own skips, its own middle block and a decoder
  back to ``output_stride``. The network returns the **last** stack's output. (sleap-nn accepts
  ``stacks`` but its code cannot run more than one; there is no checkpoint to match.)

Inputs must have H and W divisible by ``max_stride`` (the preprocessing chain pads to that), so
every pooling halves exactly and upsampled maps line up with their skips.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _log2_exact(value: int, name: str) -> int:
    """Return log2 of a positive power of two, or raise a config error naming the field."""
    if int(value) != value or value < 1 or int(value) & (int(value) - 1):
        raise ValueError(f"unet.{name} must be a positive power of two, got {value!r}")
    return int(math.log2(int(value)))


class ConvBlock(nn.Sequential):
    """``num_convs`` x (conv with 'same' padding, ReLU): the unit every UNet level is made of."""

    def __init__(self, in_channels: int, out_channels: int, num_convs: int, kernel_size: int):
        layers: list[nn.Module] = []
        for i in range(num_convs):
            layers.append(
                nn.Conv2d(
                    in_channels if i == 0 else out_channels,
                    out_channels,
                    kernel_size=kernel_size,
                    padding="same",
                )
            )
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)
        self.out_channels = out_channels


class UpBlock(nn.Module):
    """Upsample x2, concatenate the skip (if any) in front, refine with convs.

    ``up_interpolate`` picks bilinear upsampling (no parameters, channels unchanged) or a learned
    3x3 stride-2 transposed conv with ReLU that also maps the channels to ``out_channels``.
    """

    def __init__(
        self,
        in_channels: int,
        skip_channels: int,
        out_channels: int,
        num_convs: int,
        kernel_size: int,
        up_interpolate: bool,
    ):
        super().__init__()
        self.up_interpolate = up_interpolate
        if up_interpolate:
            self.upsample: nn.Module = nn.Upsample(
                scale_factor=2, mode="bilinear", align_corners=False
            )
            up_channels = in_channels
        else:
            self.upsample = nn.Sequential(
                nn.ConvTranspose2d(
                    in_channels,
                    out_channels,
                    kernel_size=3,
                    stride=2,
                    padding=1,
                    output_padding=1,
                ),
                nn.ReLU(inplace=True),
            )
            up_channels = out_channels
        self.skip_channels = skip_channels
        self.refine = ConvBlock(up_channels + skip_channels, out_channels, num_convs, kernel_size)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        """Upsample ``x``; ``skip`` must be given exactly when the block was built with one."""
        x = self.upsample(x)
        if self.skip_channels:
            if skip is None:
                raise ValueError("UpBlock built with a skip connection was called without one")
            x = torch.cat((skip, x), dim=1)
        return self.refine(x)


class EncoderDecoder(nn.Module):
    """One UNet stack: encoder levels with skips, optional middle block, decoder.

    ``first_level`` is log2 of the stride of the input this stack receives; the encoder runs
    levels ``first_level .. top_level - 1`` and the decoder returns to ``2**out_level``.
    """

    def __init__(
        self,
        in_channels: int,
        first_level: int,
        top_level: int,
        out_level: int,
        filters: int,
        filters_rate: float,
        convs_per_block: int,
        kernel_size: int,
        middle_block: bool,
        up_interpolate: bool,
    ):
        super().__init__()

        def width(level: int) -> int:
            return int(filters * filters_rate**level)

        self.first_level = first_level
        self.top_level = top_level
        self.out_level = out_level
        self.encoder = nn.ModuleList()
        channels = in_channels
        skip_channels: dict[int, int] = {}
        for level in range(first_level, top_level):
            block = ConvBlock(channels, width(level), convs_per_block, kernel_size)
            self.encoder.append(block)
            channels = skip_channels[level] = block.out_channels
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

        self.middle: nn.Module | None = None
        if middle_block:
            top = width(top_level)
            layers: list[nn.Module] = []
            if convs_per_block > 1:
                layers.append(ConvBlock(channels, top, convs_per_block - 1, kernel_size))
                channels = top
            layers.append(ConvBlock(channels, top, 1, kernel_size))
            channels = top
            self.middle = nn.Sequential(*layers)
        self.bottleneck_channels = channels

        self.decoder = nn.ModuleList()
        self.stride_channels: dict[int, int] = {2**top_level: channels}
        for level in range(top_level - 1, out_level - 1, -1):
            block = UpBlock(
                channels,
                skip_channels.get(level, 0),
                width(level),
                convs_per_block,
                kernel_size,
                up_interpolate,
            )
            self.decoder.append(block)
            channels = self.stride_channels[2**level] = block.out_channels
        self.out_channels = channels

    def forward(self, x: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Return ({stride: decoder features}, bottleneck); the input stride is ``first_level``."""
        skips: dict[int, torch.Tensor] = {}
        for offset, block in enumerate(self.encoder):
            x = block(x)
            skips[self.first_level + offset] = x
            x = self.pool(x)
        if self.middle is not None:
            x = self.middle(x)
        bottleneck = x
        outputs = {2**self.top_level: x}
        for offset, block in enumerate(self.decoder):
            level = self.top_level - 1 - offset
            x = block(x, skips.get(level))
            outputs[2**level] = x
        return outputs, bottleneck


class UNet(nn.Module):
    """sleap-nn-compatible UNet backbone (see the module docstring for the exact layout).

    Attributes:
        in_channels, max_stride, output_stride, stem_stride, stacks: as configured.
        out_channels: channels of the output features (at ``output_stride``).
        bottleneck_channels: channels of the last stack's bottleneck (at ``max_stride``).
        stride_channels: ``{stride: channels}`` of the last stack's decoder outputs, from
            ``max_stride`` down to ``output_stride``; heads at coarser strides (e.g. PAFs) use it.
    """

    def __init__(
        self,
        in_channels: int = 1,
        kernel_size: int = 3,
        filters: int = 32,
        filters_rate: float = 1.5,
        max_stride: int = 16,
        stem_stride: int | None = None,
        middle_block: bool = True,
        up_interpolate: bool = True,
        stacks: int = 1,
        convs_per_block: int = 2,
        output_stride: int = 1,
    ):
        super().__init__()
        top = _log2_exact(max_stride, "max_stride")
        out = _log2_exact(output_stride, "output_stride")
        stem = 0 if stem_stride is None else _log2_exact(stem_stride, "stem_stride")
        if out > top:
            raise ValueError(
                f"unet.output_stride ({output_stride}) cannot exceed max_stride ({max_stride})"
            )
        if stem > top:
            raise ValueError(
                f"unet.stem_stride ({stem_stride}) cannot exceed max_stride ({max_stride})"
            )
        if stacks < 1 or convs_per_block < 1 or filters < 1 or in_channels < 1:
            raise ValueError(
                "unet.stacks, convs_per_block, filters and in_channels must all be >= 1, got "
                f"{stacks}, {convs_per_block}, {filters}, {in_channels}"
            )
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"unet.kernel_size must be odd for 'same' padding, got {kernel_size}")

        self.in_channels = in_channels
        self.max_stride = max_stride
        self.output_stride = output_stride
        self.stem_stride = 2**stem
        self.stacks = stacks

        self.stem = nn.ModuleList()
        channels = in_channels
        for level in range(stem):
            block = ConvBlock(
                channels, int(filters * filters_rate**level), convs_per_block, kernel_size
            )
            self.stem.append(block)
            channels = block.out_channels
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2)

        self.stack_modules = nn.ModuleList()
        for index in range(stacks):
            stack = EncoderDecoder(
                in_channels=channels,
                first_level=stem if index == 0 else out,
                top_level=top,
                out_level=out,
                filters=filters,
                filters_rate=filters_rate,
                convs_per_block=convs_per_block,
                kernel_size=kernel_size,
                middle_block=middle_block,
                up_interpolate=up_interpolate,
            )
            self.stack_modules.append(stack)
            channels = stack.out_channels
        last = self.stack_modules[-1]
        self.out_channels: int = last.out_channels
        self.bottleneck_channels: int = last.bottleneck_channels
        self.stride_channels: dict[int, int] = dict(last.stride_channels)

    def _check_input(self, x: torch.Tensor) -> None:
        check_backbone_input(x, self.in_channels, self.max_stride, "UNet")

    def forward_features(self, x: torch.Tensor) -> tuple[dict[int, torch.Tensor], torch.Tensor]:
        """Run the network; return ({stride: last-stack decoder features}, bottleneck)."""
        self._check_input(x)
        for block in self.stem:
            x = self.pool(block(x))
        outputs: dict[int, torch.Tensor] = {}
        bottleneck = x
        for stack in self.stack_modules:
            outputs, bottleneck = stack(x)
            x = outputs[self.output_stride]
        return outputs, bottleneck

    def forward(
        self, x: torch.Tensor, return_bottleneck: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Features at ``output_stride`` (B, out_channels, H/s, W/s); optionally the bottleneck."""
        outputs, bottleneck = self.forward_features(x)
        if return_bottleneck:
            return outputs[self.output_stride], bottleneck
        return outputs[self.output_stride]

    @classmethod
    def from_config(cls, config: dict, in_channels: int | None = None) -> UNet:
        """Build from a sleap-nn ``backbone_config.unet`` dict; missing keys take sleap-nn defaults.

        Unknown keys raise, so a typo does not silently build a different network.
        """
        defaults = {
            "in_channels": 1,
            "kernel_size": 3,
            "filters": 32,
            "filters_rate": 1.5,
            "max_stride": 16,
            "stem_stride": None,
            "middle_block": True,
            "up_interpolate": True,
            "stacks": 1,
            "convs_per_block": 2,
            "output_stride": 1,
        }
        unknown = sorted(set(config) - set(defaults))
        if unknown:
            raise ValueError(
                f"Unknown key(s) in model_config.backbone_config.unet: {unknown}; "
                f"known keys: {sorted(defaults)}"
            )
        kwargs = {**defaults, **{k: v for k, v in config.items() if v is not None}}
        kwargs["stem_stride"] = config.get("stem_stride")
        if in_channels is not None:
            kwargs["in_channels"] = in_channels
        for key in (
            "in_channels",
            "kernel_size",
            "filters",
            "max_stride",
            "stacks",
            "convs_per_block",
            "output_stride",
        ):
            kwargs[key] = int(kwargs[key])
        if kwargs["stem_stride"] is not None:
            kwargs["stem_stride"] = int(kwargs["stem_stride"])
        kwargs["filters_rate"] = float(kwargs["filters_rate"])
        kwargs["middle_block"] = bool(kwargs["middle_block"])
        kwargs["up_interpolate"] = bool(kwargs["up_interpolate"])
        return cls(**kwargs)


def check_backbone_input(x: torch.Tensor, in_channels: int, max_stride: int, name: str) -> None:
    """Reject inputs a backbone cannot take, with a message that says what to fix."""
    if x.ndim != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{name} expects (B, {in_channels}, H, W) input, got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    if h % max_stride or w % max_stride:
        raise ValueError(
            f"{name} input H, W = {h}, {w} must be multiples of max_stride={max_stride};"
            " pad the image (the preprocessing chain does this)"
        )
