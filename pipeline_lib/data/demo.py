"""A small synthetic multi-animal dataset, generated deterministically from a seed.

Why it exists: ``make demo`` must run every stage of the pipeline (split, cache, train,
evaluate, predict, track, report) in minutes on two CPU cores, without downloading anything,
and still check that the pose model and the tracker really work. Real recordings are too big
to train on that budget and cannot ship inside the package, so we draw our own: mouse-like
animals seen from above whose keypoints and identities are known exactly on every frame.

Design choices (each one keeps the task learnable by a small UNet while still testing it):

* Every keypoint sits on a visible feature, so no label is ambiguous by more than a pixel or
  two: a bright dot on the nose, dark ear disks on either side of the head, a small dark spot
  on the neck and a larger one on the body centre, the body ending in a point at the tail
  base, and a thin, darker tail ending in a pale knob at the tail tip. Left and right ears look alike;
  which one is left follows from the head's orientation (as for a real animal), and the
  skeleton declares them a symmetric pair so flip augmentation swaps them.
* Animals are about 52 px from nose to tail base (plus a ~30 px tail) in a 256 x 256 frame,
  so the OKS scale (bounding-box area, median ~2500 px^2) is not tiny. Shapes are drawn on a
  4x finer grid and area-averaged, so every feature sits within ~0.05 px of its keypoint.
* Motion is smooth: speed and turning rate follow mean-reverting random walks, animals steer
  away from the arena walls and from each other, and the body bends into turns. Animals do
  come close (passing side by side, head near another's flank), but a soft repulsion between
  their spines keeps bodies from overlapping more than a few pixels, so a tracker that uses
  motion can keep identities. Tails may cross over or under other animals.
* Occlusion rule: animals are drawn in a fixed depth order (animal 0 at the bottom). Every
  node is labelled and marked visible, even where another animal covers it, because its
  position is known; the repulsion keeps such cases rare and shallow.
* The background is a static, seeded texture (blurred noise, an illumination gradient and a
  few soft shapes), much darker than the animals; each frame gets mild sensor noise.

Layout written by :func:`make_demo_dataset`::

    out_dir/labels.slp                  user instances on every ``label_every``-th frame of
                                        every video (all videos in one Labels)
    out_dir/videos/{video_id}.mp4       grayscale H.264 video, lossless: decodes to exactly
                                        the rendered pixels
    out_dir/ground_truth/{video_id}.slp every frame labelled and tracked, one file per video

Tracks are named ``animal_0``, ``animal_1``, ...; in ``labels.slp`` the same Track objects are
shared by all videos (one track list per project, as in SLEAP), although the animals of
different videos are unrelated. Within each frame, instances are stored in a seeded random
order, so nothing downstream can recover identities from list order. Video paths inside the
``.slp`` files are absolute (resolved) paths of the files written here.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import sleap_io as sio

from pipeline_lib.io.atomic import atomic_path
from pipeline_lib.io.labels import save_labels

NODE_NAMES: tuple[str, ...] = (
    "nose",
    "ear_left",
    "ear_right",
    "neck",
    "body_center",
    "tail_base",
    "tail_tip",
)
EDGES: tuple[tuple[str, str], ...] = (
    ("body_center", "neck"),
    ("neck", "nose"),
    ("neck", "ear_left"),
    ("neck", "ear_right"),
    ("body_center", "tail_base"),
    ("tail_base", "tail_tip"),
)
SYMMETRIES: tuple[tuple[str, str], ...] = (("ear_left", "ear_right"),)
SKELETON_NAME = "demo_mouse"
VIDEO_FPS = 30.0
#: x264 constant rate factor. 0 with the "gray" pixel format is lossless: decoded frames equal
#: the rendered ones bit for bit (~5.7 MB per 200 frames at 256 x 256, mostly the sensor noise).
#: CRF 8 would halve the size but move edge pixels by up to ~40 grey levels (mean 0.65).
VIDEO_CRF = 0

_NOSE, _EAR_L, _EAR_R, _NECK, _CENTER, _TAIL_BASE, _TAIL_TIP = range(len(NODE_NAMES))

# Body geometry at size 1.0, in pixels.
_CENTER_TO_NECK = 17.0
_NECK_TO_NOSE = 15.0
_CENTER_TO_TAIL_BASE = 20.0
_TAIL_LENGTH = 30.0
_TAIL_SEGMENTS = 6
_EAR_FORWARD = 3.5  # ears sit this far in front of the neck ...
_EAR_SIDEWAYS = 8.5  # ... and this far to either side of the head's midline
_EAR_RADIUS = 4.8

# Grey levels (background is ~30..130).
_BODY_GREY = 200.0
_TAIL_GREY = 145.0
_TAIL_TIP_GREY = 230.0
_EAR_GREY = 110.0
_NOSE_GREY = 255.0
_NECK_SPOT_GREY = 125.0
_CENTER_SPOT_GREY = 90.0
_NOISE_SIGMA = 2.0

_SUPERSAMPLE = 4  # animals are drawn on a 4x finer grid, then area-averaged
_FIXED_BITS = 4  # cv2 fixed-point bits: vertices placed to 1/16 of a fine pixel
_FIXED_ONE = 1 << _FIXED_BITS

# Motion parameters (per frame).
_MEAN_SPEED = 1.8
_MAX_SPEED = 3.5
_MAX_TURN = 0.12  # rad/frame
_WALL_MARGIN = 55.0  # start turning when the look-ahead point is this close to a wall
_EDGE_PAD = 6.0  # nodes are kept at least this far inside the frame
_STEER_DIST = 34.0  # spines closer than this steer apart
_PUSH_DIST = 20.0  # spines closer than this are pushed apart


@dataclass(frozen=True)
class DemoPaths:
    """Where :func:`make_demo_dataset` wrote its files."""

    labels: Path
    videos: dict[str, Path]
    ground_truth: dict[str, Path]


@dataclass(frozen=True)
class DemoVideo:
    """One rendered demo video in memory: frames and the exact keypoints of every animal."""

    frames: np.ndarray  # (n_frames, height, width) uint8
    points: np.ndarray  # (n_frames, n_animals, n_nodes, 2) float64, x/y in pixels


def demo_video_ids(n_videos: int) -> list[str]:
    """Video ids of the demo dataset, known before any file exists (Snakemake needs them)."""
    if n_videos < 1:
        raise ValueError(f"n_videos must be at least 1, got {n_videos}")
    return [f"demo_{i}" for i in range(n_videos)]


def demo_skeleton() -> sio.Skeleton:
    """The demo animal's skeleton: 7 nodes, a tree rooted at ``body_center``, ears symmetric."""
    return sio.Skeleton(
        nodes=list(NODE_NAMES),
        edges=[list(e) for e in EDGES],
        symmetries=[list(s) for s in SYMMETRIES],
        name=SKELETON_NAME,
    )


def simulate_demo_video(
    seed: int,
    video_index: int,
    n_frames: int = 200,
    n_animals: int = 3,
    frame_size: tuple[int, int] = (256, 256),
) -> DemoVideo:
    """Simulate and render one demo video; the same arguments always give the same arrays.

    ``frame_size`` is ``(height, width)``. Motion, background, per-frame noise use separate
    random streams derived from ``(seed, video_index)``, so e.g. a longer video starts with the
    same frames as a shorter one.
    """
    if n_frames < 1 or n_animals < 1:
        raise ValueError(f"need n_frames >= 1 and n_animals >= 1, got {n_frames}, {n_animals}")
    height, width = frame_size
    if min(height, width) < 128 or height % 16 or width % 16:
        raise ValueError(
            f"frame_size must be multiples of 16 (H.264 macroblocks; otherwise the video gets "
            f"padded) and at least 128 x 128 for the demo animals, got {frame_size}"
        )
    motion_ss, background_ss, noise_ss = np.random.SeedSequence([seed, video_index]).spawn(3)
    points, curls, sizes = _simulate_motion(
        np.random.default_rng(motion_ss), n_frames, n_animals, (height, width)
    )
    background = _make_background(np.random.default_rng(background_ss), (height, width))
    noise_rng = np.random.default_rng(noise_ss)
    frames = np.empty((n_frames, height, width), dtype=np.uint8)
    for t in range(n_frames):
        canvas = background.copy()
        for a in range(n_animals):  # fixed depth order: animal 0 at the bottom
            _draw_animal(canvas, points[t, a], sizes[a], curls[t, a])
        canvas += noise_rng.normal(0.0, _NOISE_SIGMA, size=canvas.shape).astype(np.float32)
        frames[t] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    return DemoVideo(frames=frames, points=points)


def make_demo_dataset(
    out_dir: str | os.PathLike,
    seed: int = 0,
    n_videos: int = 2,
    n_frames: int = 200,
    n_animals: int = 3,
    frame_size: tuple[int, int] = (256, 256),
    label_every: int = 4,
) -> DemoPaths:
    """Write the demo videos, their labelled subset and per-video ground truth under ``out_dir``.

    Everything is a function of the arguments: rerunning with the same seed rewrites the same
    coordinates and videos that decode to the same pixels. Every file is written atomically.
    """
    if label_every < 1:
        raise ValueError(f"label_every must be at least 1, got {label_every}")
    out_dir = Path(out_dir).resolve()
    skeleton = demo_skeleton()
    tracks = [sio.Track(name=f"animal_{a}") for a in range(n_animals)]
    video_paths: dict[str, Path] = {}
    gt_paths: dict[str, Path] = {}
    labelled_frames: list[sio.LabeledFrame] = []
    videos: list[sio.Video] = []

    for index, video_id in enumerate(demo_video_ids(n_videos)):
        demo = simulate_demo_video(seed, index, n_frames, n_animals, frame_size)
        video_path = out_dir / "videos" / f"{video_id}.mp4"
        write_grayscale_video(demo.frames, video_path)
        video_paths[video_id] = video_path

        order_rng = np.random.default_rng(np.random.SeedSequence([seed, index, 1]))
        orders = [order_rng.permutation(n_animals) for _ in range(n_frames)]

        gt_video = sio.Video.from_filename(str(video_path), grayscale=True)
        gt_tracks = [sio.Track(name=t.name) for t in tracks]
        gt_frames = _labelled_frames(demo.points, gt_video, skeleton, gt_tracks, orders, 1)
        gt_path = out_dir / "ground_truth" / f"{video_id}.slp"
        save_labels(
            sio.Labels(
                labeled_frames=gt_frames, videos=[gt_video], skeletons=[skeleton], tracks=gt_tracks
            ),
            gt_path,
        )
        gt_paths[video_id] = gt_path

        video = sio.Video.from_filename(str(video_path), grayscale=True)
        videos.append(video)
        labelled_frames += _labelled_frames(
            demo.points, video, skeleton, tracks, orders, label_every
        )

    labels_path = out_dir / "labels.slp"
    save_labels(
        sio.Labels(
            labeled_frames=labelled_frames, videos=videos, skeletons=[skeleton], tracks=tracks
        ),
        labels_path,
    )
    return DemoPaths(labels=labels_path, videos=video_paths, ground_truth=gt_paths)


def write_grayscale_video(
    frames: np.ndarray, path: str | os.PathLike, fps: float = VIDEO_FPS, crf: int = VIDEO_CRF
) -> None:
    """Encode ``(n, h, w)`` uint8 frames as a grayscale H.264 ``.mp4`` atomically.

    The "gray" pixel format keeps the full 0..255 range (yuv420p would squeeze it into
    16..235 and lose a level). Frame sides should be multiples of 16, or sleap-io's writer
    pads them bottom/right.
    """
    frames = np.asarray(frames)
    if frames.ndim != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected (n, h, w) uint8 frames, got {frames.shape} {frames.dtype}")
    with atomic_path(path) as tmp:
        # One encoder thread: deterministic and polite on a shared two-core machine.
        with sio.VideoWriter(
            tmp,
            fps=fps,
            crf=crf,
            preset="medium",
            pixelformat="gray",
            no_audio=True,
            output_params=["-threads", "1"],
        ) as writer:
            for frame in frames:
                writer.write_frame(frame)


def _labelled_frames(
    points: np.ndarray,
    video: sio.Video,
    skeleton: sio.Skeleton,
    tracks: list[sio.Track],
    orders: list[np.ndarray],
    every: int,
) -> list[sio.LabeledFrame]:
    """User instances (all nodes visible) on every ``every``-th frame, in a shuffled order."""
    frames = []
    for t in range(0, points.shape[0], every):
        instances = [
            sio.Instance.from_numpy(points[t, a].copy(), skeleton=skeleton, track=tracks[a])
            for a in orders[t]
        ]
        frames.append(sio.LabeledFrame(video=video, frame_idx=t, instances=instances))
    return frames


# --------------------------------------------------------------------------- motion


@dataclass
class _AnimalState:
    """Kinematic state of all animals; angles in radians, image coordinates (y down)."""

    center: np.ndarray  # (A, 2)
    heading: np.ndarray  # (A,)
    speed: np.ndarray
    turn: np.ndarray  # turning rate, rad/frame
    bend: np.ndarray  # body bend between the front and rear halves
    head_yaw: np.ndarray
    tail_curl: np.ndarray  # total change of direction along the tail
    size: np.ndarray


def _unit(angle: np.ndarray | float) -> np.ndarray:
    """Unit vector(s) ``(..., 2)`` pointing along ``angle``."""
    return np.stack([np.cos(angle), np.sin(angle)], axis=-1)


def _wrap(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles to ``[-pi, pi)``."""
    return (angle + math.pi) % (2 * math.pi) - math.pi


def _pose(state: _AnimalState, a: int) -> np.ndarray:
    """Node positions ``(n_nodes, 2)`` of animal ``a`` from its state.

    The front half points along ``heading + bend/2``, the rear half along ``heading - bend/2``,
    the head along ``heading + bend + head_yaw``; the tail curls gradually from the rear
    half's direction. The animal's left (image y grows downwards) is ``(sin, -cos)`` of the
    head direction.
    """
    s = state.size[a]
    theta, bend = state.heading[a], state.bend[a]
    center = state.center[a]
    neck = center + s * _CENTER_TO_NECK * _unit(theta + bend / 2)
    head_dir = theta + bend + state.head_yaw[a]
    nose = neck + s * _NECK_TO_NOSE * _unit(head_dir)
    tail_base = center - s * _CENTER_TO_TAIL_BASE * _unit(theta - bend / 2)
    left = np.array([math.sin(head_dir), -math.cos(head_dir)])
    ear_mid = neck + s * _EAR_FORWARD * _unit(head_dir)
    ear_left = ear_mid + s * _EAR_SIDEWAYS * left
    ear_right = ear_mid - s * _EAR_SIDEWAYS * left
    tail_tip = _tail_polyline(tail_base, theta - bend / 2, state.tail_curl[a], s)[-1]
    return np.stack([nose, ear_left, ear_right, neck, center, tail_base, tail_tip])


def _tail_polyline(base: np.ndarray, rear_dir: float, curl: float, size: float) -> np.ndarray:
    """Points along the tail, from its base to its tip, curling by ``curl`` radians in total."""
    step = size * _TAIL_LENGTH / _TAIL_SEGMENTS
    angles = rear_dir + curl * (np.arange(_TAIL_SEGMENTS) + 0.5) / _TAIL_SEGMENTS
    return base - np.concatenate([[[0.0, 0.0]], np.cumsum(step * _unit(angles), axis=0)])


def _spine_samples(pose: np.ndarray) -> np.ndarray:
    """Points along nose-neck-centre-tail base (ends and midpoints): the body's extent."""
    knots = pose[[_NOSE, _NECK, _CENTER, _TAIL_BASE]]
    mids = (knots[:-1] + knots[1:]) / 2
    return np.concatenate([knots, mids])


def _initial_state(
    rng: np.random.Generator, n_animals: int, frame_size: tuple[int, int]
) -> _AnimalState:
    """Animals placed apart from each other and from the walls, heading anywhere.

    Centres are drawn until all are ``gap`` px apart; the gap shrinks if a crowded arena
    makes that impossible, so any animal count still gets a start.
    """
    height, width = frame_size
    low, high = np.array([50.0, 50.0]), np.array([width - 50.0, height - 50.0])
    gap = 80.0
    centers: list[np.ndarray] = []
    while len(centers) < n_animals:
        centers = []
        for _ in range(200 * n_animals):
            candidate = rng.uniform(low, high)
            if all(np.linalg.norm(candidate - c) >= gap for c in centers):
                centers.append(candidate)
                if len(centers) == n_animals:
                    break
        gap *= 0.8
    return _AnimalState(
        center=np.array(centers, dtype=np.float64),
        heading=rng.uniform(-math.pi, math.pi, n_animals),
        speed=rng.uniform(1.0, 2.5, n_animals),
        turn=np.zeros(n_animals),
        bend=np.zeros(n_animals),
        head_yaw=np.zeros(n_animals),
        tail_curl=rng.uniform(-0.5, 0.5, n_animals),
        size=rng.uniform(0.94, 1.08, n_animals),
    )


def _simulate_motion(
    rng: np.random.Generator, n_frames: int, n_animals: int, frame_size: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poses ``(n_frames, n_animals, n_nodes, 2)``, tail curls ``(n_frames, n_animals)``
    (needed to draw the tail) and per-animal size factors ``(n_animals,)``."""
    height, width = frame_size
    arena_center = np.array([width / 2, height / 2])
    state = _initial_state(rng, n_animals, frame_size)
    points = np.empty((n_frames, n_animals, len(NODE_NAMES), 2))
    curls = np.empty((n_frames, n_animals))
    for t in range(n_frames):
        poses = np.stack([_pose(state, a) for a in range(n_animals)])
        points[t] = poses
        curls[t] = state.tail_curl
        spines = [_spine_samples(p) for p in poses]
        for a in range(n_animals):
            st = state
            st.speed[a] += 0.08 * (_MEAN_SPEED - st.speed[a]) + rng.normal(0.0, 0.25)
            st.speed[a] = np.clip(st.speed[a], 0.3, _MAX_SPEED)
            st.turn[a] = 0.85 * st.turn[a] + rng.normal(0.0, 0.03)

            # Walls: turn towards the arena centre when the look-ahead point nears a wall.
            ahead = st.center[a] + (25.0 + 10.0 * st.speed[a]) * _unit(st.heading[a])
            depth = max(
                _WALL_MARGIN - ahead[0],
                _WALL_MARGIN - ahead[1],
                ahead[0] - (width - _WALL_MARGIN),
                ahead[1] - (height - _WALL_MARGIN),
                0.0,
            )
            if depth > 0:
                to_center = arena_center - st.center[a]
                wanted = math.atan2(to_center[1], to_center[0])
                st.turn[a] += 0.2 * min(1.0, depth / _WALL_MARGIN) * _wrap(wanted - st.heading[a])

            # Other animals: steer away from the nearest point of a close spine.
            for b in range(n_animals):
                if b == a:
                    continue
                gaps = spines[a][:, None, :] - spines[b][None, :, :]
                dist = np.linalg.norm(gaps, axis=-1)
                i, j = np.unravel_index(np.argmin(dist), dist.shape)
                if dist[i, j] < _STEER_DIST:
                    away = gaps[i, j]
                    wanted = math.atan2(away[1], away[0])
                    weight = (_STEER_DIST - dist[i, j]) / _STEER_DIST
                    st.turn[a] += 0.25 * weight * _wrap(wanted - st.heading[a])
                    st.speed[a] = max(0.3, st.speed[a] * (1.0 - 0.3 * weight))

            st.turn[a] = np.clip(st.turn[a], -_MAX_TURN, _MAX_TURN)
            st.heading[a] = _wrap(st.heading[a] + st.turn[a])
            st.bend[a] = np.clip(
                0.8 * st.bend[a] + 0.2 * 3.5 * st.turn[a] + rng.normal(0.0, 0.02), -0.5, 0.5
            )
            st.head_yaw[a] = np.clip(0.9 * st.head_yaw[a] + rng.normal(0.0, 0.04), -0.5, 0.5)
            st.tail_curl[a] = np.clip(
                0.9 * st.tail_curl[a] - 0.4 * st.turn[a] + rng.normal(0.0, 0.08), -1.2, 1.2
            )
            st.center[a] = st.center[a] + st.speed[a] * _unit(st.heading[a])

        _separate(state, n_animals)
        for a in range(n_animals):
            _keep_inside(state, a, frame_size)
    return points, curls, state.size.copy()


def _separate(state: _AnimalState, n_animals: int) -> None:
    """Push pairs of animals whose spines are closer than ``_PUSH_DIST`` apart, half each."""
    poses = [_pose(state, a) for a in range(n_animals)]
    spines = [_spine_samples(p) for p in poses]
    for a in range(n_animals):
        for b in range(a + 1, n_animals):
            gaps = spines[a][:, None, :] - spines[b][None, :, :]
            dist = np.linalg.norm(gaps, axis=-1)
            i, j = np.unravel_index(np.argmin(dist), dist.shape)
            deficit = _PUSH_DIST - dist[i, j]
            if deficit > 0:
                direction = gaps[i, j] / max(dist[i, j], 1e-6)
                shift = min(deficit, 3.0) / 2 * direction  # bounded, so motion stays smooth
                state.center[a] += shift
                state.center[b] -= shift


def _keep_inside(state: _AnimalState, a: int, frame_size: tuple[int, int]) -> None:
    """Translate an animal back so all of its nodes are ``_EDGE_PAD`` px inside the frame."""
    height, width = frame_size
    pose = _pose(state, a)
    low = np.array([_EDGE_PAD, _EDGE_PAD])
    high = np.array([width - 1 - _EDGE_PAD, height - 1 - _EDGE_PAD])
    shift = np.maximum(low - pose.min(axis=0), 0.0) - np.maximum(pose.max(axis=0) - high, 0.0)
    state.center[a] += shift


# --------------------------------------------------------------------------- rendering


def _make_background(rng: np.random.Generator, frame_size: tuple[int, int]) -> np.ndarray:
    """Static float32 texture: blurred noise, an illumination gradient and a few soft shapes."""
    height, width = frame_size
    texture = cv2.GaussianBlur(rng.normal(0.0, 1.0, (height, width)), (0, 0), 5.0)
    texture /= texture.std() + 1e-9
    yy, xx = np.mgrid[0:height, 0:width]
    tilt = rng.uniform(-1.0, 1.0, 2)
    gradient = 12.0 * (tilt[0] * (xx / width - 0.5) + tilt[1] * (yy / height - 0.5))
    shapes = np.zeros((height, width), dtype=np.float64)
    for _ in range(int(rng.integers(4, 7))):
        grey = float(rng.choice([-1.0, 1.0]) * rng.uniform(12.0, 28.0))
        center = rng.uniform([0.0, 0.0], [width, height])
        if rng.random() < 0.5:
            radius = int(rng.integers(8, 31))
            cv2.circle(shapes, tuple(int(c) for c in center), radius, grey, -1)
        else:
            half = rng.uniform(6.0, 30.0, 2)
            angle = rng.uniform(0.0, math.pi)
            rot = np.array(
                [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
            )
            corners = (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half) @ rot.T + center
            cv2.fillPoly(shapes, [np.rint(corners).astype(np.int32)], grey)
    background = 70.0 + 10.0 * texture + gradient + cv2.GaussianBlur(shapes, (0, 0), 1.5)
    return np.clip(background, 30.0, 130.0).astype(np.float32)


def _body_outline(pose: np.ndarray, size: float) -> np.ndarray:
    """Closed outline of the body: a tapered band around a smooth tail base -> nose spine.

    The spine is a Catmull-Rom curve through tail base, body centre, neck and nose, so it
    passes through those nodes exactly and the body's ends are the tail base and the nose.
    """
    knots = pose[[_TAIL_BASE, _CENTER, _NECK, _NOSE]]
    padded = np.concatenate([[2 * knots[0] - knots[1]], knots, [2 * knots[-1] - knots[-2]]])
    u = np.linspace(0.0, 1.0, 10, endpoint=False)[:, None]
    pieces = []
    for k in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[k - 1 : k + 3]
        pieces.append(
            0.5
            * (
                2 * p1
                + (p2 - p0) * u
                + (2 * p0 - 5 * p1 + 4 * p2 - p3) * u**2
                + (3 * p1 - p0 - 3 * p2 + p3) * u**3
            )
        )
    spine = np.concatenate(pieces + [knots[-1:]])
    param = np.linspace(0.0, 3.0, len(spine))  # 0 tail base, 1 centre, 2 neck, 3 nose
    half_width = size * np.interp(
        param, [0.0, 0.3, 0.8, 1.3, 2.0, 2.35, 2.8, 3.0], [1.2, 8.6, 11.0, 10.4, 6.9, 7.5, 3.5, 0.6]
    )
    tangent = np.gradient(spine, axis=0)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True) + 1e-9
    normal = np.stack([-tangent[:, 1], tangent[:, 0]], axis=1)
    left = spine + normal * half_width[:, None]
    right = spine - normal * half_width[:, None]
    return np.concatenate([left, right[::-1]])


class _Supersampled:
    """Paint opaque shapes on a ``_SUPERSAMPLE``-times finer grid over one canvas region.

    cv2's own anti-aliasing snaps filled shapes to whole pixels (a polygon's centroid moves by
    up to half a pixel), which would blur the exact keypoints. Drawing aliased shapes on a 4x
    grid with 1/16-px vertex precision and area-averaging back keeps shapes within ~0.05 px
    of where the pose puts them. Pixel centres are at integer coordinates on both grids.
    """

    def __init__(self, x0: int, y0: int, x1: int, y1: int) -> None:
        self.origin = np.array([x0, y0], dtype=np.float64)
        self.size = (x1 - x0, y1 - y0)
        shape = (self.size[1] * _SUPERSAMPLE, self.size[0] * _SUPERSAMPLE)
        self.paint = np.zeros(shape, dtype=np.float32)  # grey, premultiplied by coverage
        self.cover = np.zeros(shape, dtype=np.float32)

    def _fine(self, points: np.ndarray) -> np.ndarray:
        """Frame coordinates -> fixed-point coordinates on the fine grid."""
        fine = (np.asarray(points) - self.origin + 0.5) * _SUPERSAMPLE - 0.5
        return np.rint(fine * _FIXED_ONE).astype(np.int32)

    def polygon(self, points: np.ndarray, grey: float) -> None:
        pts = [self._fine(points).reshape(-1, 1, 2)]
        for layer, value in ((self.paint, grey), (self.cover, 1.0)):
            cv2.fillPoly(layer, pts, value, cv2.LINE_8, _FIXED_BITS)

    def disk(self, center: np.ndarray, radius: float, grey: float) -> None:
        c = tuple(int(v) for v in self._fine(center))
        r = int(round(radius * _SUPERSAMPLE * _FIXED_ONE))
        for layer, value in ((self.paint, grey), (self.cover, 1.0)):
            cv2.circle(layer, c, r, value, -1, cv2.LINE_8, _FIXED_BITS)

    def polyline(self, points: np.ndarray, thickness: float, grey: float) -> None:
        pts = [self._fine(points).reshape(-1, 1, 2)]
        width = max(1, int(round(thickness * _SUPERSAMPLE)))
        for layer, value in ((self.paint, grey), (self.cover, 1.0)):
            cv2.polylines(layer, pts, False, value, width, cv2.LINE_8, _FIXED_BITS)

    def composite(self, canvas: np.ndarray) -> None:
        """Area-average back to frame pixels and paint over ``canvas`` (alpha = coverage)."""
        x0, y0 = (int(v) for v in self.origin)
        alpha = cv2.resize(self.cover, self.size, interpolation=cv2.INTER_AREA)
        paint = cv2.resize(self.paint, self.size, interpolation=cv2.INTER_AREA)
        region = canvas[y0 : y0 + self.size[1], x0 : x0 + self.size[0]]
        region *= 1.0 - alpha
        region += paint


def _draw_animal(canvas: np.ndarray, pose: np.ndarray, size: float, tail_curl: float) -> None:
    """Draw one animal: tail, body, ears, then the spots that mark neck, centre and nose."""
    rear = pose[_CENTER] - pose[_TAIL_BASE]
    tail = _tail_polyline(pose[_TAIL_BASE], math.atan2(rear[1], rear[0]), tail_curl, size)
    outline = _body_outline(pose, size)
    extent = np.concatenate([tail, outline, pose])
    height, width = canvas.shape
    x0 = max(int(math.floor(extent[:, 0].min())) - 8, 0)
    y0 = max(int(math.floor(extent[:, 1].min())) - 8, 0)
    x1 = min(int(math.ceil(extent[:, 0].max())) + 9, width)
    y1 = min(int(math.ceil(extent[:, 1].max())) + 9, height)
    if x1 <= x0 or y1 <= y0:
        return
    fine = _Supersampled(x0, y0, x1, y1)
    half = len(tail) // 2  # thicker near the base, thinner towards the tip
    fine.polyline(tail[: half + 1], 3.2 * size, _TAIL_GREY)
    fine.polyline(tail[half:], 2.0 * size, _TAIL_GREY)
    # A pale knob marks the tail tip: a bare line end is slow to localise for a small CPU model.
    fine.disk(tail[-1], size * 2.0, _TAIL_TIP_GREY)
    fine.polygon(outline, _BODY_GREY)
    fine.disk(pose[_EAR_L], size * _EAR_RADIUS, _EAR_GREY)
    fine.disk(pose[_EAR_R], size * _EAR_RADIUS, _EAR_GREY)
    fine.disk(pose[_NECK], size * 2.3, _NECK_SPOT_GREY)
    fine.disk(pose[_CENTER], size * 3.4, _CENTER_SPOT_GREY)
    fine.disk(pose[_NOSE], size * 2.5, _NOSE_GREY)
    fine.composite(canvas)
