"""Training clips for the tracking transformer: consecutive labelled frames as Detections.

A clip is ``clip_length`` consecutive labelled frames of one video (the labelled frames in frame
order; frames without labels in between are skipped, not counted). :class:`ClipDataset` returns
each clip as one :class:`Detections` holding every instance of its frames, with ground-truth
track ids, which is what training slices into query frames and windows.

Options follow the ``dataset`` section of DREEM configs (:class:`ClipDatasetOptions`): labels as
``slp_files`` (+ ``video_files``) or a ``dir``, or microscopy ground truth (``source`` with
``tracks``/``videos``, or ``raw_images``/``gt_images``/``gt_list`` for the Cell Tracking
Challenge) read by :mod:`pipeline_lib.tracking.microscopy`. Unknown keys are errors that name the
key and suggest the closest valid one: a misspelt option silently falling back to its default
would change what the model learns without a trace.

Which instances of a frame are ground truth: a frame with user (hand-labelled) instances uses
only those -- predictions left on a labelled frame are not ground truth -- and a frame without
any uses its predicted instances (proofread predictions). Two instances of one track in one
frame are contradictory targets; the first is kept and a warning names the file and frame.

Decoding: a clip's frames are read in frame order through one reader per video and process,
opened lazily in the process that reads (a DataLoader worker after the fork) by
:class:`pipeline_lib.data.frame_source.VideoFrameSource`; consecutive reads decode sequentially
(a seek in these mp4s costs ~100 ms, the next frame a few ms). The dataset pickles small: it
holds arrays and file names, never open readers or sleap-io Labels.

Decoded frames are kept in memory, per process, up to ``frame_cache_mb`` (default 1024 MiB):
training reads every clip again each epoch, and with labels of every 4th frame each re-read is a
seek. Past the budget frames are decoded again on every read (nothing is evicted, so which
frames are kept does not depend on the read order beyond the first epoch).

``ClipDataset(..., decode_frames=False)`` is for a model without visual features
(``tracker.use_vis_feats: false``), which never looks at the crops: no frame is decoded, the
crops are zeros of the video's channel count, and only the positions are real. With labels of
every 4th frame each decoded frame is a seek, so decoding was nearly all of the time of such a
training. Photometric augmentations are skipped then (there are no pixels); Rotate still turns
the points and the dropouts still drop, with the same draws as when decoding (see Randomness).

Randomness: with a ``seed``, the clip subsample (``n_chunks``) comes from the seed, and
everything random about clip ``i`` -- augmentations, instance order, random anchors -- from a
generator seeded with ``(seed, epoch, i)``; the same seed, epoch and index give the same clip in
any process. The photometric augmentations draw from a second generator, seeded with
``(seed, epoch, i, 1)``, so the positions of a clip (instance order, dropouts, rotation, random
anchors) are the same whether or not its frames are decoded. :meth:`ClipDataset.set_epoch` moves
to fresh draws each epoch. Without a seed every read draws anew.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import sleap_io as sio
import torch

from pipeline_lib.config.loader import did_you_mean
from pipeline_lib.data.frame_source import VideoFrameSource
from pipeline_lib.tracking.gtr.detections import Detections
from pipeline_lib.tracking.gtr.instances import (
    HANDLE_MISSING,
    check_anchors,
    detections_from_frame,
)
from pipeline_lib.tracking.microscopy import (
    SOURCES,
    read_cell_tracking_challenge,
    read_microscopy_tracks,
)

log = logging.getLogger(__name__)

__all__ = [
    "AUGMENTATION_DEFAULTS",
    "MODES",
    "ClipDataset",
    "ClipDatasetOptions",
    "DatasetOptionsError",
    "brightness_contrast",
    "collate",
    "gauss_noise",
    "gaussian_blur",
    "instance_dropout",
    "motion_blur",
    "node_dropout",
    "pair_by_stem",
    "parse_augmentations",
    "rotate_frame",
    "rotate_points",
]

MODES = ("train", "val")
DIR_KEYS = ("path", "labels_suffix", "vid_suffix")


class DatasetOptionsError(ValueError):
    """A dataset option that cannot be used; the message names the key."""


# ============================================================================================
# Augmentations
# ============================================================================================

# Parameters and defaults of every augmentation a config may name. The visual ones keep the
# names and meaning of the albumentations transforms DREEM configs name (albumentations itself
# is not a dependency); ``n`` of the dropouts is a maximum per frame (InstanceDropout) or per
# instance (NodeDropout), ``p`` the chance each candidate is dropped.
AUGMENTATION_DEFAULTS: dict[str, dict[str, Any]] = {
    "InstanceDropout": {"p": 0.5, "n": 1},
    "NodeDropout": {"p": 0.5, "n": 1},
    "Rotate": {"limit": 90.0, "p": 0.5},
    "GaussianBlur": {"blur_limit": [3, 7], "sigma_limit": 0.0, "p": 0.5},
    "RandomBrightnessContrast": {"brightness_limit": 0.2, "contrast_limit": 0.2, "p": 0.5},
    "GaussNoise": {"std_range": [0.2, 0.44], "mean_range": [0.0, 0.0], "p": 0.5},
    "MotionBlur": {"blur_limit": [3, 7], "p": 0.5},
}
_PHOTOMETRIC = ("GaussianBlur", "RandomBrightnessContrast", "GaussNoise", "MotionBlur")


def parse_augmentations(spec: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Checked augmentations, in the config's order, with defaults filled in.

    Ranges come back as ``(low, high)`` tuples: a single number ``v`` means ``(-v, v)`` for
    ``limit``/``brightness_limit``/``contrast_limit``, ``(3, v)`` for a ``blur_limit`` and
    ``(v, v)`` for ``sigma_limit``. Kernel sizes must be odd and >= 3; ``sigma_limit`` 0 lets
    OpenCV derive sigma from the kernel size. ``std_range``/``mean_range`` of GaussNoise are
    fractions of the image's maximum value (255 for uint8).
    """
    if spec is None:
        return {}
    if not isinstance(spec, Mapping):
        raise DatasetOptionsError(
            f"dataset option 'augmentations' must map names to parameters, got "
            f"{type(spec).__name__}"
        )
    parsed: dict[str, dict[str, Any]] = {}
    for name, params in spec.items():
        if name not in AUGMENTATION_DEFAULTS:
            raise DatasetOptionsError(
                f"unknown augmentation {name!r}{did_you_mean(name, AUGMENTATION_DEFAULTS)} "
                f"(valid augmentations: {', '.join(AUGMENTATION_DEFAULTS)})"
            )
        params = {} if params is None else params
        if not isinstance(params, Mapping):
            raise DatasetOptionsError(
                f"augmentation {name!r} needs a mapping of parameters, got {params!r}"
            )
        valid = AUGMENTATION_DEFAULTS[name]
        for key in params:
            if key not in valid:
                raise DatasetOptionsError(
                    f"unknown parameter {key!r} of augmentation {name!r}"
                    f"{did_you_mean(key, valid)} (valid parameters: {', '.join(valid)})"
                )
        merged = {**valid, **dict(params)}
        parsed[name] = {k: _check_aug_param(name, k, v) for k, v in merged.items()}
    return parsed


def _check_aug_param(aug: str, key: str, value: Any) -> Any:
    where = f"augmentation {aug!r} parameter {key!r}"
    if key == "p":
        return _number(value, where, 0.0, 1.0)
    if key == "n":
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise DatasetOptionsError(f"{where} must be an int >= 0, got {value!r}")
        return int(value)
    if key in ("limit", "brightness_limit", "contrast_limit"):
        return _range(value, where, symmetric=True)
    if key == "sigma_limit":
        low, high = _range(value, where, symmetric=False)
        if low < 0:
            raise DatasetOptionsError(f"{where} must be >= 0, got {value!r}")
        return (low, high)
    if key == "blur_limit":
        low, high = (3, value) if _is_number(value) else _range(value, where, symmetric=False)
        if not all(float(v).is_integer() and int(v) % 2 == 1 and v >= 3 for v in (low, high)):
            raise DatasetOptionsError(f"{where} kernel sizes must be odd ints >= 3, got {value!r}")
        if low > high:
            raise DatasetOptionsError(f"{where} must be [low, high] with low <= high: {value!r}")
        return (int(low), int(high))
    if key == "std_range":
        low, high = _range(value, where, symmetric=False)
        if low < 0 or high > 1:
            raise DatasetOptionsError(f"{where} must lie in [0, 1] (fraction of max value)")
        return (low, high)
    if key == "mean_range":
        low, high = _range(value, where, symmetric=False)
        if low < -1 or high > 1:
            raise DatasetOptionsError(f"{where} must lie in [-1, 1] (fraction of max value)")
        return (low, high)
    raise AssertionError(f"no check for {where}")  # pragma: no cover - table and checks agree


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _number(value: Any, where: str, low: float, high: float) -> float:
    if not _is_number(value) or not (low <= float(value) <= high):
        raise DatasetOptionsError(f"{where} must be a number in [{low:g}, {high:g}], got {value!r}")
    return float(value)


def _range(value: Any, where: str, symmetric: bool) -> tuple[float, float]:
    """(low, high) from a number (symmetric: (-v, v), else (v, v)) or a two-item list."""
    if _is_number(value):
        v = float(value)
        if symmetric and v < 0:
            raise DatasetOptionsError(f"{where} as one number must be >= 0, got {value!r}")
        return (-v, v) if symmetric else (v, v)
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(_is_number(v) for v in value)
        and float(value[0]) <= float(value[1])
    ):
        return (float(value[0]), float(value[1]))
    raise DatasetOptionsError(
        f"{where} must be a number or [low, high] with low <= high: {value!r}"
    )


def instance_dropout(n_instances: int, p: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """(I,) bool keep mask: each instance is dropped with chance ``p``, at most ``n`` of them."""
    keep = np.ones(n_instances, dtype=bool)
    if n_instances == 0 or n == 0 or p == 0:
        return keep
    candidates = np.flatnonzero(rng.random(n_instances) < p)
    if len(candidates) > n:
        candidates = rng.choice(candidates, size=n, replace=False)
    keep[candidates] = False
    return keep


def node_dropout(points: np.ndarray, p: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Points with up to ``n`` visible nodes of each instance hidden (NaN), each with chance p.

    Applied before anchors and boxes are computed, so a hidden anchor node goes through
    ``handle_missing`` exactly like an unlabelled one.
    """
    out = np.array(points, dtype=np.float64, copy=True)
    if n == 0 or p == 0:
        return out
    visible = np.isfinite(out).all(axis=-1)
    for i in range(out.shape[0]):
        candidates = np.flatnonzero(visible[i] & (rng.random(out.shape[1]) < p))
        if len(candidates) > n:
            candidates = rng.choice(candidates, size=n, replace=False)
        out[i, candidates] = np.nan
    return out


def rotate_frame(
    image: np.ndarray, points: np.ndarray, angle: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rotate a frame and its points together by ``angle`` degrees about the frame centre.

    Positive angles turn the picture counter-clockwise as displayed (OpenCV's convention). The
    frame keeps its size; uncovered corners are zero. Points that leave the frame become NaN
    (no longer visible): their pixels are gone.
    """
    frame = _hwc(image)
    h, w = frame.shape[:2]
    rotated = cv2.warpAffine(
        frame,
        _rotation(angle, (h, w)),
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    return _hwc(rotated), rotate_points(points, angle, (h, w))


def rotate_points(points: np.ndarray, angle: float, image_hw: tuple[int, int]) -> np.ndarray:
    """The points of :func:`rotate_frame` without the image: same turn, same NaN outside.

    For clips whose frames are not decoded: the frame size alone fixes the centre of rotation
    and which points leave the frame.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    matrix = _rotation(angle, (h, w))
    pts = np.asarray(points, dtype=np.float64)
    moved = pts @ matrix[:, :2].T + matrix[:, 2]
    outside = ((moved[..., 0] < -0.5) | (moved[..., 0] > w - 0.5) | (moved[..., 1] < -0.5)) | (
        moved[..., 1] > h - 0.5
    )
    moved[outside] = np.nan
    return moved


def _rotation(angle: float, image_hw: tuple[int, int]) -> np.ndarray:
    """(2, 3) affine turning by ``angle`` degrees about the centre of an (h, w) frame."""
    h, w = image_hw
    return cv2.getRotationMatrix2D(((w - 1) / 2.0, (h - 1) / 2.0), float(angle), 1.0)


def gaussian_blur(image: np.ndarray, ksize: int, sigma: float) -> np.ndarray:
    """Gaussian blur with a ``ksize`` square kernel (sigma 0: OpenCV derives it from ksize)."""
    frame = _hwc(image)
    return _hwc(cv2.GaussianBlur(frame, (int(ksize), int(ksize)), float(sigma)), frame.dtype)


def motion_blur(image: np.ndarray, ksize: int, angle: float) -> np.ndarray:
    """Blur along a straight line of ``ksize`` pixels through the centre at ``angle`` degrees."""
    frame = _hwc(image)
    kernel = np.zeros((ksize, ksize), dtype=np.float32)
    c = (ksize - 1) / 2.0
    dx, dy = math.cos(math.radians(angle)) * c, math.sin(math.radians(angle)) * c
    cv2.line(
        kernel,
        (int(round(c - dx)), int(round(c - dy))),
        (int(round(c + dx)), int(round(c + dy))),
        1.0,
        thickness=1,
    )
    kernel /= kernel.sum()
    return _hwc(cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT_101), frame.dtype)


def brightness_contrast(image: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """``image * alpha + beta * max_value``, clipped: contrast factor and brightness shift."""
    frame = _hwc(image)
    top = _max_value(frame)
    out = frame.astype(np.float32) * float(alpha) + float(beta) * top
    return _cast_like(out, frame)


def gauss_noise(image: np.ndarray, mean: float, std: float, rng: np.random.Generator) -> np.ndarray:
    """Add per-pixel Gaussian noise; ``mean`` and ``std`` are fractions of the max value."""
    frame = _hwc(image)
    top = _max_value(frame)
    noise = rng.normal(float(mean) * top, float(std) * top, size=frame.shape).astype(np.float32)
    return _cast_like(frame.astype(np.float32) + noise, frame)


def _hwc(image: np.ndarray, dtype: Any = None) -> np.ndarray:
    """(H, W, C): OpenCV drops a single channel axis; put it back."""
    arr = np.asarray(image)
    arr = arr[..., None] if arr.ndim == 2 else arr
    return arr if dtype is None else arr.astype(dtype, copy=False)


def _max_value(frame: np.ndarray) -> float:
    return float(np.iinfo(frame.dtype).max) if np.issubdtype(frame.dtype, np.integer) else 1.0


def _cast_like(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    top = _max_value(like)
    clipped = np.clip(values, 0.0, top)
    if np.issubdtype(like.dtype, np.integer):
        clipped = np.rint(clipped)
    return clipped.astype(like.dtype)


class _Augmenter:
    """Applies a parsed augmentation mapping to one frame (train mode only).

    Order per frame: InstanceDropout, NodeDropout, Rotate, then the photometric augmentations
    in the order the config lists them (drawn from ``pixel_rng``; skipped without an image).
    The Rotate angle is drawn once per clip and applied to every frame of it: the transformer
    reads motion from box positions across the window, and turning each frame by a different
    angle would make the animals jump between frames.
    Photometric draws are per frame (flicker, noise and blur vary over time in real video).
    """

    def __init__(self, spec: dict[str, dict[str, Any]]) -> None:
        self.spec = spec

    def clip_angle(self, rng: np.random.Generator) -> float | None:
        """The clip's rotation in degrees, or None when Rotate is off or not drawn."""
        rotate = self.spec.get("Rotate")
        if rotate is None or rng.random() >= rotate["p"]:
            return None
        low, high = rotate["limit"]
        return float(rng.uniform(low, high))

    def frame(
        self,
        image: np.ndarray | None,
        points: np.ndarray,
        track_ids: np.ndarray,
        scores: np.ndarray,
        angle: float | None,
        rng: np.random.Generator,
        pixel_rng: np.random.Generator,
        image_hw: tuple[int, int],
    ) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray]:
        """(image, points, track_ids, scores) after this frame's augmentations.

        ``image`` None (frames not decoded): the points are rotated about the centre of an
        ``image_hw`` frame and the photometric augmentations are skipped. ``rng`` draws the
        geometry, ``pixel_rng`` the photometric augmentations, so skipping those leaves the
        geometric draws unchanged.
        """
        spec = self.spec
        if "InstanceDropout" in spec:
            drop = spec["InstanceDropout"]
            keep = instance_dropout(len(points), drop["p"], drop["n"], rng)
            points, track_ids, scores = points[keep], track_ids[keep], scores[keep]
        if "NodeDropout" in spec:
            points = node_dropout(points, spec["NodeDropout"]["p"], spec["NodeDropout"]["n"], rng)
        if angle is not None:
            if image is None:
                points = rotate_points(points, angle, image_hw)
            else:
                image, points = rotate_frame(image, points, angle)
        if image is None:
            return image, points, track_ids, scores
        for name, params in spec.items():
            if name in _PHOTOMETRIC and pixel_rng.random() < params["p"]:
                image = self._photometric(name, params, image, pixel_rng)
        return image, points, track_ids, scores

    @staticmethod
    def _photometric(
        name: str, params: dict[str, Any], image: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        if name == "GaussianBlur":
            low, high = params["blur_limit"]
            ksize = int(rng.choice(np.arange(low, high + 1, 2)))
            return gaussian_blur(image, ksize, float(rng.uniform(*params["sigma_limit"])))
        if name == "MotionBlur":
            low, high = params["blur_limit"]
            ksize = int(rng.choice(np.arange(low, high + 1, 2)))
            return motion_blur(image, ksize, float(rng.uniform(0.0, 180.0)))
        if name == "RandomBrightnessContrast":
            alpha = 1.0 + float(rng.uniform(*params["contrast_limit"]))
            beta = float(rng.uniform(*params["brightness_limit"]))
            return brightness_contrast(image, alpha, beta)
        if name == "GaussNoise":
            mean = float(rng.uniform(*params["mean_range"]))
            std = float(rng.uniform(*params["std_range"]))
            return gauss_noise(image, mean, std, rng)
        raise AssertionError(f"no photometric augmentation {name}")  # pragma: no cover


# ============================================================================================
# Options
# ============================================================================================


@dataclass
class ClipDatasetOptions:
    """One dataset section (DREEM's ``train_dataset`` / ``val_dataset`` / ``test_dataset``).

    Exactly one data source: ``slp_files`` (with optional parallel ``video_files``; without
    them every video the labels reference is used), ``dir``, or microscopy ``source`` with
    ``tracks`` + ``videos`` (``ctc`` also takes ``gt_images`` + ``raw_images`` + optional
    ``gt_list``, DREEM's CellTrackingDataset names).

    Attributes:
        slp_files: labels files with tracks.
        video_files: one video per labels file, replacing the path the labels recorded.
        dir: ``{path, labels_suffix, vid_suffix}``: labels and videos in one folder, paired by
            file stem (the name without the suffix); see :func:`pair_by_stem`.
        source: ``trackmate``, ``isbi``, ``icy`` or ``ctc`` for microscopy ground truth.
        tracks: microscopy track files (the CTC mask folder for ``ctc``).
        videos: microscopy images per track file: a folder, a tif stack or a list of files.
        raw_images / gt_images / gt_list: CTC raw frames, label masks and ``man_track.txt``
            per sequence (``gt_list`` optional: a mask folder's own man_track.txt is used).
        padding: pixels added around the box of each instance's visible points.
        crop_size: side of the square crop around each anchor.
        chunk: True splits each video's labelled frames into clips of ``clip_length``; False
            makes one clip of each video's labelled frames.
        clip_length: labelled frames per clip (the last clip of a video may be shorter).
        mode: ``train`` (augmentations and shuffled instance order) or ``val`` (neither).
        n_chunks: how many clips to keep, drawn with ``seed``: a fraction in (0, 1] of them
            (at least one; 1 or 1.0 keeps all, as in DREEM) or an int count above 1 (all when
            there are fewer).
        seed: seed of the clip subsample and of each clip's random draws; None: unseeded.
        anchors: crop centre: a node name, a list of names, an int count of random visible
            nodes, or None / ``"centroid"`` for the pose centroid (see ``gtr.instances``).
        handle_missing: ``drop``, ``ignore`` or ``centroid`` for instances whose anchor nodes
            are not visible (see ``gtr.instances``).
        augmentations: name -> parameters (see :func:`parse_augmentations`); train mode only.
    """

    slp_files: list[str] | None = None
    video_files: list[str] | None = None
    dir: dict[str, str] | None = None
    source: str | None = None
    tracks: list[Any] | None = None
    videos: list[Any] | None = None
    raw_images: list[Any] | None = None
    gt_images: list[Any] | None = None
    gt_list: list[Any] | None = None
    padding: int = 5
    crop_size: int = 128
    chunk: bool = True
    clip_length: int = 16
    mode: str = "train"
    n_chunks: float | int = 1.0
    seed: int | None = None
    anchors: str | list[str] | int | None = None
    handle_missing: str = "centroid"
    augmentations: dict[str, dict[str, Any]] | None = None

    def __post_init__(self) -> None:
        for key in ("slp_files", "video_files", "tracks", "videos", "raw_images", "gt_images"):
            setattr(self, key, _path_list(key, getattr(self, key)))
        if self.gt_list is not None:
            self.gt_list = _path_list("gt_list", self.gt_list, allow_none_items=True)
        self.dir = _dir_spec(self.dir)
        _check_int("padding", self.padding, 0)
        _check_int("crop_size", self.crop_size, 1)
        _check_int("clip_length", self.clip_length, 1)
        if not isinstance(self.chunk, bool):
            raise DatasetOptionsError(
                f"dataset option 'chunk' must be true or false: {self.chunk!r}"
            )
        if self.mode not in MODES:
            raise DatasetOptionsError(
                f"dataset option 'mode' must be one of {', '.join(MODES)}; got {self.mode!r}"
            )
        if self.handle_missing not in HANDLE_MISSING:
            raise DatasetOptionsError(
                f"dataset option 'handle_missing' must be one of {', '.join(HANDLE_MISSING)}; "
                f"got {self.handle_missing!r}"
            )
        if self.seed is not None:
            _check_int("seed", self.seed, 0)
        self._check_n_chunks()
        self._check_anchors()
        self.augmentations = parse_augmentations(self.augmentations)
        self._check_sources()

    def _check_n_chunks(self) -> None:
        value = self.n_chunks
        if isinstance(value, bool) or not _is_number(value) or value <= 0:
            raise DatasetOptionsError(
                f"dataset option 'n_chunks' must be a fraction in (0, 1] or an int count, "
                f"got {value!r}"
            )
        if value > 1 and not isinstance(value, int):
            raise DatasetOptionsError(
                f"dataset option 'n_chunks' above 1 must be an int count of clips, got {value!r}"
            )

    def _check_anchors(self) -> None:
        anchors = self.anchors
        if anchors is None or isinstance(anchors, str):
            return
        if isinstance(anchors, int) and not isinstance(anchors, bool) and anchors >= 1:
            return
        if (
            isinstance(anchors, list | tuple)
            and anchors
            and all(isinstance(a, str) for a in anchors)
        ):
            self.anchors = list(anchors)
            return
        raise DatasetOptionsError(
            f"dataset option 'anchors' must be a node name, a non-empty list of node names, an "
            f"int >= 1 or null; got {anchors!r}"
        )

    def _check_sources(self) -> None:
        micro_keys = ("tracks", "videos", "raw_images", "gt_images", "gt_list")
        given_micro = [k for k in micro_keys if getattr(self, k) is not None]
        if self.source is not None:
            key = str(self.source).strip().lower()
            if key not in SOURCES:
                raise DatasetOptionsError(
                    f"dataset option 'source' must be one of {', '.join(SOURCES)}; "
                    f"got {self.source!r}"
                )
            self.source = key
            if self.slp_files is not None or self.video_files is not None:
                raise DatasetOptionsError(
                    "dataset options 'slp_files'/'video_files' cannot be combined with 'source' "
                    "(microscopy labels come from 'tracks'/'videos')"
                )
            self._check_microscopy()
            return
        if given_micro:
            raise DatasetOptionsError(
                f"dataset option(s) {given_micro} need 'source' (one of {', '.join(SOURCES)})"
            )
        if (self.slp_files is None) == (self.dir is None):
            raise DatasetOptionsError(
                "the dataset needs exactly one of 'slp_files' (with 'video_files') or 'dir' "
                "(or 'source' with 'tracks'/'videos' for microscopy)"
            )
        if self.dir is not None and self.video_files is not None:
            raise DatasetOptionsError("dataset options 'dir' and 'video_files' exclude each other")
        if self.video_files is not None and len(self.video_files) != len(self.slp_files or []):
            raise DatasetOptionsError(
                f"dataset options 'slp_files' ({len(self.slp_files or [])}) and 'video_files' "
                f"({len(self.video_files)}) must be parallel lists of the same length"
            )

    def _check_microscopy(self) -> None:
        if self.source == "ctc":
            if self.dir is not None:
                raise DatasetOptionsError(
                    "source 'ctc' reads mask folders: give 'gt_images' and 'raw_images' "
                    "(or 'tracks' and 'videos'), not 'dir'"
                )
            if (self.gt_images is not None) == (self.tracks is not None):
                raise DatasetOptionsError(
                    "source 'ctc' needs exactly one of 'gt_images' or 'tracks' (the mask folders)"
                )
            if (self.raw_images is not None) == (self.videos is not None):
                raise DatasetOptionsError(
                    "source 'ctc' needs exactly one of 'raw_images' or 'videos' (the raw frames)"
                )
            gt = self.gt_images if self.gt_images is not None else self.tracks
            raw = self.raw_images if self.raw_images is not None else self.videos
            lists = {"masks": gt, "raw frames": raw}
            if self.gt_list is not None:
                lists["gt_list"] = self.gt_list
            if len({len(v or []) for v in lists.values()}) != 1:
                counts = {k: len(v or []) for k, v in lists.items()}
                raise DatasetOptionsError(
                    f"source 'ctc' needs one entry per sequence in each: {counts}"
                )
            return
        for key in ("raw_images", "gt_images", "gt_list"):
            if getattr(self, key) is not None:
                raise DatasetOptionsError(
                    f"dataset option {key!r} belongs to source 'ctc', not {self.source!r}"
                )
        if (self.tracks is None) == (self.dir is None):
            raise DatasetOptionsError(
                f"source {self.source!r} needs exactly one of 'tracks' (with 'videos') or 'dir'"
            )
        if self.tracks is not None:
            if self.videos is None or len(self.videos) != len(self.tracks):
                raise DatasetOptionsError(
                    f"source {self.source!r} needs 'videos' parallel to 'tracks' "
                    f"({len(self.tracks)} track files, "
                    f"{0 if self.videos is None else len(self.videos)} videos): training reads "
                    "the images"
                )
        elif self.videos is not None:
            raise DatasetOptionsError("dataset options 'dir' and 'videos' exclude each other")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> ClipDatasetOptions:
        """Options from a config mapping; unknown keys and bad values raise an error."""
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise DatasetOptionsError(
                f"a dataset section must be a mapping, got {type(data).__name__}"
            )
        valid = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in valid:
                raise DatasetOptionsError(
                    f"unknown dataset option {key!r}{did_you_mean(key, valid)} "
                    f"(valid options: {', '.join(valid)})"
                )
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of every option (for resolved configs and logs)."""
        return dataclasses.asdict(self)


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DatasetOptionsError(
            f"dataset option {key!r} must be an int >= {minimum}, got {value!r}"
        )


def _path_list(key: str, value: Any, allow_none_items: bool = False) -> list[Any] | None:
    """A list of paths (or, for microscopy images, lists of paths); one string is a list of one."""
    if value is None:
        return None
    if isinstance(value, str | os.PathLike):
        return [os.fspath(value)]
    if not isinstance(value, Sequence):
        raise DatasetOptionsError(f"dataset option {key!r} must be a list of paths, got {value!r}")
    out: list[Any] = []
    for item in value:
        if item is None and allow_none_items:
            out.append(None)
        elif isinstance(item, str | os.PathLike):
            out.append(os.fspath(item))
        elif isinstance(item, Sequence) and all(isinstance(p, str | os.PathLike) for p in item):
            out.append([os.fspath(p) for p in item])
        else:
            raise DatasetOptionsError(
                f"dataset option {key!r} has an entry that is not a path: {item!r}"
            )
    if not out:
        raise DatasetOptionsError(f"dataset option {key!r} is an empty list")
    return out


def _dir_spec(value: Any) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise DatasetOptionsError(
            f"dataset option 'dir' must be a mapping of {DIR_KEYS}: {value!r}"
        )
    for key in value:
        if key not in DIR_KEYS:
            raise DatasetOptionsError(
                f"unknown key 'dir.{key}'{did_you_mean(key, DIR_KEYS)} "
                f"(valid keys: {', '.join(DIR_KEYS)})"
            )
    missing = [k for k in DIR_KEYS if not value.get(k)]
    if missing:
        raise DatasetOptionsError(f"dataset option 'dir' needs {missing}")
    spec = {k: os.fspath(value[k]) for k in DIR_KEYS}
    if spec["labels_suffix"] == spec["vid_suffix"]:
        raise DatasetOptionsError(
            f"'dir.labels_suffix' and 'dir.vid_suffix' are both {spec['vid_suffix']!r}"
        )
    return spec


def pair_by_stem(
    folder: str | os.PathLike, labels_suffix: str, vid_suffix: str
) -> list[tuple[Path, Path]]:
    """(labels, video) pairs of a folder, matched by stem and ordered by stem.

    The stem is the entry's name without the suffix (``a.slp`` and ``a.mp4`` share ``a``).
    Directory listing order is never used: it differs between file systems. A labels file
    without a video of the same stem, or a video without labels, is an error naming it. Hidden
    entries are ignored.
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset 'dir.path' is not a folder: {root}")
    labels: dict[str, Path] = {}
    videos: dict[str, Path] = {}
    for entry in root.iterdir():
        name = entry.name
        if name.startswith("."):
            continue
        # A longer suffix wins (".pkg.slp" labels next to ".slp" videos would otherwise clash).
        for suffix, table in sorted(
            ((labels_suffix, labels), (vid_suffix, videos)), key=lambda s: -len(s[0])
        ):
            if name.endswith(suffix) and len(name) > len(suffix):
                table[name[: -len(suffix)]] = entry
                break
    lonely_labels = sorted(set(labels) - set(videos))
    if lonely_labels:
        raise ValueError(
            f"labels file {labels[lonely_labels[0]]} has no video '{lonely_labels[0]}{vid_suffix}' "
            f"in {root}"
        )
    lonely_videos = sorted(set(videos) - set(labels))
    if lonely_videos:
        raise ValueError(
            f"video {videos[lonely_videos[0]]} has no labels file "
            f"'{lonely_videos[0]}{labels_suffix}' in {root}"
        )
    if not labels:
        raise ValueError(f"no '{labels_suffix}' labels files in {root}")
    return [(labels[stem], videos[stem]) for stem in sorted(labels)]


# ============================================================================================
# Dataset
# ============================================================================================


@dataclass
class _Sequence:
    """The labelled frames of one video, as arrays, and a lazy reader of its frames.

    ``frames`` is None when the dataset does not decode frames.
    """

    labels_path: str
    node_names: list[str]
    frame_idx: np.ndarray  # (F,) sorted
    points: list[np.ndarray]  # per frame (I, N, 2) float32, NaN missing
    track_ids: list[np.ndarray]  # per frame (I,) int64
    scores: list[np.ndarray]  # per frame (I,) float32
    frames: VideoFrameSource | None  # row f = frame_idx[f]
    video_file: str
    image_hw: tuple[int, int]
    channels: int


@dataclass(frozen=True)
class ClipRef:
    """Where a clip comes from: its sequence and the labelled frames it spans."""

    sequence: int
    start: int  # first row of the sequence's labelled frames
    stop: int  # one past the last row


class ClipDataset(torch.utils.data.Dataset):
    """Clips of consecutive labelled frames, each as one :class:`Detections` (see module doc)."""

    def __init__(
        self,
        options: ClipDatasetOptions | Mapping[str, Any],
        base_dir: str | os.PathLike | None = None,
        decode_frames: bool = True,
        frame_cache_mb: float = 1024.0,
    ) -> None:
        """Load the labels (not the frames) and cut the clips.

        ``base_dir`` resolves relative paths in the options (a config file's folder); the
        working directory when None.

        ``decode_frames`` False: no frame is ever decoded and the crops are zeros (for a model
        without visual features; see the module doc). Frame size and channel count then come
        from the video shape the labels store; a video whose labels store none is opened once,
        here, just to read its shape. The channel count is 1 for a video the labels mark
        grayscale (the decoder would turn it grey), else the stored shape's.

        ``frame_cache_mb``: memory for decoded frames kept between reads (see the module doc);
        0 decodes every read.
        """
        super().__init__()
        if not isinstance(options, ClipDatasetOptions):
            options = ClipDatasetOptions.from_dict(options)
        self.options = options
        self.base_dir = Path(base_dir) if base_dir is not None else None
        self.decode_frames = bool(decode_frames)
        self.frame_cache_bytes = max(0.0, float(frame_cache_mb)) * 2**20
        self._frame_cache: dict[tuple[int, int], np.ndarray] = {}
        self._frame_cache_used = 0
        self.augmenter = _Augmenter(options.augmentations or {})
        self.epoch = 0
        self.sequences: list[_Sequence] = []
        for labels_path, labels in self._load_labels():
            self.sequences.extend(self._sequences_of(labels_path, labels))
        channels = {s.channels for s in self.sequences}
        if len(channels) > 1:
            detail = ", ".join(f"{s.labels_path}: {s.channels}" for s in self.sequences)
            raise ValueError(f"videos of one dataset must share a channel count ({detail})")
        self.channels = channels.pop() if channels else 1
        self.clips = self._sample(self._cut_clips())
        if not self.clips:
            files = sorted({s.labels_path for s in self.sequences})
            raise ValueError(f"no labelled frames to make clips of in {files}")

    # ------------------------------------------------------------------ public

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, idx: int) -> Detections:
        """Clip ``idx``: every kept instance of its frames, frames read in order."""
        if not 0 <= idx < len(self.clips):
            raise IndexError(f"clip {idx} out of range (dataset has {len(self.clips)} clips)")
        ref = self.clips[idx]
        seq = self.sequences[ref.sequence]
        rng = self._rng(idx)
        train = self.options.mode == "train"
        angle = self.augmenter.clip_angle(rng) if train else None
        pixel_rng = self._rng(idx, stream=1)
        parts = []
        for row in range(ref.start, ref.stop):
            image = self._frame(ref.sequence, row)
            points, track_ids, scores = seq.points[row], seq.track_ids[row], seq.scores[row]
            if train:
                order = rng.permutation(len(points))
                points, track_ids, scores = points[order], track_ids[order], scores[order]
                image, points, track_ids, scores = self.augmenter.frame(
                    image, points, track_ids, scores, angle, rng, pixel_rng, seq.image_hw
                )
            try:
                detections, _ = detections_from_frame(
                    points,
                    image,
                    int(seq.frame_idx[row]),
                    seq.node_names,
                    self.options.anchors,
                    self.options.handle_missing,
                    self.options.crop_size,
                    self.options.padding,
                    track_ids=track_ids,
                    scores=scores,
                    rng=rng,
                    image_hw=seq.image_hw,
                    channels=seq.channels,
                )
            except ValueError as exc:
                raise ValueError(f"{seq.labels_path}: {exc}") from exc
            parts.append(detections)
        return Detections.concat(parts)

    def _frame(self, sequence: int, row: int) -> np.ndarray | None:
        """Row ``row`` of a sequence decoded (or kept from an earlier read); None without
        decoding. Augmentations work on copies, so a kept frame is never changed."""
        frames = self.sequences[sequence].frames
        if frames is None:
            return None
        key = (sequence, row)
        image = self._frame_cache.get(key)
        if image is None:
            image = frames.read(row)
            if self._frame_cache_used + image.nbytes <= self.frame_cache_bytes:
                image.setflags(write=False)
                self._frame_cache[key] = image
                self._frame_cache_used += image.nbytes
        return image

    def set_epoch(self, epoch: int) -> None:
        """Draw new augmentations from now on (with a seed, draws depend on seed/epoch/index)."""
        self.epoch = int(epoch)

    def clip_frames(self, idx: int) -> np.ndarray:
        """Frame indices (in the video) of clip ``idx``, without decoding anything."""
        ref = self.clips[idx]
        return self.sequences[ref.sequence].frame_idx[ref.start : ref.stop].copy()

    def clip_source(self, idx: int) -> tuple[str, str]:
        """(labels file, video file) clip ``idx`` comes from."""
        seq = self.sequences[self.clips[idx].sequence]
        return seq.labels_path, seq.video_file

    def close(self) -> None:
        """Close this process's video readers (they reopen on the next read)."""
        for seq in self.sequences:
            if seq.frames is not None:
                seq.frames.close()

    # ------------------------------------------------------------------ loading

    def _path(self, value: Any) -> Any:
        """A path (or list of paths) resolved against ``base_dir``."""
        if value is None:
            return None
        if isinstance(value, list):
            return [self._path(v) for v in value]
        path = Path(value)
        if self.base_dir is not None and not path.is_absolute():
            path = self.base_dir / path
        return str(path)

    def _load_labels(self) -> list[tuple[str, sio.Labels]]:
        """(labels file, Labels) per data source entry, videos pointing at the frames to read."""
        opts = self.options
        if opts.source is not None:
            return self._load_microscopy()
        if opts.dir is not None:
            pairs = pair_by_stem(
                self._path(opts.dir["path"]), opts.dir["labels_suffix"], opts.dir["vid_suffix"]
            )
            files = [(str(lab), str(vid)) for lab, vid in pairs]
        else:
            slps = self._path(opts.slp_files)
            vids = self._path(opts.video_files) if opts.video_files else [None] * len(slps)
            files = list(zip(slps, vids, strict=True))
        out = []
        for slp, video in files:
            if not Path(slp).is_file():
                raise FileNotFoundError(f"labels file not found: {slp}")
            labels = sio.load_slp(slp, open_videos=False)
            if video is not None:
                if not Path(video).exists():
                    raise FileNotFoundError(f"video for {slp} not found: {video}")
                if len(labels.videos) != 1:
                    raise ValueError(
                        f"{slp} references {len(labels.videos)} videos; a video file can replace "
                        "only one (leave 'video_files' out to use the videos it references)"
                    )
                labels.videos[0].replace_filename(video, open=False)
            out.append((slp, labels))
        return out

    def _load_microscopy(self) -> list[tuple[str, sio.Labels]]:
        opts = self.options
        if opts.source == "ctc":
            gts = self._path(opts.gt_images if opts.gt_images is not None else opts.tracks)
            raws = self._path(opts.raw_images if opts.raw_images is not None else opts.videos)
            gt_lists = self._path(opts.gt_list) if opts.gt_list is not None else [None] * len(gts)
            out = []
            for gt, raw, gt_list in zip(gts, raws, gt_lists, strict=True):
                if gt_list is None:
                    labels = read_microscopy_tracks(gt, "ctc", raw)
                else:
                    labels = read_cell_tracking_challenge(raw, gt, gt_list)
                out.append((str(gt), labels))
            return out
        if opts.dir is not None:
            pairs = pair_by_stem(
                self._path(opts.dir["path"]), opts.dir["labels_suffix"], opts.dir["vid_suffix"]
            )
            files = [(str(lab), str(vid)) for lab, vid in pairs]
        else:
            files = list(zip(self._path(opts.tracks), self._path(opts.videos), strict=True))
        return [
            (track_file, read_microscopy_tracks(track_file, opts.source, images))
            for track_file, images in files
        ]

    def _sequences_of(self, labels_path: str, labels: sio.Labels) -> list[_Sequence]:
        """One sequence per video of the labels, its ground truth as arrays."""
        if len(labels.skeletons) != 1:
            raise ValueError(f"{labels_path} has {len(labels.skeletons)} skeletons; one is needed")
        node_names = list(labels.skeletons[0].node_names)
        try:
            check_anchors(self.options.anchors, node_names)
        except ValueError as exc:
            raise DatasetOptionsError(f"dataset option 'anchors' for {labels_path}: {exc}") from exc
        track_index = {id(track): k for k, track in enumerate(labels.tracks)}
        sequences = []
        for video in labels.videos:
            frames = sorted(
                (lf for lf in labels.labeled_frames if lf.video is video),
                key=lambda lf: int(lf.frame_idx),
            )
            if not frames:
                continue
            seen = [int(lf.frame_idx) for lf in frames]
            dup = next((f for f, g in zip(seen, seen[1:], strict=False) if f == g), None)
            if dup is not None:
                raise ValueError(
                    f"{labels_path}: frame {dup} of {video.filename} is labelled twice"
                )
            points, tracks, scores = [], [], []
            duplicates: list[int] = []
            for lf in frames:
                p, t, s, dropped = _frame_ground_truth(lf, track_index, node_names, labels_path)
                points.append(p)
                tracks.append(t)
                scores.append(s)
                if dropped:
                    duplicates.append(int(lf.frame_idx))
            if duplicates:
                log.warning(
                    "%s: %d frames hold two instances of one track (first: frame %d); the first "
                    "of each is kept",
                    labels_path,
                    len(duplicates),
                    duplicates[0],
                )
            if self.decode_frames:
                source = VideoFrameSource(sio.Labels(labeled_frames=frames, videos=[video]))
                h, w, c = source.shapes[0]
            else:
                source = None
                h, w, c = _stored_shape(video, frames[0])
            sequences.append(
                _Sequence(
                    labels_path=labels_path,
                    node_names=node_names,
                    frame_idx=np.array(seen, dtype=np.int64),
                    points=points,
                    track_ids=tracks,
                    scores=scores,
                    frames=source,
                    video_file=str(video.filename),
                    image_hw=(h, w),
                    channels=c,
                )
            )
        return sequences

    # ------------------------------------------------------------------ clips

    def _cut_clips(self) -> list[ClipRef]:
        clips = []
        for s, seq in enumerate(self.sequences):
            n = len(seq.frame_idx)
            step = self.options.clip_length if self.options.chunk else n
            clips.extend(ClipRef(s, start, min(start + step, n)) for start in range(0, n, step))
        return clips

    def _sample(self, clips: list[ClipRef]) -> list[ClipRef]:
        """``n_chunks`` of the clips, drawn with the seed, kept in their original order."""
        value = self.options.n_chunks
        total = len(clips)
        if isinstance(value, float) or value == 1:
            count = max(1, int(math.floor(float(value) * total)))
        else:
            count = int(value)
            if count > total:
                log.warning("n_chunks=%d but only %d clips exist; using all of them", count, total)
        if count >= total:
            return clips
        rng = np.random.default_rng(self.options.seed)
        chosen = np.sort(rng.choice(total, size=count, replace=False))
        return [clips[i] for i in chosen]

    def _rng(self, idx: int, stream: int = 0) -> np.random.Generator:
        """Clip ``idx``'s generator: stream 0 for positions, 1 for pixels (module doc)."""
        if self.options.seed is None:
            return np.random.default_rng()
        key = [self.options.seed, self.epoch, int(idx)] + ([stream] if stream else [])
        return np.random.default_rng(key)


def _stored_shape(video: sio.Video, first: sio.LabeledFrame) -> tuple[int, int, int]:
    """(H, W, C) of a video's frames from what the labels store, without decoding a frame.

    Labels saved without the shape leave it unknown: the video is then opened once (the same
    probe the decoding path makes; a backend may decode the first frame to learn the size) just
    to read it, and closed again.
    """
    shape = video.shape  # the open backend's, else the stored metadata's; never opens
    if shape is None:
        probe = VideoFrameSource(sio.Labels(labeled_frames=[first], videos=[video]))
        h, w, c = probe.shapes[0]
    else:
        dims = [int(s) for s in shape]
        if len(dims) not in (3, 4):
            raise ValueError(
                f"video {video.filename}: stored shape {tuple(dims)} is not (frames, H, W[, C])"
            )
        h, w, c = dims[1], dims[2], dims[3] if len(dims) == 4 else 1
    if video.backend_metadata.get("grayscale") is True:
        c = 1
    return int(h), int(w), int(c)


def _frame_ground_truth(
    lf: sio.LabeledFrame, track_index: dict[int, int], node_names: list[str], labels_path: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """(points, track ids, scores, whether a duplicate track was dropped) of a labelled frame.

    Track ids are positions in the labels' track list.
    """
    user = [i for i in lf.instances if not isinstance(i, sio.PredictedInstance)]
    instances = user if user else list(lf.instances)
    points, tracks, scores = [], [], []
    seen: set[int] = set()
    dropped = False
    for inst in instances:
        if inst.skeleton.node_names != node_names:
            raise ValueError(
                f"{labels_path}: frame {lf.frame_idx} has an instance of skeleton "
                f"{inst.skeleton.node_names}, not {node_names}"
            )
        track = -1
        if inst.track is not None:
            if id(inst.track) not in track_index:
                raise ValueError(
                    f"{labels_path}: frame {lf.frame_idx} has an instance of track "
                    f"{inst.track.name!r} missing from the labels' track list"
                )
            track = track_index[id(inst.track)]
        if track >= 0 and track in seen:
            dropped = True
            continue
        seen.add(track)
        points.append(inst.numpy())
        tracks.append(track)
        scores.append(float(inst.score) if isinstance(inst, sio.PredictedInstance) else 1.0)
    n_nodes = len(node_names)
    pts = np.stack(points).astype(np.float32) if points else np.zeros((0, n_nodes, 2), np.float32)
    return pts, np.array(tracks, dtype=np.int64), np.array(scores, dtype=np.float32), dropped


def collate(batch: Sequence[Detections]) -> list[Detections]:
    """A DataLoader batch as a list of clips: clips differ in instance counts, so no stacking."""
    out = list(batch)
    for k, item in enumerate(out):
        if not isinstance(item, Detections):
            raise TypeError(f"collate expects Detections, item {k} is {type(item).__name__}")
    return out
