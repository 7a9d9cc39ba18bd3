"""PAF grouping: scenes rendered from known points must group back into the same animals."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from pipeline_lib.data.confmaps import make_multi_instance_confmaps
from pipeline_lib.data.pafs import make_pafs
from pipeline_lib.inference.paf_grouping import (
    group_instances,
    match_edge_candidates,
    sample_maps,
    score_edge_candidates,
)
from pipeline_lib.inference.peaks import find_local_peaks

# A 5-node chain 0-1-2-3-4 whose edge order forces a merge: (0,1) and (2,3) build two partial
# instances per animal that edge (1,2) must join.
EDGES = [(0, 1), (2, 3), (1, 2), (3, 4)]
N_NODES = 5
STRIDE = 2
GRID = (64, 64)  # a 128 x 128 model input

# Animal A runs along +x; animal B runs down across it. Their node 2s are 6.8 px (3.4 cells)
# apart and B's edges 1->2 and 2->3 pass right beside A's node 2, so the fields overlap. Animal
# C zigzags down the left, its node 3 7 px from A's node 0. No coordinate is an odd multiple of
# the stride's half (a Gaussian exactly between two cells renders a plateau that peak finding
# reports twice).
ANIMAL_A = [(30.3, 60.2), (45.1, 60.4), (60.2, 60.0), (75.4, 59.7), (90.0, 60.3)]
ANIMAL_B = [(60.4, 30.1), (61.2, 48.3), (63.1, 66.2), (64.3, 84.0), (65.3, 100.4)]
ANIMAL_C = [(15.3, 20.2), (25.1, 35.4), (15.6, 50.3), (25.2, 65.1), (15.4, 80.2)]


def _render_and_group(
    animals: list[list[tuple[float, float]]], edges: list[tuple[int, int]] = EDGES, **kwargs
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Render GT confmaps + PAFs, find peaks, group; returns (truth_grid, points, pscores, scores)."""
    pts = torch.tensor([animals], dtype=torch.float32)
    cms = make_multi_instance_confmaps(pts, GRID, STRIDE, sigma=2.0)
    pafs = make_pafs(pts, edges, GRID, STRIDE, sigma=3.0)
    peaks, vals, _, chans = find_local_peaks(cms, threshold=0.2, refinement="integral")
    points, pscores, scores = group_instances(
        peaks, vals, chans, pafs[0], edges, N_NODES, STRIDE, STRIDE, **kwargs
    )
    return pts[0].numpy() / STRIDE, points, pscores, scores


def _assert_same_instances(truth: np.ndarray, points: np.ndarray, tol: float = 0.5) -> None:
    """Every truth animal is recovered once, node for node, within ``tol`` grid px."""
    assert points.shape == truth.shape, (points.shape, truth.shape)
    dist = np.linalg.norm(points[:, None] - truth[None], axis=-1)  # (pred, truth, N)
    cost = np.nan_to_num(np.nanmean(dist, axis=-1), nan=1e6)
    rows, cols = linear_sum_assignment(cost)
    for r, c in zip(rows, cols, strict=True):
        np.testing.assert_array_equal(np.isnan(points[r, :, 0]), np.isnan(truth[c, :, 0]))
        assert np.nanmax(dist[r, c]) < tol, (r, c, dist[r, c])


def test_two_crossing_animals_with_close_nodes_are_separated() -> None:
    truth, points, pscores, scores = _render_and_group([ANIMAL_A, ANIMAL_B])
    _assert_same_instances(truth, points)
    # Four connections each with a near-perfect field: sum of line scores close to 4.
    assert scores.shape == (2,) and (scores > 3.5).all() and (scores <= 4.0 + 1e-6).all()
    assert np.all(np.diff(scores) <= 0)  # descending
    assert (pscores > 0.75).all()  # peaks read at cells, off the sub-pixel centres


def test_three_animals_one_missing_a_leaf_node() -> None:
    c_missing = list(ANIMAL_C)
    c_missing[4] = (float("nan"), float("nan"))
    truth, points, pscores, scores = _render_and_group([ANIMAL_A, ANIMAL_B, c_missing])
    _assert_same_instances(truth, points)
    missing = np.isnan(points[..., 0])
    assert missing.sum() == 1 and (pscores[missing] == 0).all()
    # The animal missing a node lost one connection, so it scores lowest and comes last.
    assert np.isnan(points[-1, 4, 0]) and scores[-1] < scores[0] - 0.5


def test_peak_order_does_not_matter() -> None:
    pts = torch.tensor([[ANIMAL_A, ANIMAL_B, ANIMAL_C]], dtype=torch.float32)
    cms = make_multi_instance_confmaps(pts, GRID, STRIDE, sigma=2.0)
    pafs = make_pafs(pts, EDGES, GRID, STRIDE, sigma=3.0)[0]
    peaks, vals, _, chans = find_local_peaks(cms, threshold=0.2)
    perm = torch.randperm(len(peaks), generator=torch.Generator().manual_seed(3))
    a = group_instances(peaks, vals, chans, pafs, EDGES, N_NODES, STRIDE, STRIDE)
    b = group_instances(peaks[perm], vals[perm], chans[perm], pafs, EDGES, N_NODES, STRIDE, STRIDE)
    order_a, order_b = np.argsort(a[0][:, 0, 0]), np.argsort(b[0][:, 0, 0])
    np.testing.assert_allclose(a[0][order_a], b[0][order_b])
    np.testing.assert_allclose(a[2][order_a], b[2][order_b])


def test_missing_interior_node_splits_animal_and_min_instance_peaks_filters_fragments() -> None:
    a_missing = list(ANIMAL_A)
    a_missing[2] = (float("nan"), float("nan"))  # node 2 joins {0,1} to {3,4}
    _, points, _, _ = _render_and_group([a_missing, ANIMAL_B])
    counts = sorted((~np.isnan(points[..., 0])).sum(axis=1).tolist())
    assert counts == [2, 2, 5]
    _, points, _, _ = _render_and_group([a_missing, ANIMAL_B], min_instance_peaks=3)
    assert points.shape[0] == 1 and not np.isnan(points).any()
    _, points, _, _ = _render_and_group([a_missing, ANIMAL_B], min_instance_peaks=0.5)
    assert points.shape[0] == 1  # 0.5 * 5 nodes = 2.5 peaks needed
    _, points, _, _ = _render_and_group([a_missing, ANIMAL_B], min_instance_peaks=0.4)
    assert points.shape[0] == 3


def test_min_line_scores_and_max_instances() -> None:
    _, points, _, scores = _render_and_group([ANIMAL_A, ANIMAL_B, ANIMAL_C], max_instances=2)
    assert points.shape == (2, N_NODES, 2)
    full = _render_and_group([ANIMAL_A, ANIMAL_B, ANIMAL_C])[3]
    np.testing.assert_allclose(scores, full[:2])  # the two best are kept
    # No line can score above 1, so this threshold connects nothing.
    _, points, pscores, scores = _render_and_group([ANIMAL_A, ANIMAL_B], min_line_scores=1.01)
    assert (
        points.shape == (0, N_NODES, 2) and pscores.shape == (0, N_NODES) and scores.shape == (0,)
    )


def test_zero_pafs_connect_nothing_and_empty_inputs_are_fine() -> None:
    pts = torch.tensor([[ANIMAL_A]], dtype=torch.float32)
    cms = make_multi_instance_confmaps(pts, GRID, STRIDE, sigma=2.0)
    peaks, vals, _, chans = find_local_peaks(cms, threshold=0.2)
    zeros = torch.zeros((2 * len(EDGES), *GRID))
    out = group_instances(peaks, vals, chans, zeros, EDGES, N_NODES, STRIDE, STRIDE)
    assert out[0].shape == (0, N_NODES, 2)
    out = group_instances(
        np.zeros((0, 2)), np.zeros(0), np.zeros(0, int), zeros, EDGES, N_NODES, STRIDE, STRIDE
    )
    assert out[0].shape == (0, N_NODES, 2) and out[2].shape == (0,)


def test_different_paf_and_confmap_strides() -> None:
    pts = torch.tensor([[ANIMAL_A, ANIMAL_B]], dtype=torch.float32)
    cms = make_multi_instance_confmaps(pts, GRID, STRIDE, sigma=2.0)
    pafs = make_pafs(pts, EDGES, (32, 32), stride=4, sigma=4.0)[0]
    peaks, vals, _, chans = find_local_peaks(cms, threshold=0.2)
    points, _, _ = group_instances(peaks, vals, chans, pafs, EDGES, N_NODES, 4, STRIDE)
    _assert_same_instances(pts[0].numpy() / STRIDE, points)


def test_line_scores_direction_and_distance_penalty() -> None:
    # A uniform +x field: a +x segment scores 1, a -x segment -1, a +y segment 0.
    paf = np.zeros((2, 16, 16), dtype=np.float32)
    paf[0] = 1.0
    src = np.array([[4.0, 4.0]])
    dst = np.array([[20.0, 4.0], [-12.0, 4.0], [4.0, 20.0]])
    scores = score_edge_candidates(src, dst, paf, paf_stride=2)
    np.testing.assert_allclose(scores, [[1.0, -1.0, 0.0]], atol=1e-6)
    # Longer than max_edge_length: penalty weight * (max / length - 1).
    long_dst = np.array([[44.0, 4.0]])  # length 40
    pen = score_edge_candidates(
        src, long_dst, paf, 2, max_edge_length=10.0, dist_penalty_weight=2.0
    )
    np.testing.assert_allclose(pen, [[1.0 + 2.0 * (10.0 / 40.0 - 1.0)]], atol=1e-6)
    # Zero-length candidate: no direction, score 0 and no penalty.
    assert score_edge_candidates(src, src, paf, 2, max_edge_length=1.0)[0, 0] == 0.0


def test_max_edge_length_ratio_rejects_long_connections() -> None:
    # Same scene, but with the penalty-free length capped far below the edges (~15 px): scores
    # drop below min_line_scores and nothing is grouped.
    _, points, _, _ = _render_and_group([ANIMAL_A, ANIMAL_B], max_edge_length_ratio=0.02)
    assert points.shape[0] == 0
    # With the penalty switched off the same ratio is harmless.
    _, points, _, _ = _render_and_group(
        [ANIMAL_A, ANIMAL_B], max_edge_length_ratio=0.02, dist_penalty_weight=0.0
    )
    assert points.shape[0] == 2


def test_matching_is_one_to_one_and_respects_threshold() -> None:
    scores = np.array([[0.9, 0.8], [0.85, 0.1], [0.3, 0.2]])
    # Best total: (0,1) + (1,0) = 1.65 beats (0,0) alone with (1,1) below threshold.
    assert match_edge_candidates(scores, 0.25) == [(0, 1, 0.8), (1, 0, 0.85)]
    assert match_edge_candidates(scores, 0.95) == []
    assert match_edge_candidates(np.zeros((0, 3)), 0.25) == []


def test_sample_maps_is_bilinear_and_clamped() -> None:
    maps = np.arange(12, dtype=np.float32).reshape(1, 3, 4)  # value = 4 * row + col
    xy = np.array([[1.5, 0.5], [0.0, 0.0], [10.0, -3.0]])
    np.testing.assert_allclose(sample_maps(maps, xy)[:, 0], [3.5, 0.0, 3.0])


def test_rejects_bad_inputs() -> None:
    zeros = torch.zeros((2, 8, 8))
    with pytest.raises(ValueError, match="2E"):
        group_instances(np.zeros((0, 2)), [], [], zeros, [(0, 1), (1, 2)], 3, 1, 1)
    with pytest.raises(ValueError, match="itself"):
        group_instances(np.zeros((0, 2)), [], [], zeros, [(1, 1)], 3, 1, 1)
    with pytest.raises(ValueError, match="fraction"):
        group_instances(np.zeros((0, 2)), [], [], zeros, [(0, 1)], 3, 1, 1, min_instance_peaks=1.5)


def test_two_flies_real_frames(shared_data) -> None:
    """GT confmaps + PAFs of real fly poses at stride 4 group back into the two flies."""
    sio = pytest.importorskip("sleap_io")
    labels = sio.load_slp(str(shared_data / "dreem_assets" / "sleap" / "two_flies.slp"))
    skeleton = labels.skeletons[0]
    edges = list(skeleton.edge_inds)
    n_nodes = len(skeleton.node_names)
    stride, grid = 4, (128, 128)  # 1024 px frames at scale 0.5 -> 512 px model input
    # Labels sit on round coordinates, which can put a Gaussian exactly between two cells; a
    # rendered map then has a two-cell plateau that peak finding reports twice. A network never
    # outputs exact ties, so break them with a 0.01 px jitter (far below any tolerance here).
    rng = np.random.default_rng(0)
    # Frame 0: flies apart. Frame 31: the closest approach in the file (same-node distance
    # 1.3 grid cells), where grouping must still give every part to the right fly.
    for frame_idx, tol in ((0, 0.5), (1, 0.5), (31, 1.0)):
        frame = labels[frame_idx]
        truth_px = np.stack([inst.numpy() for inst in frame.instances]) * 0.5
        truth_px = truth_px + rng.uniform(-0.01, 0.01, truth_px.shape)
        pts = torch.tensor(truth_px[None], dtype=torch.float32)
        cms = make_multi_instance_confmaps(pts, grid, stride, sigma=2.5)
        pafs = make_pafs(pts, edges, grid, stride, sigma=4.0)[0]
        peaks, vals, _, chans = find_local_peaks(cms, threshold=0.2)
        points, _, scores = group_instances(peaks, vals, chans, pafs, edges, n_nodes, 4, 4)
        truth = truth_px / stride
        _assert_same_instances(truth, points, tol=tol)
        # Each recovered part is nearer its own fly's part than the other fly's.
        order = np.argsort(np.nanmean(np.linalg.norm(points[:, None] - truth[None], axis=-1), -1))
        own = np.linalg.norm(points - truth[order[:, 0]], axis=-1)
        other = np.linalg.norm(points - truth[order[:, 1]], axis=-1)
        both = ~np.isnan(own) & ~np.isnan(other)
        assert (own[both] < other[both]).all()
        # A clean GT field scores each connection near 1: a fly's score is about its number of
        # fully visible edges.
        visible = ~np.isnan(truth[order[:, 0], :, 0])
        n_edges = np.array([sum(v[s] and v[d] for s, d in edges) for v in visible])
        assert (scores > 0.9 * n_edges).all() and (scores <= n_edges + 1e-6).all()
