"""Tracking with a global tracking transformer: association logits -> track identities.

``GTRTracker`` walks each video's frames in frame order and asks the network (anything with
``associate(window, query, use_vis_feats=...)``) how the current frame's detections (the query)
relate to the recent detections of every live track (the window). For one frame:

1. **Context.** Each live track keeps its last ``window_size`` instances (DREEM's per-track
   queue); the window is all of them, in frame order. While every animal is seen in every
   frame that is the last ``window_size`` frames; an animal that goes missing keeps its last
   instances, so the network can recognise it when it reappears (until ``max_gap`` retires it).
2. **Probabilities.** Per query row, a softmax over the row's logits for all window instances
   plus one "no match" column of logit ``no_match_logit`` (the model's learned one if it has
   one, else 0). This is the distribution a loss over "which track of the window, or none"
   trains (summing a track's instance probabilities gives that track's probability), so the
   trajectory score of a track is the probability that the query continues it, in [0, 1],
   and thresholds mean the same on windows of any size.
3. **Trajectory score** of query i and track k: the sum over the track's window instances j of
   ``p_ij``, each weighted by ``decay_time ** (t - 1 - t_j)`` when ``decay_time`` is set (the
   previous frame counts fully, older evidence fades; t in video frames).
4. ``iou``: ``"mult"`` multiplies the score by the IoU of the query box with the track's most
   recent box; ``"max"`` takes ``max(score, IoU)``.
5. ``max_center_dist``: scores of tracks whose most recent centroid is farther from the query
   centroid than this fraction of the frame diagonal become 0 (a NaN centroid, from data that
   keeps instances without their anchor, is not filtered).
6. **Assignment.** Hungarian (``scipy.optimize.linear_sum_assignment``) maximising the scores
   of pairs above the threshold: ``overlap_thresh``, times the track's number of window
   instances with ``mult_thresh`` (DREEM's "weight threshold").
7. **New tracks.** Unmatched queries, highest detection score first, start new tracks (score
   1.0) while fewer than ``max_tracks`` tracks are live. The rest are forced onto the live
   tracks not used in this frame: a second Hungarian on their scores, ties (e.g. all 0)
   broken by centroid distance; their ``tracking_score`` is that score. Queries left when no
   free track remains stay untracked.
8. **Retirement.** Before a frame is matched, tracks missing for more than ``max_gap``
   consecutive video frames are retired: never matched again, and no longer counted against
   ``max_tracks``.

Time is in video frames (frame indices): frames absent from the labels are gaps, so a file
predicted on every 8th frame has 7 missing frames between processed frames, which
``max_gap`` and ``decay_time`` count. Long videos are processed in chunks of ``chunk_frames``
video frames (frame index // chunk_frames); with ``persistent_tracking`` the tracks carry across
chunks, without it every chunk starts with no tracks and new track names (DREEM's behaviour
when its buffer is not kept between batches).

Instances with no visible point, and instances that ``featurize`` drops, stay untracked. User
instances pass through unchanged. Track names are ``track_0``, ``track_1``, ...; as in the
classical tracker, videos are tracked independently and share Track objects by name.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import sleap_io as sio
import torch
from scipy.optimize import linear_sum_assignment

from pipeline_lib.data.instances import pairwise_box_iou
from pipeline_lib.io.progress import counted, video_label
from pipeline_lib.tracking.classical import (
    _copy_predicted,
    _copy_user_instance,
    _frames_by_video,
    _labels_with_frames,
    _score,
    _TrackNamer,
    _user_tracks,
)
from pipeline_lib.tracking.gtr.config import GTRTrackerOptions
from pipeline_lib.tracking.gtr.detections import Detections

DEFAULT_CHUNK_FRAMES = 1000
_TIE_BREAK = 1e-6  # weight of the normalised centroid distance in the forced assignment

FeaturizeResult = Detections | tuple[Detections, np.ndarray]
Featurize = Callable[[sio.LabeledFrame, np.ndarray | None], FeaturizeResult]


class AssociationModel(Protocol):
    """What the tracker needs from the network."""

    def associate(
        self, window: Detections, query: Detections, use_vis_feats: bool = True
    ) -> torch.Tensor:
        """Association logits of shape (len(query), len(window))."""
        ...


@dataclass
class _FrameRecord:
    """The detections of one processed frame, shared by the tracks that matched its rows."""

    frame_idx: int
    detections: Detections


@dataclass
class _Track:
    """A live track of one video: its recent instances and where it was last seen."""

    index: int  # naming index within the video: track_<index>
    last_seen: int
    last_box: np.ndarray
    last_centroid: np.ndarray
    entries: deque = field(default_factory=deque)  # (frame record, row), oldest first

    def observe(self, record: _FrameRecord, row: int, window_size: int) -> None:
        """Add a matched instance; keep the last ``window_size`` of them."""
        self.entries.append((record, row))
        while len(self.entries) > window_size:
            self.entries.popleft()
        self.last_seen = record.frame_idx
        self.last_box = record.detections.boxes[row].detach().cpu().double().numpy()
        self.last_centroid = record.detections.centroids[row].detach().cpu().double().numpy()


@dataclass
class _VideoState:
    """Live tracks of one video and the next naming index."""

    live: list[_Track] = field(default_factory=list)
    next_index: int = 0


class GTRTracker:
    """Assigns identities with a global tracking transformer (the ``Tracker`` protocol).

    Args:
        model: anything with ``associate(window, query, use_vis_feats=...)`` returning logits
            of shape (len(query), len(window)); put in eval mode while tracking (its mode is
            restored after) and fed detections on the device of its first parameter.
        options: the ``tracker:`` options (a ``GTRTrackerOptions``, a mapping, or None).
        featurize: ``featurize(labeled_frame, image)`` -> the frame's ``Detections``. It gets
            a LabeledFrame holding only the instances to track and the frame image (None when
            ``use_vis_feats`` is false: frames are then not decoded). It returns one detection
            per instance in order, or ``(detections, kept_index)`` when it drops some
            (``kept_index[r]`` = position of row r's instance in the given frame).
        chunk_frames: video frames per chunk; only matters without ``persistent_tracking``.
        no_match_logit: the logit of "continues no track in the window" (see module doc);
            ``None`` reads the model's own ``no_match_logit`` (the learned scalar of
            ``GlobalTrackingTransformer``) when it has one, else uses 0.
        read_image: ``read_image(labeled_frame)`` -> its (H, W, C) image, called in frame
            order per video when ``use_vis_feats`` is on; ``None`` reads ``labeled_frame.image``
            (sleap-io seeks for every frame that is not the next one, ~50 ms on the fly mp4s).
    """

    def __init__(
        self,
        model: AssociationModel,
        options: GTRTrackerOptions | Mapping[str, Any] | None,
        featurize: Featurize,
        chunk_frames: int = DEFAULT_CHUNK_FRAMES,
        no_match_logit: float | None = None,
        read_image: Callable[[sio.LabeledFrame], np.ndarray] | None = None,
    ) -> None:
        if not callable(getattr(model, "associate", None)):
            raise TypeError(
                f"GTRTracker needs a model with an associate(window, query, use_vis_feats) "
                f"method; got {type(model).__name__}"
            )
        if not callable(featurize):
            raise TypeError(f"featurize must be callable, got {type(featurize).__name__}")
        if isinstance(chunk_frames, bool) or not isinstance(chunk_frames, int) or chunk_frames < 1:
            raise ValueError(f"chunk_frames must be a positive integer, got {chunk_frames!r}")
        if no_match_logit is None:
            no_match_logit = _model_no_match_logit(model)
        if not np.isfinite(no_match_logit):
            raise ValueError(f"no_match_logit must be finite, got {no_match_logit!r}")
        self.model = model
        self.options = (
            options
            if isinstance(options, GTRTrackerOptions)
            else GTRTrackerOptions.from_dict(options)
        )
        self.featurize = featurize
        self.chunk_frames = chunk_frames
        self.no_match_logit = float(no_match_logit)
        self.read_image = read_image
        self._device: torch.device | None = None

    def track(self, labels: sio.Labels) -> sio.Labels:
        """Return tracked Labels with new frames and instances; the input is left unchanged."""
        user_tracks = _user_tracks(labels)
        namer = _TrackNamer(taken={t.name for t in user_tracks})
        self._device = _model_device(self.model)
        was_training = getattr(self.model, "training", None)
        if callable(getattr(self.model, "eval", None)):
            self.model.eval()
        try:
            frames_out: list[sio.LabeledFrame] = []
            for frames in _frames_by_video(labels):
                frames_out.extend(self._track_video(frames, namer))
        finally:
            if was_training is True and callable(getattr(self.model, "train", None)):
                self.model.train()
        return _labels_with_frames(labels, frames_out, user_tracks + namer.tracks)

    def _track_video(
        self, frames: list[sio.LabeledFrame], namer: _TrackNamer
    ) -> list[sio.LabeledFrame]:
        opts = self.options
        state = _VideoState()
        chunk = None
        out: list[sio.LabeledFrame] = []
        for lf in counted(frames, f"track {video_label(frames)}"):
            t = int(lf.frame_idx)
            if not opts.persistent_tracking and t // self.chunk_frames != chunk:
                state.live.clear()
            chunk = t // self.chunk_frames
            if opts.max_gap is not None:
                state.live = [tr for tr in state.live if t - tr.last_seen - 1 <= opts.max_gap]

            predicted = [i for i in lf.instances if isinstance(i, sio.PredictedInstance)]
            poses = [i.numpy().astype(np.float64) for i in predicted]
            trackable = [k for k, p in enumerate(poses) if not np.all(np.isnan(p))]
            track_of: dict[int, tuple[_Track, float]] = {}
            if trackable:
                detections, kept = self._detections(lf, [predicted[k] for k in trackable])
                record = _FrameRecord(frame_idx=t, detections=detections)
                det_scores = [_score(predicted[trackable[k]]) for k in kept]
                for row, (track, score) in self._assign(record, det_scores, state).items():
                    track.observe(record, row, opts.window_size)
                    track_of[trackable[kept[row]]] = (track, score)

            instances: list[sio.Instance | sio.PredictedInstance] = [
                _copy_user_instance(i)
                for i in lf.instances
                if not isinstance(i, sio.PredictedInstance)
            ]
            for k, inst in enumerate(predicted):
                track, score = track_of.get(k, (None, 0.0))
                name = None if track is None else namer.get(track.index)
                instances.append(_copy_predicted(inst, poses[k], name, score))
            out.append(
                sio.LabeledFrame(
                    video=lf.video,
                    frame_idx=lf.frame_idx,
                    instances=instances,
                    is_negative=lf.is_negative,
                )
            )
        return out

    def _detections(
        self, lf: sio.LabeledFrame, instances: list[sio.PredictedInstance]
    ) -> tuple[Detections, list[int]]:
        """Featurize the frame's trackable instances; returns detections and, per row, the
        position of its instance in ``instances``."""
        where = f"frame {lf.frame_idx} of {lf.video.filename!r}"
        image = self._image(lf, where) if self.options.use_vis_feats else None
        sub = sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=instances)
        result = self.featurize(sub, image)
        if isinstance(result, tuple):
            if len(result) != 2:
                raise ValueError(
                    f"featurize returned a tuple of {len(result)} items for {where}; expected "
                    "(detections, kept_index)"
                )
            detections, kept_arr = result
            kept = [int(k) for k in np.asarray(kept_arr).reshape(-1)]
        else:
            detections, kept = result, list(range(len(instances)))
        if not isinstance(detections, Detections):
            raise TypeError(
                f"featurize returned {type(detections).__name__} for {where}; expected Detections"
            )
        if len(kept) != len(detections):
            raise ValueError(
                f"featurize returned {len(detections)} detections for {where} but "
                f"{len(kept)} kept indices (of {len(instances)} instances)"
            )
        if len(set(kept)) != len(kept) or any(k < 0 or k >= len(instances) for k in kept):
            raise ValueError(
                f"featurize returned invalid kept indices {kept} for {where} "
                f"({len(instances)} instances)"
            )
        if len(detections) and bool((detections.frames != lf.frame_idx).any()):
            raise ValueError(
                f"featurize returned detections of frames "
                f"{sorted(set(detections.frames.tolist()))} for {where}"
            )
        return detections, kept

    def _image(self, lf: sio.LabeledFrame, where: str) -> np.ndarray:
        try:
            image = lf.image if self.read_image is None else self.read_image(lf)
        except Exception as err:  # any backend failure: say which frame and how to avoid it
            raise RuntimeError(
                f"Cannot read the image of {where} for visual features ({err}); make the "
                "video readable or set tracker option use_vis_feats: false"
            ) from err
        if image is None:
            raise RuntimeError(
                f"No image for {where}: the video is not readable; make it readable or set "
                "tracker option use_vis_feats: false"
            )
        return np.asarray(image)

    def _assign(
        self, record: _FrameRecord, det_scores: list[float], state: _VideoState
    ) -> dict[int, tuple[_Track, float]]:
        """Map detection row -> (track, tracking score), creating tracks as needed."""
        opts = self.options
        query = record.detections
        n = len(query)
        live = list(state.live)
        scores = np.zeros((n, len(live)))
        assigned: dict[int, tuple[_Track, float]] = {}
        if n == 0:
            return assigned
        q_centroids = query.centroids.detach().cpu().double().numpy()
        last_centroids = np.stack([tr.last_centroid for tr in live]) if live else np.zeros((0, 2))
        dist = _center_distance(q_centroids, last_centroids, query.image_hw)
        if live:
            scores = self._trajectory_scores(record, live, dist)
            counts = np.array([len(tr.entries) for tr in live], dtype=np.float64)
            thresh = opts.overlap_thresh * (counts if opts.mult_thresh else np.ones_like(counts))
            ok = scores > thresh[None, :]
            if ok.any():
                rows, cols = linear_sum_assignment(np.where(ok, scores, 0.0), maximize=True)
                for r, c in zip(rows, cols, strict=True):
                    if ok[r, c]:
                        assigned[int(r)] = (live[c], float(scores[r, c]))

        unmatched = sorted((r for r in range(n) if r not in assigned), key=lambda r: -det_scores[r])
        while unmatched and (opts.max_tracks is None or len(state.live) < opts.max_tracks):
            r = unmatched.pop(0)
            track = _Track(
                index=state.next_index,
                last_seen=record.frame_idx,
                last_box=np.full(4, np.nan),
                last_centroid=np.full(2, np.nan),
            )
            state.next_index += 1
            state.live.append(track)
            assigned[r] = (track, 1.0)

        used = {id(tr) for tr, _ in assigned.values()}
        free = [c for c, tr in enumerate(live) if id(tr) not in used]
        if unmatched and free:
            sub_scores = scores[np.ix_(unmatched, free)]
            sub_dist = np.nan_to_num(dist[np.ix_(unmatched, free)], nan=2.0)
            rows, cols = linear_sum_assignment(-sub_scores + _TIE_BREAK * sub_dist)
            for r, c in zip(rows, cols, strict=True):
                assigned[unmatched[r]] = (live[free[c]], float(sub_scores[r, c]))
        return assigned

    def _trajectory_scores(
        self, record: _FrameRecord, live: list[_Track], dist: np.ndarray
    ) -> np.ndarray:
        """(n_query, n_live) trajectory scores after decay, IoU and distance filtering."""
        opts = self.options
        window, col_track, col_time = _window(live)
        logits = self._associate(window, record)
        probs = association_probabilities(logits, self.no_match_logit)
        if opts.decay_time is not None:
            age = np.maximum(record.frame_idx - 1 - col_time, 0)
            probs = probs * opts.decay_time ** age[None, :]
        membership = np.zeros((len(col_track), len(live)))
        membership[np.arange(len(col_track)), col_track] = 1.0
        scores = probs @ membership
        if opts.iou is not None:
            last_boxes = np.stack([tr.last_box for tr in live])
            ious = box_iou(record.detections.boxes.detach().cpu().double().numpy(), last_boxes)
            scores = scores * ious if opts.iou == "mult" else np.maximum(scores, ious)
        if opts.max_center_dist is not None:
            with np.errstate(invalid="ignore"):
                scores = np.where(dist > opts.max_center_dist, 0.0, scores)
        return scores

    def _associate(self, window: Detections, record: _FrameRecord) -> np.ndarray:
        """The model's logits as float64 numpy, checked for shape and finiteness."""
        query = record.detections
        if self._device is not None:
            window, query = window.to(self._device), query.to(self._device)
        with torch.inference_mode():
            logits = self.model.associate(window, query, use_vis_feats=self.options.use_vis_feats)
        expected = (len(query), len(window))
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != expected:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(
                f"Association model returned {shape} for frame {record.frame_idx}; expected "
                f"logits of shape {expected} (query instances x window instances)"
            )
        out = logits.detach().cpu().double().numpy()
        if not np.isfinite(out).all():
            raise ValueError(
                f"Association model returned non-finite logits for frame {record.frame_idx}"
            )
        return out


def association_probabilities(logits: np.ndarray, no_match_logit: float = 0.0) -> np.ndarray:
    """Row-wise softmax over the window instances plus a "no match" column (dropped).

    Each row sums to below 1: the rest is the probability that the query continues none of
    the window's tracks.
    """
    logits = np.asarray(logits, dtype=np.float64)
    full = np.concatenate([logits, np.full((logits.shape[0], 1), no_match_logit)], axis=1)
    full = full - full.max(axis=1, keepdims=True)
    e = np.exp(full)
    return (e / e.sum(axis=1, keepdims=True))[:, :-1]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a`` (N, 4) against ``b`` (M, 4), x1 y1 x2 y2; 0 where undefined (NaN)."""
    return pairwise_box_iou(a, b)


def _center_distance(a: np.ndarray, b: np.ndarray, image_hw: tuple[int, int]) -> np.ndarray:
    """Centroid distances (N, M) as a fraction of the frame diagonal (NaN where unknown)."""
    diagonal = float(np.hypot(*image_hw))
    if diagonal <= 0:
        raise ValueError(f"Detections have an empty frame size {image_hw}")
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=-1) / diagonal


def _window(live: list[_Track]) -> tuple[Detections, np.ndarray, np.ndarray]:
    """The live tracks' recent instances as one Detections in frame order, with each row's
    track (position in ``live``) and frame index."""
    rows_of: dict[int, tuple[_FrameRecord, list[int], list[int]]] = {}
    for col, track in enumerate(live):
        for record, row in track.entries:
            entry = rows_of.setdefault(id(record), (record, [], []))
            entry[1].append(row)
            entry[2].append(col)
    groups = sorted(rows_of.values(), key=lambda g: g[0].frame_idx)
    parts = [record.detections.select(torch.tensor(rows)) for record, rows, _ in groups]
    col_time = np.concatenate(
        [np.full(len(rows), record.frame_idx, dtype=np.int64) for record, rows, _ in groups]
    )
    window = Detections.concat(parts)
    # The window's track ids are the tracker's own assignments (positions in ``live``): the
    # model reads them as it read ground-truth ids in training (motion of each track).
    col_track = np.concatenate([np.asarray(cols, dtype=np.int64) for _, _, cols in groups])
    window.track_ids = torch.as_tensor(col_track, device=window.frames.device)
    return window, col_track, col_time


def _model_no_match_logit(model: Any) -> float:
    """The model's learned "no match" logit (a float or one-element tensor), else 0."""
    value = getattr(model, "no_match_logit", None)
    if value is None:
        return 0.0
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(
                f"The model's no_match_logit must be a scalar, got shape {tuple(value.shape)}"
            )
        return float(value.detach().cpu().item())
    return float(value)


def _model_device(model: Any) -> torch.device | None:
    """Device of the model's first parameter; None for models without parameters."""
    parameters = getattr(model, "parameters", None)
    if not callable(parameters):
        return None
    first = next(iter(parameters()), None)
    if first is None or first.device.type == "cpu":
        return None
    return first.device
