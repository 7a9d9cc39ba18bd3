"""The coordinate chain: frame -> model input -> output grid -> frame, and crops."""

import numpy as np
import pytest

from pipeline_lib.data.instances import (
    auto_crop_size,
    crop_offsets,
    extract_crops,
    instance_anchors,
)
from pipeline_lib.data.transforms import coerce_channels, make_transform


def _blob(hw, cx, cy, sigma=10.0):
    yy, xx = np.mgrid[: hw[0], : hw[1]]
    return (np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2)) * 250).astype(np.float32)[
        ..., None
    ]


def _centroid(img):
    ys, xs = np.mgrid[: img.shape[0], : img.shape[1]]
    w = img[..., 0]
    return np.array([(xs * w).sum() / w.sum(), (ys * w).sum() / w.sum()])


@pytest.mark.parametrize(
    "frame_hw,scale,max_hw",
    [
        ((300, 400), 1.0, (None, None)),
        ((1024, 1000), 0.5, (512, 512)),
        ((240, 320), 0.75, (None, None)),
        ((200, 300), 1.0, (400, 400)),
    ],
)
def test_points_follow_pixels_through_resize_and_pad(frame_hw, scale, max_hw):
    tf = make_transform(
        frame_hw, scale=scale, max_stride=16, max_height=max_hw[0], max_width=max_hw[1]
    )
    assert tf.model_hw[0] % 16 == 0 and tf.model_hw[1] % 16 == 0
    cx, cy = frame_hw[1] * 0.41 + 0.3, frame_hw[0] * 0.57 + 0.7
    model_img = tf.image_to_model(_blob(frame_hw, cx, cy, sigma=12.0))
    assert model_img.shape[:2] == tf.model_hw
    np.testing.assert_allclose(
        _centroid(model_img), tf.points_to_model(np.array([cx, cy])), atol=0.05
    )


def test_round_trip_through_output_stride_and_crop_offset():
    tf = make_transform((1024, 1000), scale=0.5, max_stride=16, max_height=512, max_width=512)
    frame_pts = np.array([[10.0, 20.0], [999.0, 1023.0], [np.nan, np.nan], [500.25, 300.75]])
    model_pts = tf.points_to_model(frame_pts)
    stride, offset = 4, np.array([32.0, 48.0])
    grid_pts = (model_pts - offset) / stride
    back = tf.points_to_frame(grid_pts, output_stride=stride, crop_offset=offset)
    np.testing.assert_allclose(back, frame_pts, atol=1e-9)
    assert np.isnan(back[2]).all()


def test_identity_transform_is_exact():
    tf = make_transform((64, 48), scale=1.0, max_stride=16)
    pts = np.array([[3.25, 7.5]])
    np.testing.assert_array_equal(tf.points_to_model(pts), pts)
    assert tf.model_hw == (64, 48)


def test_bad_sizes_are_rejected():
    with pytest.raises(ValueError, match="scale"):
        make_transform((10, 10), scale=0)
    tf = make_transform((10, 10))
    with pytest.raises(ValueError, match="does not match"):
        tf.image_to_model(np.zeros((12, 10, 1), np.uint8))


def test_channel_coercion():
    gray = np.full((4, 4, 1), 100, np.uint8)
    assert coerce_channels(gray, ensure_rgb=True).shape == (4, 4, 3)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 1] = 200
    out = coerce_channels(rgb, ensure_grayscale=True)
    assert out.shape == (4, 4, 1) and out[0, 0, 0] == round(200 * 0.587)
    with pytest.raises(ValueError, match="both"):
        coerce_channels(rgb, ensure_rgb=True, ensure_grayscale=True)


def test_crops_are_slices_and_map_back():
    img = np.arange(100 * 120, dtype=np.int64).reshape(100, 120, 1)
    centers = np.array([[60.4, 50.6], [2.0, 3.0]])
    offs = crop_offsets(centers, 16)
    crops = extract_crops(img, offs, 16)
    x0, y0 = offs[0]
    np.testing.assert_array_equal(crops[0], img[y0 : y0 + 16, x0 : x0 + 16])
    # Out-of-frame parts of a crop are zero, in-frame parts still line up.
    x0, y0 = offs[1]
    assert crops[1][-y0, -x0, 0] == img[0, 0, 0] and crops[1][0, 0, 0] == 0


def test_anchors_and_auto_crop_size():
    pts = np.array([[[10, 10], [30, 10], [np.nan, np.nan]], [[np.nan, np.nan]] * 3])
    anchors = instance_anchors(pts, anchor_index=2)  # anchor node missing -> bbox midpoint
    np.testing.assert_allclose(anchors[0], [20, 10])
    assert np.isnan(anchors[1]).all()
    size = auto_crop_size([pts[0]], max_stride=16, min_crop_size=0, crop_padding=0, rotation=False)
    assert size == 32  # 20 px rounded up to the stride
    assert auto_crop_size([pts[0]], 16, 100) == 112
