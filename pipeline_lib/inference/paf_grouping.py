"""Group part peaks into instances with part affinity fields (bottom-up inference), one sample.

Steps:

1. **Score candidate edges.** For skeleton edge ``src -> dst``, every (src peak, dst peak) pair is
   a candidate. Its line score is the mean, over ``n_points`` evenly spaced samples on the
   segment (endpoints included), of the dot product between the PAF vector there (bilinear
   interpolation; samples off the grid are clamped to the border) and the segment's unit
   direction. A segment longer than ``max_edge_length = max_edge_length_ratio * max(H, W)`` (H, W:
   model-input size, i.e. the PAF grid size times ``paf_stride``) is penalised by
   ``dist_penalty_weight * (max_edge_length / length - 1)`` (negative, added to the score; zero
   for shorter segments). This is SLEAP's rule: far-apart parts rarely belong together, and a
   long segment through a busy scene can collect support from other animals' fields.
2. **Match per edge.** Candidates scoring below ``min_line_scores`` are dropped; the rest are
   matched one-to-one (Hungarian, ``scipy.optimize.linear_sum_assignment``) to maximise the sum
   of line scores, so every src peak joins at most one dst peak and vice versa.
3. **Assemble.** Matched connections are applied in skeleton edge order: a connection between two
   free peaks starts an instance; one touching an instance extends it if the instance has no peak
   of that node yet; one joining two partial instances merges them if they share no node type. A
   connection that would give an instance two peaks of one node is dropped. Peaks of nodes that no
   edge touches are never grouped; a missing interior node splits an animal into fragments (use
   ``min_instance_peaks`` to drop small fragments).
4. **Score and filter.** An instance's score is the *sum* of the line scores of the connections it
   was built from (SLEAP's choice: a more complete instance scores higher, which is what
   ``max_instances`` should keep). Instances with fewer than ``min_instance_peaks`` peaks (an int
   count, or a float fraction of ``n_nodes``) are dropped; the rest are ordered by descending
   score and cut to ``max_instances``.

Units: peaks come in and points go out in **confidence-map grid units** (what
:func:`pipeline_lib.inference.peaks.find_local_peaks` returns; model pixel = grid unit x
``cms_stride``), so predictors map them back through ``transforms.py`` with the confmap stride.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

ArrayLike = np.ndarray | torch.Tensor | Sequence


def to_numpy(x: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    """Host numpy copy of a tensor or array (grouping is per-sample, sequential CPU work)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().float().cpu().numpy() if x.is_floating_point() else x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def sample_maps(maps: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """Bilinear read of maps (C, h, w) at grid positions xy (..., 2) -> (..., C).

    Positions outside the grid are clamped to the border, so a sample never reads padding.
    """
    _, h, w = maps.shape
    x = np.clip(xy[..., 0], 0.0, w - 1.0)
    y = np.clip(xy[..., 1], 0.0, h - 1.0)
    x0 = np.clip(np.floor(x).astype(np.int64), 0, max(w - 2, 0))
    y0 = np.clip(np.floor(y).astype(np.int64), 0, max(h - 2, 0))
    x1 = np.minimum(x0 + 1, w - 1)
    y1 = np.minimum(y0 + 1, h - 1)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    m = np.moveaxis(maps, 0, -1)  # (h, w, C)
    top = m[y0, x0] * (1 - fx) + m[y0, x1] * fx
    bottom = m[y1, x0] * (1 - fx) + m[y1, x1] * fx
    return top * (1 - fy) + bottom * fy


def score_edge_candidates(
    src_px: np.ndarray,
    dst_px: np.ndarray,
    paf: np.ndarray,
    paf_stride: int,
    n_points: int = 10,
    max_edge_length: float = np.inf,
    dist_penalty_weight: float = 1.0,
) -> np.ndarray:
    """Line scores (S, D) of every src/dst pair for one edge.

    Args:
        src_px: (S, 2) src peaks in model pixels.
        dst_px: (D, 2) dst peaks in model pixels.
        paf: (2, h, w) the edge's field (x, y components).
        paf_stride: output stride of the PAF grid.
        n_points: samples along each segment.
        max_edge_length: segments longer than this (model pixels) are penalised.
        dist_penalty_weight: weight of that penalty.

    Returns:
        (S, D) scores; a zero-length segment has no direction and scores 0.
    """
    vec = dst_px[None, :, :] - src_px[:, None, :]  # (S, D, 2)
    length = np.linalg.norm(vec, axis=-1)
    unit = np.divide(vec, length[..., None], out=np.zeros_like(vec), where=length[..., None] > 0)
    t = np.linspace(0.0, 1.0, int(n_points))
    samples = src_px[:, None, None, :] + t[None, None, :, None] * vec[:, :, None, :]  # (S,D,P,2)
    field = sample_maps(paf, samples / float(paf_stride))  # (S, D, P, 2)
    scores = (field * unit[:, :, None, :]).sum(axis=-1).mean(axis=-1)
    with np.errstate(divide="ignore"):
        penalty = np.minimum(max_edge_length / length - 1.0, 0.0)
    return scores + dist_penalty_weight * np.nan_to_num(penalty, nan=0.0)


def match_edge_candidates(
    scores: np.ndarray, min_line_scores: float
) -> list[tuple[int, int, float]]:
    """One-to-one src/dst matches (row, col, score) maximising the summed line score.

    Pairs below ``min_line_scores`` (or non-finite) cannot be matched. Valid weights are floored at
    a tiny positive value so a valid pair is always preferred to leaving both peaks unmatched,
    even when ``min_line_scores`` <= 0.
    """
    if scores.size == 0:
        return []
    valid = np.isfinite(scores) & (scores >= min_line_scores)
    if not valid.any():
        return []
    weights = np.where(valid, np.maximum(np.nan_to_num(scores), 1e-9), 0.0)
    rows, cols = linear_sum_assignment(-weights)
    return [
        (int(r), int(c), float(scores[r, c]))
        for r, c in zip(rows, cols, strict=True)
        if valid[r, c]
    ]


class _Assembler:
    """Instances as per-node peak indices, grown and merged connection by connection."""

    def __init__(self, n_peaks: int, n_nodes: int) -> None:
        self.n_nodes = n_nodes
        self.owner = np.full(n_peaks, -1, dtype=np.int64)  # instance id of each peak
        self.members: dict[int, np.ndarray] = {}  # instance id -> (N,) peak index or -1
        self.scores: dict[int, float] = {}
        self._next = 0

    def _new(self) -> int:
        iid = self._next
        self._next += 1
        self.members[iid] = np.full(self.n_nodes, -1, dtype=np.int64)
        self.scores[iid] = 0.0
        return iid

    def _put(self, iid: int, node: int, peak: int) -> None:
        self.members[iid][node] = peak
        self.owner[peak] = iid

    def connect(self, src_node: int, src: int, dst_node: int, dst: int, score: float) -> None:
        a, b = int(self.owner[src]), int(self.owner[dst])
        if a < 0 and b < 0:
            iid = self._new()
            self._put(iid, src_node, src)
            self._put(iid, dst_node, dst)
        elif a >= 0 and b < 0:
            if self.members[a][dst_node] >= 0:
                return
            iid = a
            self._put(iid, dst_node, dst)
        elif a < 0:
            if self.members[b][src_node] >= 0:
                return
            iid = b
            self._put(iid, src_node, src)
        elif a == b:
            iid = a
        else:
            ma, mb = self.members[a], self.members[b]
            if ((ma >= 0) & (mb >= 0)).any():
                return
            iid = a
            taken = mb >= 0
            ma[taken] = mb[taken]
            self.owner[mb[taken]] = a
            self.scores[a] += self.scores.pop(b)
            del self.members[b]
        self.scores[iid] += score


def _min_peak_count(min_instance_peaks: int | float, n_nodes: int) -> float:
    if isinstance(min_instance_peaks, float):
        if not 0.0 <= min_instance_peaks <= 1.0:
            raise ValueError(
                f"a fractional min_instance_peaks must be in [0, 1], got {min_instance_peaks}"
            )
        return min_instance_peaks * n_nodes
    return float(min_instance_peaks)


def group_instances(
    peaks: ArrayLike,
    peak_vals: ArrayLike,
    peak_channels: ArrayLike,
    pafs: ArrayLike,
    edges: ArrayLike,
    n_nodes: int,
    paf_stride: int,
    cms_stride: int,
    n_points: int = 10,
    max_edge_length_ratio: float = 0.25,
    dist_penalty_weight: float = 1.0,
    min_line_scores: float = 0.25,
    min_instance_peaks: int | float = 0,
    max_instances: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group one sample's part peaks into instances (see the module docstring for the rules).

    Args:
        peaks: (K, 2) xy peaks in confidence-map grid units.
        peak_vals: (K,) peak confidences.
        peak_channels: (K,) node index of each peak.
        pafs: (2E, h, w) part affinity fields, channels ``(edge0_x, edge0_y, edge1_x, ...)``.
        edges: (E, 2) node indices ``(src, dst)``, in the order the PAFs were trained with.
        n_nodes: number of skeleton nodes N.
        paf_stride: output stride of the PAF grid.
        cms_stride: output stride of the confidence-map grid the peaks come from.
        n_points: samples per candidate segment.
        max_edge_length_ratio: penalty-free edge length as a fraction of the larger model-input
            side.
        dist_penalty_weight: weight of the long-edge penalty.
        min_line_scores: candidates scoring below this are never connected.
        min_instance_peaks: drop instances with fewer peaks (int count, or float fraction of N).
        max_instances: keep at most this many instances, highest scores first.

    Returns:
        points (I, N, 2) in confidence-map grid units (NaN where the node was not found),
        point_scores (I, N) peak values (0 where not found), instance_scores (I,) sums of
        connection line scores; instances ordered by descending score.
    """
    xy = to_numpy(peaks).reshape(-1, 2)
    vals = to_numpy(peak_vals).reshape(-1)
    chans = to_numpy(peak_channels, np.int64).reshape(-1)
    paf_np = to_numpy(pafs, np.float32)
    edge_arr = to_numpy(edges, np.int64).reshape(-1, 2)
    if not (len(xy) == len(vals) == len(chans)):
        raise ValueError(f"peaks {len(xy)}, peak_vals {len(vals)} and channels {len(chans)} differ")
    if paf_np.ndim != 3 or paf_np.shape[0] != 2 * len(edge_arr):
        raise ValueError(f"pafs must be (2E={2 * len(edge_arr)}, h, w), got {paf_np.shape}")
    if edge_arr.size and (edge_arr.min() < 0 or edge_arr.max() >= n_nodes):
        raise ValueError(f"edges index nodes outside [0, {n_nodes}): {edge_arr.tolist()}")
    if (edge_arr[:, 0] == edge_arr[:, 1]).any():
        raise ValueError(f"an edge cannot join a node to itself: {edge_arr.tolist()}")
    min_count = _min_peak_count(min_instance_peaks, n_nodes)

    usable = np.isfinite(xy).all(axis=1) & (chans >= 0) & (chans < n_nodes)
    px = xy * float(cms_stride)
    max_edge_length = max_edge_length_ratio * max(paf_np.shape[1:]) * float(paf_stride)
    assembler = _Assembler(len(xy), n_nodes)
    for e, (s_node, d_node) in enumerate(edge_arr):
        src_idx = np.flatnonzero(usable & (chans == s_node))
        dst_idx = np.flatnonzero(usable & (chans == d_node))
        if len(src_idx) == 0 or len(dst_idx) == 0:
            continue
        scores = score_edge_candidates(
            px[src_idx],
            px[dst_idx],
            paf_np[2 * e : 2 * e + 2],
            paf_stride,
            n_points,
            max_edge_length,
            dist_penalty_weight,
        )
        for r, c, score in match_edge_candidates(scores, min_line_scores):
            assembler.connect(int(s_node), int(src_idx[r]), int(d_node), int(dst_idx[c]), score)

    kept = [
        (assembler.scores[iid], members)
        for iid, members in assembler.members.items()
        if (members >= 0).sum() >= min_count
    ]
    kept.sort(key=lambda item: -item[0])
    if max_instances is not None:
        kept = kept[: max(int(max_instances), 0)]
    points = np.full((len(kept), n_nodes, 2), np.nan)
    point_scores = np.zeros((len(kept), n_nodes))
    for i, (_, members) in enumerate(kept):
        found = members >= 0
        points[i, found] = xy[members[found]]
        point_scores[i, found] = vals[members[found]]
    instance_scores = np.array([score for score, _ in kept], dtype=np.float64)
    return points, point_scores, instance_scores
