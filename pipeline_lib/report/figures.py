"""Report figures: training curves (matplotlib, no display needed) and example frames with the
predicted skeletons drawn on them (OpenCV), coloured by track so identity swaps are visible.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import cv2
import numpy as np
import pandas as pd
import sleap_io as sio

from pipeline_lib.io.atomic import atomic_path

TILE_SIDE = 384
CROP_MARGIN = 0.3  # of the instances' extent, on each side
MIN_CROP = 96  # px of the frame: never zoom in further than this
UNTRACKED_BGR = (160, 160, 160)
# Colour-blind-friendly qualitative palette (Okabe-Ito), as BGR for OpenCV.
_PALETTE_RGB = [
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
]
TRACK_BGR = [(b, g, r) for r, g, b in _PALETTE_RGB]


def plot_training_curve(frame: pd.DataFrame, title: str, out_png: str | os.PathLike) -> None:
    """Loss per epoch (train: mean of the epoch's rows; val: the epoch's value) and, when
    logged, the learning rate, saved as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    has_lr = "learning_rate" in frame and frame["learning_rate"].notna().any()
    fig = Figure(figsize=(7, 5.5 if has_lr else 3.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 if has_lr else 1, 1, sharex=True, squeeze=False)[:, 0]
    loss_ax = axes[0]
    by_epoch = frame.groupby("epoch")
    plotted = False
    for column, label in (("train_loss", "train"), ("val_loss", "validation")):
        series = by_epoch[column].mean().dropna()
        if len(series):
            loss_ax.plot(series.index, series.values, marker="o", markersize=3, label=label)
            plotted = True
    if plotted:
        positive = frame[["train_loss", "val_loss"]].stack()
        if len(positive) and (positive > 0).all():
            loss_ax.set_yscale("log")
        loss_ax.legend()
    else:
        loss_ax.text(
            0.5, 0.5, "no losses logged", ha="center", va="center", transform=loss_ax.transAxes
        )
    loss_ax.set_ylabel("loss")
    loss_ax.set_title(title)
    loss_ax.grid(alpha=0.3)
    if has_lr:
        lr = by_epoch["learning_rate"].last().dropna()
        axes[1].plot(lr.index, lr.values, color="tab:gray")
        axes[1].set_ylabel("learning rate")
        axes[1].grid(alpha=0.3)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png")


def pick_frames(labels: sio.Labels, n: int) -> list[sio.LabeledFrame]:
    """Up to ``n`` frames with instances, evenly spread over the video (first and last kept)."""
    frames = sorted(
        (lf for lf in labels.labeled_frames if lf.instances), key=lambda lf: lf.frame_idx
    )
    if n <= 0 or not frames:
        return []
    idx = np.unique(np.linspace(0, len(frames) - 1, num=min(n, len(frames))).round().astype(int))
    return [frames[i] for i in idx]


def _to_bgr(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)  # sleap-io returns RGB


def track_colour(labels: sio.Labels, track: sio.Track | None) -> tuple[int, int, int]:
    """Stable colour of a track (by its index in the file); grey when untracked."""
    if track is None:
        return UNTRACKED_BGR
    for i, t in enumerate(labels.tracks):
        if t is track:
            return TRACK_BGR[i % len(TRACK_BGR)]
    return UNTRACKED_BGR


def draw_instances(
    image: np.ndarray,
    labels: sio.Labels,
    lf: sio.LabeledFrame,
    offset: tuple[float, float] = (0.0, 0.0),
    scale: float = 1.0,
) -> np.ndarray:
    """Draw every instance of ``lf`` (edges, nodes, track name) on a BGR copy of ``image``.

    ``image`` may be a crop of the frame resized by ``scale``; ``offset`` is the crop's top-left
    corner in frame coordinates, so points map to ``(p - offset) * scale``.
    """
    canvas = _to_bgr(image).copy()
    height, width = canvas.shape[:2]
    thick = max(1, round(min(height, width) / 256))
    edges = lf.instances[0].skeleton.edge_inds if lf.instances else []
    origin = np.asarray(offset, dtype=float)
    for inst in lf.instances:
        colour = track_colour(labels, inst.track)
        pts = (inst.numpy()[:, :2] - origin) * scale
        ok = np.isfinite(pts).all(axis=1)
        xy = np.zeros(pts.shape, dtype=int)
        xy[ok] = pts[ok].round().astype(int)
        for a, b in edges:
            if ok[a] and ok[b]:
                cv2.line(canvas, tuple(xy[a]), tuple(xy[b]), colour, thick, cv2.LINE_AA)
        for x, y in xy[ok]:
            cv2.circle(canvas, (int(x), int(y)), thick + 1, colour, -1, cv2.LINE_AA)
        if ok.any() and inst.track is not None:
            x, y = xy[ok][0]
            cv2.putText(
                canvas,
                inst.track.name,
                (int(x) + 4, int(y) - 4),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.4 * thick,
                colour,
                thick,
                cv2.LINE_AA,
            )
    return canvas


def crop_box(lf: sio.LabeledFrame, height: int, width: int) -> tuple[int, int, int, int]:
    """Square-ish box (x0, y0, x1, y1) around all instances with a margin, inside the frame.

    Animals are often small in a large arena; cropping keeps the drawn skeletons readable.
    """
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


def render_tile(image: np.ndarray, labels: sio.Labels, lf: sio.LabeledFrame) -> np.ndarray:
    """Crop around the instances, scale to the tile size, draw, and caption with the frame."""
    image = np.asarray(image)
    x0, y0, x1, y1 = crop_box(lf, image.shape[0], image.shape[1])
    crop = image[y0:y1, x0:x1]
    scale = TILE_SIDE / max(crop.shape[0], crop.shape[1])
    size = (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale)))
    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    resized = cv2.resize(crop, size, interpolation=interp)
    if resized.ndim == 2 and crop.ndim == 3:
        resized = resized[..., None]
    tile = draw_instances(resized, labels, lf, offset=(x0, y0), scale=scale)
    caption = f"frame {lf.frame_idx}"
    cv2.putText(tile, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(
        tile, caption, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA
    )
    return tile


def montage(tiles: Sequence[np.ndarray]) -> np.ndarray:
    """Tiles in a near-square grid, each padded to the largest tile size."""
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    tile_h = max(t.shape[0] for t in tiles)
    tile_w = max(t.shape[1] for t in tiles)
    grid = np.zeros((rows * tile_h, cols * tile_w, 3), dtype=np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * tile_h : r * tile_h + tile.shape[0], c * tile_w : c * tile_w + tile.shape[1]] = (
            tile
        )
    return grid


def write_png(image: np.ndarray, out_png: str | os.PathLike) -> None:
    """Encode with OpenCV and write atomically."""
    ok, buf = cv2.imencode(".png", image)
    if not ok:
        raise RuntimeError(f"Could not encode PNG for {out_png}")
    with atomic_path(out_png) as tmp:
        tmp.write_bytes(buf.tobytes())


def example_frames(labels: sio.Labels, n: int, out_png: str | os.PathLike) -> list[int]:
    """Montage of ``n`` frames with their instances drawn; returns the frame indices shown
    (empty, and nothing written, when no frame has an instance)."""
    frames = pick_frames(labels, n)
    if not frames:
        return []
    tiles = []
    for lf in frames:
        tiles.append(render_tile(lf.video[lf.frame_idx], labels, lf))
    write_png(montage(tiles), out_png)
    return [int(lf.frame_idx) for lf in frames]
