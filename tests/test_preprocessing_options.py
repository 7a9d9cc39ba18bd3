"""Each ``data_config.preprocessing`` option shapes what the model is trained on.

Goes through the trainer's own path (``resolve_config`` → sample index → streamed sample), on
real videos: grayscale flies (1024x1024) and the RGB robot (560x320).
"""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import yaml

from pipeline_lib.config import config_to_dict, load_training_config
from pipeline_lib.data.datasets import StreamingPoseDataset, index_samples
from pipeline_lib.data.frame_source import VideoFrameSource
from pipeline_lib.io.labels import load_labels
from pipeline_lib.training.train import resolve_config

SAMPLES = "sleap_nn_assets/sample_configs"


def _config(shared_data: Path, tmp_path: Path, name: str, **pre) -> dict:
    src = shared_data / SAMPLES / name
    cfg = yaml.safe_load(src.read_text())
    cfg["data_config"]["preprocessing"].update(pre)
    cfg["data_config"]["use_augmentations_train"] = False
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return config_to_dict(load_training_config(path))


def _first_sample(cfg: dict, labels_path: Path, tmp_path: Path):
    labels = load_labels(labels_path)
    source = VideoFrameSource(labels)
    resolved, spec = resolve_config(
        copy.deepcopy(cfg), labels, source.shapes, tmp_path / "run", str(labels_path), "val"
    )
    ds = StreamingPoseDataset(source, index_samples(labels, spec, source.shapes), spec)
    return resolved, ds[0]


@pytest.fixture()
def fly(shared_data) -> Path:
    return shared_data / "dreem_assets/sleap/single_fly.slp"


@pytest.fixture()
def robot(shared_data) -> Path:
    return shared_data / "sleap_nn_assets/datasets/small_robot_minimal.slp"


SINGLE = "config_single_instance_unet_medium_rf.yaml"
CENTERED = "config_topdown_centered_instance_unet_medium_rf.yaml"


def test_scale_resizes_samples_and_points(shared_data, tmp_path, fly):
    full_cfg = _config(shared_data, tmp_path, SINGLE, scale=1.0)
    half_cfg = _config(shared_data, tmp_path, SINGLE, scale=0.5)
    _, full = _first_sample(full_cfg, fly, tmp_path)
    _, half = _first_sample(half_cfg, fly, tmp_path)
    assert tuple(full["image"].shape) == (1, 1024, 1024)
    assert tuple(half["image"].shape) == (1, 512, 512)
    # half-pixel convention: x_half = (x_full + 0.5) * 0.5 - 0.5
    expected = (full["points"] + 0.5) * 0.5 - 0.5
    assert np.allclose(half["points"].numpy(), expected.numpy(), equal_nan=True, atol=1e-4)


def test_ensure_rgb_and_ensure_grayscale_set_channels(shared_data, tmp_path, fly, robot):
    resolved, sample = _first_sample(
        _config(shared_data, tmp_path, SINGLE, ensure_rgb=True, scale=0.25), fly, tmp_path
    )
    assert resolved["model_config"]["backbone_config"]["unet"]["in_channels"] == 3
    assert sample["image"].shape[0] == 3
    assert bool((sample["image"][0] == sample["image"][2]).all())  # gray copied to 3 channels

    resolved, sample = _first_sample(_config(shared_data, tmp_path, SINGLE), robot, tmp_path)
    assert resolved["model_config"]["backbone_config"]["unet"]["in_channels"] == 3
    assert sample["image"].shape[0] == 3
    resolved, sample = _first_sample(
        _config(shared_data, tmp_path, SINGLE, ensure_grayscale=True), robot, tmp_path
    )
    assert resolved["model_config"]["backbone_config"]["unet"]["in_channels"] == 1
    assert sample["image"].shape[0] == 1


def test_max_height_and_width_pad_to_a_common_size(shared_data, tmp_path, robot):
    _, plain = _first_sample(_config(shared_data, tmp_path, SINGLE), robot, tmp_path)
    assert tuple(plain["image"].shape[1:]) == (320, 560)
    _, padded = _first_sample(
        _config(shared_data, tmp_path, SINGLE, max_height=400, max_width=600), robot, tmp_path
    )
    # Size-matched like sleap-nn: resized to fit 400x600 keeping the aspect ratio (x 600/560),
    # padded bottom/right to 400x600, then to a multiple of max_stride 16.
    assert tuple(padded["image"].shape[1:]) == (400, 608)
    eff = 600 / 560
    expected = (plain["points"].numpy() + 0.5) * eff - 0.5
    assert np.allclose(padded["points"].numpy(), expected, equal_nan=True, atol=1e-3)
    assert (
        int(padded["image"][:, 344:, :].sum()) == 0 and int(padded["image"][:, :, 600:].sum()) == 0
    )


def test_crop_size_explicit_and_automatic_with_min_crop_size(shared_data, tmp_path, fly):
    resolved, sample = _first_sample(
        _config(shared_data, tmp_path, CENTERED, crop_size=160), fly, tmp_path
    )
    assert resolved["data_config"]["preprocessing"]["crop_size"] == 160
    assert tuple(sample["image"].shape[1:]) == (160, 160)
    auto_cfg = _config(shared_data, tmp_path, CENTERED, crop_size=None, min_crop_size=0)
    resolved, _ = _first_sample(auto_cfg, fly, tmp_path)
    auto = resolved["data_config"]["preprocessing"]["crop_size"]
    assert auto % 16 == 0 and 32 <= auto < 400  # from the largest fly, not the frame
    big_min_cfg = _config(shared_data, tmp_path, CENTERED, crop_size=None, min_crop_size=400)
    resolved, sample = _first_sample(big_min_cfg, fly, tmp_path)
    assert resolved["data_config"]["preprocessing"]["crop_size"] == 400
    assert tuple(sample["image"].shape[1:]) == (400, 400)
    with pytest.raises(ValueError, match="multiple of max_stride"):
        _first_sample(_config(shared_data, tmp_path, CENTERED, crop_size=150), fly, tmp_path)
