"""Tests of the GTR tracker options: DREEM's ``tracker:`` section read strictly."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml

from pipeline_lib.tracking.gtr.config import (
    GTRTrackerOptions,
    GTRTrackerOptionsError,
    load_tracker_options,
)
from pipeline_lib.tracking.options import TrackerOptionsError

# The tracker section of DREEM's documented inference config example.
DREEM_TRACKER_YAML = """
tracker:
    window_size: 8
    overlap_thresh: 0.01
    mult_thresh: false
    decay_time: 0.9
    iou: "mult"
    max_center_dist: 0.1
"""

DREEM_WHOLE_CONFIG_YAML = """
ckpt_path: "/path/to/model.ckpt"
out_dir: "/path/to/results/dir"
tracker:
    window_size: 8
    use_vis_feats: true
    overlap_thresh: 0.01
    mult_thresh: false
    decay_time: 0.9
    iou: "mult"
    max_center_dist: 0.1
    persistent_tracking: true
    max_gap: 10
    max_tracks: 2
dataset:
    test_dataset:
        slp_files: ["/path/to/test/labels1.slp"]
        video_files: ["/path/to/test/video1.mp4"]
        padding: 5
        crop_size: 128
        chunk: true
        clip_length: 32
dataloader:
    test_dataloader:
        num_workers: 4
"""


def test_defaults_are_dreems() -> None:
    opts = GTRTrackerOptions()
    assert opts.to_dict() == {
        "window_size": 8,
        "use_vis_feats": True,
        "overlap_thresh": 0.01,
        "mult_thresh": False,
        "decay_time": None,
        "iou": None,
        "max_center_dist": None,
        "persistent_tracking": False,
        "max_gap": None,
        "max_tracks": None,
    }
    assert GTRTrackerOptions.from_dict(None) == opts
    assert GTRTrackerOptions.from_dict({}) == opts


def test_dreem_example_section_parses_with_and_without_the_tracker_key() -> None:
    whole = yaml.safe_load(DREEM_TRACKER_YAML)
    for data in (whole, whole["tracker"]):
        opts = GTRTrackerOptions.from_dict(data)
        assert opts.window_size == 8
        assert opts.overlap_thresh == 0.01
        assert opts.mult_thresh is False
        assert opts.decay_time == 0.9
        assert opts.iou == "mult"
        assert opts.max_center_dist == 0.1
        assert opts.use_vis_feats is True  # not in the example: the default


def test_whole_dreem_config_file_parses(tmp_path: Path) -> None:
    path = tmp_path / "inference.yaml"
    path.write_text(DREEM_WHOLE_CONFIG_YAML)
    opts = load_tracker_options(path)
    assert opts.persistent_tracking is True
    assert (opts.max_gap, opts.max_tracks) == (10, 2)
    assert load_tracker_options(str(path)) == opts
    section = tmp_path / "tracker.yaml"
    section.write_text(yaml.safe_dump(yaml.safe_load(DREEM_WHOLE_CONFIG_YAML)["tracker"]))
    assert load_tracker_options(section) == opts
    assert load_tracker_options(opts) is opts
    assert load_tracker_options({"window_size": 3}).window_size == 3


def test_dreem_spellings_of_off_become_none() -> None:
    opts = GTRTrackerOptions.from_dict(
        {"iou": "", "decay_time": 0, "max_center_dist": 0.0, "max_gap": math.inf}
    )
    assert (opts.iou, opts.decay_time, opts.max_center_dist, opts.max_gap) == (None,) * 4
    assert GTRTrackerOptions.from_dict(yaml.safe_load("max_tracks: .inf")).max_tracks is None
    assert GTRTrackerOptions.from_dict({"iou": "MAX"}).iou == "max"
    assert GTRTrackerOptions(iou="").iou is None
    assert GTRTrackerOptions.from_dict({"tracker": None}) == GTRTrackerOptions()


def test_typo_gets_a_did_you_mean() -> None:
    with pytest.raises(GTRTrackerOptionsError, match="'window_sise'; did you mean 'window_size'"):
        GTRTrackerOptions.from_dict({"window_sise": 4})
    with pytest.raises(GTRTrackerOptionsError, match="'overlap_threshold'.*'overlap_thresh'"):
        GTRTrackerOptions.from_dict({"tracker": {"overlap_threshold": 0.1}})
    with pytest.raises(GTRTrackerOptionsError, match="Unknown tracker option 'zzz' \\(valid"):
        GTRTrackerOptions.from_dict({"zzz": 1})


def test_dreem_options_not_implemented_are_named_as_such() -> None:
    with pytest.raises(GTRTrackerOptionsError, match="'temperature' is a DREEM option"):
        GTRTrackerOptions.from_dict({"temperature": 0.1})


def test_whole_config_without_a_tracker_section_is_reported() -> None:
    with pytest.raises(GTRTrackerOptionsError, match="no 'tracker' section"):
        GTRTrackerOptions.from_dict({"model": {}, "dataset": {}})
    with pytest.raises(GTRTrackerOptionsError, match="'tracker' section must be a mapping"):
        GTRTrackerOptions.from_dict({"tracker": [1, 2]})
    with pytest.raises(GTRTrackerOptionsError, match="must be a mapping, got list"):
        GTRTrackerOptions.from_dict([("window_size", 2)])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("window_size", "8", "'window_size' must be an integer"),
        ("window_size", 0, "'window_size' must be >= 1"),
        ("window_size", True, "'window_size' must be an integer"),
        ("use_vis_feats", "yes", "'use_vis_feats' must be true or false"),
        ("mult_thresh", 1, "'mult_thresh' must be true or false"),
        ("persistent_tracking", None, "'persistent_tracking' must be true or false"),
        ("overlap_thresh", "0.1", "'overlap_thresh' must be a number"),
        ("overlap_thresh", 1.5, "'overlap_thresh' must be >= 0.0 and <= 1.0"),
        ("overlap_thresh", float("nan"), "'overlap_thresh' must be a number"),
        ("decay_time", 1.2, "'decay_time' must be > 0.0 and <= 1.0"),
        ("decay_time", -0.5, "'decay_time' must be > 0.0"),
        ("iou", "min", "'iou' must be null, '', 'mult' or 'max'"),
        ("iou", 1, "'iou' must be null"),
        ("max_center_dist", 50, "'max_center_dist' must be > 0.0 and <= 1.0 \\(a fraction"),
        ("max_gap", -1, "'max_gap' must be >= 0"),
        ("max_gap", 2.5, "'max_gap' must be an integer or null"),
        ("max_tracks", 0, "'max_tracks' must be >= 1"),
    ],
)
def test_bad_values_name_the_key(key: str, value, message: str) -> None:
    with pytest.raises(GTRTrackerOptionsError, match=message):
        GTRTrackerOptions.from_dict({key: value})


def test_errors_are_tracker_option_errors_and_files_are_named(tmp_path: Path) -> None:
    assert issubclass(GTRTrackerOptionsError, TrackerOptionsError)
    bad = tmp_path / "bad.yaml"
    bad.write_text("tracker:\n  window_size: -3\n")
    with pytest.raises(GTRTrackerOptionsError, match=f"{bad}: Tracker option 'window_size'"):
        load_tracker_options(bad)
    with pytest.raises(GTRTrackerOptionsError, match="Cannot read tracker config .*missing.yaml"):
        load_tracker_options(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tracker: [unclosed\n")
    with pytest.raises(GTRTrackerOptionsError, match="broken.yaml': line 2, column 1: not valid"):
        load_tracker_options(broken)


def test_options_are_frozen() -> None:
    opts = GTRTrackerOptions()
    with pytest.raises(AttributeError):
        opts.window_size = 3  # type: ignore[misc]
