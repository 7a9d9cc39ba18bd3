"""Training samples for each model type: indexed from the labels, built by one function.

A split's samples are indexed from the labels alone (:func:`index_samples`): which labelled
frame (row of the frame source) and, for top-down models, which instance each sample is. One
function, :func:`build_samples`, turns a decoded frame into its samples by putting it through
the coordinate chain (channel coercion, size-match, scale, stride padding) and cropping; every
``data_config.data_pipeline_fw`` uses it, so all give bitwise-identical samples:

    torch_dataset                   :class:`StreamingPoseDataset` decodes and builds each
                                    sample in ``__getitem__`` (DataLoader workers welcome)
    torch_dataset_cache_img_memory  :func:`build_in_memory` builds every sample once, in
                                    parallel threads, into one uint8 tensor
    torch_dataset_cache_img_disk    the same samples written once as PNG files
                                    (:mod:`pipeline_lib.data.sample_cache`)

What varies per step — augmentation, confidence-map targets, the final crop — is done batched
on the training device by the LightningModule, which is much faster than per-sample work in
DataLoader workers.

Samples:
    single_instance       full frame, points (1, N, 2) of its first instance
    centroid              full frame, points (I, 1, 2): one anchor per instance
    bottomup,
    multi_class_bottomup  full frame, points (I, N, 2) of every instance
    centered_instance,
    multi_class_topdown   a crop of ``crop_size + 2 * margin`` around each instance's anchor
                          (one sample per instance with a finite anchor), points (1, N, 2) of
                          that instance; the margin lets rotation/translation augmentation
                          happen before the final centre crop without black corners.
Every sample also carries the class id of each instance (its track's index in the classes of a
multi-class model, -1 otherwise). Items are ``{"image": uint8 (C, H, W), "points": float32
(I, N, 2), "class_ids": int64 (I,)}`` with ``I`` padded (NaN, class -1) to the split's largest
instance count so default collation stacks batches.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import sleap_io as sio
import torch
from torch.utils.data import Dataset

from pipeline_lib.data.frame_source import FrameShape, FrameSource, for_each_frame
from pipeline_lib.data.instances import (
    crop_offsets,
    extract_crops,
    frame_points,
    instance_anchors,
)
from pipeline_lib.data.transforms import coerce_channels, make_transform, model_input_channels

CROP_HEADS = ("centered_instance", "multi_class_topdown")
FULL_FRAME = -1  # instance field of a sample that is a whole frame

Sample = tuple[np.ndarray, np.ndarray, np.ndarray]  # image (H, W, C), points (k, N, 2), ids (k,)


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


@dataclass(frozen=True)
class SampleIndex:
    """Where each sample of a split comes from, and the shapes of the samples.

    Everything here comes from the labels and the frame shapes; nothing is decoded. It holds
    plain arrays (no ``sio.Labels``), so datasets that carry it pickle small into workers.
    """

    points: list[np.ndarray]  # per row: (I, N, 2) float64 frame pixels of the spec's nodes
    class_ids: list[np.ndarray]  # per row: (I,) int64
    samples: np.ndarray  # (S, 2) int64: frame-source row, instance (FULL_FRAME: whole frame)
    max_instances: int  # I of every item after padding
    n_nodes: int  # N of every item
    image_shape: tuple[int, int, int]  # (C, H, W) of every item's image

    def __len__(self) -> int:
        return int(self.samples.shape[0])

    def rows(self) -> dict[int, list[int]]:
        """Sample indices of each frame-source row that has samples."""
        out: dict[int, list[int]] = defaultdict(list)
        for i, row in enumerate(self.samples[:, 0].tolist()):
            out[row].append(i)
        return dict(out)


def index_samples(
    labels: sio.Labels, spec: SampleSpec, shapes: Sequence[FrameShape]
) -> SampleIndex:
    """Index the samples of ``labels`` whose frames have ``shapes`` (one per labelled frame)."""
    if len(shapes) != len(labels.labeled_frames):
        raise ValueError(
            f"{len(shapes)} frames in the frame source for "
            f"{len(labels.labeled_frames)} labelled frames"
        )
    class_index = {name: i for i, name in enumerate(spec.classes)}
    points, class_ids, samples, counts, image_shapes = [], [], [], [], set()
    for row, (lf, shape) in enumerate(zip(labels.labeled_frames, shapes, strict=True)):
        pts = frame_points(lf, spec.node_indices)
        points.append(pts)
        class_ids.append(
            np.array(
                [class_index.get(i.track.name, -1) if i.track else -1 for i in lf.instances],
                dtype=np.int64,
            )
        )
        if spec.head in CROP_HEADS:
            finite = np.isfinite(instance_anchors(pts, spec.anchor_index)).all(axis=1)
            keep = np.flatnonzero(finite).tolist()
            samples.extend((row, int(k)) for k in keep)
            counts.extend([1] * len(keep))
        elif spec.head in ("single_instance", "centroid", "bottomup", "multi_class_bottomup"):
            samples.append((row, FULL_FRAME))
            counts.append(min(1, len(pts)) if spec.head == "single_instance" else len(pts))
        else:
            raise ValueError(f"Unknown model type '{spec.head}'")
        if samples and samples[-1][0] == row:
            image_shapes.add(sample_image_shape(shape, spec))
    if not samples:
        raise ValueError("No training samples: every instance lacks visible points")
    if len(image_shapes) != 1:
        raise ValueError(
            f"Training images differ in size after preprocessing ({sorted(image_shapes)}); set "
            "preprocessing.max_height/max_width so frames of different videos match"
        )
    return SampleIndex(
        points=points,
        class_ids=class_ids,
        samples=np.array(samples, dtype=np.int64).reshape(-1, 2),
        max_instances=max(counts),
        n_nodes=1 if spec.head == "centroid" else len(spec.node_indices),
        image_shape=image_shapes.pop(),
    )


def sample_image_shape(frame_shape: FrameShape, spec: SampleSpec) -> tuple[int, int, int]:
    """(C, H, W) of the samples of a frame of ``frame_shape`` (H, W, C), without decoding it."""
    channels = model_input_channels(int(frame_shape[2]), spec.ensure_rgb, spec.ensure_grayscale)
    if spec.head in CROP_HEADS:
        size = int(spec.crop_size) + 2 * spec.crop_margin
        return (channels, size, size)
    tf = make_transform(
        frame_shape[:2], spec.scale, spec.max_stride, spec.max_height, spec.max_width
    )
    return (channels, *tf.model_hw)


def preprocess_frame(
    frame: np.ndarray, points: np.ndarray, spec: SampleSpec
) -> tuple[np.ndarray, np.ndarray]:
    """Frame and points through the coordinate chain into model-input space."""
    image = coerce_channels(frame, spec.ensure_rgb, spec.ensure_grayscale)
    stride = 1 if spec.head in CROP_HEADS else spec.max_stride
    tf = make_transform(image.shape[:2], spec.scale, stride, spec.max_height, spec.max_width)
    return tf.image_to_model(image), tf.points_to_model(points)


def build_samples(
    image: np.ndarray,
    points: np.ndarray,
    class_ids: np.ndarray,
    spec: SampleSpec,
    instances: Sequence[int],
) -> list[Sample]:
    """The samples of one preprocessed frame (see :func:`preprocess_frame`).

    ``instances`` are the index's instance fields for this frame: ``[FULL_FRAME]`` for
    full-frame models, the instances to crop around for top-down models. The one place samples
    are made, so every pipeline produces the same bytes.
    """
    if spec.head == "single_instance":
        return [(image, points[:1], class_ids[:1])]
    if spec.head == "centroid":
        return [(image, instance_anchors(points, spec.anchor_index)[:, None, :], class_ids)]
    if spec.head in ("bottomup", "multi_class_bottomup"):
        return [(image, points, class_ids)]
    if spec.head in CROP_HEADS:
        chosen = np.asarray(instances, dtype=np.int64)
        size = int(spec.crop_size) + 2 * spec.crop_margin
        offsets = crop_offsets(instance_anchors(points[chosen], spec.anchor_index), size)
        crops = extract_crops(image, offsets, size)
        return [
            (crop, (points[k] - off)[None], class_ids[k : k + 1])
            for crop, off, k in zip(crops, offsets, chosen.tolist(), strict=True)
        ]
    raise ValueError(f"Unknown model type '{spec.head}'")


def pad_sample(points: np.ndarray, class_ids: np.ndarray, index: SampleIndex) -> Sample:
    """Points and class ids padded to the index's instance count (NaN, class -1)."""
    padded = np.full((index.max_instances, index.n_nodes, 2), np.nan, dtype=np.float32)
    padded[: points.shape[0]] = points
    ids = np.full((index.max_instances,), -1, dtype=np.int64)
    ids[: class_ids.shape[0]] = class_ids
    return padded, ids  # type: ignore[return-value]


def as_item(image_hwc: np.ndarray, points: np.ndarray, class_ids: np.ndarray) -> dict:
    """The dict every dataset returns, from an (H, W, C) image and padded points/ids."""
    return {
        "image": torch.from_numpy(np.ascontiguousarray(image_hwc.transpose(2, 0, 1))),
        "points": torch.from_numpy(points),
        "class_ids": torch.from_numpy(class_ids),
    }


def build_all_samples(
    source: FrameSource,
    index: SampleIndex,
    spec: SampleSpec,
    sink: Callable[[int, np.ndarray, np.ndarray, np.ndarray], None],
    threads: int,
    desc: str,
) -> None:
    """Decode every frame once (parallel threads, with progress) and hand each sample to
    ``sink(sample_index, image (H, W, C), padded points, padded class ids)``."""
    by_row = index.rows()
    instances = index.samples[:, 1]

    def one_frame(row: int, frame: np.ndarray) -> None:
        image, pts = preprocess_frame(frame, index.points[row], spec)
        wanted = by_row[row]
        built = build_samples(image, pts, index.class_ids[row], spec, instances[wanted].tolist())
        for i, (img, p, c) in zip(wanted, built, strict=True):
            sink(i, img, *pad_sample(p, c, index))

    for_each_frame(source, list(by_row), one_frame, threads, desc)


class StreamingPoseDataset(Dataset):
    """Builds each sample on demand from a :class:`FrameSource` (``torch_dataset``).

    Nothing is decoded up front; decoder handles open lazily in each worker process. The last
    preprocessed frame is kept, so the instances of one frame (top-down models, read in order
    during validation) are decoded once.
    """

    def __init__(self, source: FrameSource, index: SampleIndex, spec: SampleSpec) -> None:
        self.source = source
        self.index = index
        self.spec = spec
        self._last: tuple[int, np.ndarray, np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        row, instance = (int(v) for v in self.index.samples[idx])
        if self._last is None or self._last[0] != row:
            image, pts = preprocess_frame(self.source.read(row), self.index.points[row], self.spec)
            self._last = (row, image, pts)
        _, image, pts = self._last
        img, p, c = build_samples(image, pts, self.index.class_ids[row], self.spec, [instance])[0]
        return as_item(img, *pad_sample(p, c, self.index))

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_last"] = None  # a decoded frame is not worth pickling into a worker
        return state


class InMemoryPoseDataset(Dataset):
    """Preprocessed samples held in memory as one uint8 tensor (``torch_dataset_cache_img_memory``).

    Build it with :func:`build_in_memory`.
    """

    def __init__(self, images: torch.Tensor, points: torch.Tensor, class_ids: torch.Tensor) -> None:
        self.images = images  # (S, C, H, W) uint8
        self.points = points  # (S, I, N, 2) float32
        self.class_ids = class_ids  # (S, I) int64

    def __len__(self) -> int:
        return self.images.shape[0]

    @property
    def nbytes(self) -> int:
        """Memory held by the samples."""
        return sum(
            t.element_size() * t.nelement() for t in (self.images, self.points, self.class_ids)
        )

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        return {
            "image": self.images[idx],
            "points": self.points[idx],
            "class_ids": self.class_ids[idx],
        }


def build_in_memory(
    source: FrameSource, index: SampleIndex, spec: SampleSpec, threads: int = 1, desc: str = "build"
) -> InMemoryPoseDataset:
    """Decode and preprocess every sample once, straight into preallocated tensors."""
    n = len(index)
    images = torch.empty((n, *index.image_shape), dtype=torch.uint8)
    points = torch.empty((n, index.max_instances, index.n_nodes, 2), dtype=torch.float32)
    class_ids = torch.empty((n, index.max_instances), dtype=torch.int64)
    images_np, points_np, ids_np = images.numpy(), points.numpy(), class_ids.numpy()

    def store(i: int, image: np.ndarray, pts: np.ndarray, ids: np.ndarray) -> None:
        images_np[i] = image.transpose(2, 0, 1)
        points_np[i] = pts
        ids_np[i] = ids

    build_all_samples(source, index, spec, store, threads, desc)
    return InMemoryPoseDataset(images, points, class_ids)
