"""Bad inputs fail (or degrade) with a message naming the file, key or frame, and leave no partial
output behind: one test per kind of bad input, on small real files."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import sleap_io as sio
import yaml
from helpers import snakemake_dry_run

from pipeline_lib.cli import main
from pipeline_lib.data.split import split_labels
from pipeline_lib.inference.frames import format_frame_selection
from pipeline_lib.inference.predict import _TolerantReader, predict_video
from pipeline_lib.io import atomic
from pipeline_lib.io.labels import LabelsError, load_labels
from pipeline_lib.io.video import VideoError
from pipeline_lib.workflow_support import (
    WorkflowConfigError,
    check_config_schema,
    check_labels_skeletons,
    collect_videos,
    read_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
FLIES = "dreem_assets/sleap/two_flies.slp"
FLIES_VIDEO = "dreem_assets/sleap/two_flies.mp4"
ZFISH = "dreem_assets/sleap/ten_zfish.slp"
VIDEO = "sleap_nn_assets/datasets/centered_pair_small.mp4"
RUN_DIRS = "sleap_nn_assets/model_ckpts"
SAMPLE_CONFIG = (
    "sleap_nn_assets/sample_configs/config_topdown_centered_instance_unet_medium_rf.yaml"
)


def _models(shared_data: Path) -> list[Path]:
    return [
        shared_data / RUN_DIRS / "minimal_instance_centroid",
        shared_data / RUN_DIRS / "minimal_instance_centered_instance",
    ]


def _split_outputs(folder: Path) -> list[Path]:
    return [folder / f"{name}.slp" for name in ("train", "val", "test")]


def _leftovers(folder: Path) -> list[str]:
    """Files in ``folder`` (recursively), temporary ones included: what a failure left."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _labels_with(shared_data: Path, instances_of_frame, path: Path) -> Path:
    """two_flies.slp rewritten with other instances (its video re-pointed to the shared mp4)."""
    labels = load_labels(shared_data / FLIES, video_paths=[shared_data / FLIES_VIDEO])
    skeleton = labels.skeletons[0]
    frames = [
        sio.LabeledFrame(video=lf.video, frame_idx=lf.frame_idx, instances=instances_of_frame(lf))
        for lf in labels.labeled_frames[:6]
    ]
    sio.save_slp(
        sio.Labels(labeled_frames=frames, videos=labels.videos, skeletons=[skeleton]), str(path)
    )
    return path


def _training_config(shared_data: Path, path: Path, **confmaps) -> Path:
    cfg = yaml.safe_load((shared_data / SAMPLE_CONFIG).read_text())
    cfg["model_config"]["head_configs"]["centered_instance"]["confmaps"].update(confmaps)
    path.write_text(yaml.safe_dump(cfg))
    return path


# ----------------------------------------------------------------------------- labels files


def test_truncated_or_non_hdf5_slp(shared_data, tmp_path):
    data = (shared_data / FLIES).read_bytes()
    truncated = tmp_path / "truncated.slp"
    truncated.write_bytes(data[: len(data) // 3])
    not_hdf5 = tmp_path / "notes.slp"
    not_hdf5.write_text("these are notes, not labels")
    out = tmp_path / "split"

    with pytest.raises(
        LabelsError, match=r"Could not read labels file .*truncated\.slp.*truncated"
    ):
        split_labels([truncated], *_split_outputs(out))
    with pytest.raises(LabelsError, match=r"not a valid SLEAP \.slp \(HDF5\) file: .*notes\.slp"):
        split_labels([not_hdf5], *_split_outputs(out))
    assert not out.exists() or _leftovers(out) == []
    # The workflow refuses them while it is parsed, naming the config key.
    datasets = {"flies": {"labels": ["truncated.slp"]}}
    with pytest.raises(WorkflowConfigError, match=r"datasets\.flies\.labels\[0\]: .*truncated"):
        check_labels_skeletons(datasets, {}, tmp_path)


def test_labels_whose_video_is_missing(shared_data, tmp_path):
    labels = tmp_path / "moved.slp"
    shutil.copyfile(shared_data / FLIES, labels)  # its video path points elsewhere; none beside
    with pytest.raises(LabelsError) as err:
        split_labels([labels], *_split_outputs(tmp_path / "split"))
    message = str(err.value)
    assert "moved.slp" in message and "two_flies.mp4" in message and "not found" in message
    assert not (tmp_path / "split").exists() or _leftovers(tmp_path / "split") == []


def test_labels_with_no_user_instances(shared_data, tmp_path):
    def predicted(lf):
        return [
            sio.PredictedInstance.from_numpy(inst.numpy(), skeleton=inst.skeleton, score=0.9)
            for inst in lf.instances
        ]

    labels = _labels_with(shared_data, predicted, tmp_path / "predicted_only.slp")
    out = tmp_path / "split"
    with pytest.raises(LabelsError) as err:
        split_labels([labels], *_split_outputs(out))
    message = str(err.value)
    assert "No user-labelled instances" in message and "predicted_only.slp" in message
    assert "12 predicted instance(s)" in message and "user_instances_only: false" in message
    assert not out.exists() or _leftovers(out) == []
    # Training on predictions is possible when asked for.
    summary = split_labels([labels], *_split_outputs(out), user_instances_only=False)
    assert summary["n_frames"] == 6


def test_frames_with_all_nan_instances(shared_data, tmp_path, caplog):
    def one_invisible(lf):
        nan = sio.Instance.from_numpy(np.full((13, 2), np.nan), skeleton=lf.instances[0].skeleton)
        return [nan] if lf.frame_idx % 2 else [lf.instances[0], nan]

    labels = _labels_with(shared_data, one_invisible, tmp_path / "some_nan.slp")
    with caplog.at_level(logging.WARNING):
        summary = split_labels([labels], *_split_outputs(tmp_path / "split"), test_fraction=0)
    assert summary["n_frames"] == 3  # the odd frames held only the invisible instance
    assert "some_nan.slp: dropped 6 instance(s) with no visible point" in caplog.text
    kept = sio.load_slp(str(tmp_path / "split/train.slp"), open_videos=False)
    assert all(np.isfinite(inst.numpy()).any() for lf in kept for inst in lf.instances)

    all_nan = _labels_with(
        shared_data,
        lambda lf: [sio.Instance.from_numpy(np.full((13, 2), np.nan), lf.instances[0].skeleton)],
        tmp_path / "all_nan.slp",
    )
    out = tmp_path / "split_nan"
    with pytest.raises(LabelsError, match=r"all_nan\.slp \(6 instance\(s\) have no visible point"):
        split_labels([all_nan], *_split_outputs(out))
    assert not out.exists() or _leftovers(out) == []


def test_skeleton_differs_between_training_files(shared_data, tmp_path):
    flies, zfish = shared_data / FLIES, shared_data / ZFISH
    out = tmp_path / "split"
    with pytest.raises(
        LabelsError, match=r"Skeleton of .*ten_zfish\.slp .* differs from .*two_flies"
    ):
        split_labels([flies, zfish], *_split_outputs(out))
    with pytest.raises(
        LabelsError, match=r"test labels .*ten_zfish\.slp .* differs from the train"
    ):
        split_labels([flies], *_split_outputs(out), test_labels_path=zfish)
    assert not out.exists() or _leftovers(out) == []
    # In the workflow: on `snakemake -n`, naming both config keys.
    datasets = {"d": {"labels": [str(flies)], "test_labels": str(zfish)}}
    with pytest.raises(WorkflowConfigError) as err:
        check_labels_skeletons(datasets, {}, tmp_path)
    assert "config datasets.d: the skeleton of" in str(err.value)
    assert "datasets.d.test_labels" in str(err.value) and "datasets.d.labels[0]" in str(err.value)
    # From the command line: before the run folder is even made.
    config = _training_config(shared_data, tmp_path / "ci.yaml")
    run_dir = tmp_path / "run"
    code = main(
        [
            "train",
            str(config),
            "--train",
            str(flies),
            "--val",
            str(zfish),
            "--run-dir",
            str(run_dir),
        ]
    )
    assert code == 1 and not run_dir.exists()


def test_part_names_that_do_not_match_the_skeleton(shared_data, tmp_path, capsys):
    config = _training_config(
        shared_data, tmp_path / "ci.yaml", part_names=["head", "thorx"], anchor_part="thorax"
    )
    datasets = {"flies": {"labels": [str(shared_data / FLIES)]}}
    models = {"ci": {"config": "ci.yaml", "dataset": "flies"}}
    with pytest.raises(WorkflowConfigError) as err:
        check_labels_skeletons(datasets, models, tmp_path)
    message = str(err.value)
    assert message.startswith("config models.ci.config (ci.yaml): ")
    assert "confmaps.part_names: 'thorx' is not a node of the skeleton" in message
    assert "did you mean 'thorax'?" in message and "two_flies.slp" in message

    run_dir = tmp_path / "run"
    flies = str(shared_data / FLIES)
    argv = ["train", str(config), "--train", flies, "--val", flies, "--run-dir", str(run_dir)]
    assert main(argv) == 1
    assert "'thorx' is not a node" in capsys.readouterr().err
    assert not run_dir.exists()  # refused before any frame was decoded


# ----------------------------------------------------------------------------- videos


def test_video_whose_last_frames_do_not_decode(shared_data, tmp_path, caplog):
    # Index at the front (as cameras that stream to disk write it), then the data cut short:
    # the header still announces 1100 frames.
    whole = tmp_path / "whole.mp4"
    subprocess.run(
        [_ffmpeg(), "-loglevel", "error", "-i", str(shared_data / VIDEO)]
        + ["-c", "copy", "-movflags", "+faststart", str(whole)],
        check=True,
    )
    data = whole.read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: data.index(b"mdat") + 20_000])
    out = tmp_path / "out" / "cut.predictions.slp"
    with caplog.at_level(logging.WARNING):
        summary = predict_video(_models(shared_data), cut, out, {"batch_size": 4})
    broken = summary["undecodable_frames"][str(cut.resolve())]
    first_bad = int(broken.split("-")[0])
    assert 0 < first_bad < 100 and broken == f"{first_bad}-1099"
    assert summary["n_frames"] == 1100 and summary["n_frames_predicted"] == first_bad
    labels = sio.load_slp(str(out), open_videos=False)
    assert [lf.frame_idx for lf in labels] == list(range(first_bad))
    assert labels.provenance["summary"]["undecodable_frames"] == summary["undecodable_frames"]
    assert f"(frames {first_bad}-1099)" in caplog.text and "cut.mp4" in caplog.text
    assert _leftovers(out.parent) == ["cut.predictions.slp"]


class _Frames:
    """A stand-in image sequence whose frames ``bad`` fail to read."""

    filename = ["0.png", "1.png"]

    def __init__(self, bad):
        self.bad = bad

    def __getitem__(self, i):
        if i in self.bad:
            raise OSError(f"image {i} is corrupt")
        return np.full((4, 4, 1), i, np.uint8)


def test_isolated_bad_frames_cost_only_themselves():
    failed = []
    frames = list(_TolerantReader(_Frames({3, 4, 7}), list(range(10)), failed))
    assert [i for i, _ in frames] == [0, 1, 2, 5, 6, 8, 9] and failed == [3, 4, 7]
    assert format_frame_selection(failed) == "3-4,7"


def test_zero_frame_video(shared_data, tmp_path):
    empty = tmp_path / "empty.mp4"
    subprocess.run(
        [_ffmpeg(), "-loglevel", "error", "-f", "lavfi", "-i", "color=size=64x64"]
        + ["-frames:v", "0", "-c:v", "libx264", str(empty)],
        check=True,
    )
    out = tmp_path / "out" / "empty.predictions.slp"
    with pytest.raises(VideoError, match=r"Video .*empty\.mp4 has no readable frames"):
        predict_video(_models(shared_data), empty, out)
    assert not out.parent.exists() or _leftovers(out.parent) == []


def test_two_videos_with_the_same_stem_in_different_folders(tmp_path):
    for folder in ("day1", "day2"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "cage 3.mp4").write_bytes(b"x")
    with pytest.raises(WorkflowConfigError) as err:
        collect_videos({"globs": ["day1", "day2"]}, tmp_path)
    message = str(err.value)
    assert "Two videos get the id 'cage_3'" in message
    assert "day1/cage 3.mp4 (from config videos.globs[0] ('day1'))" in message
    assert "day2/cage 3.mp4 (from config videos.globs[1] ('day2'))" in message
    (tmp_path / "videos.csv").write_text(
        "path,id\nday1/cage 3.mp4,day1_cage3\nday2/cage 3.mp4,day2_cage3\n"
    )
    assert [v.id for v in read_manifest("videos.csv", tmp_path)] == ["day1_cage3", "day2_cage3"]


def test_paths_with_spaces_and_non_ascii_characters(shared_data, tmp_path, capsys):
    folder = tmp_path / "vidéos d'été" / "cage n°3"
    folder.mkdir(parents=True)
    video = folder / "souris été 1.mp4"
    shutil.copyfile(shared_data / VIDEO, video)
    out_dir = tmp_path / "résultats finaux"
    predictions, tracked = out_dir / "prédictions 1.slp", out_dir / "suivi é 1.slp"
    models = [str(m) for m in _models(shared_data)]
    argv = ["predict", *models, "--video", str(video), "--out", str(predictions)]
    assert main([*argv, "--frames", "0-7", "--csv", str(out_dir / "table é.csv")]) == 0
    assert json.loads(capsys.readouterr().out)["n_frames"] == 8
    assert main(["track", str(predictions), "--out", str(tracked)]) == 0
    labels = sio.load_slp(str(tracked))
    assert labels.video.filename == str(video.resolve())
    assert [lf.frame_idx for lf in labels] == list(range(8))
    assert all(inst.track is not None for lf in labels for inst in lf.instances)
    assert labels.video[0].shape == (384, 384, 1)  # the video opens from its recorded path
    assert sorted(p.name for p in out_dir.iterdir()) == sorted(
        ["prédictions 1.slp", "suivi é 1.slp", "table é.csv"]
    )


def test_unwritable_output_folder(shared_data, tmp_path, monkeypatch, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    if os.access(locked, os.W_OK):  # root ignores permission bits: deny as the OS would
        real_access = os.access
        monkeypatch.setattr(
            atomic.os,
            "access",
            lambda p, mode, **kw: False if Path(p) == locked else real_access(p, mode, **kw),
        )
    try:
        models = [str(m) for m in _models(shared_data)]
        out = locked / "pred.slp"
        argv = ["predict", *models, "--video", str(shared_data / VIDEO), "--frames", "0-3"]
        assert main([*argv, "--out", str(out)]) == 1
        assert f"Output folder is not writable: {locked}" in capsys.readouterr().err
        assert list(locked.iterdir()) == []
        # A file where the output folder should be.
        (tmp_path / "plain").write_text("")
        assert main([*argv, "--out", str(tmp_path / "plain" / "pred.slp")]) == 1
        assert f"Cannot create the output folder {tmp_path / 'plain'}" in capsys.readouterr().err
    finally:
        locked.chmod(0o755)


# ----------------------------------------------------------------------------- pipeline config


def test_pipeline_config_with_wrong_type_and_typo_key(tmp_path):
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    config["tracking"]["simlarity"] = "iou"
    config["inference"]["batch_size"] = "four"
    with pytest.raises(WorkflowConfigError) as err:
        check_config_schema(config, SCHEMA)
    assert str(err.value).splitlines() == [
        "2 problems:",
        "  - config inference.batch_size: expected an integer, got 'four' (a string)",
        "  - config tracking.simlarity: unknown key; did you mean 'similarity'?",
    ]
    # The same message from the workflow, on a dry run.
    override = tmp_path / "override.yaml"
    override.write_text(
        yaml.safe_dump({"inference": {"batch_size": "four"}, "videos": {"glob": []}})
    )
    run = snakemake_dry_run("--quiet", "rules", "--configfile", str(override))
    assert run.returncode != 0
    assert "config videos.glob: unknown key; did you mean 'globs'?" in run.stderr + run.stdout
    assert "config inference.batch_size: expected an integer" in run.stderr + run.stdout


@pytest.mark.parametrize("part", ["backbone", "head"])
def test_missing_pretrained_weights_fail_when_the_workflow_is_read(tmp_path, part):
    """Not after the split, the cache and the data loading of the training job."""
    model_cfg = yaml.safe_load((ROOT / "config/models/demo_centroid.yaml").read_text())
    missing = tmp_path / "weights" / "missing.ckpt"
    model_cfg["model_config"][f"pretrained_{part}_weights"] = str(missing)
    cfg_path = tmp_path / "centroid.yaml"
    cfg_path.write_text(yaml.safe_dump(model_cfg))
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"models": {"demo_centroid": {"config": str(cfg_path)}}}))
    run = snakemake_dry_run("--quiet", "rules", "--configfile", str(override))
    assert run.returncode != 0
    assert (
        f"config models.demo_centroid.config ({cfg_path}): "
        f"model_config.pretrained_{part}_weights: no weights file at {missing}"
    ) in run.stderr + run.stdout
