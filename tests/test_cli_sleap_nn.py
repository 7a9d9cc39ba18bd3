"""sleap-nn's command-line habits work here too: ``key.path=value`` overrides on ``train``,
``predict -i/-m/-o`` and ``--tracking``, ``eval``, ``--version``, help on every flag; the older
spellings stay (issue 18, item 6)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import sleap_io as sio
import yaml

from pipeline_lib import __version__
from pipeline_lib.cli import build_parser, main
from pipeline_lib.config.loader import ConfigError
from pipeline_lib.config.overrides import apply_overrides, config_with_overrides

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config/models/demo_centroid.yaml"
RUN_DIR = "sleap_nn_assets/model_ckpts/minimal_instance_single_instance"
LABELS = "sleap_nn_assets/datasets/minimal_instance.pkg.slp"


def _parsers(parser: argparse.ArgumentParser, path: str = "pipeline-lib"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def test_every_flag_and_argument_has_help():
    missing = [
        f"{path}: {action.option_strings or action.dest}"
        for path, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert not missing, missing


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"pipeline-lib {__version__}"


def test_dotted_overrides_are_parsed_as_yaml_and_applied(tmp_path):
    args = build_parser().parse_args(
        ["train", str(CONFIG), "trainer_config.max_epochs=5", "trainer_config.optimizer.lr=1e-4"]
    )
    assert args.overrides == ["trainer_config.max_epochs=5", "trainer_config.optimizer.lr=1e-4"]
    with config_with_overrides(CONFIG, args.overrides) as path:
        merged = yaml.safe_load(path.read_text())
    assert merged["trainer_config"]["max_epochs"] == 5
    assert merged["trainer_config"]["optimizer"]["lr"] == pytest.approx(1e-4)
    assert not path.exists()  # the temporary copy is removed
    assert apply_overrides({"a": {"b": 1}}, ["a.c=[1, 2]", "d=null"]) == {
        "a": {"b": 1, "c": [1, 2]},
        "d": None,
    }


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("trainer_config.max_epoch=5", "max_epoch"),  # misspelt key: the loader's check
        ("trainer_config.max_epochs=many", "max_epochs"),  # wrong type
        ("trainer_config.max_epochs.x=1", "trainer_config.max_epochs is not a section"),
        ("max_epochs", "key.path=value"),
    ],
)
def test_a_bad_override_is_refused_naming_it(override, expected, capsys):
    assert main(["train", str(CONFIG), override]) == 1
    err = capsys.readouterr().err
    assert expected in err and "pipeline-lib train: error" in err


def test_a_bad_override_raises_a_config_error_naming_file_and_override():
    with pytest.raises(ConfigError, match=r"demo_centroid.yaml with trainer_config.max_epoch=5"):
        with config_with_overrides(CONFIG, ["trainer_config.max_epoch=5"]):
            pass


def test_predict_with_sleap_nn_flags_and_tracking(shared_data, tmp_path, capsys):
    out = tmp_path / "p.slp"
    argv = ["predict", "-i", str(shared_data / LABELS), "-m", str(shared_data / RUN_DIR)]
    argv += ["-o", str(out), "--tracking", "--tracking-max-tracks", "2", "--device", "cpu"]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["tracking"]["n_tracks"] >= 1
    labels = sio.load_slp(str(out), open_videos=False)
    assert labels.labeled_frames and all(
        i.track is not None for lf in labels.labeled_frames for i in lf.instances
    )
    assert labels.provenance["tracker"]["options"]["max_tracks"] == 2


def test_predict_spellings_parse_alike():
    a = build_parser().parse_args(
        ["predict", "--data_path", "v.mp4", "--model_paths", "m1", "-m", "m2", "--output_path", "o"]
    )
    assert (a.data_path, a.model_paths, a.out) == ("v.mp4", ["m1", "m2"], "o")
    b = build_parser().parse_args(["predict", "m1", "m2", "--video", "v.mp4", "--out", "o"])
    assert (b.model_dirs, b.video, b.out) == (["m1", "m2"], "v.mp4", "o")


@pytest.mark.parametrize("command", ["eval", "eval-pose"])
def test_eval_is_pose_evaluation(command, shared_data, tmp_path, capsys):
    gt = str(shared_data / "parity/two_flies.slp")
    pred = str(shared_data / "parity/two_flies_jitter2.pred.slp")
    out = tmp_path / "m.json"
    argv = [command, "--ground_truth_path", gt, "--predicted_path", pred, "--save_metrics"]
    assert main([*argv, str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["oks_voc"]["mAP"] == pytest.approx(
        0.604461, abs=1e-4
    )
    assert out.exists()


def test_tracker_options_are_flags(shared_data, tmp_path, capsys):
    labels = shared_data / "dreem_assets/sleap/two_flies.slp"
    out = tmp_path / "t.slp"
    argv = ["track", str(labels), "-o", str(out), "--max-tracks", "2", "--similarity", "iou"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["n_tracks"] <= 2
    options = sio.load_slp(str(out), open_videos=False).provenance["tracker"]["options"]
    assert options["max_tracks"] == 2 and options["similarity"] == "iou"
