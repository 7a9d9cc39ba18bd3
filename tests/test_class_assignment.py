"""Class (identity) targets and the assignment of peaks / instances to classes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline_lib.data.class_targets import class_vector_targets, make_class_maps
from pipeline_lib.data.confmaps import make_confmaps, make_multi_instance_confmaps
from pipeline_lib.inference.class_assignment import (
    assign_instances_by_class_vectors,
    classify_peaks_by_class_maps,
)
from pipeline_lib.inference.peaks import find_local_peaks

NAN = float("nan")
# Two 3-node animals whose node 1s are 6 px apart; animal A is class 1, animal B class 0.
ANIMAL_A = [(20.3, 30.2), (40.1, 30.6), (60.2, 30.1)]
ANIMAL_B = [(30.6, 50.3), (42.2, 36.3), (50.1, 70.4)]


# --- targets ---------------------------------------------------------------------------------


def test_class_maps_put_each_instance_in_its_class_channel() -> None:
    unclassed = [(10.2, 100.3), (20.1, 100.2), (30.3, 100.1)]
    pts = torch.tensor([[ANIMAL_A, ANIMAL_B, unclassed]])
    maps = make_class_maps(pts, torch.tensor([[1, 0, -1]]), 3, (64, 64), stride=2, sigma=2.0)
    assert maps.shape == (1, 3, 64, 64)
    node_max = make_confmaps(pts[0], (64, 64), 2, 2.0).amax(dim=1)  # (I, h, w)
    torch.testing.assert_close(maps[0, 1], node_max[0])
    torch.testing.assert_close(maps[0, 0], node_max[1])
    assert maps[0, 2].abs().sum().item() == 0.0  # no instance has class 2
    # The unclassed animal is background in every channel.
    assert maps[0, :, 50, 5:16].max().item() < 1e-6


def test_class_maps_max_over_same_class_and_skip_missing_nodes() -> None:
    a = [(20.0, 20.0), (NAN, NAN), (40.0, 20.0)]
    b = [(20.0, 24.0), (60.0, 60.0), (NAN, 3.0)]
    pts = torch.tensor([[a, b]])
    maps = make_class_maps(pts, torch.tensor([[0, 0]]), 1, (40, 40), stride=2, sigma=2.0)
    expected = make_multi_instance_confmaps(pts, (40, 40), 2, 2.0).amax(dim=1)
    torch.testing.assert_close(maps[:, 0], expected)
    assert maps[0, 0, 10, 10].item() == pytest.approx(1.0)  # a's node 0
    assert maps[0, 0, 30, 30].item() == pytest.approx(1.0)  # b's node 1
    assert torch.isfinite(maps).all()


def test_class_maps_batch_and_validation() -> None:
    pts = torch.tensor([[ANIMAL_A], [ANIMAL_B]])
    maps = make_class_maps(pts, torch.tensor([[0], [1]]), 2, (32, 32), 2, 2.0)
    assert maps[0, 1].abs().sum() == 0 and maps[1, 0].abs().sum() == 0
    assert maps[0, 0].max() > 0.9 and maps[1, 1].max() > 0.9
    with pytest.raises(ValueError, match="class_ids"):
        make_class_maps(pts, torch.tensor([[2], [0]]), 2, (32, 32), 2, 2.0)
    with pytest.raises(ValueError, match="class_ids"):
        make_class_maps(pts, torch.tensor([0, 1]), 2, (32, 32), 2, 2.0)


def test_class_vector_targets_one_hot_with_blank_unknowns() -> None:
    out = class_vector_targets(torch.tensor([2, -1, 0]), 3)
    np.testing.assert_array_equal(out.numpy(), [[0, 0, 1], [0, 0, 0], [1, 0, 0]])
    assert out.dtype == torch.float32
    with pytest.raises(ValueError, match="class_ids"):
        class_vector_targets(torch.tensor([3]), 3)


# --- class vectors -> instance identities ----------------------------------------------------


def test_class_vectors_optimal_not_greedy() -> None:
    # Greedy would give both instances class 0; the optimum is 0.4 + 0.55 > 0.6 + 0.1.
    idx, scores = assign_instances_by_class_vectors(np.array([[0.6, 0.4], [0.55, 0.1]]))
    np.testing.assert_array_equal(idx, [1, 0])
    np.testing.assert_allclose(scores, [0.4, 0.55])


def test_class_vectors_more_instances_than_classes() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.2, 0.3], [0.1, 0.8]])
    idx, scores = assign_instances_by_class_vectors(probs)
    np.testing.assert_array_equal(idx, [0, -1, 1])
    np.testing.assert_allclose(scores, [0.9, 0.0, 0.8])
    # Fewer instances than classes: each still gets its best free class.
    idx, _ = assign_instances_by_class_vectors(np.array([[0.1, 0.2, 0.7]]))
    np.testing.assert_array_equal(idx, [2])
    idx, scores = assign_instances_by_class_vectors(np.zeros((0, 3)))
    assert idx.shape == (0,) and scores.shape == (0,)


# --- class maps -> instances -----------------------------------------------------------------


def test_classify_peaks_hand_made_maps_is_one_per_class_per_node() -> None:
    # Class maps constant over regions: x < 8 is class 0 territory, x >= 8 class 1.
    maps = np.zeros((2, 8, 16), dtype=np.float32)
    maps[0, :, :8], maps[1, :, :8] = 0.9, 0.5
    maps[0, :, 8:], maps[1, :, 8:] = 0.8, 0.1
    peaks = np.array([[2.0, 3.0], [12.0, 3.0], [5.0, 5.0], [7.0, 1.0]])
    vals = np.array([0.95, 0.9, 0.7, 0.2])
    chans = np.array([0, 0, 1, 1])
    points, pscores, iscores = classify_peaks_by_class_maps(peaks, vals, chans, maps, 2, 1)
    # Node 0: both peaks prefer class 0; optimum is peak (2,3)->class 1 (0.5) + (12,3)->0 (0.8).
    np.testing.assert_allclose(points[:, 0], [[12.0, 3.0], [2.0, 3.0]])
    np.testing.assert_allclose(pscores[:, 0], [0.9, 0.95])
    # Node 1: two peaks in class-0 territory (a tie): still one per class, never both in one.
    assert sorted(pscores[:, 1].tolist()) == pytest.approx([0.2, 0.7])
    assert not np.isnan(points[:, 1]).any()
    assert iscores.shape == (2,) and (iscores > 0).all()
    # min_class_score drops assignments nobody really claims.
    points, _, iscores = classify_peaks_by_class_maps(
        peaks, vals, chans, maps, 2, 1, min_class_score=0.6
    )
    assert np.isnan(points[1]).all() and iscores[1] == 0.0
    assert not np.isnan(points[0]).any() and iscores[0] == pytest.approx(0.85)


def test_classify_peaks_on_rendered_class_maps_recovers_identities() -> None:
    pts = torch.tensor([[ANIMAL_A, ANIMAL_B]])
    class_ids = torch.tensor([[1, 0]])
    cms = make_multi_instance_confmaps(pts, (64, 64), 2, sigma=2.0)
    peaks, vals, _, chans = find_local_peaks(cms, threshold=0.2)
    for class_stride, sigma in ((2, 5.0), (4, 5.0)):
        grid = (128 // class_stride, 128 // class_stride)
        maps = make_class_maps(pts, class_ids, 2, grid, class_stride, sigma)[0]
        points, pscores, iscores = classify_peaks_by_class_maps(
            peaks, vals, chans, maps, 3, class_stride, cms_stride=2
        )
        truth = pts[0].numpy() / 2
        assert np.abs(points[1] - truth[0]).max() < 0.5  # class 1 is animal A
        assert np.abs(points[0] - truth[1]).max() < 0.5
        assert (pscores > 0.7).all() and (iscores > 0.8).all()


def test_classify_peaks_missing_node_and_extra_peaks() -> None:
    b_missing = list(ANIMAL_B)
    b_missing[2] = (NAN, NAN)
    pts = torch.tensor([[ANIMAL_A, b_missing]])
    cms = make_multi_instance_confmaps(pts, (64, 64), 2, sigma=2.0)
    maps = make_class_maps(pts, torch.tensor([[1, 0]]), 2, (64, 64), 2, 5.0)[0]
    peaks, vals, _, chans = find_local_peaks(cms, threshold=0.2)
    # A spurious node-0 peak far from both animals: a third candidate for two classes.
    peaks = torch.cat([peaks, torch.tensor([[60.0, 60.0]])])
    vals = torch.cat([vals, torch.tensor([0.9])])
    chans = torch.cat([chans, torch.tensor([0])])
    points, pscores, _ = classify_peaks_by_class_maps(peaks, vals, chans, maps, 3, 2)
    assert np.isnan(points[0, 2]).all() and pscores[0, 2] == 0.0
    assert np.abs(points[1] - pts[0, 0].numpy() / 2).max() < 0.5
    assert np.abs(points[0, :2] - pts[0, 1, :2].numpy() / 2).max() < 0.5


def test_classify_peaks_no_peaks() -> None:
    points, pscores, iscores = classify_peaks_by_class_maps(
        np.zeros((0, 2)), np.zeros(0), np.zeros(0, int), np.zeros((4, 8, 8)), 5, 2
    )
    assert points.shape == (4, 5, 2) and np.isnan(points).all()
    assert pscores.shape == (4, 5) and iscores.tolist() == [0.0] * 4
