"""The instances of a window of frames as tensors: what the transformer sees of each detection.

One :class:`Detections` holds every instance of one or more frames, flattened: crops around the
anchor, the box of the visible points, the anchor point, the frame each came from, and its
ground-truth track where known. Data loading builds them, the model embeds them, training reads
``track_ids`` as targets and the tracker slices them into window and query.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch


@dataclass
class Detections:
    """N instances of a window (all tensors share the first dimension N).

    Attributes:
        crops: (N, C, S, S) float in [0, 1], centred on each instance's anchor.
        boxes: (N, 4) x1, y1, x2, y2 in frame pixels (box of the visible points, padded).
        centroids: (N, 2) xy anchor point in frame pixels.
        frames: (N,) int64 frame index in the video.
        track_ids: (N,) int64 ground-truth track index, -1 where unknown.
        scores: (N,) float instance score (1 for ground truth).
        image_hw: (height, width) of the frames, to normalise positions per axis.
    """

    crops: torch.Tensor
    boxes: torch.Tensor
    centroids: torch.Tensor
    frames: torch.Tensor
    track_ids: torch.Tensor
    scores: torch.Tensor
    image_hw: tuple[int, int]

    def __post_init__(self) -> None:
        n = self.crops.shape[0]
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor) and value.shape[0] != n:
                raise ValueError(f"Detections.{f.name} has {value.shape[0]} rows, crops has {n}")

    def __len__(self) -> int:
        return int(self.crops.shape[0])

    def select(self, index: torch.Tensor) -> Detections:
        """The detections at ``index`` (a boolean mask or integer indices)."""
        return Detections(
            **{
                f.name: getattr(self, f.name)[index]
                if isinstance(getattr(self, f.name), torch.Tensor)
                else getattr(self, f.name)
                for f in fields(self)
            }
        )

    def to(self, device: torch.device | str) -> Detections:
        """The same detections on ``device``."""
        return Detections(
            **{
                f.name: getattr(self, f.name).to(device)
                if isinstance(getattr(self, f.name), torch.Tensor)
                else getattr(self, f.name)
                for f in fields(self)
            }
        )

    @staticmethod
    def concat(parts: list[Detections]) -> Detections:
        """One Detections of several (of the same video: same image size)."""
        if not parts:
            raise ValueError("Detections.concat needs at least one part")
        sizes = {p.image_hw for p in parts}
        if len(sizes) != 1:
            raise ValueError(f"Detections of different frame sizes cannot be joined: {sizes}")
        return Detections(
            **{
                f.name: torch.cat([getattr(p, f.name) for p in parts])
                if f.name != "image_hw"
                else parts[0].image_hw
                for f in fields(Detections)
            }
        )
