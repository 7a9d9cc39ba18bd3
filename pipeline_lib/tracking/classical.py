"""Classical multi-animal tracker: frame-by-frame Hungarian matching against recent tracks.

Each processed frame's instances are compared with the instances every live track had in the
last ``window_size`` processed frames (optionally moved forward by the track's velocity), and
matched one-to-one with ``scipy.optimize.linear_sum_assignment``. This is what ``track_video``
uses when no learned tracker is configured, so it has to hold up on its own: the defaults were
chosen by counting identity switches on real fly data at native and reduced frame rates.

Windows and gaps count processed frames: the frames of one video present in the labels, sorted
by frame index (see ``TrackerOptions``). Rules, in order, for one frame:

1. Instances whose points are all missing are kept but left untracked. With ``max_instances``
   only the top-scoring instances are kept (the others are dropped from the output).
2. Candidate tracks are those seen within ``max_gap`` processed frames. Similarity of an
   instance to a track is the best similarity to any of the track's instances in the window.
   Pairs below ``min_similarity`` are rejected after the assignment.
3. Unmatched instances, highest score first, start new tracks while ``max_tracks`` allows.
4. When ``max_tracks`` is reached, the remaining unmatched instances go to the tracks not used
   in this frame (including stale ones): a second assignment minimising the distance between
   the instance's centroid and the track's last known centroid. Their ``tracking_score`` is the
   configured similarity to that last observation (often near 0). Instances left over when no
   free track remains stay untracked.

A new track gets ``tracking_score`` 1.0. Track names are ``track_0``, ``track_1``, ...; videos
are tracked independently but share the Track objects by name, so ``track_0`` of two videos is
one Track with no claim that it is the same animal.
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sleap_io as sio
from scipy.optimize import linear_sum_assignment

from pipeline_lib.data.instances import pairwise_box_iou, pose_boxes
from pipeline_lib.io.progress import counted, video_label
from pipeline_lib.tracking.options import TrackerOptions

_MIN_AREA = 1.0  # px^2; keeps the size scale finite for an instance with one visible point


@dataclass
class _TrackState:
    """What the tracker remembers about one track within one video."""

    index: int
    times: deque = field(default_factory=deque)  # processed-frame index of each observation
    poses: deque = field(default_factory=deque)  # (n_nodes, 2) arrays, NaN for missing nodes
    velocity: np.ndarray | None = None  # px per processed frame, from the last two observations

    @property
    def last_time(self) -> int:
        return self.times[-1]

    def observe(self, time: int, pose: np.ndarray, keep: int) -> None:
        """Record a matched pose and refresh the velocity from the previous observation."""
        if self.poses:
            self.velocity = _velocity(self.poses[-1], self.last_time, pose, time)
        self.times.append(time)
        self.poses.append(pose)
        while len(self.times) > keep:
            self.times.popleft()
            self.poses.popleft()


class ClassicalTracker:
    """Assigns track identities to the predicted instances of a Labels object."""

    def __init__(self, options: TrackerOptions | None = None) -> None:
        self.options = options if options is not None else TrackerOptions()

    def track(self, labels: sio.Labels) -> sio.Labels:
        """Return tracked Labels with new frames and instances; the input is left unchanged.

        Videos, skeletons and suggestions are shared with the input (they are not modified).
        """
        opts = self.options
        user_tracks = _user_tracks(labels)
        namer = _TrackNamer(taken={t.name for t in user_tracks})
        frames_out: list[sio.LabeledFrame] = []
        for frames in _frames_by_video(labels):
            frames_out.extend(self._track_video(frames, namer, opts))
        return _labels_with_frames(labels, frames_out, user_tracks + namer.tracks)

    def _track_video(
        self, frames: list[sio.LabeledFrame], namer: _TrackNamer, opts: TrackerOptions
    ) -> list[sio.LabeledFrame]:
        states: list[_TrackState] = []
        out: list[sio.LabeledFrame] = []
        min_area = typical_area(frames)
        n_nodes = {len(i.skeleton.nodes) for lf in frames for i in lf.instances}
        if opts.similarity == "iou" and n_nodes and max(n_nodes) < 2:
            raise ValueError(
                f"Similarity 'iou' needs a skeleton of at least two nodes to draw boxes; video "
                f"{frames[0].video.filename!r} has one-node instances (use 'oks' or 'centroid')"
            )
        for time, frame in enumerate(counted(frames, f"track {video_label(frames)}")):
            predicted = [i for i in frame.instances if isinstance(i, sio.PredictedInstance)]
            user = [
                _copy_user_instance(i)
                for i in frame.instances
                if not isinstance(i, sio.PredictedInstance)
            ]
            if opts.max_instances is not None and len(predicted) > opts.max_instances:
                order = sorted(range(len(predicted)), key=lambda k: -_score(predicted[k]))
                keep = sorted(order[: opts.max_instances])
                predicted = [predicted[k] for k in keep]
            poses = [_pose(inst, frame) for inst in predicted]
            trackable = [k for k, p in enumerate(poses) if not np.all(np.isnan(p))]
            assigned = self._assign(
                [poses[k] for k in trackable],
                [_score(predicted[k]) for k in trackable],
                time,
                states,
                min_area,
            )
            track_of: dict[int, tuple[int, float]] = {trackable[k]: v for k, v in assigned.items()}
            for k, (state_idx, _) in sorted(track_of.items()):
                states[state_idx].observe(time, poses[k], keep=opts.window_size)
            new_instances = []
            for k, inst in enumerate(predicted):
                state_idx, score = track_of.get(k, (None, 0.0))
                track = None if state_idx is None else namer.get(states[state_idx].index)
                new_instances.append(_copy_predicted(inst, poses[k], track, score))
            out.append(
                sio.LabeledFrame(
                    video=frame.video,
                    frame_idx=frame.frame_idx,
                    instances=user + new_instances,
                    is_negative=frame.is_negative,
                )
            )
        return out

    def _assign(
        self,
        poses: list[np.ndarray],
        scores: list[float],
        time: int,
        states: list[_TrackState],
        min_area: float,
    ) -> dict[int, tuple[int, float]]:
        """Map instance index -> (track state index, tracking score), creating tracks as needed."""
        opts = self.options
        assigned: dict[int, tuple[int, float]] = {}
        if not poses:
            return assigned
        pose_arr = np.stack(poses)
        live = [s for s, st in enumerate(states) if time - st.last_time <= opts.effective_max_gap]
        if live:
            sim = np.stack(
                [self._track_similarity(pose_arr, states[s], time, min_area) for s in live],
                axis=1,
            )
            rows, cols = linear_sum_assignment(
                np.where(sim >= opts.min_similarity, sim, 0.0), maximize=True
            )
            for r, c in zip(rows, cols, strict=True):
                if sim[r, c] >= opts.min_similarity:
                    assigned[int(r)] = (live[c], float(sim[r, c]))

        unmatched = sorted(
            (k for k in range(len(poses)) if k not in assigned), key=lambda k: (-scores[k], k)
        )
        while unmatched and (opts.max_tracks is None or len(states) < opts.max_tracks):
            k = unmatched.pop(0)
            states.append(_TrackState(index=len(states)))
            assigned[k] = (len(states) - 1, 1.0)

        used = {s for s, _ in assigned.values()}
        free = [s for s in range(len(states)) if s not in used]
        if unmatched and free:
            inst_c = _centroids(pose_arr[unmatched])
            track_c = _centroids(np.stack([states[s].poses[-1] for s in free]))
            dist = np.linalg.norm(inst_c[:, None, :] - track_c[None, :, :], axis=-1)
            rows, cols = linear_sum_assignment(dist)
            for r, c in zip(rows, cols, strict=True):
                k, s = unmatched[r], free[c]
                last = states[s].poses[-1][None]
                score = float(self._similarity(pose_arr[k][None], last, min_area)[0, 0])
                assigned[k] = (s, score)
        return assigned

    def _track_similarity(
        self, poses: np.ndarray, state: _TrackState, time: int, min_area: float
    ) -> np.ndarray:
        """Best similarity of each pose to any of the track's instances inside the window."""
        refs = []
        for t, pose in zip(state.times, state.poses, strict=True):
            if time - t > self.options.window_size:
                continue
            if self.options.use_motion and state.velocity is not None:
                pose = pose + state.velocity * (time - t)
            refs.append(pose)
        if not refs:
            return np.zeros(len(poses))
        return self._similarity(poses, np.stack(refs), min_area).max(axis=1)

    def _similarity(self, a: np.ndarray, b: np.ndarray, min_area: float) -> np.ndarray:
        """Pairwise similarity (len(a), len(b)) of poses under the configured measure."""
        kind = self.options.similarity
        if kind == "oks":
            return oks_similarity(a, b, self.options.oks_sigma, min_area)
        if kind == "iou":
            return iou_similarity(a, b)
        return centroid_similarity(a, b, min_area)


def track_labels(labels: sio.Labels, options: TrackerOptions | None = None) -> sio.Labels:
    """Track every video of ``labels`` with the classical tracker; returns new Labels."""
    return ClassicalTracker(options).track(labels)


def typical_area(frames: Sequence[sio.LabeledFrame]) -> float:
    """Typical animal size (px^2) in a video: the floor of the similarity scale.

    The median box area of predicted instances with at least two visible nodes. A skeleton of
    one node has no box, so the median squared distance from each animal to its nearest
    neighbour is used instead (the spacing that identities must be told apart at). With no
    size information at all (one single-node animal per frame) the scale is infinite and every
    live track matches: there is nothing to confuse it with.
    """
    areas, spacings = [], []
    for frame in frames:
        poses = [
            p
            for p in (i.numpy() for i in frame.instances if isinstance(i, sio.PredictedInstance))
            if not np.all(np.isnan(p))
        ]
        if not poses:
            continue
        arr = np.stack(poses).astype(np.float64)
        multi = _visible(arr).sum(axis=1) >= 2
        areas.extend(_box_area(arr[multi]).tolist())
        if len(arr) > 1:
            cents = _centroids(arr)
            d2 = np.sum((cents[:, None] - cents[None]) ** 2, axis=-1)
            np.fill_diagonal(d2, np.inf)
            spacings.extend(d2.min(axis=1).tolist())
    areas = [a for a in areas if a > _MIN_AREA]
    if areas:
        return float(np.median(areas))
    if spacings:
        return float(np.median(spacings))
    return float("inf")


def oks_similarity(a: np.ndarray, b: np.ndarray, sigma: float, min_area: float = 1.0) -> np.ndarray:
    """Object keypoint similarity of poses ``a`` (N, K, 2) against ``b`` (M, K, 2).

    The scale is the larger of the two instances' box areas and ``min_area`` (a partly detected
    instance has a small box, which would make the comparison needlessly harsh; the tracker
    passes the video's typical animal area). Nodes missing in ``b`` but present in ``a`` count
    as 0, so the result is comparable across the columns of a row.

    ``sigma`` is much wider than COCO's per-keypoint sigmas (which model labelling noise):
    between frames a pose moves and turns, and the kernel must be as wide as that change or
    every similarity collapses to ~0 and the assignment loses its ranking.
    """
    diff = a[:, None, :, :] - b[None, :, :, :]
    d2 = np.sum(diff**2, axis=-1)  # (N, M, K), NaN where either is missing
    area = np.maximum(np.maximum(_box_area(a)[:, None], _box_area(b)[None, :]), min_area)
    kernel = np.exp(-d2 / (2.0 * area[..., None] * sigma**2))
    kernel = np.where(np.isnan(kernel), 0.0, kernel)
    n_visible = np.maximum(_visible(a).sum(axis=-1), 1)
    return kernel.sum(axis=-1) / n_visible[:, None]


def iou_similarity(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of the boxes around the visible points of each pose."""
    return pairwise_box_iou(pose_boxes(a), pose_boxes(b))


def centroid_similarity(a: np.ndarray, b: np.ndarray, min_area: float = 1.0) -> np.ndarray:
    """``exp(-d / size)`` of the centroid distance d, size = sqrt of the larger box area.

    The centroids are taken over the nodes visible in both poses, so a node that one detection
    misses does not shift its centroid away from the other's. Relative to the animal's size,
    one threshold suits mice and flies alike: 1 at the same place, 0.37 one body size away,
    0.05 three body sizes away. Poses with no node in common fall back to all visible nodes.
    """
    common = _visible(a)[:, None, :] & _visible(b)[None, :, :]  # (N, M, K)
    diff = a[:, None, :, :] - b[None, :, :, :]  # (N, M, K, 2)
    n_common = common.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        shift = np.where(common[..., None], diff, 0.0).sum(axis=2) / n_common[..., None]
    fallback = _centroids(a)[:, None, :] - _centroids(b)[None, :, :]
    shift = np.where(n_common[..., None] > 0, shift, fallback)
    dist = np.linalg.norm(shift, axis=-1)
    size = np.sqrt(np.maximum(np.maximum(_box_area(a)[:, None], _box_area(b)[None, :]), min_area))
    with np.errstate(invalid="ignore"):
        sim = np.exp(-dist / size)
    return np.nan_to_num(sim, nan=0.0)


def _visible(poses: np.ndarray) -> np.ndarray:
    return ~np.isnan(poses).any(axis=-1)


def _labels_with_frames(
    labels: sio.Labels, frames: list[sio.LabeledFrame], tracks: list[sio.Track]
) -> sio.Labels:
    """New labels holding ``frames`` and ``tracks``, with everything else of ``labels``."""
    return sio.Labels(
        labeled_frames=frames,
        videos=list(labels.videos),
        skeletons=list(labels.skeletons),
        tracks=tracks,
        suggestions=list(labels.suggestions),
        provenance=dict(labels.provenance),
    )


def _boxes(poses: np.ndarray) -> np.ndarray:
    """(N, 4) boxes x0, y0, x1, y1 of visible points; NaN rows for poses with no points."""
    return pose_boxes(poses)


def _box_area(poses: np.ndarray) -> np.ndarray:
    box = _boxes(poses)
    area = (box[:, 2] - box[:, 0]) * (box[:, 3] - box[:, 1])
    return np.maximum(np.nan_to_num(area, nan=_MIN_AREA), _MIN_AREA)


def _centroids(poses: np.ndarray) -> np.ndarray:
    """(N, 2) mean of the visible points of each pose; NaN for poses with none."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(poses, axis=1)


def _velocity(prev: np.ndarray, t_prev: int, cur: np.ndarray, t_cur: int) -> np.ndarray | None:
    """Mean displacement per processed frame of the nodes visible in both poses."""
    common = _visible(prev[None])[0] & _visible(cur[None])[0]
    if not common.any() or t_cur <= t_prev:
        return None
    return (cur[common] - prev[common]).mean(axis=0) / (t_cur - t_prev)


class _TrackNamer:
    """Hands out shared ``track_<k>`` Track objects, skipping names user tracks already use."""

    def __init__(self, taken: set[str]) -> None:
        self._taken = taken
        self.tracks: list[sio.Track] = []
        self._next = 0

    def get(self, index: int) -> sio.Track:
        while len(self.tracks) <= index:
            while f"track_{self._next}" in self._taken:
                self._next += 1
            self.tracks.append(sio.Track(name=f"track_{self._next}"))
            self._next += 1
        return self.tracks[index]


def _frames_by_video(labels: sio.Labels) -> list[list[sio.LabeledFrame]]:
    """Frames grouped per video (in the order of ``labels.videos``), each sorted by frame index.

    A frame index stored twice for one video is an error: its instances would be tracked as if
    they were two moments in time.
    """
    groups: dict[int, list[sio.LabeledFrame]] = {id(v): [] for v in labels.videos}
    for lf in labels.labeled_frames:
        groups.setdefault(id(lf.video), []).append(lf)
    out = []
    for frames in groups.values():
        frames.sort(key=lambda lf: lf.frame_idx)
        for prev, cur in zip(frames, frames[1:], strict=False):
            if prev.frame_idx == cur.frame_idx:
                raise ValueError(
                    f"Video {cur.video.filename!r} has frame {cur.frame_idx} stored twice; "
                    "merge the frames before tracking"
                )
        out.append(frames)
    return out


def _user_tracks(labels: sio.Labels) -> list[sio.Track]:
    """Tracks of user instances, which pass through tracking unchanged."""
    seen: dict[int, sio.Track] = {}
    for lf in labels.labeled_frames:
        for inst in lf.instances:
            if not isinstance(inst, sio.PredictedInstance) and inst.track is not None:
                seen.setdefault(id(inst.track), inst.track)
    return list(seen.values())


def _pose(inst: sio.PredictedInstance, frame: sio.LabeledFrame) -> np.ndarray:
    pose = inst.numpy()
    if pose.ndim != 2 or pose.shape[1] != 2:
        raise ValueError(
            f"Instance in frame {frame.frame_idx} of {frame.video.filename!r} has points of "
            f"shape {pose.shape}, expected (n_nodes, 2)"
        )
    return pose.astype(np.float64)


def _score(inst: sio.PredictedInstance) -> float:
    score = inst.score
    return float("-inf") if score is None or np.isnan(score) else float(score)


def _copy_predicted(
    inst: sio.PredictedInstance, pose: np.ndarray, track: sio.Track | None, score: float
) -> sio.PredictedInstance:
    """A new PredictedInstance with the same points and scores, and the given identity."""
    return sio.PredictedInstance.from_numpy(
        points_data=pose,
        point_scores=np.asarray(inst.points["score"], dtype=np.float64).copy(),
        skeleton=inst.skeleton,
        score=inst.score,
        track=track,
        tracking_score=score if track is not None else 0.0,
    )


def _copy_user_instance(inst: sio.Instance) -> sio.Instance:
    return sio.Instance.from_numpy(
        points_data=inst.numpy(), skeleton=inst.skeleton, track=inst.track
    )
