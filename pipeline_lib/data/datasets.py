"""Training samples for each model type, preprocessed once and held in memory as uint8.

Decoded frames come from the image cache; each is put through the coordinate chain (channel
coercion, size-match, scale, stride padding) once here. What varies per step — augmentation,
confidence-map targets, the final crop — is done batched on the training device by the
LightningModule, which is much faster than per-sample work in DataLoader workers.

Samples:
    single_instance   full frame, points (1, N, 2) of its first instance
    centroid          full frame, points (I, 1, 2): one anchor per instance
    centered_instance a crop of ``crop_size + 2 * margin`` around each instance's anchor, points
                      (1, N, 2) of that instance; the margin lets rotation/translation augmentation
                      happen before the final centre crop without black corners.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import sleap_io as sio
import torch
from torch.utils.data import Dataset

from pipeline_lib.data.instances import (
    crop_offsets,
    extract_crops,
    frame_points,
    instance_anchors,
)
from pipeline_lib.data.transforms import coerce_channels, make_transform

FULL_FRAME_HEADS = ("single_instance", "centroid")
CROP_HEADS = ("centered_instance",)


@dataclass(frozen=True)
class SampleSpec:
    """What the dataset needs to know from the resolved training config."""

    head: str
    node_indices: tuple[int, ...]
    anchor_index: int | None
    scale: float
    max_stride: int
    max_height: int | None
    max_width: int | None
    ensure_rgb: bool
    ensure_grayscale: bool
    crop_size: int | None = None
    crop_margin: int = 0


def crop_margin_for(crop_size: int, max_stride: int, augment: bool) -> int:
    """Extra context around a training crop so augmentation never pulls in empty corners."""
    if not augment:
        return 0
    margin = math.ceil(crop_size * (math.sqrt(2) - 1) / 2)
    return int(math.ceil(margin / max_stride) * max_stride)


class PoseSampleDataset(Dataset):
    """In-memory samples: ``{"image": uint8 (C, H, W), "points": float32 (I, N, 2)}``.

    ``I`` is padded with NaN to the largest instance count so default collation stacks batches.
    """

    def __init__(self, labels: sio.Labels, frames: list[np.ndarray], spec: SampleSpec) -> None:
        if len(frames) != len(labels.labeled_frames):
            raise ValueError(
                f"{len(frames)} cached frames for {len(labels.labeled_frames)} labelled frames"
            )
        images: list[np.ndarray] = []
        points: list[np.ndarray] = []
        for lf, frame in zip(labels.labeled_frames, frames, strict=True):
            image, pts = _preprocess(frame, frame_points(lf, spec.node_indices), spec)
            if spec.head == "single_instance":
                images.append(image)
                points.append(pts[:1])
            elif spec.head == "centroid":
                anchors = instance_anchors(pts, spec.anchor_index)
                images.append(image)
                points.append(anchors[:, None, :])
            elif spec.head == "centered_instance":
                anchors = instance_anchors(pts, spec.anchor_index)
                size = int(spec.crop_size) + 2 * spec.crop_margin
                keep = np.isfinite(anchors).all(axis=1)
                offsets = crop_offsets(anchors[keep], size)
                crops = extract_crops(image, offsets, size)
                for crop, off, inst in zip(crops, offsets, pts[keep], strict=True):
                    images.append(crop)
                    points.append((inst - off)[None])
            else:
                raise ValueError(f"Model type '{spec.head}' has no training samples yet")
        if not images:
            raise ValueError("No training samples: every instance lacks visible points")
        max_inst = max(p.shape[0] for p in points)
        n_nodes = points[0].shape[1]
        padded = np.full((len(points), max_inst, n_nodes, 2), np.nan, dtype=np.float32)
        for i, p in enumerate(points):
            padded[i, : p.shape[0]] = p
        self.points = torch.from_numpy(padded)
        shapes = {img.shape for img in images}
        if len(shapes) != 1:
            raise ValueError(
                f"Training images differ in size after preprocessing ({sorted(shapes)}); set "
                "preprocessing.max_height/max_width so frames of different videos match"
            )
        self.images = torch.from_numpy(np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        return {"image": self.images[idx], "points": self.points[idx]}


def _preprocess(
    frame: np.ndarray, points: np.ndarray, spec: SampleSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Frame and points through the coordinate chain into model-input space."""
    image = coerce_channels(frame, spec.ensure_rgb, spec.ensure_grayscale)
    stride = 1 if spec.head in CROP_HEADS else spec.max_stride
    tf = make_transform(image.shape[:2], spec.scale, stride, spec.max_height, spec.max_width)
    return tf.image_to_model(image), tf.points_to_model(points)
