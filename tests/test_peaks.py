"""Peak finding: sub-pixel accuracy per refinement, threshold, batches, borders, local peaks."""

from __future__ import annotations

import pytest
import torch

from pipeline_lib.data.confmaps import make_confmaps
from pipeline_lib.inference.peaks import find_global_peaks, find_local_peaks

STRIDE, SIGMA = 2, 1.5  # a typical centered-instance target


def _render(points_px: list[list[list[float]]], hw=(24, 32)) -> torch.Tensor:
    return make_confmaps(torch.tensor(points_px), hw, STRIDE, SIGMA)


@pytest.mark.parametrize(
    ("refinement", "tolerance"),
    [("integral", 0.05), ("gaussian", 0.01), ("local", 0.3), (None, 0.5)],
)
def test_global_peak_subpixel_accuracy(refinement, tolerance):
    truth_px = torch.tensor([[[23.3, 17.7], [40.9, 9.15]]])
    cms = make_confmaps(truth_px, (24, 32), STRIDE, SIGMA)
    points, values = find_global_peaks(cms, refinement=refinement)
    error = (points - truth_px / STRIDE).abs().max().item()  # in grid cells
    print(f"{refinement}: max abs error {error:.4f} grid px")
    assert error < tolerance
    assert points.shape == (1, 2, 2) and values.shape == (1, 2)
    assert (values > 0.6).all()  # off-grid points: the sampled maximum is below 1


def test_integral_beats_local_and_none():
    truth = torch.tensor([[[23.3, 17.7]]])
    cms = make_confmaps(truth, (24, 32), STRIDE, SIGMA)
    errs = {
        r: (find_global_peaks(cms, refinement=r)[0] - truth / STRIDE).norm().item()
        for r in ("integral", "local", None)
    }
    assert errs["integral"] < errs["local"] < errs[None]


@pytest.mark.parametrize("sigma_cells", [0.6, 1.25, 2.5, 5.0])
def test_gaussian_refinement_is_exact_for_wide_maps_where_integral_is_biased(sigma_cells):
    """A 5-cell integral window truncates a wide Gaussian and shrinks sub-cell offsets toward
    the peak cell; the log-parabola fit recovers the centre at any width."""
    truth_px = torch.tensor([[[41.4, 30.8], [20.9, 50.3]]])  # offsets of 0.2-0.45 cells
    cms = make_confmaps(truth_px, (40, 48), STRIDE, sigma_cells * STRIDE)
    truth = truth_px / STRIDE
    errors = {
        r: (find_global_peaks(cms, refinement=r)[0] - truth).abs().max().item()
        for r in ("integral", "gaussian")
    }
    assert errors["gaussian"] < 1e-3
    if sigma_cells >= 1.25:
        assert errors["integral"] > 0.05
    points, _, _, _ = find_local_peaks(cms, refinement="gaussian")
    assert (points - truth[0]).abs().max() < 1e-3


def test_threshold_gives_nan_points_but_keeps_values():
    cms = _render([[[10.0, 10.0], [30.0, 20.0]]])
    cms[0, 1] *= 0.1
    points, values = find_global_peaks(cms, threshold=0.2)
    assert torch.isfinite(points[0, 0]).all()
    assert torch.isnan(points[0, 1]).all()
    assert values[0, 1].item() == pytest.approx(0.1, abs=1e-6)


def test_batch_items_are_independent():
    truth = torch.tensor([[[10.2, 6.6]], [[40.0, 30.4]], [[3.3, 44.1]]])
    cms = make_confmaps(truth, (24, 32), STRIDE, SIGMA)
    points, _ = find_global_peaks(cms)
    assert torch.allclose(points, truth / STRIDE, atol=0.05)


def test_peaks_on_the_border():
    h, w = 12, 16
    truth = torch.tensor([[[0.0, 0.0], [(w - 1) * STRIDE, (h - 1) * STRIDE], [0.0, 10.0]]])
    cms = make_confmaps(truth, (h, w), STRIDE, SIGMA)
    for refinement in ("integral", "gaussian", "local", None):
        points, _ = find_global_peaks(cms, refinement=refinement)
        assert torch.isfinite(points).all()
        # Half the window is off the map at the border, so refinement pulls inwards by up to
        # ~1/3 cell here (0.33 integral, 0.25 local).
        assert (points - truth / STRIDE).abs().max() < 0.4
    local_points, _, _, channels = find_local_peaks(cms)
    assert sorted(channels.tolist()) == [0, 1, 2]


def test_low_precision_maps_give_float32_points():
    truth = torch.tensor([[[200.6, 100.3]]])
    cms = make_confmaps(truth, (64, 128), STRIDE, SIGMA).to(torch.bfloat16)
    points, _ = find_global_peaks(cms)
    assert points.dtype == torch.float32
    assert (points - truth / STRIDE).abs().max() < 0.1


def test_local_peaks_multiple_instances_channels_and_samples():
    # Instance points in px per (sample, channel); multi-instance maps are the max over them.
    spec = {
        (0, 0): [(8.4, 6.2), (44.0, 10.0)],
        (0, 1): [(30.0, 20.0)],
        (1, 1): [(50.2, 36.6), (12.0, 40.0)],
    }
    cms = torch.zeros(2, 2, 24, 32)
    for (s, c), pts in spec.items():
        for pt in pts:
            cms[s, c] = torch.maximum(cms[s, c], _render([[list(pt)]])[0, 0])
    # A weak bump below the threshold is not a peak.
    cms[1, 0] = 0.1 * _render([[[20.0, 20.0]]])[0, 0]
    points, values, samples, channels = find_local_peaks(cms, threshold=0.2)
    assert points.shape == (5, 2)
    found: dict[tuple[int, int], list[tuple[float, float]]] = {}
    for (x, y), s, c in zip(points.tolist(), samples.tolist(), channels.tolist(), strict=True):
        found.setdefault((s, c), []).append((x * STRIDE, y * STRIDE))
    assert sorted(found) == sorted(spec)
    for key, pts in spec.items():
        got = sorted(found[key])
        assert len(got) == len(pts)
        for (gx, gy), (wx, wy) in zip(got, sorted(pts), strict=True):
            assert abs(gx - wx) < 0.1 and abs(gy - wy) < 0.1
    assert (values >= 0.2).all()
    keys = (samples * 2 + channels).tolist()
    assert keys == sorted(keys)  # ordered by sample, then channel


def test_local_peaks_empty_and_validation():
    points, values, samples, channels = find_local_peaks(torch.zeros(2, 3, 8, 8))
    assert points.shape == (0, 2) and values.shape == samples.shape == channels.shape == (0,)
    with pytest.raises(ValueError, match="refinement"):
        find_global_peaks(torch.zeros(1, 1, 4, 4), refinement="quadratic")
    with pytest.raises(ValueError, match="patch_size"):
        find_global_peaks(torch.zeros(1, 1, 4, 4), patch_size=4)


def test_local_peaks_plateau_gives_one_peak():
    """A Gaussian exactly between two cells makes a two-cell plateau: one peak, not two."""
    cms = torch.zeros(1, 1, 6, 6)
    cms[0, 0, 2, 2] = cms[0, 0, 2, 3] = 1.0  # horizontal tie
    cms[0, 0, 4, 0] = cms[0, 0, 5, 1] = 0.8  # diagonal tie
    pts, vals, _, _ = find_local_peaks(cms, threshold=0.5, refinement=None)
    assert len(pts) == 2
    assert sorted(vals.tolist()) == pytest.approx([0.8, 1.0])
