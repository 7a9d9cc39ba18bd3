"""Models given as folders (``models.<name>.run_dir``): the parse-time checks, and predicting and
tracking through the DAG with sleap-nn and SLEAP <= 1.4 model folders, one job per video and
several videos per job (``videos.per_job``)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import yaml

from pipeline_lib.given_models import inspect_model_folder
from pipeline_lib.workflow_support import WorkflowConfigError, build_plan

ROOT = Path(__file__).resolve().parents[1]
CKPTS = "sleap_nn_assets/model_ckpts"
LEGACY = "sleap_nn_assets/legacy_models"


def _config(models: dict, predictor: list[str], videos: dict) -> dict:
    return {
        "demo": {"enabled": False},
        "datasets": {},
        "models": models,
        "predictor": {"models": predictor},
        "videos": videos,
        "tracking": {"method": "classical"},
    }


def _topdown(shared_data: Path, tmp_path: Path, edit=None) -> dict:
    """The sleap-nn top-down pair as given models; ``edit`` changes a copy of the second."""
    centered = shared_data / CKPTS / "minimal_instance_centered_instance"
    if edit is not None:
        copy = tmp_path / "centered"
        shutil.copytree(centered, copy)
        cfg = yaml.safe_load((copy / "training_config.yaml").read_text())
        edit(cfg)
        (copy / "training_config.yaml").write_text(yaml.safe_dump(cfg))
        centered = copy
    return {
        "centroid": {"run_dir": str(shared_data / CKPTS / "minimal_instance_centroid")},
        "centered": {"run_dir": str(centered)},
    }


def _video(shared_data: Path) -> dict:
    return {"paths": [str(shared_data / "sleap_nn_assets/datasets/centered_pair_small.mp4")]}


def _plan_error(config: dict) -> str:
    with pytest.raises(WorkflowConfigError) as err:
        build_plan(config)
    return str(err.value)


# --------------------------------------------------------------------------- parse time


def test_every_folder_layout_is_recognised(shared_data):
    folders = {
        CKPTS + "/minimal_instance_centroid": ("pipeline", "centroid"),
        LEGACY + "/minimal_robot.UNet.single_instance": ("sleap_legacy", "single_instance"),
        LEGACY + "/min_tracks_2node.UNet.bottomup_multiclass": (
            "sleap_legacy",
            "multi_class_bottomup",
        ),
        LEGACY + "/min_tracks_2node.UNet.topdown_multiclass": (
            "sleap_legacy",
            "multi_class_topdown",
        ),
    }
    for folder, (layout, model_type) in folders.items():
        found = inspect_model_folder("m", str(shared_data / folder))
        assert (found.layout, found.model_type) == (layout, model_type), folder


def test_sleap_nn_json_config_is_recognised(shared_data, tmp_path):
    folder = tmp_path / "sleap_nn_json"
    shutil.copytree(shared_data / CKPTS / "minimal_instance_centroid", folder)
    cfg = yaml.safe_load((folder / "training_config.yaml").read_text())
    (folder / "training_config.yaml").unlink()
    (folder / "training_config.json").write_text(json.dumps(cfg))
    found = inspect_model_folder("m", str(folder))
    assert (found.layout, found.model_type) == ("sleap_nn_json", "centroid")


def test_missing_folder_is_named(tmp_path, shared_data):
    models = _topdown(shared_data, tmp_path)
    models["centroid"]["run_dir"] = str(tmp_path / "nowhere")
    message = _plan_error(_config(models, ["centroid", "centered"], _video(shared_data)))
    assert "config models.centroid.run_dir: model folder not found" in message
    assert "nowhere" in message


def test_folder_without_weights_is_named(shared_data, tmp_path):
    folder = shared_data / LEGACY / "minimal_instance.UNet.centroid"  # configs only
    models = _topdown(shared_data, tmp_path)
    models["centroid"]["run_dir"] = str(folder)
    message = _plan_error(_config(models, ["centroid", "centered"], _video(shared_data)))
    assert "config models.centroid.run_dir" in message
    assert "has a training config but no weights" in message
    assert "best_model.h5" in message


def test_unrecognised_folder_is_named(shared_data, tmp_path):
    folder = tmp_path / "not_a_model"
    folder.mkdir()
    (folder / "weights.pt").write_bytes(b"x")
    models = _topdown(shared_data, tmp_path)
    models["centroid"]["run_dir"] = str(folder)
    message = _plan_error(_config(models, ["centroid", "centered"], _video(shared_data)))
    assert "config models.centroid.run_dir" in message
    assert "not a model folder this pipeline recognises" in message
    assert "weights.pt" in message


def test_topdown_pair_with_different_skeletons_is_refused(shared_data, tmp_path):
    def rename_node(cfg):
        cfg["data_config"]["skeletons"][0]["nodes"][1]["name"] = "tail"

    models = _topdown(shared_data, tmp_path, rename_node)
    message = _plan_error(_config(models, ["centroid", "centered"], _video(shared_data)))
    assert "config predictor.models: centroid" in message
    assert "different skeletons" in message and "'tail'" in message


def test_topdown_pair_with_different_anchor_parts_is_refused(shared_data, tmp_path):
    def anchor(cfg):
        cfg["model_config"]["head_configs"]["centered_instance"]["confmaps"]["anchor_part"] = "A"

    models = _topdown(shared_data, tmp_path, anchor)
    message = _plan_error(_config(models, ["centroid", "centered"], _video(shared_data)))
    assert "different anchor parts: None vs 'A'" in message


def test_bottomup_listed_with_a_centroid_is_refused(shared_data, tmp_path):
    models = _topdown(shared_data, tmp_path)
    models["bu"] = {"run_dir": str(shared_data / CKPTS / "minimal_instance_bottomup")}
    message = _plan_error(_config(models, ["centroid", "bu"], _video(shared_data)))
    assert "config predictor.models: ['centroid', 'bu'] are of types ['centroid', 'bottomup']" in (
        message
    )


def test_video_with_channels_the_model_cannot_take_is_named(shared_data, tmp_path):
    def two_channels(cfg):
        cfg["model_config"]["backbone_config"]["unet"]["in_channels"] = 2

    models = _topdown(shared_data, tmp_path, two_channels)
    message = _plan_error(_config(models, ["centroid", "centered"], _video(shared_data)))
    assert "video centered_pair_small" in message
    assert "has 1 channel(s) but model centered" in message and "takes 2" in message


def test_run_dir_and_training_keys_exclude_each_other(shared_data, tmp_path):
    models = _topdown(shared_data, tmp_path)
    models["centroid"]["config"] = "config/models/demo_centroid.yaml"
    message = _plan_error(_config(models, ["centroid", "centered"], _video(shared_data)))
    assert "config models.centroid: run_dir (a trained model) and config" in message


def test_evaluate_on_a_model_that_is_not_evaluated_is_refused(shared_data, tmp_path):
    models = _topdown(shared_data, tmp_path)
    models["centroid"]["evaluate_on"] = str(
        shared_data / "sleap_nn_assets/datasets/minimal_instance.pkg.slp"
    )
    message = _plan_error(_config(models, ["centroid", "centered"], _video(shared_data)))
    assert "config models.centroid.evaluate_on: only the predictor's last model" in message


def test_given_models_need_no_dataset_and_evaluate_on_their_labels(shared_data, tmp_path):
    models = _topdown(shared_data, tmp_path)
    labels = shared_data / CKPTS / "minimal_instance_centered_instance/labels_val_gt_0.slp"
    models["centered"]["evaluate_on"] = str(labels)
    plan = build_plan(_config(models, ["centroid", "centered"], _video(shared_data)))
    assert set(plan.given_models) == {"centroid", "centered"}
    assert plan.eval_splits == ["test"]
    del models["centered"]["evaluate_on"]
    assert (
        build_plan(_config(models, ["centroid", "centered"], _video(shared_data))).eval_splits == []
    )


# --------------------------------------------------------------------------- through the DAG


def _snakemake(work: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    cmd = [str(exe), "-s", str(ROOT / "Snakefile"), "--directory", str(work), "--cores", "2"]
    cmd += ["--workflow-profile", "none", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900)


def _write(work: Path, models: dict, predictor: list[str], manifest: list[tuple], **videos):
    (work / "config").mkdir(parents=True, exist_ok=True)
    lines = ["path,id,frames"] + [",".join(row) for row in manifest]
    (work / "videos.csv").write_text("\n".join(lines) + "\n")
    config = _config(models, predictor, {"manifest": "videos.csv", **videos})
    config["tracking"]["max_tracks"] = 2
    # the same torch thread count as the CLI below: sums in another order differ in the last bits
    config["resources"] = {r: {"threads": 2} for r in ("predict_video", "predict_batch")}
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def _points(path: Path) -> tuple[np.ndarray, np.ndarray]:
    labels = sio.load_slp(str(path), open_videos=False)
    frames = np.array([lf.frame_idx for lf in labels.labeled_frames for _ in lf.instances])
    points = np.array([i.numpy() for lf in labels.labeled_frames for i in lf.instances])
    return frames, points


def _same_as_cli(model_dirs: list[Path], video: Path, frames: str, dag_out: Path, tmp: Path):
    """The DAG's predictions equal ``pipeline-lib predict`` on the same folders and frames."""
    cli_out = tmp / "cli.slp"
    exe = Path(sys.executable).with_name("pipeline-lib")
    cmd = [str(exe), "predict", *map(str, model_dirs), "--video", str(video)]
    cmd += ["--out", str(cli_out), "--frames", frames, "--peak-threshold", "0.2", "--threads", "2"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=300)
    (fa, pa), (fb, pb) = _points(dag_out), _points(cli_out)
    assert len(fa) > 0
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(pa, pb)


@pytest.mark.slow
def test_sleap_nn_run_dirs_predict_and_track_in_the_dag(shared_data, tmp_path):
    work = tmp_path / "wf"
    video = shared_data / "sleap_nn_assets/datasets/centered_pair_small.mp4"
    models = _topdown(shared_data, tmp_path)
    labels = shared_data / "sleap_nn_assets/datasets/minimal_instance.pkg.slp"
    models["centered"]["evaluate_on"] = str(labels)
    _write(work, models, ["centroid", "centered"], [(str(video), "pair", "0-7")])
    dry = _snakemake(work, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "predict_video" in dry.stdout and "evaluate_model" in dry.stdout
    assert "train_model" not in dry.stdout
    run = _snakemake(work)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (work / "results/tracks/pair.tracked.slp").is_file()
    metrics = json.loads((work / "results/models/centered/metrics.test.json").read_text())
    assert metrics  # the same metrics files as a trained model's
    assert (work / "results/models/centered/labels_pr.test.slp").is_file()
    dirs = [Path(models[m]["run_dir"]) for m in ("centroid", "centered")]
    pred = work / "results/predictions/pair.predictions.slp"
    _same_as_cli(dirs, video, "0-7", pred, tmp_path)


@pytest.mark.slow
def test_sleap_legacy_folder_predicts_and_tracks_in_the_dag(shared_data, tmp_path):
    work = tmp_path / "wf"
    video = shared_data / "sleap_nn_assets/datasets/small_robot.mp4"
    folder = shared_data / LEGACY / "minimal_robot.UNet.single_instance"
    _write(work, {"robot": {"run_dir": str(folder)}}, ["robot"], [(str(video), "robot", "0-7")])
    dry = _snakemake(work, "-n")
    assert dry.returncode == 0, dry.stderr[-3000:]
    assert "train_model" not in dry.stdout
    run = _snakemake(work)
    assert run.returncode == 0, run.stderr[-4000:]
    assert (work / "results/tracks/robot.tracked.slp").is_file()
    pred = work / "results/predictions/robot.predictions.slp"
    _same_as_cli([folder], video, "0-7", pred, tmp_path)


@pytest.mark.slow
def test_grouped_videos_match_one_job_per_video_and_a_failure_keeps_the_rest(shared_data, tmp_path):
    video = str(shared_data / "sleap_nn_assets/datasets/centered_pair_small.mp4")
    models = _topdown(shared_data, tmp_path)
    rows = [(video, "a", "0-5"), (video, "b", "6-11"), (video, "c", "12-17")]
    single, grouped = tmp_path / "single", tmp_path / "grouped"
    _write(single, models, ["centroid", "centered"], rows)
    # b asks for frames the video does not have: only its job (at run time) can tell
    bad = [rows[0], (video, "b", "5000-5005"), rows[2]]
    _write(grouped, models, ["centroid", "centered"], bad, per_job=3)
    failed = _snakemake(grouped, "--keep-going")
    assert failed.returncode != 0
    log = (grouped / "results/logs/predict_batch/b0000.log").read_text()
    assert "1 of 3 videos failed: video b (" in log and "5000-5005" in log
    staged = grouped / "results/predictions/staged"
    assert {p.name for p in staged.glob("*.slp")} == {"a.predictions.slp", "c.predictions.slp"}

    _write(grouped, models, ["centroid", "centered"], rows, per_job=3)
    rerun = _snakemake(grouped)
    assert rerun.returncode == 0, rerun.stderr[-4000:]
    assert (grouped / "results/logs/track_batch/b0000.log").is_file()  # tracked as a batch too
    log = (grouped / "results/logs/predict_batch/b0000.log").read_text()
    assert "video a: staged predictions are current, reused" in log
    assert "video c: staged predictions are current, reused" in log
    assert _snakemake(single).returncode == 0
    for vid in ("a", "b", "c"):
        for kind in ("predictions/{}.predictions.slp", "tracks/{}.tracked.slp"):
            a = _points(single / "results" / kind.format(vid))
            b = _points(grouped / "results" / kind.format(vid))
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        csv = f"results/tracks/{vid}.tracked.csv"
        assert (single / csv).read_bytes() == (grouped / csv).read_bytes()


def _mixed(shared_data: Path, tmp_path: Path, anchor: str | None) -> dict:
    """A given sleap-nn centroid model and a centered-instance model trained here."""
    cfg = yaml.safe_load((ROOT / "config/models/demo_centered_instance.yaml").read_text())
    confmaps = cfg["model_config"]["head_configs"]["centered_instance"]["confmaps"]
    confmaps.update({"anchor_part": anchor, "part_names": None})
    (tmp_path / "ci.yaml").write_text(yaml.safe_dump(cfg))
    labels = shared_data / "sleap_nn_assets/datasets/minimal_instance.pkg.slp"
    config = _config(
        {
            "centroid": {"run_dir": str(shared_data / CKPTS / "minimal_instance_centroid")},
            "centered": {"config": str(tmp_path / "ci.yaml"), "dataset": "mini"},
        },
        ["centroid", "centered"],
        _video(shared_data),
    )
    config["datasets"] = {"mini": {"labels": [str(labels)], "validation_fraction": 0.5}}
    return config


def test_a_given_centroid_mixes_with_a_trained_centered_instance_model(shared_data, tmp_path):
    plan = build_plan(_mixed(shared_data, tmp_path, anchor=None))
    assert set(plan.given_models) == {"centroid"}
    assert plan.eval_model == "centered" and plan.eval_splits == ["val"]  # its dataset's split


def test_a_trained_partner_with_another_anchor_part_is_refused(shared_data, tmp_path):
    message = _plan_error(_mixed(shared_data, tmp_path, anchor="B"))
    assert "different anchor parts: None vs 'B'" in message and "ci.yaml" in message


def test_legacy_multi_class_folders_load_for_inference(shared_data, tmp_path):
    """Both multi-class heads of SLEAP <= 1.4 run here from their folders as they are (the
    weights themselves are checked against SLEAP's activations in test_legacy.py)."""
    from pipeline_lib.inference.predict import predict_video
    from pipeline_lib.training.run_dir import load_trained_model

    topdown = load_trained_model(shared_data / LEGACY / "min_tracks_2node.UNet.topdown_multiclass")
    assert topdown.head == "multi_class_topdown" and len(topdown.classes) == 2
    folder = shared_data / LEGACY / "min_tracks_2node.UNet.bottomup_multiclass"
    video = shared_data / "sleap_nn_assets/datasets/centered_pair_small.mp4"
    out = tmp_path / "bu.slp"
    summary = predict_video([folder], video, out, {"peak_threshold": 0.2}, frames="0-1")
    assert summary["n_frames_predicted"] == 2
    assert len(sio.load_slp(str(out), open_videos=False).tracks) == 2  # identities from the model
