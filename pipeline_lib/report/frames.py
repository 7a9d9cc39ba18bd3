"""Example frames of a tracked video: the frames worth looking at, drawn by sleap-io.

Evenly spaced frames mostly show the easy cases. A reader checking a run wants the frames
where it is most likely wrong: where tracks seem to trade places between two frames (a likely
identity swap) and where the model was least sure of an instance (lowest instance score).
The skeletons are drawn by sleap-io's renderer (one colour per track, the same colours in every
tile); the montage is laid out by matplotlib so the track legend, the node names and the
captions sit outside the images and are never cut off at a tile's edge.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np
import sleap_io as sio

from pipeline_lib.io.atomic import atomic_path

TILE_INCHES = 4.0
CROP_MARGIN = 0.3  # of the instances' extent, on each side
MIN_CROP = 96  # px of the frame: never zoom in further than this
PALETTE = "standard"  # sleap-io palette; the legend asks sleap-io for the same colours


@dataclass(frozen=True)
class Pick:
    """A frame chosen for the montage and why it was chosen (shown in its caption)."""

    index: int  # into labels.labeled_frames
    frame_idx: int
    reason: str


def _centroids(lf: sio.LabeledFrame) -> list[tuple[sio.Track | None, np.ndarray]]:
    out = []
    for inst in lf.instances:
        pts = inst.numpy()[:, :2]
        pts = pts[np.isfinite(pts).all(axis=1)]
        if len(pts):
            out.append((inst.track, pts.mean(axis=0)))
    return out


def swap_scores(labels: sio.Labels) -> dict[int, int]:
    """Per labelled-frame index: how many tracked instances sit nearer to another track's
    position in the previous frame than to their own track's (a likely identity swap)."""
    order = sorted(range(len(labels.labeled_frames)), key=lambda i: _frame_key(labels, i))
    scores: dict[int, int] = {}
    prev: dict[int, np.ndarray] = {}
    prev_frame: tuple | None = None
    for i in order:
        lf = labels.labeled_frames[i]
        here = {id(t): c for t, c in _centroids(lf) if t is not None}
        key = _frame_key(labels, i)
        consecutive = prev_frame is not None and key[0] == prev_frame[0]
        if consecutive and key[1] - prev_frame[1] == 1 and len(prev) > 1:
            n = 0
            for track, c in here.items():
                if track not in prev:
                    continue
                own = np.linalg.norm(c - prev[track])
                other = min(np.linalg.norm(c - p) for t, p in prev.items() if t != track)
                n += int(other < own)
            if n:
                scores[i] = n
        prev, prev_frame = here, key
    return scores


def _frame_key(labels: sio.Labels, i: int) -> tuple[int, int]:
    lf = labels.labeled_frames[i]
    video = next((k for k, v in enumerate(labels.videos) if v is lf.video), 0)
    return video, int(lf.frame_idx)


def min_scores(labels: sio.Labels) -> dict[int, float]:
    """Lowest instance score per labelled-frame index (frames of predicted instances only)."""
    out = {}
    for i, lf in enumerate(labels.labeled_frames):
        scores = [
            float(s) for inst in lf.instances if (s := getattr(inst, "score", None)) is not None
        ]
        scores = [s for s in scores if math.isfinite(s)]
        if scores:
            out[i] = min(scores)
    return out


def choose_frames(labels: sio.Labels, n: int) -> list[Pick]:
    """Up to ``n`` frames with instances: half the slots for likely identity swaps (most
    suspicious first), the rest for the lowest instance scores below the median frame's, then
    evenly spread frames for whatever is left (e.g. ground truth without scores)."""
    with_instances = [i for i, lf in enumerate(labels.labeled_frames) if lf.instances]
    if n <= 0 or not with_instances:
        return []
    picks: dict[int, str] = {}
    swaps = swap_scores(labels)
    for i in sorted(swaps, key=lambda i: (-swaps[i], _frame_key(labels, i)))[: (n + 1) // 2]:
        picks[i] = f"likely swap ({swaps[i]} instance{'s' if swaps[i] > 1 else ''})"
    scores = min_scores(labels)
    typical = float(np.median(list(scores.values()))) if scores else 0.0
    for i in sorted(scores, key=lambda i: (scores[i], _frame_key(labels, i))):
        if len(picks) >= n or scores[i] >= typical:  # a typical frame is no worse than any
            break
        picks.setdefault(i, f"lowest score {scores[i]:.2f}")
    spread = sorted(with_instances, key=lambda i: _frame_key(labels, i))
    for j in np.linspace(0, len(spread) - 1, num=min(n, len(spread))).round().astype(int):
        if len(picks) >= n:
            break
        picks.setdefault(spread[j], "spread over the video")
    chosen = sorted(picks, key=lambda i: _frame_key(labels, i))
    return [Pick(i, int(labels.labeled_frames[i].frame_idx), picks[i]) for i in chosen]


def crop_box(lf: sio.LabeledFrame, height: int, width: int) -> tuple[int, int, int, int]:
    """Square box (x0, y0, x1, y1) around all instances with a margin, inside the frame:
    animals are often small in a large arena, and a crop keeps the skeletons readable."""
    pts = np.concatenate([inst.numpy()[:, :2] for inst in lf.instances])
    pts = pts[np.isfinite(pts).all(axis=1)]
    if not len(pts):
        return 0, 0, width, height
    (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
    side = max(x1 - x0, y1 - y0)
    side = min(max(side * (1 + 2 * CROP_MARGIN), MIN_CROP), max(height, width))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    bx0 = int(np.clip(round(cx - side / 2), 0, max(width - side, 0)))
    by0 = int(np.clip(round(cy - side / 2), 0, max(height - side, 0)))
    return bx0, by0, min(width, bx0 + int(round(side))), min(height, by0 + int(round(side)))


def track_colours(labels: sio.Labels) -> dict[str, tuple[int, int, int]]:
    """Track name -> the RGB sleap-io draws it in (its palette indexed by track order)."""
    from sleap_io.rendering import get_palette

    if not labels.tracks:
        return {}
    palette = get_palette(PALETTE, len(labels.tracks))
    return {t.name: tuple(palette[i % len(palette)]) for i, t in enumerate(labels.tracks)}


def render_example_frames(labels: sio.Labels, n: int, out_png: str | os.PathLike) -> list[Pick]:
    """Montage of the chosen frames with a track legend; returns the picks (empty, and
    nothing written, when no frame has an instance)."""
    picks = choose_frames(labels, n)
    if not picks:
        return []
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    cols = math.ceil(math.sqrt(len(picks)))
    rows = math.ceil(len(picks) / cols)
    fig = Figure(figsize=(cols * TILE_INCHES, rows * TILE_INCHES + 0.8), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for k, (ax, pick) in enumerate(zip(axes, picks, strict=False)):
        _draw_tile(ax, labels, pick, label_nodes=k == 0)
    for ax in axes[len(picks) :]:
        ax.set_axis_off()
    colours = track_colours(labels)
    handles = [Patch(color=np.array(rgb) / 255, label=name) for name, rgb in colours.items()]
    if handles and any(inst.track is None for lf in labels.labeled_frames for inst in lf.instances):
        first = next(iter(colours))
        handles.append(Patch(color=np.array(colours[first]) / 255, label=f"no track (as {first})"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 8))
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=80, format="png", bbox_inches="tight")
    return picks


def _draw_tile(ax, labels: sio.Labels, pick: Pick, label_nodes: bool) -> None:
    """One frame, cropped around its animals, drawn by sleap-io; node names of its first
    instance written by matplotlib (not clipped: the figure is saved with a tight box)."""
    lf = labels.labeled_frames[pick.index]
    image = np.asarray(lf.video[lf.frame_idx])
    x0, y0, x1, y1 = crop_box(lf, image.shape[0], image.shape[1])
    tile = sio.render_image(
        labels,
        lf_ind=pick.index,
        image=image,
        crop=(x0, y0, x1, y1),
        color_by="track" if labels.tracks else "instance",
        palette=PALETTE,
        show_centroids=False,
    )
    ax.imshow(tile, extent=(x0, x1, y1, y0), interpolation="bilinear")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(f"frame {pick.frame_idx}: {pick.reason}", fontsize=10)
    if label_nodes and lf.instances:
        inst = lf.instances[0]
        for name, (x, y) in zip(inst.skeleton.node_names, inst.numpy()[:, :2], strict=True):
            if np.isfinite(x) and np.isfinite(y):
                ax.annotate(
                    name,
                    (x, y),
                    xytext=(4, 4),
                    textcoords="offset points",
                    fontsize=7,
                    color="white",
                    bbox={"boxstyle": "round,pad=0.1", "fc": "black", "alpha": 0.5, "lw": 0},
                    annotation_clip=False,
                )
