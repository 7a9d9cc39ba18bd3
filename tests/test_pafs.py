"""Part affinity field targets: unit vectors on the segment, zero elsewhere, overlaps averaged."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pipeline_lib.data.pafs import make_pafs

NAN = float("nan")


def _cells(grid_hw: tuple[int, int], stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Model-pixel x and y of every grid cell, each (h, w)."""
    ys, xs = np.mgrid[0 : grid_hw[0], 0 : grid_hw[1]]
    return xs * float(stride), ys * float(stride)


def test_horizontal_edge_fills_padded_rectangle_with_unit_vector() -> None:
    # src (8, 16) -> dst (40, 16), sigma 4: the field covers x in [4, 44], y in [12, 20].
    pts = torch.tensor([[[[8.0, 16.0], [40.0, 16.0]]]])
    pafs = make_pafs(pts, [(0, 1)], (16, 32), stride=2, sigma=4.0)
    assert pafs.shape == (1, 2, 16, 32)
    cx, cy = _cells((16, 32), 2)
    inside = (cx >= 4) & (cx <= 44) & (np.abs(cy - 16) <= 4)
    np.testing.assert_allclose(pafs[0, 0].numpy(), inside.astype(np.float32), atol=1e-6)
    np.testing.assert_allclose(pafs[0, 1].numpy(), 0.0, atol=1e-6)
    # Spot checks: on the segment, at the padded end, just beyond it, and far above it.
    assert pafs[0, 0, 8, 10].item() == pytest.approx(1.0)  # (20, 16)
    assert pafs[0, 0, 10, 22].item() == pytest.approx(1.0)  # (44, 20): corner, inclusive
    assert pafs[0, 0, 8, 23].item() == 0.0  # (46, 16): beyond end + sigma
    assert pafs[0, 0, 14, 10].item() == 0.0  # (20, 28): 12 px off the line


def test_diagonal_edge_vectors_are_unit_and_cover_the_segment() -> None:
    src, dst, sigma, stride, hw = (10.0, 12.0), (40.0, 52.0), 3.0, 2, (40, 40)
    pts = torch.tensor([[[src, dst]]])
    pafs = make_pafs(pts, torch.tensor([[0, 1]]), hw, stride=stride, sigma=sigma)[0].numpy()
    unit = np.array([30.0, 40.0]) / 50.0
    cx, cy = _cells(hw, stride)
    dx, dy = cx - src[0], cy - src[1]
    along = dx * unit[0] + dy * unit[1]
    across = np.abs(dx * unit[1] - dy * unit[0])
    on = np.abs(pafs).sum(axis=0) > 0
    # Every non-zero cell carries exactly the unit direction src -> dst.
    np.testing.assert_allclose(pafs[0][on], unit[0], atol=1e-6)
    np.testing.assert_allclose(pafs[1][on], unit[1], atol=1e-6)
    # Cells strictly inside the padded rectangle are on, cells clearly outside are off.
    strictly_in = (along > -sigma + 1e-3) & (along < 50 + sigma - 1e-3) & (across < sigma - 1e-3)
    clearly_out = (along < -sigma - 1e-3) | (along > 50 + sigma + 1e-3) | (across > sigma + 1e-3)
    assert strictly_in.sum() > 50
    assert on[strictly_in].all()
    assert not on[clearly_out].any()


def test_channel_order_is_edge_major_x_then_y() -> None:
    # Edge 0: node 0 -> 1 pointing +x; edge 1: node 1 -> 2 pointing +y.
    pts = torch.tensor([[[[4.0, 20.0], [30.0, 20.0], [30.0, 50.0]]]])
    pafs = make_pafs(pts, [(0, 1), (1, 2)], (32, 32), stride=2, sigma=2.0)[0]
    assert pafs.shape == (4, 32, 32)
    assert pafs[0, 10, 8].item() == pytest.approx(1.0) and pafs[1, 10, 8].item() == 0.0
    assert pafs[2, 18, 15].item() == 0.0 and pafs[3, 18, 15].item() == pytest.approx(1.0)
    # Edge 1's field does not leak into edge 0's channels where only edge 1 is present.
    assert pafs[0, 22, 15].item() == 0.0 and pafs[1, 22, 15].item() == 0.0


def test_overlapping_instances_average_their_vectors() -> None:
    # Instance 0 points +x along y=20, instance 1 points +y along x=20: they cross at (20, 20).
    # Instance 2 runs -x along y=40 over instance 3 running +x: the overlap cancels to zero.
    pts = torch.tensor(
        [
            [
                [[4.0, 20.0], [36.0, 20.0]],
                [[20.0, 4.0], [20.0, 36.0]],
                [[36.0, 40.0], [4.0, 40.0]],
                [[20.0, 40.0], [52.0, 40.0]],
            ]
        ]
    )
    pafs = make_pafs(pts, [(0, 1)], (32, 32), stride=2, sigma=1.0)[0]
    assert pafs[:, 10, 10].tolist() == pytest.approx([0.5, 0.5])  # the crossing
    assert pafs[:, 10, 4].tolist() == pytest.approx([1.0, 0.0])  # instance 0 alone
    assert pafs[:, 4, 10].tolist() == pytest.approx([0.0, 1.0])  # instance 1 alone
    assert pafs[:, 20, 14].tolist() == pytest.approx([0.0, 0.0])  # (28, 40): opposite, cancel
    assert pafs[:, 20, 4].tolist() == pytest.approx([-1.0, 0.0])  # (8, 40): instance 2 alone
    assert pafs[:, 20, 22].tolist() == pytest.approx([1.0, 0.0])  # (44, 40): instance 3 alone
    # Two identical instances still give unit vectors (the average, not the sum).
    twice = make_pafs(pts[:, :1].repeat(1, 2, 1, 1), [(0, 1)], (32, 32), stride=2, sigma=1.0)
    torch.testing.assert_close(twice, make_pafs(pts[:, :1], [(0, 1)], (32, 32), 2, 1.0))


def test_missing_and_degenerate_edges_draw_nothing() -> None:
    pts = torch.tensor(
        [
            [
                [[10.0, 10.0], [NAN, NAN], [30.0, 10.0]],  # edge 0 missing its dst
                [[NAN, 5.0], [20.0, 20.0], [20.0, 20.0]],  # half-NaN src; edge 1 zero length
                [[NAN, NAN], [NAN, NAN], [NAN, NAN]],  # padding instance
            ]
        ]
    )
    pafs = make_pafs(pts, [(0, 1), (1, 2)], (16, 16), stride=2, sigma=3.0)
    assert torch.isfinite(pafs).all()
    assert pafs.abs().sum().item() == 0.0
    # Zero instances give zeros of the right shape.
    empty = make_pafs(torch.zeros((2, 0, 3, 2)), [(0, 1)], (8, 9), stride=4, sigma=2.0)
    assert empty.shape == (2, 2, 8, 9) and empty.abs().sum().item() == 0.0


def test_batch_samples_are_independent_and_dtype_follows_request() -> None:
    a = torch.tensor([[[4.0, 8.0], [28.0, 8.0]]])
    b = torch.tensor([[[16.0, 4.0], [16.0, 28.0]]])
    both = make_pafs(torch.stack([a, b]), [(0, 1)], (16, 16), 2, 2.0, dtype=torch.float64)
    assert both.dtype == torch.float64
    torch.testing.assert_close(both[0], make_pafs(a[None], [(0, 1)], (16, 16), 2, 2.0).double()[0])
    torch.testing.assert_close(both[1], make_pafs(b[None], [(0, 1)], (16, 16), 2, 2.0).double()[0])
    norms = torch.linalg.vector_norm(both.reshape(2, 2, -1), dim=1)
    assert set(torch.unique(norms).tolist()) <= {0.0, 1.0}


def test_rejects_bad_inputs() -> None:
    pts = torch.zeros((1, 1, 2, 2))
    with pytest.raises(ValueError, match="B, I, N, 2"):
        make_pafs(torch.zeros((1, 2, 2)), [(0, 1)], (4, 4), 1, 1.0)
    with pytest.raises(ValueError, match="sigma"):
        make_pafs(pts, [(0, 1)], (4, 4), 1, 0.0)
    with pytest.raises(ValueError, match="outside"):
        make_pafs(pts, [(0, 2)], (4, 4), 1, 1.0)


def test_unit_vector_matches_direction_for_random_edges() -> None:
    gen = torch.Generator().manual_seed(0)
    pts = torch.rand((3, 2, 2, 2), generator=gen) * 60.0
    pafs = make_pafs(pts, [(0, 1)], (32, 32), stride=2, sigma=2.5)
    for bi in range(3):
        for ii in range(2):
            src, dst = pts[bi, ii, 0], pts[bi, ii, 1]
            d = (dst - src) / torch.linalg.vector_norm(dst - src)
            # The cell nearest the segment midpoint is covered by this instance (and maybe the
            # other): its vector has a positive component along this instance's direction
            # unless the other instance points the opposite way, so check against the average.
            mid = (src + dst) / 2
            j, i = round(mid[0].item() / 2), round(mid[1].item() / 2)
            if not (0 <= i < 32 and 0 <= j < 32):
                continue
            v = pafs[bi, :, i, j]
            other = pts[bi, 1 - ii]
            od = (other[1] - other[0]) / torch.linalg.vector_norm(other[1] - other[0])
            candidates = [d, (d + od) / 2]
            assert any(torch.allclose(v, c, atol=1e-5) for c in candidates), (v, candidates)
    norms = torch.linalg.vector_norm(pafs.reshape(3, 2, 32, 32), dim=1)
    assert float(norms.max()) <= 1.0 + 1e-6
    assert math.isclose(float(norms.max()), 1.0, rel_tol=1e-6)
