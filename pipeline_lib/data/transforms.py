"""The one coordinate chain between a video frame and a model's input and output.

Forward (frame -> model input):
    1. channel coercion (``ensure_rgb`` / ``ensure_grayscale``)
    2. size-match to ``max_height`` x ``max_width``: aspect-preserving resize so the frame fits,
       then pad bottom/right; the resize factor is ``eff_scale`` (1.0 when no maximum is set)
    3. resize by the configured ``scale``
    4. pad bottom/right to a multiple of the network's ``max_stride``

Points follow the same chain. Pixel centres sit on integer coordinates (SLEAP's convention), and
the resizes sample pixel centres (OpenCV's convention), so a point maps as
``model = (frame + 0.5) * eff_scale * scale - 0.5``; with no resizing this is the identity.
Padding is only ever added at the bottom/right, so it never shifts coordinates.

Backward (model output -> frame):
    ``frame = (peak * output_stride + crop_offset + 0.5) / (scale * eff_scale) - 0.5``
where ``peak`` is in output-grid units (grid cell ``j`` is model pixel ``j * output_stride``,
as the confidence-map targets are drawn) and ``crop_offset`` is the top-left corner of a crop in
model-input pixels, zero for full-frame models. Every module that maps coordinates goes through
this file.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class FrameTransform:
    """How one frame size maps onto the model input. Build it with :func:`make_transform`."""

    frame_hw: tuple[int, int]
    eff_scale: float
    scale: float
    sized_hw: tuple[int, int]  # after size-matching (incl. its padding), before ``scale``
    scaled_hw: tuple[int, int]  # after ``scale``, before stride padding
    model_hw: tuple[int, int]  # what the network sees

    @property
    def total_scale(self) -> float:
        """Factor from frame pixels to model-input pixels."""
        return self.eff_scale * self.scale

    def points_to_model(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 2) xy points from frame pixels to model-input pixels (NaN stays NaN)."""
        return (np.asarray(points, dtype=np.float64) + 0.5) * self.total_scale - 0.5

    def points_to_frame(
        self,
        points: np.ndarray,
        output_stride: int = 1,
        crop_offset: np.ndarray | tuple[float, float] | None = None,
    ) -> np.ndarray:
        """Map (..., 2) xy points from a model output grid back to frame pixels.

        ``points`` are in output-grid units (peak indices, possibly sub-pixel); ``crop_offset``
        is the crop's top-left xy in model-input pixels, broadcast against ``points``.
        """
        pts = np.asarray(points, dtype=np.float64) * float(output_stride)
        if crop_offset is not None:
            pts = pts + np.asarray(crop_offset, dtype=np.float64)
        return (pts + 0.5) / self.total_scale - 0.5

    def image_to_model(self, image: np.ndarray) -> np.ndarray:
        """Apply the resize/pad part of the chain to an (H, W, C) image (channels already set)."""
        if image.shape[:2] != self.frame_hw:
            raise ValueError(
                f"Frame of size {image.shape[:2]} does not match the transform's {self.frame_hw}"
            )
        out = image
        if self.eff_scale != 1.0:
            h, w = self.frame_hw
            out = _resize(
                out, self.eff_scale, (round(h * self.eff_scale), round(w * self.eff_scale))
            )
        out = _pad_to(out, self.sized_hw)
        if self.scale != 1.0:
            out = _resize(out, self.scale, self.scaled_hw)
        return _pad_to(out, self.model_hw)


def make_transform(
    frame_hw: tuple[int, int],
    scale: float = 1.0,
    max_stride: int = 1,
    max_height: int | None = None,
    max_width: int | None = None,
) -> FrameTransform:
    """Compute the transform for frames of ``frame_hw`` under the preprocessing settings."""
    h, w = int(frame_hw[0]), int(frame_hw[1])
    if h <= 0 or w <= 0:
        raise ValueError(f"Frame size must be positive, got {frame_hw}")
    if scale <= 0:
        raise ValueError(f"preprocessing.scale must be > 0, got {scale}")
    eff_scale = 1.0
    sized_hw = (h, w)
    if max_height is not None or max_width is not None:
        mh = int(max_height) if max_height is not None else h
        mw = int(max_width) if max_width is not None else w
        eff_scale = min(mh / h, mw / w)
        if abs(eff_scale - 1.0) < 1e-12:
            eff_scale = 1.0
        sized_hw = (max(mh, round(h * eff_scale)), max(mw, round(w * eff_scale)))
    scaled_hw = (round(sized_hw[0] * scale), round(sized_hw[1] * scale))
    stride = max(int(max_stride), 1)
    model_hw = (
        int(math.ceil(scaled_hw[0] / stride) * stride),
        int(math.ceil(scaled_hw[1] / stride) * stride),
    )
    return FrameTransform((h, w), float(eff_scale), float(scale), sized_hw, scaled_hw, model_hw)


def coerce_channels(
    image: np.ndarray, ensure_rgb: bool = False, ensure_grayscale: bool = False
) -> np.ndarray:
    """Return an (H, W, C) uint8/float image with the channel count the config asks for.

    RGB -> grayscale uses ITU-R BT.601 luma (what OpenCV and SLEAP use), so the same frame gives
    the same model input whichever reader decoded it.
    """
    if ensure_rgb and ensure_grayscale:
        raise ValueError("preprocessing.ensure_rgb and ensure_grayscale cannot both be true")
    img = image if image.ndim == 3 else image[..., None]
    channels = img.shape[-1]
    if ensure_rgb and channels == 1:
        return np.repeat(img, 3, axis=-1)
    if ensure_grayscale and channels == 3:
        gray = img[..., 0] * 0.299 + img[..., 1] * 0.587 + img[..., 2] * 0.114
        if img.dtype == np.uint8:
            gray = np.clip(np.round(gray), 0, 255).astype(np.uint8)
        return gray[..., None].astype(img.dtype, copy=False)
    return img


def model_input_channels(source_channels: int, ensure_rgb: bool, ensure_grayscale: bool) -> int:
    """Channel count the network receives for a source with ``source_channels``."""
    if ensure_rgb:
        return 3
    if ensure_grayscale:
        return 1
    return source_channels


def _resize(image: np.ndarray, factor: float, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize by exactly ``factor`` into an ``hw`` canvas, keeping the channel axis.

    ``cv2.resize`` to a rounded size would scale by a slightly different factor per axis; an
    affine warp with the exact factor keeps pixels and ``points_to_model`` in agreement.
    """
    shift = 0.5 * factor - 0.5  # pixel centres: dst = (src + 0.5) * factor - 0.5
    matrix = np.array([[factor, 0.0, shift], [0.0, factor, shift]], dtype=np.float64)
    out = cv2.warpAffine(
        image,
        matrix,
        (int(hw[1]), int(hw[0])),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    if out.ndim == 2:
        out = out[..., None]
    return out


def _pad_to(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Zero-pad bottom/right up to ``hw`` (never crops)."""
    dh = int(hw[0]) - image.shape[0]
    dw = int(hw[1]) - image.shape[1]
    if dh < 0 or dw < 0:
        raise ValueError(f"Cannot pad an image of {image.shape[:2]} down to {hw}")
    if dh == 0 and dw == 0:
        return image
    return np.pad(image, ((0, dh), (0, dw), (0, 0)))
