"""Confidence-map targets: grid convention, values, NaN handling, multi-instance max."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline_lib.data.confmaps import make_confmaps, make_multi_instance_confmaps


def test_peak_sits_on_the_grid_cell_of_the_point():
    # Cell (row i, col j) is model pixel (x = j * s, y = i * s): (6, 4) at stride 2 -> (2, 3).
    cms = make_confmaps(torch.tensor([[[6.0, 4.0]]]), (8, 8), stride=2, sigma=1.5)
    assert cms.shape == (1, 1, 8, 8)
    flat = int(cms.flatten().argmax())
    assert divmod(flat, 8) == (2, 3)
    assert cms[0, 0, 2, 3].item() == 1.0


def test_values_match_the_formula():
    px, py, stride, sigma = 7.3, 2.6, 4, 2.5
    cms = make_confmaps(
        torch.tensor([[[px, py]]], dtype=torch.float64), (5, 6), stride, sigma, dtype=torch.float64
    )
    for i in range(5):
        for j in range(6):
            d2 = (j * stride - px) ** 2 + (i * stride - py) ** 2
            assert cms[0, 0, i, j].item() == pytest.approx(
                math.exp(-d2 / (2 * sigma**2)), rel=1e-12, abs=1e-300
            )


def test_nan_points_give_zero_maps_and_batches_are_independent():
    pts = torch.tensor(
        [[[3.0, 3.0], [float("nan"), float("nan")]], [[float("nan"), 5.0], [10.0, 2.0]]]
    )
    cms = make_confmaps(pts, (4, 6), stride=2, sigma=2.0)
    assert cms.shape == (2, 2, 4, 6)
    assert torch.count_nonzero(cms[0, 1]) == 0
    assert torch.count_nonzero(cms[1, 0]) == 0  # one NaN coordinate is enough to be missing
    assert cms[0, 0].max() > 0.5 and cms[1, 1].max() == 1.0
    alone = make_confmaps(pts[1:, 1:], (4, 6), stride=2, sigma=2.0)
    assert torch.equal(alone[0, 0], cms[1, 1])


def test_multi_instance_takes_max_and_ignores_nan_instances():
    nan = float("nan")
    pts = torch.tensor(
        [
            [
                [[4.0, 4.0], [20.0, 8.0]],
                [[10.0, 12.0], [nan, nan]],
                [[nan, nan], [nan, nan]],  # padding instance
            ]
        ]
    )
    cms = make_multi_instance_confmaps(pts, (8, 12), stride=2, sigma=2.0)
    assert cms.shape == (1, 2, 8, 12)
    singles = [make_confmaps(pts[:, i], (8, 12), 2, 2.0) for i in range(2)]
    assert torch.equal(cms, torch.maximum(singles[0], singles[1]))
    assert cms[0, 0, 2, 2].item() == 1.0 and cms[0, 0, 6, 5].item() == 1.0
    empty = make_multi_instance_confmaps(torch.zeros(2, 0, 3, 2), (4, 4), 1, 1.0)
    assert empty.shape == (2, 3, 4, 4) and torch.count_nonzero(empty) == 0


def test_dtype_and_validation():
    cms = make_confmaps(torch.zeros(1, 1, 2), (2, 2), 1, 1.0, dtype=torch.float16)
    assert cms.dtype == torch.float16
    with pytest.raises(ValueError):
        make_confmaps(torch.zeros(1, 2), (2, 2), 1, 1.0)
    with pytest.raises(ValueError):
        make_confmaps(torch.zeros(1, 1, 2), (2, 2), 1, 0.0)
    with pytest.raises(ValueError):
        make_multi_instance_confmaps(torch.zeros(1, 1, 2), (2, 2), 1, 1.0)
