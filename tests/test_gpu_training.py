"""Training, resuming and predicting on a CUDA GPU (``gpu`` marker; bench/gpu_check/run.sh).

Every CUDA path of training and prediction had only ever run on CPUs: the default precision
chosen for a GPU, Lightning on the cuda accelerator, checkpoints saved from GPU tensors and
loaded again (resume on the GPU, prediction on either device), peak finding and PAF grouping on
GPU outputs. These tests run a few real steps of each on the fly data. Without CUDA they skip,
saying why (``gpu_device`` in conftest.py); the GPU check's rehearsal runs their bodies on the
CPU so that their data and code paths are proven before a lent GPU is spent on them.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import torch
import yaml

from pipeline_lib.data.cache import build_image_cache
from pipeline_lib.data.split import split_labels
from pipeline_lib.devices import resolve_precision
from pipeline_lib.inference.predict import predict_video
from pipeline_lib.training.train import train_model

pytestmark = pytest.mark.gpu

SAMPLES = Path("sleap_nn_assets/sample_configs")
STEPS = 3  # training steps per epoch


def small_config(sample: Path, out: Path, device: str, epochs: int = 2, **pre) -> Path:
    """A sleap-nn sample config made small (8-filter UNet, ``epochs`` x 3 steps of 4 images)
    that trains on ``device`` and keeps ``last.ckpt`` for a resume."""
    cfg = yaml.safe_load(sample.read_text())
    cfg["data_config"]["preprocessing"].update(pre)
    cfg["model_config"]["backbone_config"]["unet"].update({"filters": 8, "max_stride": 16})
    tc = cfg["trainer_config"]
    tc.update(
        {
            "max_epochs": epochs,
            "min_train_steps_per_epoch": STEPS,
            "train_steps_per_epoch": STEPS,
            "enable_progress_bar": False,
            "save_ckpt": True,
            "seed": 0,
            "trainer_accelerator": device,
            "trainer_devices": 1,
        }
    )
    tc["model_ckpt"]["save_last"] = True
    tc["early_stopping"]["stop_training_on_plateau"] = False
    tc["train_data_loader"]["batch_size"] = 4
    out.write_text(yaml.safe_dump(cfg))
    return out


def log_rows(run_dir: Path) -> list[dict[str, str]]:
    with (run_dir / "training_log.csv").open() as fh:
        return list(csv.DictReader(fh))


def checkpoint_device(run_dir: Path) -> str:
    """Device type of the weights as saved: Lightning keeps them where training ran."""
    state = torch.load(run_dir / "best.ckpt", weights_only=True)["state_dict"]
    return next(iter(state.values())).device.type


@pytest.fixture(scope="module")
def flies(shared_data: Path, tmp_path_factory) -> dict[str, Path]:
    """Seeded split of the two-fly labels with its decoded-frame cache."""
    tmp = tmp_path_factory.mktemp("gpu_flies")
    splits = {k: tmp / f"{k}.slp" for k in ("train", "val", "test")}
    split_labels(
        [shared_data / "dreem_assets/sleap/two_flies.slp"],
        splits["train"],
        splits["val"],
        splits["test"],
        0.1,
        0.05,
        None,
        0,
        True,
    )
    build_image_cache({k: str(v) for k, v in splits.items()}, tmp / "cache", threads=2)
    return {**splits, "cache": tmp / "cache", "root": tmp}


@pytest.fixture(scope="module")
def topdown(flies, shared_data: Path, gpu_device: str) -> dict[str, Path]:
    """A centroid and a centered-instance model, each 2 epochs on ``gpu_device``, default
    precision."""
    root = flies["root"]
    configs = {
        "centroid": small_config(
            shared_data / SAMPLES / "config_centroid_unet.yaml",
            root / "centroid.yaml",
            gpu_device,
            scale=0.25,
        ),
        "centered": small_config(
            shared_data / SAMPLES / "config_topdown_centered_instance_unet_medium_rf.yaml",
            root / "centered.yaml",
            gpu_device,
            scale=0.5,
        ),
    }
    runs = {name: root / "models" / name for name in configs}
    for name, cfg in configs.items():
        train_model(cfg, flies["train"], flies["val"], flies["cache"], runs[name], threads=2)
    return {**runs, **{f"{k}_config": v for k, v in configs.items()}}


def test_topdown_pair_trains_on_the_device_in_the_default_precision(topdown, gpu_device):
    for name in ("centroid", "centered"):
        run = topdown[name]
        rows = log_rows(run)
        assert [int(r["epoch"]) for r in rows] == [0, 1], name
        assert all(np.isfinite(float(r["train_loss"])) for r in rows), rows
        assert checkpoint_device(run) == gpu_device, name
        assert (run / "checkpoints/last.ckpt").is_file()
    # The default ("auto") precision for this device is what the check reports alongside.
    assert resolve_precision("auto", torch.device(gpu_device)) in ("32", "bf16-mixed")


def test_training_resumes_on_the_device_from_a_device_checkpoint(topdown, flies, gpu_device):
    """A third epoch from the first run's last.ckpt: optimizer state and step count carry on."""
    cfg = yaml.safe_load(topdown["centroid_config"].read_text())
    cfg["trainer_config"]["max_epochs"] = 3
    cfg["trainer_config"]["resume_ckpt_path"] = str(topdown["centroid"] / "checkpoints/last.ckpt")
    path = flies["root"] / "centroid_resume.yaml"
    path.write_text(yaml.safe_dump(cfg))
    run = flies["root"] / "models/centroid_resumed"
    train_model(path, flies["train"], flies["val"], flies["cache"], run, threads=2)
    rows = log_rows(run)
    assert [int(r["epoch"]) for r in rows] == [2]  # only the epoch that was left
    assert int(rows[-1]["step"]) == 3 * STEPS
    assert checkpoint_device(run) == gpu_device


def test_topdown_prediction_on_a_video_on_the_device_and_on_the_cpu(
    topdown, flies, shared_data, gpu_device
):
    """The device-trained pair predicts a video on the device, and (weights mapped to the CPU)
    on a machine without a GPU."""
    video = shared_data / "dreem_assets/sleap/two_flies.mp4"
    models = [topdown["centroid"], topdown["centered"]]
    opts = {"batch_size": 8, "peak_threshold": -1.0, "max_instances": 2}
    counts = {}
    for device in dict.fromkeys((gpu_device, "cpu")):
        out = flies["root"] / f"pred-{device}.slp"
        summary = predict_video(models, video, out, {**opts, "device": device}, 2, "0-31")
        assert summary["n_frames"] == 32, device
        counts[device] = summary["n_instances"]
        assert counts[device] > 0, device
    assert len(set(counts.values())) == 1, counts


def test_bottomup_trains_and_predicts_on_the_device(flies, shared_data, gpu_device):
    cfg = small_config(
        shared_data / SAMPLES / "config_bottomup_unet_medium_rf.yaml",
        flies["root"] / "bottomup.yaml",
        gpu_device,
        scale=0.25,
    )
    run = flies["root"] / "models/bottomup"
    train_model(cfg, flies["train"], flies["val"], flies["cache"], run, threads=2)
    rows = log_rows(run)
    assert [int(r["epoch"]) for r in rows] == [0, 1]
    assert all(np.isfinite(float(r["train_loss"])) for r in rows), rows
    assert checkpoint_device(run) == gpu_device
    summary = predict_video(
        [run],
        shared_data / "dreem_assets/sleap/two_flies.mp4",
        flies["root"] / "bottomup.slp",
        {"device": gpu_device, "peak_threshold": -1.0, "max_instances": 2},
        2,
        "0-15",
    )
    assert summary["n_frames"] == 16


@pytest.fixture
def strict_fp32():
    """TF32 off for cuDNN convolutions and CUDA matrix products, as before afterwards."""
    before = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = before


def by_x(instances: np.ndarray) -> np.ndarray:
    """(instances, nodes, 2) sorted by mean x, so two devices' outputs pair up."""
    return instances[np.argsort(np.nanmean(instances[:, :, 0], axis=1))]


def test_sleap_nn_models_predict_the_same_poses_on_the_device_as_on_the_cpu(
    shared_data, tmp_path, gpu_device, strict_fp32
):
    """sleap-nn's trained top-down pair on 16 frames of its video in strict fp32 on both
    devices (TF32 off, which cuDNN would otherwise use for fp32 convolutions): the same frames
    and instances, and at least 98% of the points within half a pixel or missing on both (a
    peak at a near-tie of two grid cells may still flip)."""
    runs = shared_data / "sleap_nn_assets/model_ckpts"
    models = [runs / "minimal_instance_centroid", runs / "minimal_instance_centered_instance"]
    video = shared_data / "sleap_nn_assets/datasets/centered_pair_small.mp4"
    points = {}
    for device in (gpu_device, "cpu"):
        out = tmp_path / f"{device}.slp"
        predict_video(models, video, out, {"device": device, "precision": "32"}, 2, "0-15")
        labels = sio.load_slp(str(out), open_videos=False)
        points[device] = {
            lf.frame_idx: by_x(np.stack([inst.numpy() for inst in lf.instances]))
            for lf in labels.labeled_frames
            if lf.instances
        }
    ref, got = points["cpu"], points[gpu_device]
    assert len(ref) >= 8  # the models find the flies
    assert sorted(ref) == sorted(got)
    agree = total = 0
    for frame, a in ref.items():
        b = got[frame]
        assert a.shape == b.shape, frame
        close = (np.isnan(a) & np.isnan(b)).all(-1) | (np.abs(a - b) < 0.5).all(-1)
        agree, total = agree + int(close.sum()), total + close.size
    assert agree / total >= 0.98, (agree, total)
