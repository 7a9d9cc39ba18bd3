"""A trained tracking transformer, loaded from its run directory and made into a tracker.

:func:`load_tracker_model` rebuilds the network from the run's ``tracker_config.yaml`` and loads
``best.ckpt``. :func:`make_gtr_tracker` wraps it in a :class:`GTRTracker` whose ``featurize``
turns each frame's predicted poses into detections exactly as training turned the ground truth
into clips: the anchors, ``handle_missing``, ``crop_size`` and ``padding`` of the config's
``dataset.train_dataset``. The tracker options are the config's ``tracker:`` section with any
overrides applied on top (checked as strictly as the section itself).

Frames are decoded only when the tracker uses visual features. They are then read in frame
order through a private reader per video that decodes forward over short gaps instead of
seeking (:class:`SequentialFrameReader`): on the 1024 x 1024 fly videos a seek costs ~50 ms,
decoding the next frame ~3 ms, so tracking every 4th frame reads 15x faster this way. Without
visual features nothing is decoded; the frame size, which positions are normalised by, comes
from the video's metadata (or ``image_hw``).

Instances that ``handle_missing: drop`` removes, and those ``handle_missing: ignore`` keeps
without a position (training leaves those out too), stay untracked.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import sleap_io as sio
import torch

from pipeline_lib.devices import pick_device
from pipeline_lib.models.pretrained import read_checkpoint_state
from pipeline_lib.tracking.gtr.config import GTRTrackerOptions
from pipeline_lib.tracking.gtr.data import ClipDatasetOptions
from pipeline_lib.tracking.gtr.detections import Detections
from pipeline_lib.tracking.gtr.instances import check_anchors, labels_frame_detections
from pipeline_lib.tracking.gtr.model import GlobalTrackingTransformer
from pipeline_lib.tracking.gtr.run_config import TRACKER_CONFIG, RunConfig, load_run_config
from pipeline_lib.tracking.gtr.tracker import DEFAULT_CHUNK_FRAMES, Featurize, GTRTracker
from pipeline_lib.training.run_dir import BEST_CKPT

__all__ = [
    "SequentialFrameReader",
    "load_tracker_model",
    "make_featurize",
    "make_gtr_tracker",
]

# Largest gap (in frames) decoded through rather than seeked over: a seek costs about as much
# as decoding ~15 frames of the fly videos; 32 keeps the worst case near two seeks.
MAX_DECODE_GAP = 32


def load_tracker_model(
    run_dir: str | os.PathLike, device: str | torch.device = "auto"
) -> tuple[GlobalTrackingTransformer, RunConfig]:
    """The trained network (in eval mode, on ``device``) and the run's resolved config.

    ``device`` ``"auto"`` picks CUDA, then MPS, then CPU
    (:func:`pipeline_lib.devices.pick_device`).
    """
    run_dir = Path(run_dir)
    cfg_path, ckpt_path = run_dir / TRACKER_CONFIG, run_dir / BEST_CKPT
    for path in (cfg_path, ckpt_path):
        if not path.exists():
            raise FileNotFoundError(
                f"Tracker model folder {run_dir} has no {path.name}; was training finished?"
            )
    config = load_run_config(cfg_path)
    model = GlobalTrackingTransformer(config.model)
    state = read_checkpoint_state(ckpt_path)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ValueError(f"{ckpt_path} does not fit the network of {cfg_path}: {err}") from err
    target = pick_device(device) if isinstance(device, str) else device
    return model.eval().to(target), config


def make_gtr_tracker(
    run_dir: str | os.PathLike,
    options_override: Mapping[str, Any] | None = None,
    device: str | torch.device = "auto",
    image_hw: tuple[int, int] | None = None,
    chunk_frames: int = DEFAULT_CHUNK_FRAMES,
) -> GTRTracker:
    """A :class:`GTRTracker` with the trained network of ``run_dir``.

    Args:
        run_dir: a run directory written by :func:`~pipeline_lib.tracking.gtr.training.train_tracker`.
        options_override: tracker options replacing those of the run's ``tracker:`` section
            (DREEM names; unknown keys are errors with a did-you-mean).
        device: where the network runs (``"auto"``: CUDA, then MPS, then CPU).
        image_hw: frame (height, width) to use when visual features are off and the videos
            cannot be opened to read it.
        chunk_frames: video frames per chunk (matters without ``persistent_tracking``).
    """
    model, config = load_tracker_model(run_dir, device)
    options = _tracker_options(config.tracker, options_override)
    featurize = make_featurize(
        config.train_dataset, channels=config.model.encoder_cfg.in_chans, image_hw=image_hw
    )
    reader = SequentialFrameReader() if options.use_vis_feats else None
    return GTRTracker(model, options, featurize, chunk_frames=chunk_frames, read_image=reader)


def _tracker_options(
    base: GTRTrackerOptions, override: Mapping[str, Any] | None
) -> GTRTrackerOptions:
    if not override:
        return base
    if not isinstance(override, Mapping):
        raise TypeError(
            f"tracker option overrides must be a mapping, got {type(override).__name__}"
        )
    # Validate the overrides on their own first, so errors name the key the caller gave.
    GTRTrackerOptions.from_dict(override)
    return GTRTrackerOptions.from_dict({**base.to_dict(), **dict(override)})


def make_featurize(
    dataset: ClipDatasetOptions,
    channels: int = 1,
    image_hw: tuple[int, int] | None = None,
    seed: int = 0,
) -> Featurize:
    """``featurize(labeled_frame, image) -> (Detections, kept_index)`` as training built clips.

    ``channels`` is the network's ``in_chans``: a colour frame is turned grey for a
    one-channel network (one-channel frames are fine for three-channel networks, which repeat
    them, as in training). Without an image, crops are zeros and the frame size comes from
    ``image_hw`` or the video. An int ``anchors`` (random nodes) draws from a generator seeded
    with ``seed``, so tracking is reproducible.
    """
    rng = np.random.default_rng(seed)
    sizes = _FrameSizes(image_hw)
    checked: set[tuple[str, ...]] = set()

    def featurize(lf: sio.LabeledFrame, image: np.ndarray | None) -> tuple[Detections, np.ndarray]:
        names = tuple(lf.instances[0].skeleton.node_names) if lf.instances else ()
        if names and names not in checked:
            try:
                check_anchors(dataset.anchors, names)
            except ValueError as err:
                raise ValueError(
                    f"The tracker model's anchors do not fit the skeleton of "
                    f"{_video_name(lf.video)}: {err}"
                ) from err
            checked.add(names)
        frame = None if image is None else _to_channels(np.asarray(image), channels)
        detections, kept = labels_frame_detections(
            lf,
            frame,
            anchors=dataset.anchors,
            handle_missing=dataset.handle_missing,
            crop_size=dataset.crop_size,
            padding=dataset.padding,
            rng=rng,
            image_hw=None if frame is not None else sizes.of(lf.video),
            channels=channels,
        )
        placed = torch.isfinite(detections.centroids).all(dim=1)
        if not bool(placed.all()):
            detections = detections.select(placed)
            kept = kept[placed.numpy()]
        return detections, kept

    return featurize


class SequentialFrameReader:
    """``reader(labeled_frame)`` -> its frame (H, W, C), decoding forward through short gaps.

    One private reader per video (a copy of the labels' ``Video``, so the labels' own reader is
    never moved), the same sleap-io decoding as training's clips. For media files, a frame at
    most :data:`MAX_DECODE_GAP` frames after the previous one is reached by decoding the frames
    in between; anything else (earlier frames, long gaps, image folders, HDF5) is read
    directly. Only the current video's reader stays open.
    """

    def __init__(self, max_gap: int = MAX_DECODE_GAP) -> None:
        self.max_gap = int(max_gap)
        self._key: tuple[str, ...] | None = None
        self._video: sio.Video | None = None
        self._next: int | None = None

    def __call__(self, lf: sio.LabeledFrame) -> np.ndarray:
        key = _video_key(lf.video)
        if key != self._key:
            self.close()
            self._video = _private_copy(lf.video)
            self._video.open()
            self._key = key
        video = self._video
        target = int(lf.frame_idx)
        if (
            self._next is not None
            and _is_media(video)
            and self._next <= target <= self._next + self.max_gap
        ):
            for frame_idx in range(self._next, target):
                video[frame_idx]  # decoded in order, discarded: cheaper than a seek
        image = video[target]
        self._next = target + 1
        if image is None:
            raise RuntimeError(f"frame {target} of {_video_name(lf.video)} did not decode")
        image = np.asarray(image)
        return image if image.ndim == 3 else image[..., None]

    def close(self) -> None:
        """Release the open video reader (a later call reopens it)."""
        if self._video is not None:
            self._video.close()
        self._video = None
        self._key = None
        self._next = None


class _FrameSizes:
    """(height, width) per video, read once from metadata or by opening a private copy."""

    def __init__(self, override: tuple[int, int] | None) -> None:
        self.override = None if override is None else (int(override[0]), int(override[1]))
        self.sizes: dict[tuple[str, ...], tuple[int, int]] = {}

    def of(self, video: sio.Video) -> tuple[int, int]:
        if self.override is not None:
            return self.override
        key = _video_key(video)
        if key not in self.sizes:
            self.sizes[key] = _frame_hw(video)
        return self.sizes[key]


def _frame_hw(video: sio.Video) -> tuple[int, int]:
    """The frame size of a video without decoding a frame where the metadata has it."""
    shape = video.backend_metadata.get("shape") if video.backend_metadata else None
    if shape is None and video.backend is not None:
        shape = video.shape
    if shape is None:
        copy = _private_copy(video)
        try:
            copy.open()
            shape = copy.shape
        except Exception as err:  # any backend failure: name the video and the way out
            raise RuntimeError(
                f"Cannot read the frame size of {_video_name(video)} ({err}); the tracker "
                "needs it to place positions even without visual features: make the video "
                "readable or pass image_hw"
            ) from err
        finally:
            copy.close()
    if shape is None or len(shape) < 3:
        raise RuntimeError(f"Cannot read the frame size of {_video_name(video)}; pass image_hw")
    return int(shape[1]), int(shape[2])


def _to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """A colour frame as grey for one-channel networks; anything else unchanged."""
    frame = image if image.ndim == 3 else image[..., None]
    if channels == 1 and frame.shape[2] == 3:
        return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)[..., None]
    return frame


def _private_copy(video: sio.Video) -> sio.Video:
    """A closed ``Video`` of the same file (and embedded dataset) that opens its own reader."""
    return sio.Video(
        filename=video.filename,
        backend=None,
        backend_metadata=dict(video.backend_metadata or {}),
        open_backend=False,
    )


def _is_media(video: sio.Video) -> bool:
    """True for compressed media files (where seeking is what costs)."""
    return type(video.backend).__name__ == "MediaVideo"


def _video_key(video: sio.Video) -> tuple[str, ...]:
    filename = video.filename
    names = filename if isinstance(filename, list) else [filename]
    dataset = (video.backend_metadata or {}).get("dataset") or ""
    return (*(str(n) for n in names), str(dataset))


def _video_name(video: sio.Video) -> str:
    filename = video.filename
    if isinstance(filename, list):
        return f"image sequence {filename[0]!r} (+{len(filename) - 1})"
    return repr(str(filename))
