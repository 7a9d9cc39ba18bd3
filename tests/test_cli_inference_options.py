"""Every inference option is a flag of ``predict`` and ``evaluate``, with the same meaning."""

from __future__ import annotations

from dataclasses import fields

import pytest

from pipeline_lib.cli import build_parser
from pipeline_lib.cli_flags import inference_options as _inference_options
from pipeline_lib.inference.options import InferenceOptions

# A value different from the default for each option, as typed on the command line.
NON_DEFAULT = {
    "batch_size": "7",
    "peak_threshold": "0.35",
    "refinement": "local",
    "integral_patch_size": "3",
    "max_instances": "2",
    "device": "cpu",
    "precision": "32",
    "paf_n_points": "6",
    "max_edge_length_ratio": "0.5",
    "dist_penalty_weight": "2.0",
    "min_line_scores": "0.1",
    "min_instance_peaks": "0.5",
    "max_peaks_per_node": "8",
    "min_visible_nodes": "3",
    "min_instance_score": "0.3",
    "min_mean_node_score": "0.4",
    "overlap_nms": "oks",
    "overlap_threshold": "0.6",
    "oks_stddev": "0.05",
    "input_scale": "0.5",
    "max_height": "256",
    "max_width": "320",
    "ensure_rgb": None,  # a switch
    "ensure_grayscale": None,
    "crop_size": "96",
}
HEADS = {
    "predict": ["predict", "m", "--video", "v.mp4", "--out", "o.slp"],
    "evaluate": ["evaluate", "m", "--labels", "l.slp", "--out-prefix", "p"],
}


def test_the_table_covers_every_option():
    assert set(NON_DEFAULT) == {f.name for f in fields(InferenceOptions)}


@pytest.mark.parametrize("command", sorted(HEADS))
@pytest.mark.parametrize("name", sorted(NON_DEFAULT))
def test_each_option_is_a_flag(command, name):
    flag = "--" + name.replace("_", "-")
    value = NON_DEFAULT[name]
    argv = HEADS[command] + ([flag] if value is None else [flag, value])
    given = _inference_options(build_parser().parse_args(argv))
    assert list(given) == [name]
    parsed = getattr(InferenceOptions.from_dict(given), name)
    assert parsed != getattr(InferenceOptions(), name)
    assert parsed == (True if value is None else type(parsed)(value))


def test_no_flags_means_the_defaults():
    for argv in HEADS.values():
        given = _inference_options(build_parser().parse_args(argv))
        assert given == {} and InferenceOptions.from_dict(given) == InferenceOptions()


def test_a_bad_choice_is_refused(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(HEADS["predict"] + ["--precision", "fp8"])
    assert "--precision" in capsys.readouterr().err
