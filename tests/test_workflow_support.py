"""Turning the pipeline config into videos, ids and checks, without Snakemake."""

from __future__ import annotations

import copy
import os
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
import yaml
from helpers import snakemake_dry_run

from pipeline_lib.workflow_support import (
    WorkflowConfigError,
    attach_ground_truth,
    build_plan,
    check_datasets,
    check_models,
    code_version,
    collect_videos,
    demo_video_entries,
    eval_splits,
    expand_video_pattern,
    module_closure,
    read_manifest,
    sanitize_id,
)

ROOT = Path(__file__).resolve().parents[1]


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def ids(entries) -> list[str]:
    return [e.id for e in entries]


# ----------------------------------------------------------------------------- ids


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mouse_01", "mouse_01"),
        ("cage 3 (day 2)", "cage_3_day_2_"),
        ("fly.v2-a", "fly.v2-a"),
        (".hidden", "_hidden"),
        ("souris-été", "souris-_t_"),
    ],
)
def test_sanitize_id(name: str, expected: str) -> None:
    assert sanitize_id(name) == expected


@pytest.mark.parametrize("name", ["", "###", "   "])
def test_sanitize_id_rejects_names_without_usable_characters(name: str) -> None:
    with pytest.raises(WorkflowConfigError, match="Cannot make a video id"):
        sanitize_id(name)


# ----------------------------------------------------------------------------- listing


def test_videos_from_paths(tmp_path: Path) -> None:
    touch(tmp_path / "data/a b.mp4")
    touch(tmp_path / "data/c.avi")
    videos = collect_videos({"paths": ["data/a b.mp4", "data/c.avi"]}, tmp_path)
    assert ids(videos) == ["a_b", "c"]
    assert videos[0].path == os.path.join("data", "a b.mp4")
    assert "videos.paths[0]" in videos[0].source


def test_missing_video_path_names_key_and_file(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    with pytest.raises(WorkflowConfigError, match=r"videos\.paths\[1\].*missing\.mp4"):
        collect_videos({"paths": ["a.mp4", "missing.mp4"]}, tmp_path)


def test_folder_in_paths_points_to_globs(tmp_path: Path) -> None:
    (tmp_path / "vids").mkdir()
    with pytest.raises(WorkflowConfigError, match="videos.globs"):
        collect_videos({"paths": ["vids"]}, tmp_path)


def test_glob_keeps_only_video_files(tmp_path: Path) -> None:
    for name in ["b.mp4", "a.MOV", "labels.slp", "notes.txt", ".hidden.mp4"]:
        touch(tmp_path / "vids" / name)
    assert expand_video_pattern("vids/*", tmp_path) == ["vids/a.MOV", "vids/b.mp4"]


def test_folder_means_every_video_inside(tmp_path: Path) -> None:
    touch(tmp_path / "vids/x.mkv")
    touch(tmp_path / "vids/y.mp4")
    touch(tmp_path / "vids/sub/z.mp4")  # not recursive for a folder
    videos = collect_videos({"globs": ["vids"]}, tmp_path)
    assert ids(videos) == ["x", "y"]


def test_recursive_glob(tmp_path: Path) -> None:
    touch(tmp_path / "vids/day1/m1.mp4")
    touch(tmp_path / "vids/day2/m2.mp4")
    assert ids(collect_videos({"globs": ["vids/**/*.mp4"]}, tmp_path)) == ["m1", "m2"]


def test_glob_matching_nothing_is_an_error(tmp_path: Path) -> None:
    touch(tmp_path / "vids/a.txt")
    with pytest.raises(WorkflowConfigError, match=r"'vids/\*\.mp4' matched no video"):
        collect_videos({"globs": ["vids/*.mp4"]}, tmp_path)
    with pytest.raises(WorkflowConfigError, match="folder 'vids' holds no video"):
        collect_videos({"globs": ["vids"]}, tmp_path)


def test_same_stem_in_two_folders_names_both_files(tmp_path: Path) -> None:
    touch(tmp_path / "day1/mouse.mp4")
    touch(tmp_path / "day2/mouse.mp4")
    with pytest.raises(WorkflowConfigError) as err:
        collect_videos({"globs": ["day1", "day2"]}, tmp_path)
    message = str(err.value)
    assert "'mouse'" in message
    assert os.path.join("day1", "mouse.mp4") in message
    assert os.path.join("day2", "mouse.mp4") in message


def test_same_file_listed_twice_is_kept_once(tmp_path: Path) -> None:
    touch(tmp_path / "vids/a.mp4")
    videos = collect_videos({"paths": ["vids/a.mp4"], "globs": ["vids"]}, tmp_path)
    assert ids(videos) == ["a"]


def test_demo_video_collides_with_user_video(tmp_path: Path) -> None:
    touch(tmp_path / "demo_0.mp4")
    with pytest.raises(WorkflowConfigError, match="demo_0"):
        collect_videos({"paths": ["demo_0.mp4"]}, tmp_path, extra=demo_video_entries(["demo_0"]))


# ----------------------------------------------------------------------------- manifest


def write_manifest(tmp_path: Path, text: str) -> str:
    path = tmp_path / "meta/manifest.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return "meta/manifest.csv"


def test_manifest_with_explicit_ids_resolves_stem_clashes(tmp_path: Path) -> None:
    touch(tmp_path / "meta/day1/mouse.mp4")
    touch(tmp_path / "meta/day2/mouse.mp4")
    touch(tmp_path / "meta/gt/mouse1.slp")
    manifest = write_manifest(
        tmp_path,
        "path,id,max_tracks,ground_truth\n"
        "day1/mouse.mp4,mouse_day1,2,gt/mouse1.slp\n"
        "\n"
        "day2/mouse.mp4,mouse_day2,,\n",
    )
    videos = collect_videos({"manifest": manifest}, tmp_path)
    assert ids(videos) == ["mouse_day1", "mouse_day2"]
    first, second = videos
    # relative paths in the manifest are relative to the manifest's folder
    assert first.path == os.path.join("meta", "day1", "mouse.mp4")
    assert first.max_tracks == 2
    assert first.ground_truth == os.path.join("meta", "gt", "mouse1.slp")
    assert second.max_tracks is None and second.ground_truth is None


def test_manifest_without_ids_uses_stems(tmp_path: Path) -> None:
    touch(tmp_path / "meta/v 1.mp4")
    manifest = write_manifest(tmp_path, "path\nv 1.mp4\n")
    assert ids(read_manifest(manifest, tmp_path)) == ["v_1"]


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("video\nx.mp4\n", "header with a 'path' column"),
        ("path,animals\nx.mp4,3\n", r"unknown column\(s\) \['animals'\]"),
        ("path\nok.mp4\nnope.mp4\n", r"line 3: video file not found: meta.nope\.mp4"),
        ("path,id\nok.mp4,\n,b\n", "line 3: empty 'path'"),
        ("path,max_tracks\nok.mp4,two\n", "line 2: max_tracks must be a positive integer"),
        ("path,max_tracks\nok.mp4,0\n", "line 2: max_tracks must be a positive integer"),
        ("path,id\nok.mp4,my/video\n", "line 2: id 'my/video' may only use"),
        ("path,ground_truth\nok.mp4,gt.slp\n", "line 2: ground_truth file not found"),
        ("path\nok.mp4,extra\n", "line 2: more fields than columns"),
        ("path\n", "lists no videos"),
    ],
)
def test_manifest_errors_name_the_row(tmp_path: Path, text: str, pattern: str) -> None:
    touch(tmp_path / "meta/ok.mp4")
    manifest = write_manifest(tmp_path, text)
    with pytest.raises(WorkflowConfigError, match=pattern) as err:
        read_manifest(manifest, tmp_path)
    assert "meta/manifest.csv" in str(err.value)


def test_manifest_frames_column(tmp_path: Path) -> None:
    touch(tmp_path / "meta/night.mp4")
    touch(tmp_path / "meta/day.mp4")
    manifest = write_manifest(
        tmp_path,
        "path,id,frames\n"
        "night.mp4,night_a,0-999\n"
        'night.mp4,night_b," 1000 - 1999, 2500 "\n'
        "day.mp4,,\n",
    )
    videos = {v.id: v for v in collect_videos({"manifest": manifest}, tmp_path)}
    # one file, two jobs: each id keeps its own selection; no column value means every frame
    assert videos["night_a"].frames == "0-999"
    assert videos["night_b"].frames == "1000-1999,2500"
    assert videos["night_a"].path == videos["night_b"].path
    assert videos["day"].frames is None
    # a path listed in the config too keeps the stem id and takes the row's frames
    both = collect_videos({"paths": ["meta/day.mp4"], "manifest": manifest}, tmp_path)
    assert [v.frames for v in both if v.id == "day"] == [None]
    with_frames = write_manifest(tmp_path, "path,frames\nday.mp4,10-20\n")
    merged = collect_videos({"paths": ["meta/day.mp4"], "manifest": with_frames}, tmp_path)
    assert [(v.id, v.frames, v.source) for v in merged] == [
        ("day", "10-20", "config videos.paths[0]")
    ]


@pytest.mark.parametrize(
    ("rows", "pattern"),
    [
        ("ok.mp4,0-x", r"line 2: frames '0-x': cannot read '0-x'; use .* e\.g\. 0-999"),
        ("ok.mp4,20-10", r"line 2: frames '20-10': range '20-10' runs backwards"),
        ('ok.mp4,"1,,2"', r"line 2: frames '1,,2': cannot read ''"),
        ("ok.mp4,-5", r"line 2: frames '-5': cannot read '-5'"),
        ("ok.mp4,1 000", r"line 2: frames '1 000': cannot read '1 000'"),
    ],
)
def test_manifest_frames_errors_name_the_row(tmp_path: Path, rows: str, pattern: str) -> None:
    touch(tmp_path / "meta/ok.mp4")
    manifest = write_manifest(tmp_path, f"path,frames\n{rows}\n")
    with pytest.raises(WorkflowConfigError, match=f"Manifest meta/manifest.csv {pattern}"):
        read_manifest(manifest, tmp_path)


def test_manifest_frames_beyond_the_video_fail_its_job_naming_it(
    shared_data: Path, tmp_path: Path
) -> None:
    from pipeline_lib.inference.predict import predict_video

    video = shared_data / "sleap_nn_assets/datasets/centered_pair_small.mp4"
    out = tmp_path / "p.slp"
    with pytest.raises(ValueError) as err:
        predict_video([], video, out, frames="0-9,1000-1200")  # fails before loading models
    assert str(err.value) == (
        f"Frame selection for video {video}: Frames '1000-1200' are outside the video's 0-1099"
    )
    assert not out.exists()


def test_same_video_and_id_with_different_frames_names_both_rows(tmp_path: Path) -> None:
    touch(tmp_path / "meta/ok.mp4")
    manifest = write_manifest(tmp_path, "path,id,frames\nok.mp4,a,0-9\nok.mp4,a,10-19\n")
    with pytest.raises(WorkflowConfigError) as err:
        collect_videos({"manifest": manifest}, tmp_path)
    assert str(err.value).startswith(
        "Two entries give the id 'a' to meta/ok.mp4 with different frames: '0-9' (from "
        "Manifest meta/manifest.csv line 2) and '10-19' (from Manifest meta/manifest.csv line 3)"
    )


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(WorkflowConfigError, match="videos.manifest: file not found: m.csv"):
        collect_videos({"manifest": "m.csv"}, tmp_path)


# ----------------------------------------------------------------------------- config checks


def test_ground_truth_mapping(tmp_path: Path) -> None:
    touch(tmp_path / "a.mp4")
    touch(tmp_path / "a_gt.slp")
    videos = collect_videos({"paths": ["a.mp4"]}, tmp_path)
    assert attach_ground_truth(videos, {"a": "a_gt.slp"}, tmp_path)[0].ground_truth == "a_gt.slp"
    with pytest.raises(WorkflowConfigError, match="ground_truth.b: no video has the id 'b'"):
        attach_ground_truth(videos, {"b": "a_gt.slp"}, tmp_path)
    with pytest.raises(WorkflowConfigError, match="ground_truth.a: file not found: x.slp"):
        attach_ground_truth(videos, {"a": "x.slp"}, tmp_path)


def test_dataset_checks(tmp_path: Path) -> None:
    touch(tmp_path / "labels.slp")
    ok = {"labels": ["labels.slp"], "validation_fraction": 0.1, "test_fraction": 0.1}
    check_datasets({"d": ok}, tmp_path)
    check_datasets(
        {"d": {**ok, "labels": ["results/demo/labels.slp"]}},
        tmp_path,
        produced=["results/demo/labels.slp"],
    )
    with pytest.raises(
        WorkflowConfigError, match=r"datasets\.d\.labels\[1\]: labels file not found: no\.slp"
    ):
        check_datasets({"d": {**ok, "labels": ["labels.slp", "no.slp"]}}, tmp_path)
    with pytest.raises(WorkflowConfigError, match="only made when demo.enabled is true"):
        check_datasets({"d": {**ok, "labels": ["results/demo/labels.slp"]}}, tmp_path)
    with pytest.raises(WorkflowConfigError, match="datasets.d.test_labels: labels file not found"):
        check_datasets({"d": {**ok, "test_labels": "t.slp"}}, tmp_path)
    with pytest.raises(WorkflowConfigError, match="leaves no frames to train on"):
        check_datasets({"d": {**ok, "validation_fraction": 0.5, "test_fraction": 0.5}}, tmp_path)


def copy_model_config(src: str, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ROOT / src, dst)


def test_model_checks(tmp_path: Path) -> None:
    copy_model_config("config/models/demo_centroid.yaml", tmp_path / "c.yaml")
    copy_model_config("config/models/demo_centered_instance.yaml", tmp_path / "m.yaml")
    datasets = {"d": {}}
    models = {"m": {"config": "m.yaml", "dataset": "d"}}
    with pytest.raises(WorkflowConfigError, match="models.m.dataset: unknown dataset 'e'"):
        check_models({"m": {"config": "m.yaml", "dataset": "e"}}, datasets, ["m"], tmp_path)
    with pytest.raises(
        WorkflowConfigError, match="models.m.config: training config not found: x.yaml"
    ):
        check_models({"m": {"config": "x.yaml", "dataset": "d"}}, datasets, ["m"], tmp_path)
    with pytest.raises(WorkflowConfigError, match=r"predictor.models\[1\]: unknown model 'n'"):
        check_models(models, datasets, ["m", "n"], tmp_path)
    with pytest.raises(
        WorkflowConfigError, match=r"are of types \['centered_instance'\]; a predictor is one of"
    ):
        check_models(models, datasets, ["m"], tmp_path)
    pair = {**models, "c": {"config": "c.yaml", "dataset": "d"}}
    check_models(pair, datasets, ["c", "m"], tmp_path)
    typo = (tmp_path / "m.yaml").read_text().replace("rotation_max", "roration_max")
    (tmp_path / "t.yaml").write_text(typo)
    with pytest.raises(WorkflowConfigError, match="models.t.config: .*did you mean 'rotation_max'"):
        check_models(
            {**pair, "t": {"config": "t.yaml", "dataset": "d"}}, datasets, ["c", "m"], tmp_path
        )


def test_eval_splits() -> None:
    assert eval_splits({"test_fraction": 0.1, "test_labels": None}) == ["val", "test"]
    assert eval_splits({"test_fraction": 0.0, "test_labels": None}) == ["val"]
    assert eval_splits({"test_fraction": 0.0, "test_labels": "t.slp"}) == ["val", "test"]


def shipped_config() -> dict:
    return yaml.safe_load((ROOT / "config/config.yaml").read_text())


def test_shipped_config_matches_schema_and_bad_keys_fail() -> None:
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    validator.validate(shipped_config())
    bad = shipped_config()
    bad["tracking"]["simlarity"] = "oks"
    with pytest.raises(jsonschema.ValidationError, match="simlarity"):
        validator.validate(bad)
    bad = shipped_config()
    bad["inference"]["refinement"] = "cubic"
    with pytest.raises(jsonschema.ValidationError, match="cubic"):
        validator.validate(bad)


def test_plan_for_shipped_config(tmp_path: Path) -> None:
    config = shipped_config()
    for model in config["models"].values():
        copy_model_config(model["config"], tmp_path / model["config"])
    plan = build_plan(config, demo_ids=["demo_0", "demo_1"], base_dir=tmp_path)
    assert list(plan.videos) == ["demo_0", "demo_1"]
    assert plan.videos["demo_1"].path == "results/demo/videos/demo_1.mp4"
    assert plan.videos["demo_1"].ground_truth == "results/demo/ground_truth/demo_1.slp"
    assert plan.eval_model == "demo_centered_instance"
    assert plan.eval_splits == ["val", "test"]
    assert plan.demo_models == ["demo_centered_instance"]
    assert plan.demo_videos == ["demo_0", "demo_1"]

    no_demo = copy.deepcopy(config)
    no_demo["videos"]["include_demo"] = False
    touch(tmp_path / "v/m1.mp4")
    no_demo["videos"]["globs"] = ["v"]
    plan = build_plan(no_demo, demo_ids=["demo_0", "demo_1"], base_dir=tmp_path)
    assert list(plan.videos) == ["m1"] and plan.demo_videos == []


# ----------------------------------------------------------------------------- code version


def test_code_version_follows_imports_only(tmp_path: Path) -> None:
    pkg = tmp_path / "pipeline_lib"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub/__init__.py").write_text("")
    (pkg / "sub/stage.py").write_text("from .helper import f\nimport json\n")
    (pkg / "sub/helper.py").write_text("from pipeline_lib.base import g\n")
    (pkg / "base.py").write_text("def g():\n    return 1\n")
    (pkg / "other.py").write_text("X = 1\n")
    closure = {p.relative_to(pkg).as_posix() for p in module_closure("pipeline_lib.sub.stage", pkg)}
    assert closure == {"__init__.py", "sub/__init__.py", "sub/stage.py", "sub/helper.py", "base.py"}

    before = code_version("pipeline_lib.sub.stage", str(pkg), "1.0")
    assert before.startswith("1.0+") and len(before) == len("1.0+") + 12
    (pkg / "other.py").write_text("X = 2\n")
    assert code_version("pipeline_lib.sub.stage", str(pkg), "1.0") == before
    (pkg / "base.py").write_text("def g():\n    return 2\n")
    assert code_version("pipeline_lib.sub.stage", str(pkg), "1.0") != before
    # Parsed imports are remembered per file version: an edited file is parsed again.
    (pkg / "sub/helper.py").write_text(
        "from pipeline_lib.base import g\nimport pipeline_lib.other\n"
    )
    closure = {p.relative_to(pkg).as_posix() for p in module_closure("pipeline_lib.sub.stage", pkg)}
    assert "other.py" in closure
    with pytest.raises(WorkflowConfigError, match="pipeline_lib.nope not found"):
        module_closure("pipeline_lib.nope", pkg)


# ----------------------------------------------------------------------------- Snakefile parse


def dry_run(*args: str) -> subprocess.CompletedProcess:
    return snakemake_dry_run("--quiet", "rules", *args)


def test_snakefile_rejects_bad_config_at_parse_time(tmp_path: Path) -> None:
    ok = dry_run()
    assert ok.returncode == 0, ok.stderr
    bad_key = dry_run("--config", "bogus_key=1")
    assert bad_key.returncode != 0
    assert "bogus_key" in bad_key.stderr + bad_key.stdout
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"videos": {"paths": ["no/such/video.mp4"]}}))
    missing = dry_run("--configfile", str(override))
    assert missing.returncode != 0
    assert (
        "videos.paths[0]: video file not found: no/such/video.mp4"
        in missing.stderr + missing.stdout
    )


def test_manifest_frames_reach_predict_video_jobs(tmp_path: Path) -> None:
    """A manifest that splits one video into two frame ranges: the plan keeps each id's range
    (what rule predict_video passes as its ``frames`` param) and a dry run plans one
    predict_video job per id; a bad range fails the dry run naming the manifest row."""
    (tmp_path / "clip.mp4").write_bytes(b"x")
    manifest = tmp_path / "videos.csv"
    manifest.write_text('path,id,frames\nclip.mp4,clip_a,0-9\nclip.mp4,clip_b,"10-19,30"\n')
    override = tmp_path / "override.yaml"
    override.write_text(yaml.safe_dump({"videos": {"manifest": str(manifest)}}))
    config = shipped_config()
    config["videos"]["manifest"] = str(manifest)
    plan = build_plan(config, demo_ids=["demo_0", "demo_1"], base_dir=ROOT)
    assert (plan.videos["clip_a"].frames, plan.videos["clip_b"].frames) == ("0-9", "10-19,30")
    assert plan.videos["demo_0"].frames is None
    targets = [f"results/predictions/clip_{x}.predictions.slp" for x in "ab"]
    run = snakemake_dry_run(
        "--forceall", "--configfile", str(override), "--printshellcmds", *targets
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out
    assert out.count("rule predict_video:") == 2
    assert "wildcards: video=clip_a" in out and "wildcards: video=clip_b" in out

    manifest.write_text("path,id,frames\nclip.mp4,clip_a,9-0\n")
    bad = dry_run("--configfile", str(override))
    assert bad.returncode != 0
    assert "videos.csv line 2: frames '9-0': range '9-0' runs backwards" in bad.stdout + bad.stderr


def test_multi_class_predictor_keeps_model_identities(tmp_path: Path, shared_data: Path) -> None:
    samples = shared_data / "sleap_nn_assets/sample_configs"
    config = shipped_config()
    shutil.copyfile(samples / "config_multi_class_bottomup_unet.yaml", tmp_path / "mcb.yaml")
    shutil.copyfile(samples / "config_bottomup_unet_medium_rf.yaml", tmp_path / "bu.yaml")
    config["models"] = {
        "mcb": {"config": "mcb.yaml", "dataset": "demo"},
        "bu": {"config": "bu.yaml", "dataset": "demo"},
    }
    config["predictor"]["models"] = ["mcb"]
    plan = build_plan(config, demo_ids=["demo_0"], base_dir=tmp_path)
    assert plan.identities_from_model and plan.eval_model == "mcb"
    config["predictor"]["models"] = ["bu"]
    assert not build_plan(config, demo_ids=["demo_0"], base_dir=tmp_path).identities_from_model


def test_schema_inference_keys_are_exactly_the_inference_options() -> None:
    from dataclasses import fields

    from pipeline_lib.inference.options import InferenceOptions

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    keys = set(schema["properties"]["inference"]["properties"])
    assert keys == {f.name for f in fields(InferenceOptions)}
    config = shipped_config()
    config["inference"].update(
        {"min_visible_nodes": 3, "overlap_nms": "oks", "overlap_threshold": 0.7}
    )
    for model in config["models"].values():
        model["precision"] = "bf16-mixed"
    jsonschema.Draft202012Validator(schema).validate(config)
    InferenceOptions.from_dict(config["inference"])
    config["models"][next(iter(config["models"]))]["precision"] = "fp8"
    with pytest.raises(jsonschema.ValidationError, match="fp8"):
        jsonschema.Draft202012Validator(schema).validate(config)


# ----------------------------------------------------------------------------- tracking model


def _gtr_config(**gtr) -> dict:
    config = shipped_config()
    config["tracking"]["method"] = "gtr"
    config["tracking"]["gtr"] = gtr
    return config


def _plan(config: dict, base: Path):
    for model in config["models"].values():
        copy_model_config(model["config"], base / model["config"])
    return build_plan(config, demo_ids=["demo_0", "demo_1"], base_dir=base)


def test_gtr_trained_in_the_dag_on_every_datasets_labels(tmp_path: Path) -> None:
    touch(tmp_path / "config/tracking/gtr.yaml")
    plan = _plan(_gtr_config(config="config/tracking/gtr.yaml"), tmp_path)
    assert plan.tracker_model == "results/tracker/gtr"
    assert plan.tracker_training.train_labels == ["results/demo/labels.slp"]
    assert plan.tracker_training.val_labels == [] and plan.tracker_training.seed == 0


def test_gtr_from_a_trained_run_dir(tmp_path: Path) -> None:
    with pytest.raises(WorkflowConfigError, match="has no best.ckpt"):
        _plan(_gtr_config(model="runs/gtr"), tmp_path)
    touch(tmp_path / "runs/gtr/best.ckpt")
    touch(tmp_path / "runs/gtr/tracker_config.yaml")
    plan = _plan(_gtr_config(model="runs/gtr"), tmp_path)
    assert plan.tracker_model == "runs/gtr" and plan.tracker_training is None


def test_gtr_needs_exactly_one_of_model_and_config(tmp_path: Path) -> None:
    with pytest.raises(WorkflowConfigError, match="exactly one of tracking.gtr.model"):
        _plan(_gtr_config(), tmp_path)
    with pytest.raises(WorkflowConfigError, match="no file at nope.yaml"):
        _plan(_gtr_config(config="nope.yaml"), tmp_path)
    touch(tmp_path / "g.yaml")
    with pytest.raises(WorkflowConfigError, match="train_labels: file not found: x.slp"):
        _plan(_gtr_config(config="g.yaml", train_labels=["x.slp"]), tmp_path)


def test_dag_trains_the_tracker_before_tracking(tmp_path: Path) -> None:
    override = tmp_path / "gtr.yaml"
    override.write_text(
        yaml.safe_dump(
            {"tracking": {"method": "gtr", "gtr": {"config": "config/tracking/demo_gtr.yaml"}}}
        )
    )
    run = snakemake_dry_run("--configfile", str(override), "--forceall")
    assert run.returncode == 0, run.stderr + run.stdout
    assert "rule train_tracker:" in run.stdout
    assert "results/tracker/gtr/best.ckpt" in run.stdout
