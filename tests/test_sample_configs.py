"""Each of the eleven sample configurations of the sleap-nn config guide trains for a few steps
on real fly data and predicts on a video (sizes reduced so the whole file runs in about a minute).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import yaml

from pipeline_lib.data.cache import build_image_cache
from pipeline_lib.data.split import split_labels
from pipeline_lib.inference.predict import predict_video
from pipeline_lib.training.run_dir import load_trained_model
from pipeline_lib.training.train import train_model

pytestmark = pytest.mark.slow

SAMPLES = "sleap_nn_assets/sample_configs"
FLIES = "dreem_assets/sleap"
# Model-input scale per model type: small inputs keep CPU steps fast.
SCALE = {"centered_instance": 0.5, "multi_class_topdown": 0.5}


def _shrink(src: Path, dst: Path) -> Path:
    cfg = yaml.safe_load(src.read_text())
    head = next(k for k, v in cfg["model_config"]["head_configs"].items() if v is not None)
    cfg["data_config"]["preprocessing"]["scale"] = SCALE.get(head, 0.25)
    backbones = cfg["model_config"]["backbone_config"]
    if backbones.get("unet"):
        backbones["unet"]["filters"] = 8
    if backbones.get("convnext"):
        backbones["convnext"]["arch"] = {"depths": [1, 1, 1, 1], "channels": [8, 16, 32, 64]}
    if backbones.get("swint"):
        backbones["swint"]["arch"] = {
            "embed": 16,
            "depths": [1, 1, 1, 1],
            "num_heads": [1, 2, 2, 4],
        }
    tc = cfg["trainer_config"]
    tc.update(
        {"max_epochs": 1, "train_steps_per_epoch": 2, "enable_progress_bar": False, "seed": 0}
    )
    tc["train_data_loader"]["batch_size"] = 2
    tc["val_data_loader"]["batch_size"] = 2
    tc["zmq"] = {"publish_port": None, "controller_port": None, "controller_polling_timeout": 10}
    dst.write_text(yaml.safe_dump(cfg))
    return dst


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory):
    """Splits and caches of single_fly and two_flies, made once for the module."""
    tmp = tmp_path_factory.mktemp("samples")
    out = {}
    for name in ("single_fly", "two_flies"):
        splits = {k: tmp / name / f"{k}.slp" for k in ("train", "val", "test")}
        split_labels(
            [shared_data / FLIES / f"{name}.slp"], *splits.values(), 0.05, 0.0, None, 0, True
        )
        build_image_cache({k: str(splits[k]) for k in ("train", "val")}, tmp / name / "cache", 2)
        out[name] = (splits, tmp / name / "cache")
    return tmp, out


def _train(data, shared_data, config: str, dataset: str) -> Path:
    tmp, sets = data
    splits, cache = sets[dataset]
    run = tmp / "runs" / config.removesuffix(".yaml")
    if not (run / "best.ckpt").exists():
        cfg = _shrink(shared_data / SAMPLES / config, tmp / config)
        train_model(cfg, splits["train"], splits["val"], cache, run, threads=2)
    return run


def _predict(tmp: Path, runs: list[Path], video: Path, name: str, **options) -> sio.Labels:
    out = tmp / f"{name}.pred.slp"
    # A couple of training steps give weak maps: accept every peak (and, bottom-up, every
    # connection) to exercise the plumbing; accuracy is measured in bench/.
    opts = {"peak_threshold": -1.0, "max_instances": 2, **options}
    summary = predict_video(runs, video, out, opts, 2, "0-3")
    assert summary["n_frames"] == 4
    pred = sio.load_slp(str(out), open_videos=False)
    assert pred.labeled_frames, "no instances predicted"
    assert {lf.frame_idx for lf in pred.labeled_frames} <= {0, 1, 2, 3}
    return pred


@pytest.mark.parametrize(
    "config",
    ["config_single_instance_unet_medium_rf.yaml", "config_single_instance_unet_large_rf.yaml"],
)
def test_single_instance(data, shared_data, config):
    run = _train(data, shared_data, config, "single_fly")
    pred = _predict(data[0], [run], shared_data / FLIES / "single_fly.mp4", config)
    assert all(len(lf.instances) == 1 for lf in pred.labeled_frames)


@pytest.mark.parametrize(
    "centroid,centered",
    [
        ("config_centroid_unet.yaml", "config_topdown_centered_instance_unet_medium_rf.yaml"),
        ("config_centroid_swint.yaml", "config_topdown_centered_instance_unet_large_rf.yaml"),
    ],
)
def test_top_down(data, shared_data, centroid, centered):
    runs = [_train(data, shared_data, c, "two_flies") for c in (centroid, centered)]
    pred = _predict(data[0], runs, shared_data / FLIES / "two_flies.mp4", centroid + centered)
    assert pred.labeled_frames and all(len(lf.instances) <= 2 for lf in pred.labeled_frames)


def test_top_down_multi_class_names_animals(data, shared_data):
    runs = [
        _train(data, shared_data, "config_centroid_unet.yaml", "two_flies"),
        _train(
            data, shared_data, "config_topdown_multi_class_centered_instance_unet.yaml", "two_flies"
        ),
    ]
    assert load_trained_model(runs[1]).classes == ["F", "M"] or sorted(
        load_trained_model(runs[1]).classes
    ) == ["F", "M"]
    pred = _predict(data[0], runs, shared_data / FLIES / "two_flies.mp4", "mct")
    for lf in pred.labeled_frames:
        names = [i.track.name for i in lf.instances if i.track is not None]
        assert len(names) == len(set(names)) and set(names) <= {"F", "M"}
    assert any(i.track is not None for lf in pred.labeled_frames for i in lf.instances)


@pytest.mark.parametrize(
    "config",
    [
        "config_bottomup_unet_medium_rf.yaml",
        "config_bottomup_unet_large_rf.yaml",
        "config_bottomup_convnext.yaml",
    ],
)
def test_bottom_up(data, shared_data, config):
    run = _train(data, shared_data, config, "two_flies")
    pred = _predict(
        data[0],
        [run],
        shared_data / FLIES / "two_flies.mp4",
        config,
        min_line_scores=-2.0,
        dist_penalty_weight=0.0,
    )
    for lf in pred.labeled_frames:
        for inst in lf.instances:
            pts = inst.numpy()
            assert pts.shape == (13, 2)
            assert np.isfinite(pts).any()


def test_multi_class_bottom_up_names_animals(data, shared_data):
    run = _train(data, shared_data, "config_multi_class_bottomup_unet.yaml", "two_flies")
    pred = _predict(data[0], [run], shared_data / FLIES / "two_flies.mp4", "mcb")
    names = {i.track.name for lf in pred.labeled_frames for i in lf.instances if i.track}
    assert names and names <= {"F", "M"}
