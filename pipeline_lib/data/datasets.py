"""Training samples for each model type, preprocessed once and held in memory as uint8.

Decoded frames come from the image cache; each is put through the coordinate chain (channel
coercion, size-match, scale, stride padding) once here. What varies per step — augmentation,
confidence-map targets, the final crop — is done batched on the training device by the
LightningModule, which is much faster than per-sample work in DataLoader workers.

Samples:
    single_instance       full frame, points (1, N, 2) of its first instance
    centroid              full frame, points (I, 1, 2): one anchor per instance
    bottomup,
    multi_class_bottomup  full frame, points (I, N, 2) of every instance
    centered_instance,
    multi_class_topdown   a crop of ``crop_size + 2 * margin`` around each instance's anchor,
                          points (1, N, 2) of that instance; the margin lets rotation/translation
                          augmentation happen before the final centre crop without black corners.
Every sample also carries the class id of each instance (its track's index in the classes of a
multi-class model, -1 otherwise).
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

CROP_HEADS = ("centered_instance", "multi_class_topdown")


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
    classes: tuple[str, ...] = ()  # track names that are the classes of multi-class models


def crop_margin_for(crop_size: int, max_stride: int, augment: bool) -> int:
    """Extra context around a training crop so augmentation never pulls in empty corners."""
    if not augment:
        return 0
    margin = math.ceil(crop_size * (math.sqrt(2) - 1) / 2)
    return int(math.ceil(margin / max_stride) * max_stride)


class PoseSampleDataset(Dataset):
    """In-memory samples: ``{"image": uint8 (C, H, W), "points": float32 (I, N, 2),
    "class_ids": int64 (I,)}``.

    ``I`` is padded with NaN (and class -1) to the largest instance count so default collation
    stacks batches. ``class_ids`` index ``spec.classes`` by track name (-1: no class).
    """

    def __init__(self, labels: sio.Labels, frames: list[np.ndarray], spec: SampleSpec) -> None:
        if len(frames) != len(labels.labeled_frames):
            raise ValueError(
                f"{len(frames)} cached frames for {len(labels.labeled_frames)} labelled frames"
            )
        images: list[np.ndarray] = []
        points: list[np.ndarray] = []
        class_ids: list[np.ndarray] = []
        class_index = {name: i for i, name in enumerate(spec.classes)}
        for lf, frame in zip(labels.labeled_frames, frames, strict=True):
            image, pts = _preprocess(frame, frame_points(lf, spec.node_indices), spec)
            ids = np.array(
                [class_index.get(i.track.name, -1) if i.track else -1 for i in lf.instances],
                dtype=np.int64,
            )
            if spec.head == "single_instance":
                images.append(image)
                points.append(pts[:1])
                class_ids.append(ids[:1])
            elif spec.head == "centroid":
                images.append(image)
                points.append(instance_anchors(pts, spec.anchor_index)[:, None, :])
                class_ids.append(ids)
            elif spec.head in ("bottomup", "multi_class_bottomup"):
                images.append(image)
                points.append(pts)
                class_ids.append(ids)
            elif spec.head in CROP_HEADS:
                anchors = instance_anchors(pts, spec.anchor_index)
                size = int(spec.crop_size) + 2 * spec.crop_margin
                keep = np.isfinite(anchors).all(axis=1)
                offsets = crop_offsets(anchors[keep], size)
                crops = extract_crops(image, offsets, size)
                for crop, off, inst, cid in zip(crops, offsets, pts[keep], ids[keep], strict=True):
                    images.append(crop)
                    points.append((inst - off)[None])
                    class_ids.append(np.array([cid]))
            else:
                raise ValueError(f"Unknown model type '{spec.head}'")
        if not images:
            raise ValueError("No training samples: every instance lacks visible points")
        max_inst = max(p.shape[0] for p in points)
        n_nodes = points[0].shape[1]
        padded = np.full((len(points), max_inst, n_nodes, 2), np.nan, dtype=np.float32)
        padded_ids = np.full((len(points), max_inst), -1, dtype=np.int64)
        for i, (p, c) in enumerate(zip(points, class_ids, strict=True)):
            padded[i, : p.shape[0]] = p
            padded_ids[i, : c.shape[0]] = c
        self.points = torch.from_numpy(padded)
        self.class_ids = torch.from_numpy(padded_ids)
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
        return {
            "image": self.images[idx],
            "points": self.points[idx],
            "class_ids": self.class_ids[idx],
        }


def _preprocess(
    frame: np.ndarray, points: np.ndarray, spec: SampleSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Frame and points through the coordinate chain into model-input space."""
    image = coerce_channels(frame, spec.ensure_rgb, spec.ensure_grayscale)
    stride = 1 if spec.head in CROP_HEADS else spec.max_stride
    tf = make_transform(image.shape[:2], spec.scale, stride, spec.max_height, spec.max_width)
    return tf.image_to_model(image), tf.points_to_model(points)
