"""Batched augmentation: identity at p=0, determinism, pixels and points moved together."""

from __future__ import annotations

import math

import pytest
import torch
import yaml

from pipeline_lib.data.augmentation import augment_batch
from pipeline_lib.data.confmaps import make_confmaps
from pipeline_lib.inference.peaks import find_global_peaks

ALL_OFF = {
    "intensity": {
        "uniform_noise_p": 0.0,
        "gaussian_noise_p": 0.0,
        "contrast_p": 0.0,
        "brightness_p": 0.0,
    },
    "geometric": {
        "rotation_min": -90.0,
        "rotation_max": 90.0,
        "affine_p": 0.0,
        "erase_p": 0.0,
        "mixup_p": 0.0,
    },
}
EVERYTHING = {
    "intensity": {
        "uniform_noise_max": 0.1,
        "uniform_noise_p": 0.5,
        "gaussian_noise_std": 0.05,
        "gaussian_noise_p": 0.5,
        "contrast_p": 0.5,
        "brightness_min": 0.8,
        "brightness_max": 1.2,
        "brightness_p": 0.5,
    },
    "geometric": {
        "translate_width": 0.1,
        "translate_height": 0.1,
        "affine_p": 0.5,
        "erase_p": 0.5,
        "mixup_p": 0.5,
    },
}


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(b=4, h=32, w=48, n_inst=2, n_nodes=3, seed=0):
    g = _gen(seed)
    images = torch.rand(b, 1, h, w, generator=g)
    points = torch.rand(b, n_inst, n_nodes, 2, generator=g) * torch.tensor([w - 1, h - 1])
    points[0, 1] = float("nan")
    return images, points


@pytest.mark.parametrize("aug", [None, {"intensity": None, "geometric": None}, ALL_OFF])
def test_probability_zero_is_bitwise_identity(aug):
    images, points = _batch()
    out_images, out_points = augment_batch(images, points, aug, _gen(1))
    assert torch.equal(out_images, images)
    assert out_points.shape == points.shape
    assert torch.equal(torch.isnan(out_points), torch.isnan(points))
    assert torch.equal(torch.nan_to_num(out_points), torch.nan_to_num(points))


def test_sample_config_with_probabilities_zeroed_is_identity(shared_data):
    path = (
        shared_data
        / "sleap_nn_assets"
        / "sample_configs"
        / "config_single_instance_unet_medium_rf.yaml"
    )
    aug = yaml.safe_load(path.read_text())["data_config"]["augmentation_config"]
    for section in aug.values():
        for key in section:
            if key.endswith("_p"):
                section[key] = 0.0
    images, points = _batch()
    out_images, out_points = augment_batch(images, points, aug, _gen(0))
    assert torch.equal(out_images, images)
    assert torch.equal(torch.nan_to_num(out_points), torch.nan_to_num(points))


def test_seeded_generator_is_deterministic_and_inputs_untouched():
    images, points = _batch()
    before = images.clone(), points.clone()
    a = augment_batch(images, points, EVERYTHING, _gen(5))
    b = augment_batch(images, points, EVERYTHING, _gen(5))
    c = augment_batch(images, points, EVERYTHING, _gen(6))
    assert torch.equal(a[0], b[0])
    assert torch.equal(torch.nan_to_num(a[1]), torch.nan_to_num(b[1]))
    assert not torch.equal(a[0], c[0])
    assert torch.equal(images, before[0])
    assert torch.equal(torch.nan_to_num(points), torch.nan_to_num(before[1]))
    assert a[0].min() >= 0 and a[0].max() <= 1


def test_dot_follows_its_keypoint_under_rotation_scale_translation():
    b, h, w = 6, 64, 80
    g = _gen(2)
    centre = torch.stack(
        (torch.rand(b, generator=g) * 40 + 20, torch.rand(b, generator=g) * 30 + 17), dim=-1
    )
    images = make_confmaps(centre[:, None], (h, w), stride=1, sigma=1.5)  # bright dots
    points = centre[:, None, None].clone()  # (B, I=1, N=1, 2)
    aug = {
        "geometric": {
            "rotation_min": -180.0,
            "rotation_max": 180.0,
            "scale_min": 0.8,
            "scale_max": 1.2,
            "translate_width": 0.1,
            "translate_height": 0.1,
            "affine_p": 1.0,
        }
    }
    out_images, out_points = augment_batch(images, points, aug, _gen(3))
    assert not torch.allclose(out_points, points)
    found, values = find_global_peaks(out_images, threshold=0.3, patch_size=7)
    error = (found[:, 0] - out_points[:, 0, 0]).norm(dim=-1)
    assert (values > 0.5).all()
    assert error.max() < 0.5, error


def test_rotation_by_90_degrees_matches_rot90_exactly():
    """Checks the centre / align_corners convention: a square grid maps onto itself."""
    images = torch.rand(2, 3, 16, 16, generator=_gen(0))
    points = torch.tensor([[[[3.0, 1.0], [15.0, 0.0]]], [[[7.5, 7.5], [0.0, 15.0]]]])
    aug = {
        "geometric": {
            "rotation_min": 90.0,
            "rotation_max": 90.0,
            "scale_min": 1.0,
            "scale_max": 1.0,
            "affine_p": 1.0,
        }
    }
    out_images, out_points = augment_batch(images, points, aug)
    assert torch.allclose(out_images, torch.rot90(images, 1, dims=(-2, -1)), atol=1e-5)
    # Counter-clockwise on screen: (x, y) -> (y, 15 - x) for a 16 x 16 image.
    want = torch.stack((points[..., 1], 15 - points[..., 0]), dim=-1)
    assert torch.allclose(out_points, want, atol=1e-5)


def test_rotation_p_and_scale_p_are_independent_and_affine_p_governs_translation():
    images, points = _batch(b=8)
    c = torch.tensor([(48 - 1) / 2, (32 - 1) / 2])
    # Only scale (rotation_p None -> rotation bundled with translation under affine_p = 0).
    aug = {
        "geometric": {
            "scale_min": 1.5,
            "scale_max": 1.5,
            "scale_p": 1.0,
            "translate_width": 0.2,
            "affine_p": 0.0,
        }
    }
    _, out = augment_batch(images, points, aug, _gen(0))
    assert torch.allclose(
        torch.nan_to_num(out), torch.nan_to_num(c + 1.5 * (points - c)), atol=1e-4
    )
    # Rotation always, scale never: distances to the centre are preserved, positions change.
    aug = {
        "geometric": {
            "rotation_min": 10.0,
            "rotation_max": 80.0,
            "rotation_p": 1.0,
            "scale_min": 2.0,
            "scale_max": 2.0,
            "scale_p": 0.0,
            "affine_p": 0.0,
        }
    }
    _, out = augment_batch(images, points, aug, _gen(0))
    valid = ~torch.isnan(points[..., 0])
    assert torch.allclose(
        (out - c).norm(dim=-1)[valid], (points - c).norm(dim=-1)[valid], atol=1e-4
    )
    assert ((out - points).norm(dim=-1)[valid] > 1e-3).any()
    # affine_p = 1 with rotation_p / scale_p set: pure translation on top, within the range.
    aug = {
        "geometric": {
            "rotation_p": 0.0,
            "scale_p": 0.0,
            "translate_width": 0.25,
            "translate_height": 0.0,
            "affine_p": 1.0,
        }
    }
    _, out = augment_batch(images, points, aug, _gen(0))
    shift = (out - points)[valid]
    assert torch.allclose(shift[:, 1], torch.zeros_like(shift[:, 1]), atol=1e-4)
    assert (shift[:, 0].abs() <= 0.25 * 48 + 1e-4).all() and (shift[:, 0].abs() > 0).any()


def test_partial_probability_leaves_unselected_samples_bitwise_equal():
    images, points = _batch(b=16)
    aug = {"geometric": {"rotation_min": 30.0, "rotation_max": 30.0, "affine_p": 0.5}}
    out_images, out_points = augment_batch(images, points, aug, _gen(4))
    same = [torch.equal(out_images[i], images[i]) for i in range(16)]
    assert 0 < sum(same) < 16
    for i in range(16):
        moved = not torch.equal(torch.nan_to_num(out_points[i]), torch.nan_to_num(points[i]))
        assert moved != same[i]


def test_intensity_operations():
    images = torch.full((3, 1, 8, 8), 0.4)
    images[:, :, :4] = 0.6
    points = torch.rand(3, 1, 2, 2)
    out, out_pts = augment_batch(
        images,
        points,
        {"intensity": {"brightness_min": 0.5, "brightness_max": 0.5, "brightness_p": 1.0}},
    )
    assert torch.allclose(out, images * 0.5)
    assert torch.equal(out_pts, points)
    out, _ = augment_batch(
        images, points, {"intensity": {"contrast_min": 2.0, "contrast_max": 2.0, "contrast_p": 1.0}}
    )
    assert torch.allclose(out.mean(dim=(1, 2, 3)), images.mean(dim=(1, 2, 3)))
    assert torch.allclose(out.amax() - out.amin(), torch.tensor(0.4))
    out, _ = augment_batch(
        images,
        points,
        {"intensity": {"uniform_noise_min": 0.0, "uniform_noise_max": 0.8, "uniform_noise_p": 1.0}},
        _gen(0),
    )
    assert (out >= images).all() and out.max() <= 1.0 and (out == 1.0).any()
    out, _ = augment_batch(
        images,
        points,
        {
            "intensity": {
                "gaussian_noise_mean": 0.0,
                "gaussian_noise_std": 0.5,
                "gaussian_noise_p": 1.0,
            }
        },
        _gen(0),
    )
    assert out.min() >= 0.0 and out.max() <= 1.0 and (out == 0.0).any()


def test_random_erase_blanks_one_rectangle():
    images = torch.ones(4, 2, 20, 20)
    points = torch.rand(4, 1, 3, 2)
    aug = {
        "geometric": {
            "erase_scale_min": 0.04,
            "erase_scale_max": 0.04,
            "erase_ratio_min": 1.0,
            "erase_ratio_max": 1.0,
            "erase_p": 1.0,
        }
    }
    out, out_pts = augment_batch(images, points, aug, _gen(0))
    for i in range(4):
        zero = (out[i, 0] == 0).nonzero()
        assert zero.shape[0] == 16  # 4 x 4 = 4% of 400 pixels
        assert (zero.amax(0) - zero.amin(0)).tolist() == [3, 3]
        assert torch.equal(out[i, 0] == 0, out[i, 1] == 0)
    assert torch.equal(out_pts, points)


def test_mixup_blends_with_another_sample_and_appends_its_points():
    b = 3
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, 8, 8) / 4
    points = torch.arange(b * 2 * 2 * 2, dtype=torch.float32).view(b, 2, 2, 2)
    aug = {"geometric": {"mixup_lambda_min": 0.25, "mixup_lambda_max": 0.25, "mixup_p": 1.0}}
    out, out_pts = augment_batch(images, points, aug, _gen(0))
    assert out_pts.shape == (b, 4, 2, 2)
    assert torch.equal(out_pts[:, :2], points)
    for i in range(b):
        partner = int(out_pts[i, 2, 0, 0].item()) // 8
        assert partner != i
        assert torch.equal(out_pts[i, 2:], points[partner])
        assert torch.allclose(out[i], 0.75 * images[i] + 0.25 * images[partner])
    # Never mixed samples get NaN extra instances; a batch of one cannot be mixed.
    aug["geometric"]["mixup_p"] = 1e-9
    _, out_pts = augment_batch(images, points, aug, _gen(0))
    assert out_pts.shape == (b, 4, 2, 2) and torch.isnan(out_pts[:, 2:]).all()
    out, out_pts = augment_batch(images[:1], points[:1], aug, _gen(0))
    assert out_pts.shape == (1, 2, 2, 2)


def test_config_errors():
    images, points = _batch()
    with pytest.raises(ValueError, match="roration_max"):
        augment_batch(images, points, {"geometric": {"roration_max": 15.0}})
    with pytest.raises(ValueError, match="Unknown"):
        augment_batch(images, points, {"geometric": None, "colour": {}})
    with pytest.raises(ValueError, match="points"):
        augment_batch(images, points[:, 0], None)


def test_float64_points_and_half_images_keep_dtypes():
    images = torch.rand(2, 1, 16, 16).half()
    points = torch.rand(2, 1, 2, 2, dtype=torch.float64) * 15
    aug = {
        "geometric": {
            "rotation_min": 45.0,
            "rotation_max": 45.0,
            "scale_min": 1.0,
            "scale_max": 1.0,
            "affine_p": 1.0,
        }
    }
    out, out_pts = augment_batch(images, points, aug)
    assert out.dtype == torch.float16 and out_pts.dtype == torch.float64
    c = 7.5
    angle = math.radians(45.0)
    x, y = points[..., 0] - c, points[..., 1] - c
    want = torch.stack(
        (
            c + math.cos(angle) * x + math.sin(angle) * y,
            c - math.sin(angle) * x + math.cos(angle) * y,
        ),
        dim=-1,
    )
    assert torch.allclose(out_pts, want, atol=1e-9)
