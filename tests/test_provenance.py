"""Exact reruns and provenance.

The split and the image cache must come out byte for byte the same when rebuilt from the same
labels (so their hashes can vouch for a run), and provenance.json must say what produced a
run. The workflow-level checks (provenance.json of a real run, its place in the report, and
metrics equal across two runs) use the runs of tests/test_kill_rerun.py.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import sleap_io as sio
import yaml

from pipeline_lib.data.demo import make_demo_dataset
from pipeline_lib.io.labels import save_labels
from pipeline_lib.provenance import (
    KEYS,
    collect_provenance,
    git_info,
    model_seeds,
    write_job_environment,
    write_provenance,
)

ROOT = Path(__file__).resolve().parents[1]

SPLIT_AND_CACHE = """
import sys
from pipeline_lib.data.cache import build_image_cache
from pipeline_lib.data.split import split_labels
out = sys.argv[2]
splits = {k: f"{out}/splits/{k}.slp" for k in ("train", "val", "test")}
split_labels([sys.argv[1]], splits["train"], splits["val"], splits["test"], 0.2, 0.2, None, 0, True)
build_image_cache(splits, f"{out}/cache", 1)
"""


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def demo_labels(tmp_path_factory) -> Path:
    """Small synthetic demo labels (its skeleton has a left/right symmetry)."""
    out = tmp_path_factory.mktemp("demo")
    make_demo_dataset(
        out_dir=out,
        seed=0,
        n_videos=1,
        n_frames=16,
        n_animals=2,
        frame_size=(128, 128),
        label_every=2,
    )
    return out / "labels.slp"


def test_split_and_cache_are_bitwise_identical_when_rebuilt(demo_labels: Path, tmp_path: Path):
    """Three fresh processes split and cache the same labels into the same place; every file is
    the same bytes each time. Before symmetries were written in a fixed order about one run in
    six differed (sleap-io's set order), and the cache with it (it records the split's hash);
    HDF5 object timestamps were never a cause (nothing else differed)."""
    out = tmp_path / "rerun"
    digests = []
    for _ in range(3):
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(
            [sys.executable, "-c", SPLIT_AND_CACHE, str(demo_labels), str(out)],
            check=True,
            capture_output=True,
            cwd=ROOT,
        )
        files = sorted(p for p in out.rglob("*") if p.is_file())
        assert {p.name for p in files} >= {"train.slp", "val.slp", "test.slp", "train.h5"}
        digests.append({p.relative_to(out).as_posix(): _sha256(p) for p in files})
    assert digests[0] == digests[1] == digests[2]


def test_saving_the_same_labels_gives_the_same_bytes(demo_labels: Path, tmp_path: Path):
    """In one process too: each load makes new node objects, so a set ordered by object id
    came out in both orders over 12 saves."""
    digests = set()
    for i in range(12):
        labels = sio.load_slp(str(demo_labels), open_videos=False)
        assert labels.skeletons[0].symmetries  # the case that used to vary
        save_labels(labels, tmp_path / f"{i}.slp")
        digests.add(_sha256(tmp_path / f"{i}.slp"))
    assert len(digests) == 1


def _configs(tmp_path: Path) -> dict[str, Path]:
    model = tmp_path / "model.yaml"
    model.write_text(yaml.safe_dump({"trainer_config": {"seed": None}}))
    pipeline = tmp_path / "config.yaml"
    pipeline.write_text("seed: 3\n")
    return {"pipeline_config": pipeline, "model_config:m": model}


def test_provenance_has_every_key_and_hashes_the_configs(tmp_path: Path):
    files = _configs(tmp_path)
    record = collect_provenance(tmp_path, {"seed": 3}, files, {"seed": 3})
    assert set(KEYS) <= set(record)
    assert record["config_files"]["pipeline_config"]["sha256"] == _sha256(files["pipeline_config"])
    assert record["packages"]["torch"] and record["packages"]["lightning"]
    assert record["packages"]["sleap-io"] and record["packages"]["snakemake"]
    assert record["packages"]["numpy"] and record["packages"]["pipeline-lib"]
    hw = record["hardware"]
    assert hw["cpu_count"] >= 1 and hw["ram_bytes"] > 0 and isinstance(hw["gpus"], list)
    assert record["torch"]["num_threads"] >= 1
    # Not a repository: the revision is unknown, and the record says why.
    assert record["project"]["git_commit"] is None and record["project"]["git_error"]
    # Another config gives another hash.
    other = collect_provenance(tmp_path, {"seed": 4}, files, {"seed": 4})
    assert other["config_sha256"] != record["config_sha256"]

    write_provenance(tmp_path / "out/provenance.json", record)
    assert json.loads((tmp_path / "out/provenance.json").read_text())["seeds"] == {"seed": 3}
    with pytest.raises(ValueError, match="lacks the keys.*hardware"):
        write_provenance(
            tmp_path / "bad.json", {k: v for k, v in record.items() if k != "hardware"}
        )


def test_missing_config_file_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        collect_provenance(tmp_path, {}, {"model_config:x": tmp_path / "nope.yaml"}, {})


def test_git_commit_and_dirty_flag(tmp_path: Path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("1")
    git("add", "a.txt")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    clean = git_info(tmp_path)
    assert len(clean["git_commit"]) == 40 and clean["git_dirty"] is False
    (tmp_path / "untracked.txt").write_text("not part of the code")
    assert git_info(tmp_path)["git_dirty"] is False  # untracked files are not edits
    (tmp_path / "a.txt").write_text("2")
    dirty = git_info(tmp_path)
    assert dirty["git_dirty"] is True and dirty["git_changed_files"] == 1
    assert dirty["git_commit"] == clean["git_commit"]


def test_model_seeds_fall_back_to_the_pipeline_seed(tmp_path: Path):
    files = _configs(tmp_path)
    seeded = tmp_path / "seeded.yaml"
    seeded.write_text(yaml.safe_dump({"trainer_config": {"seed": 11}}))
    seeds = model_seeds({"m": files["model_config:m"], "s": seeded}, 3)
    assert seeds == {"model:m": 3, "model:s": 11}


def test_training_jobs_environments_are_collected(tmp_path: Path, monkeypatch):
    """The environment a training job wrote into its run dir (maybe on another node) is copied
    into the run's record; run dirs without one (older, or sleap-nn's) say so with None."""
    monkeypatch.setenv("SLURM_JOB_ID", "4711")
    trained = tmp_path / "models/a"
    write_job_environment(trained)
    monkeypatch.delenv("SLURM_JOB_ID")
    files = _configs(tmp_path)
    dirs = {"a": trained, "b": tmp_path / "models/b"}
    record = collect_provenance(tmp_path, {}, files, {}, model_dirs=dirs)
    assert record["training_jobs"]["a"]["slurm_job_id"] == "4711"
    assert record["training_jobs"]["a"]["hardware"]["cpu_count"] >= 1
    assert record["training_jobs"]["b"] is None and record["slurm_job_id"] is None

    (trained / "environment.json").write_text("{cut sh")
    with pytest.raises(ValueError, match=r"models/a/environment\.json: not valid JSON"):
        collect_provenance(tmp_path, {}, files, {}, model_dirs=dirs)
