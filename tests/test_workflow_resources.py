"""Per-rule resources: config overrides, input-size scaling, errors naming the key, and the
shipped config, schema and rules agreeing with pipeline_lib/workflow_resources.py."""

from __future__ import annotations

import math
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from helpers import snakemake_dry_run

from pipeline_lib.workflow_resources import (
    DEFAULTS,
    GB,
    SCALE_INPUT,
    RuleResources,
    resolve_resources,
    selected_share,
    snakemake_resources,
)
from pipeline_lib.workflow_support import WorkflowConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_without_a_resources_section_every_rule_gets_its_defaults() -> None:
    assert resolve_resources(None) == DEFAULTS
    assert resolve_resources({}) == DEFAULTS


def test_config_overrides_only_the_keys_it_names() -> None:
    res = resolve_resources({"train_model": {"mem_mb": 64000, "gpu_model": "a100"}})
    assert res["train_model"].mem_mb == 64000
    assert res["train_model"].gpu_model == "a100"
    assert res["train_model"].runtime == DEFAULTS["train_model"].runtime
    assert res["train_model"].threads == DEFAULTS["train_model"].threads
    assert res["predict_video"] == DEFAULTS["predict_video"]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"predict_vidoe": {"mem_mb": 1}}, "resources.predict_vidoe: unknown rule"),
        ({"train_model": {"memory": 1}}, "resources.train_model.memory: unknown key"),
        ({"train_model": {"threads": 0}}, "resources.train_model.threads: expected a whole"),
        ({"train_model": {"mem_mb": 1.5}}, "resources.train_model.mem_mb: expected a whole"),
        ({"train_model": {"gpu": True}}, "resources.train_model.gpu: expected a whole"),
        ({"train_model": {"gpu_model": "a100:2"}}, "resources.train_model.gpu_model"),
        ({"track_video": {"runtime_per_gb": -1}}, "resources.track_video.runtime_per_gb"),
        (
            {"train_model": {"runtime_per_gb": 10}},
            "only predict_video, predict_batch, track_video and track_batch scale",
        ),
        ({"report": 4}, "resources.report: expected a mapping"),
    ],
)
def test_bad_values_name_the_config_key(section: dict, message: str) -> None:
    with pytest.raises(WorkflowConfigError, match=re.escape(message)):
        resolve_resources(section)


def test_per_gb_rates_add_to_the_base_and_round_up() -> None:
    spec = RuleResources(threads=1, mem_mb=4000, runtime=30, mem_mb_per_gb=8000, runtime_per_gb=120)
    assert spec.runtime_for(0) == 30
    assert spec.runtime_for(GB // 2) == 90
    assert spec.runtime_for(1) == 31  # any input at all rounds up to a whole minute
    assert spec.mem_mb_for(3 * GB) == 28000


def test_scaling_rules_follow_the_size_of_their_input(tmp_path: Path) -> None:
    video = tmp_path / "v.mp4"
    video.write_bytes(b"\0" * (GB // 1024))  # 1 MiB
    spec = resolve_resources({"predict_video": {"runtime": 10, "runtime_per_gb": 1024 * 60}})[
        "predict_video"
    ]
    res = snakemake_resources(spec, SCALE_INPUT["predict_video"])
    assert res["mem_mb"] == spec.mem_mb  # prediction memory does not grow with the video
    assert res["runtime"](SimpleNamespace(), input=SimpleNamespace(video=str(video))) == 70
    assert res["gpu"] == 1


def test_a_missing_input_raises_file_not_found_naming_it(tmp_path: Path) -> None:
    """Snakemake turns exactly this (a FileNotFoundError whose filename is one of the job's
    inputs) into a value decided later, once the upstream job has written the file."""
    res = snakemake_resources(DEFAULTS["track_video"], "predictions")
    missing = str(tmp_path / "later.predictions.slp")
    with pytest.raises(FileNotFoundError) as err:
        res["mem_mb"](SimpleNamespace(), input=SimpleNamespace(predictions=missing))
    assert err.value.filename == missing


def test_fixed_rules_give_plain_numbers_and_gpu_model_only_when_set() -> None:
    res = snakemake_resources(DEFAULTS["train_model"])
    assert res == {"mem_mb": 32000, "runtime": 1440, "gpu": 1}
    spec = resolve_resources({"train_model": {"gpu_model": "h100", "gpu": 2}})["train_model"]
    assert snakemake_resources(spec) == {
        "mem_mb": 32000,
        "runtime": 1440,
        "gpu": 2,
        "gpu_model": "h100",
    }


def test_shipped_config_spells_out_exactly_the_defaults() -> None:
    config = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    assert set(config["resources"]) == set(DEFAULTS)
    assert resolve_resources(config["resources"]) == DEFAULTS
    for rule, values in config["resources"].items():
        assert RuleResources(**values) == DEFAULTS[rule], rule


def test_schema_knows_every_rule_and_every_rule_file_uses_its_entry() -> None:
    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    assert set(schema["properties"]["resources"]["properties"]) == set(DEFAULTS)
    rules_text = "\n".join(p.read_text() for p in (ROOT / "workflow/rules").glob("*.smk"))
    declared = set(re.findall(r"^rule (\w+):", rules_text, flags=re.M))
    # rules made in a loop (one per batch of videos) are named f"{family}_{batch}"
    declared |= set(re.findall(r'name:\s+f"(\w+)_\{', rules_text))
    assert declared == set(DEFAULTS)
    for rule in DEFAULTS:
        assert f'rule_resources("{rule}")' in rules_text, rule
        assert f'rule_threads("{rule}")' in rules_text, rule


def test_selected_share_of_a_video(shared_data: Path, tmp_path: Path) -> None:
    video = shared_data / "dreem_assets/sleap/three_flies.mp4"
    n_frames = 128
    assert selected_share(None, video) == selected_share("", video) == 1.0
    assert selected_share("0-31", video) == pytest.approx(32 / n_frames)
    assert selected_share("0-9,100,120-127", video) == pytest.approx(19 / n_frames)
    # What the job itself reports is left to the job: the request falls back to the whole.
    assert selected_share("0-999", video) == 1.0
    assert selected_share("0-9", tmp_path / "missing.mp4") == 1.0
    (tmp_path / "junk.mp4").write_bytes(b"not a video")
    assert selected_share("0-9", tmp_path / "junk.mp4") == 1.0


def test_a_frame_range_scales_the_prediction_request(shared_data: Path, tmp_path: Path) -> None:
    """Through the workflow: two manifest rows for one video, one limited to a quarter of its
    frames, ask for run times in proportion (dry run, which shows ready jobs' resources)."""
    video = shared_data / "dreem_assets/sleap/three_flies.mp4"
    work = tmp_path
    (work / "videos.csv").write_text(f"path,id,frames\n{video},quarter,0-31\n{video},whole,\n")
    (work / "o.yaml").write_text(
        yaml.safe_dump(
            {
                "videos": {"manifest": str(work / "videos.csv")},
                "resources": {"predict_video": {"runtime": 1, "runtime_per_gb": 100000}},
            }
        )
    )
    targets = [f"results/predictions/{v}.predictions.slp" for v in ("quarter", "whole")]
    run = snakemake_dry_run(*targets, "--forceall", "--configfile", str(work / "o.yaml"))
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-3000:]
    runtime = dict(re.findall(r"wildcards: video=(\w+)\n\s+resources: .*?runtime=(\d+)", out))
    size_minutes = video.stat().st_size * 100000 / GB
    assert int(runtime["whole"]) == math.ceil(1 + size_minutes)
    assert int(runtime["quarter"]) == math.ceil(
        1 + math.ceil(video.stat().st_size / 4) * 100000 / GB
    )
