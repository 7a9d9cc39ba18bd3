"""Top-down training for a few steps on real fly data, then prediction on its video."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sleap_io as sio
import yaml

from pipeline_lib.data.cache import build_image_cache
from pipeline_lib.data.split import split_labels
from pipeline_lib.evaluation.evaluate import evaluate_model
from pipeline_lib.inference.predict import predict_video
from pipeline_lib.training.train import train_model

pytestmark = pytest.mark.slow


def _small_config(sample: Path, out: Path, **pre) -> Path:
    """A sample sleap-nn config shrunk to run in seconds on a CPU."""
    cfg = yaml.safe_load(sample.read_text())
    cfg["data_config"]["preprocessing"].update(pre)
    cfg["model_config"]["backbone_config"]["unet"].update({"filters": 8, "max_stride": 16})
    tc = cfg["trainer_config"]
    tc.update(
        {
            "max_epochs": 2,
            "min_train_steps_per_epoch": 3,
            "train_steps_per_epoch": 3,
            "enable_progress_bar": False,
            "save_ckpt": True,
            "seed": 0,
        }
    )
    tc["train_data_loader"]["batch_size"] = 2
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.fixture(scope="module")
def topdown_run(shared_data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("topdown")
    labels = shared_data / "dreem_assets/sleap/two_flies.slp"
    splits = {k: tmp / f"{k}.slp" for k in ("train", "val", "test")}
    split_labels([labels], splits["train"], splits["val"], splits["test"], 0.1, 0.05, None, 0, True)
    build_image_cache({k: str(v) for k, v in splits.items()}, tmp / "cache", threads=2)
    samples = shared_data / "sleap_nn_assets/sample_configs"
    centroid_cfg = _small_config(
        samples / "config_centroid_unet.yaml", tmp / "centroid.yaml", scale=0.25
    )
    centered_cfg = _small_config(
        samples / "config_topdown_centered_instance_unet_medium_rf.yaml", tmp / "ci.yaml", scale=0.5
    )
    runs = {"centroid": tmp / "models/centroid", "centered": tmp / "models/centered"}
    train_model(
        centroid_cfg, splits["train"], splits["val"], tmp / "cache", runs["centroid"], threads=2
    )
    train_model(
        centered_cfg, splits["train"], splits["val"], tmp / "cache", runs["centered"], threads=2
    )
    return tmp, splits, runs


def test_training_writes_a_complete_run_dir(topdown_run):
    _, _, runs = topdown_run
    for run in runs.values():
        for name in (
            "best.ckpt",
            "training_config.yaml",
            "initial_config.yaml",
            "training_log.csv",
            "environment.json",
        ):
            assert (run / name).exists(), name
        environment = json.loads((run / "environment.json").read_text())
        assert environment["torch"]["num_threads"] >= 1 and environment["platform"]["node"]
        resolved = yaml.safe_load((run / "training_config.yaml").read_text())
        assert resolved["data_config"]["skeletons"][0]["nodes"][0]["name"] == "head"
        assert resolved["model_config"]["total_params"] > 0
        log_lines = (run / "training_log.csv").read_text().strip().splitlines()
        assert log_lines[0].startswith("epoch,step,train_loss,val_loss")
        assert len(log_lines) == 3  # header + 2 epochs
    ci = yaml.safe_load((runs["centered"] / "training_config.yaml").read_text())
    crop = ci["data_config"]["preprocessing"]["crop_size"]
    assert crop % 16 == 0 and crop >= 100
    assert (
        ci["model_config"]["head_configs"]["centered_instance"]["confmaps"]["part_names"][0]
        == "head"
    )


def test_predict_video_and_evaluate(topdown_run, shared_data):
    tmp, splits, runs = topdown_run
    out = tmp / "pred.slp"
    summary = predict_video(
        [runs["centroid"], runs["centered"]],
        shared_data / "dreem_assets/sleap/two_flies.mp4",
        out,
        # Six training steps cannot produce confident peaks: accept any peak to test the plumbing.
        {"batch_size": 4, "peak_threshold": -1.0, "max_instances": 2},
        threads=2,
        analysis_h5=tmp / "pred.analysis.h5",
        csv=tmp / "pred.csv",
    )
    assert summary["n_frames"] == 128
    table = pd.read_csv(tmp / "pred.csv")
    assert len(table) == summary["n_instances"] and "thorax.x" in table.columns
    import h5py

    with h5py.File(tmp / "pred.analysis.h5", "r") as h5:
        node_names = [n.decode() if isinstance(n, bytes) else n for n in h5["node_names"][()]]
        assert node_names[:2] == ["head", "thorax"]
        assert h5["tracks"].shape[-1] == 128  # SLEAP's layout: (tracks, xy, nodes, frames)
        assert int(np.isfinite(h5["tracks"][()]).any(axis=(1, 2)).sum()) == table.shape[0]
    pred = sio.load_slp(str(out))
    assert len(pred.labeled_frames) == 128
    assert all(len(lf.instances) <= 2 for lf in pred.labeled_frames)
    inst = pred.labeled_frames[0].instances[0]
    assert isinstance(inst, sio.PredictedInstance)
    pts = inst.numpy()
    assert pts.shape == (13, 2) and np.isfinite(pts).any()
    assert (pts[np.isfinite(pts)] >= -1).all() and (pts[np.isfinite(pts)] <= 1025).all()
    metrics = evaluate_model(
        [runs["centroid"], runs["centered"]],
        splits["test"],
        tmp / "m.json",
        tmp / "m.npz",
        tmp / "pr.slp",
        threads=2,
        options={"peak_threshold": -1.0, "max_instances": 2},
    )
    assert metrics["n_frames"] > 0 and 0.0 <= metrics["oks_voc"]["mAP"] <= 1.0
    assert (tmp / "m.json").exists() and (tmp / "m.npz").exists() and (tmp / "pr.slp").exists()

    # Post-filters reach real predictions: nothing has more than the skeleton's 13 nodes, and
    # suppressing overlaps never keeps more instances than before.
    filtered = evaluate_model(
        [runs["centroid"], runs["centered"]],
        splits["test"],
        tmp / "f.json",
        tmp / "f.npz",
        tmp / "f.slp",
        threads=2,
        options={"peak_threshold": -1.0, "max_instances": 2, "min_visible_nodes": 14},
    )
    assert filtered["n_pred_instances"] == 0 < metrics["n_pred_instances"]
    nms = evaluate_model(
        [runs["centroid"], runs["centered"]],
        splits["test"],
        tmp / "n.json",
        tmp / "n.npz",
        tmp / "n.slp",
        threads=2,
        options={"peak_threshold": -1.0, "max_instances": 2, "overlap_nms": "iou"},
    )
    assert 0 < nms["n_pred_instances"] <= metrics["n_pred_instances"]


def test_rerun_after_completion_resumes_nothing_extra(topdown_run):
    """A finished run's checkpoints stay consistent: best.ckpt loads into the resolved model."""
    from pipeline_lib.training.run_dir import load_trained_model

    _, _, runs = topdown_run
    trained = load_trained_model(runs["centered"])
    assert trained.head == "centered_instance" and len(trained.skeleton.node_names) == 13


def test_single_instance_train_and_predict(shared_data, tmp_path):
    labels = shared_data / "dreem_assets/sleap/single_fly.slp"
    splits = {k: tmp_path / f"{k}.slp" for k in ("train", "val", "test")}
    split_labels([labels], splits["train"], splits["val"], splits["test"], 0.1, 0.0, None, 0, True)
    cfg = _small_config(
        shared_data / "sleap_nn_assets/sample_configs/config_single_instance_unet_medium_rf.yaml",
        tmp_path / "si.yaml",
        scale=0.25,
    )
    run = tmp_path / "models/si"
    train_model(cfg, splits["train"], splits["val"], None, run, threads=2)  # no cache: decode
    out = tmp_path / "pred.slp"
    summary = predict_video(
        [run],
        shared_data / "dreem_assets/sleap/single_fly.mp4",
        out,
        {"batch_size": 8, "peak_threshold": -1.0},
        threads=2,
    )
    pred = sio.load_slp(str(out))
    assert summary["n_frames"] == 128 and len(pred.labeled_frames) == 128
    assert all(len(lf.instances) == 1 for lf in pred.labeled_frames)
    pts = pred.labeled_frames[5].instances[0].numpy()
    assert np.isfinite(pts).all() and (pts >= -2).all() and (pts <= 1026).all()


def test_predict_labels_inputs(topdown_run, shared_data):
    """A labels file as input: its labelled frames, and an embedded .pkg.slp, via the CLI."""
    from pipeline_lib.cli import main as cli_main

    tmp, splits, runs = topdown_run
    models = [str(runs["centroid"]), str(runs["centered"])]
    test_frames = sorted(lf.frame_idx for lf in sio.load_slp(str(splits["test"])))
    out = tmp / "labels_pred.slp"
    args = ["predict", *models, "--labels", str(splits["test"]), "--out", str(out)]
    assert (
        cli_main([*args, "--only-labeled-frames", "--peak-threshold", "-1", "--threads", "2"]) == 0
    )
    pred = sio.load_slp(str(out))
    assert sorted(lf.frame_idx for lf in pred.labeled_frames) == test_frames
    assert pred.provenance["labels"] == str(splits["test"])
    assert pred.provenance["model_dirs"] == models and "torch_version" in pred.provenance

    pkg = shared_data / "sleap_nn_assets/datasets/minimal_instance.pkg.slp"
    out = tmp / "pkg_pred.slp"
    assert (
        cli_main(
            ["predict", *models, "--labels", str(pkg), "--out", str(out), "--peak-threshold", "-1"]
        )
        == 0
    )
    assert [lf.frame_idx for lf in sio.load_slp(str(out)).labeled_frames] == [0]
    # frame filters belong to labels input
    assert (
        cli_main(
            ["predict", *models, "--video", str(pkg), "--out", str(out), "--only-labeled-frames"]
        )
        == 1
    )


def test_predict_an_image_folder(topdown_run, shared_data):
    """A folder of images is a video: frames in file-name order, same pixels as the mp4."""
    import cv2

    tmp, _, runs = topdown_run
    folder = tmp / "frames"
    folder.mkdir()
    video = sio.load_video(str(shared_data / "dreem_assets/sleap/two_flies.mp4"))
    for i in range(3):
        cv2.imwrite(str(folder / f"img_{i:03d}.png"), np.asarray(video[i])[..., 0])
    out = tmp / "folder_pred.slp"
    opts = {"peak_threshold": -1.0, "max_instances": 2}
    summary = predict_video([runs["centroid"], runs["centered"]], folder, out, opts, threads=2)
    assert summary["n_frames"] == 3
    from_mp4 = predict_video(
        [runs["centroid"], runs["centered"]],
        shared_data / "dreem_assets/sleap/two_flies.mp4",
        tmp / "mp4_pred.slp",
        opts,
        threads=2,
        frames="0-2",
    )
    a, b = sio.load_slp(str(out)), sio.load_slp(str(tmp / "mp4_pred.slp"))
    assert [lf.frame_idx for lf in a] == [lf.frame_idx for lf in b] == [0, 1, 2]
    assert from_mp4["n_instances"] == summary["n_instances"]
    np.testing.assert_allclose(a[0].instances[0].numpy(), b[0].instances[0].numpy(), atol=1e-4)


def test_inference_preprocessing_overrides(topdown_run):
    from pipeline_lib.inference.predictors import InferenceOptions, make_predictor

    _, _, runs = topdown_run
    models = [runs["centroid"], runs["centered"]]
    plain = make_predictor(models, InferenceOptions())
    trained_scale = plain.centroid.transform((1024, 1024)).scale
    override = make_predictor(
        models, InferenceOptions.from_dict({"input_scale": trained_scale / 2, "crop_size": 64})
    )
    assert override.centroid.transform((1024, 1024)).scale == trained_scale / 2
    assert override.crop_size == 64 != plain.crop_size
    with pytest.raises(ValueError, match="crop_size 60 is not a multiple"):
        make_predictor(models, InferenceOptions.from_dict({"crop_size": 60}))
