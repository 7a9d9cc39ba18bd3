"""The pipeline's stages as a command line, for use outside Snakemake.

Each subcommand calls the same pipeline_lib function as the workflow rule of that name, e.g.

    pipeline-lib train config.yaml --train train.slp --val val.slp --run-dir models/m1
    pipeline-lib train config.yaml      # labels, split and run folder from the config itself
    pipeline-lib train config.yaml trainer_config.max_epochs=5   # sleap-nn-style overrides
    pipeline-lib predict models/centroid models/centered --video v.mp4 --out v.slp
    pipeline-lib predict -i v.mp4 -m models/centroid -m models/centered -o v.slp --tracking
    pipeline-lib eval --gt labels.slp --pred predictions.slp --out metrics.json
    pipeline-lib train-tracker tracker.yaml --run-dir models/gtr
    pipeline-lib track predictions.slp --out tracked.slp --tracker-model models/gtr
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pipeline_lib import __version__
from pipeline_lib.cli_flags import (
    add_inference_arguments,
    add_tracker_arguments,
    inference_options,
    tracker_options,
)
from pipeline_lib.devices import PRECISIONS


def _print(result) -> None:
    """Print a command's result as strict JSON (a NaN metric is printed as null)."""
    from pipeline_lib.io.json_io import dumps_strict

    if result is not None:
        print(dumps_strict(result, default=str))


def _demo(a: argparse.Namespace) -> None:
    from pipeline_lib.data.demo import make_demo_dataset

    paths = make_demo_dataset(
        a.out_dir, seed=a.seed, n_videos=a.n_videos, n_frames=a.n_frames, n_animals=a.n_animals
    )
    _print({"labels": paths.labels, "videos": paths.videos, "ground_truth": paths.ground_truth})


def _split(a: argparse.Namespace) -> None:
    from pipeline_lib.data.split import split_labels

    _print(
        split_labels(
            a.labels,
            f"{a.out_dir}/train.slp",
            f"{a.out_dir}/val.slp",
            f"{a.out_dir}/test.slp",
            a.validation_fraction,
            a.test_fraction,
            a.test_labels,
            a.seed,
            not a.include_predictions,
        )
    )


def _cache(a: argparse.Namespace) -> None:
    from pipeline_lib.data.cache import build_image_cache

    splits = dict(item.split("=", 1) for item in a.split)
    _print(build_image_cache(splits, a.out_dir, a.threads))


def _train(a: argparse.Namespace) -> None:
    from pipeline_lib.config.overrides import config_with_overrides

    if (a.train is None) != (a.val is None):
        raise ValueError("give both --train and --val, or neither (the config's labels paths)")
    with config_with_overrides(a.config, a.overrides) as config:
        _train_config(a, config)


def _train_config(a: argparse.Namespace, config: Path) -> None:
    from pipeline_lib.training.standalone import prepare_standalone_run, run_dir_for
    from pipeline_lib.training.train import train_model

    seed = a.seed
    if a.train is None:
        run = prepare_standalone_run(config, a.run_dir, a.seed)
        train, val, run_dir, seed = run.train_labels, run.val_labels, run.run_dir, run.seed
    else:
        from pipeline_lib.config import config_to_dict, load_training_config
        from pipeline_lib.config.skeleton_fit import check_labels_fit

        train, val = a.train, a.val
        user_cfg = load_training_config(config)
        check_labels_fit(user_cfg, [train, val], a.config)  # before any frame is decoded
        run_dir = a.run_dir or run_dir_for(config_to_dict(user_cfg))
    train_model(config, train, val, a.cache_dir, run_dir, a.threads, seed, a.precision)
    _print({"run_dir": str(run_dir)})


def _evaluate(a: argparse.Namespace) -> None:
    from pipeline_lib.evaluation.evaluate import evaluate_model

    stem = a.out_prefix
    metrics = evaluate_model(
        a.model_dirs,
        a.labels,
        f"{stem}.json",
        f"{stem}.npz",
        f"{stem}.pred.slp",
        a.threads,
        inference_options(a),
    )
    _print({k: metrics.get(k) for k in ("n_frames", "mOKS", "oks_voc", "distance")})


def _predict(a: argparse.Namespace) -> None:
    from pipeline_lib.inference.predict import predict_video

    _predict_sources(a)
    options = inference_options(a)
    tracker = _tracker_config(a) if a.tracking else None
    if a.labels is not None:
        from pipeline_lib.inference.predict import predict_labels

        if a.analysis_h5 or a.csv:
            raise ValueError("--analysis-h5 and --csv go with --video (one video per file)")
        _print(
            _then_track(
                predict_labels(
                    a.model_dirs,
                    a.labels,
                    a.out,
                    options,
                    a.threads,
                    a.video_index,
                    a.frames,
                    a.only_labeled_frames,
                    a.only_suggested_frames,
                    a.exclude_user_labeled,
                ),
                a.out,
                tracker,
            )
        )
        return
    if a.video_index is not None or a.only_labeled_frames or a.only_suggested_frames:
        raise ValueError("--video-index and the frame filters go with --labels")
    if tracker is None:
        h5, csv = a.analysis_h5, a.csv
        _print(predict_video(a.model_dirs, a.video, a.out, options, a.threads, a.frames, h5, csv))
        return
    result = predict_video(a.model_dirs, a.video, a.out, options, a.threads, a.frames)
    _print(_then_track(result, a.out, tracker, a.csv, a.analysis_h5))


def _predict_sources(a: argparse.Namespace) -> None:
    """Fold sleap-nn's spellings into ours: ``-m`` models join the positional ones, ``-i``
    becomes --labels for a .slp and --video otherwise, ``-o`` is --out."""
    a.model_dirs = [*(a.model_dirs or []), *(a.model_paths or [])]
    if not a.model_dirs:
        raise ValueError("give the model folders, as arguments or with -m/--model_paths")
    if a.data_path is not None:
        if a.data_path.lower().endswith(".slp"):
            a.labels = a.data_path
        else:
            a.video = a.data_path
    if a.out is None:
        raise ValueError("give the output file with -o/--output_path (or --out)")


def _then_track(result: dict, path: str, tracker: dict | None, csv=None, h5=None) -> dict:
    """With ``predict --tracking``: track the predictions just written, in place."""
    if tracker is None:
        return result
    from pipeline_lib.tracking.track import track_file

    return {**result, "tracking": track_file(path, path, tracker, csv, out_analysis_h5=h5)}


def _tracker_config(a: argparse.Namespace) -> dict:
    """Tracker options from the generated flags, over the (older) ``--options`` JSON."""
    options = json.loads(a.options) if getattr(a, "options", None) else {}
    if not isinstance(options, dict):
        raise ValueError(f"--options must be a JSON object, got {a.options}")
    options.update(tracker_options(a))
    if a.tracker_model is not None:
        if options.get("method", "gtr") != "gtr" or "model" in options:
            raise ValueError(
                "--tracker-model selects the gtr tracker and its model; leave 'method' and "
                "'model' out of the tracker options"
            )
        options = {**options, "method": "gtr", "model": a.tracker_model}
    return options


def _track(a: argparse.Namespace) -> None:
    from pipeline_lib.tracking.track import track_file

    _print(track_file(a.input, a.out, _tracker_config(a), a.csv))


def _train_tracker(a: argparse.Namespace) -> None:
    from pipeline_lib.tracking.gtr.training import train_tracker

    _print(train_tracker(a.config, a.run_dir, a.threads, a.seed))


def _eval_pose(a: argparse.Namespace) -> None:
    from pipeline_lib.evaluation.null_reasons import unmatched_warning
    from pipeline_lib.evaluation.pose_metrics import evaluate_labels, save_pose_metrics
    from pipeline_lib.io.labels import load_labels

    gt = load_labels(a.gt, require_videos=False)
    pr = load_labels(a.pred, require_videos=False)
    metrics, arrays = evaluate_labels(gt, pr, oks_stddev=a.oks_stddev, return_arrays=True)
    warning = unmatched_warning(metrics, f"{a.pred} against {a.gt}")
    if warning:
        logging.getLogger("pipeline_lib.evaluation").warning("%s", warning)
    if a.out:
        save_pose_metrics(metrics, a.out, a.out.rsplit(".", 1)[0] + ".npz", arrays)
    _print({k: metrics[k] for k in ("mOKS", "oks_voc", "distance", "pck")})


def _eval_tracking(a: argparse.Namespace) -> None:
    from pipeline_lib.evaluation.tracking_metrics import evaluate_tracking, save_tracking_metrics
    from pipeline_lib.io.labels import load_labels

    metrics = evaluate_tracking(
        load_labels(a.gt, require_videos=False),
        load_labels(a.pred, require_videos=False),
        match=a.match,
        max_distance=a.max_distance,
    )
    if a.out:
        save_tracking_metrics(metrics, a.out)
    _print(metrics)


def _convert_legacy_config(a: argparse.Namespace) -> None:
    from pipeline_lib.config import load_training_config, save_training_config
    from pipeline_lib.config.legacy import find_legacy_config

    source = Path(a.legacy_config)
    if source.is_dir():
        source = find_legacy_config(source)
    if source.suffix.lower() != ".json":
        raise ValueError(f"{source} is not a SLEAP training_config.json")
    _print({"config": str(save_training_config(load_training_config(source), a.out))})


def _check_yaml(a: argparse.Namespace) -> None:
    """Read YAML files with the pipeline's strict loader: Snakemake reports a syntax error in a
    ``--configfile`` before any of our code runs, naming neither file nor line."""
    from pipeline_lib.config.yaml_io import load_yaml

    for path in a.files:
        load_yaml(path)
    _print({"valid_yaml": a.files})


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and ``--help``)."""
    p = argparse.ArgumentParser(prog="pipeline-lib", description=__doc__.splitlines()[0])
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also log third-party libraries at INFO level (our own INFO lines are always shown)",
    )
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("demo", help="generate the synthetic demo dataset")
    s.add_argument("out_dir", help="folder for the videos, labels and ground truth")
    s.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    s.add_argument("--n-videos", type=int, default=2, help="number of videos (default: 2)")
    s.add_argument("--n-frames", type=int, default=200, help="frames per video (default: 200)")
    s.add_argument("--n-animals", type=int, default=3, help="animals per video (default: 3)")
    s.set_defaults(func=_demo)

    s = sub.add_parser("split", help="seeded train/val/test split of labelled frames")
    s.add_argument("labels", nargs="+", help="labels files (.slp / .pkg.slp) to merge and split")
    s.add_argument("--out-dir", required=True, help="writes train.slp, val.slp, test.slp here")
    s.add_argument(
        "--validation-fraction", type=float, default=0.1, help="share for validation (0.1)"
    )
    s.add_argument("--test-fraction", type=float, default=0.1, help="share for test (0.1)")
    s.add_argument("--test-labels", help="a separate test labels file (then no test split)")
    s.add_argument("--seed", type=int, default=0, help="split seed (default: 0)")
    s.add_argument(
        "--include-predictions", action="store_true", help="also train on predicted instances"
    )
    s.set_defaults(func=_split)

    s = sub.add_parser("cache", help="decode the frames of each split into a lossless cache")
    s.add_argument(
        "--split",
        action="append",
        required=True,
        metavar="NAME=LABELS.slp",
        help="a split and its labels file; repeat for each split",
    )
    s.add_argument("--out-dir", required=True, help="folder of the cache")
    s.add_argument("--threads", type=int, default=1, help="decoding threads (default: 1)")
    s.set_defaults(func=_cache)

    s = sub.add_parser("train", help="train one model from a sleap-nn training config")
    s.add_argument("config", help="sleap-nn training config (YAML) or SLEAP training_config.json")
    s.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY.PATH=VALUE",
        help="sleap-nn-style config overrides, e.g. trainer_config.max_epochs=5 "
        "trainer_config.optimizer.lr=1e-4 (values read as YAML; checked like the file)",
    )
    s.add_argument("--train", help="training labels (default: data_config.train_labels_path)")
    s.add_argument(
        "--val",
        help="validation labels (default: data_config.val_labels_path, else a seeded "
        "validation_fraction split of the training labels)",
    )
    s.add_argument("--cache-dir", help="image cache from `cache` (default: decode the videos)")
    s.add_argument("--run-dir", help="default: <trainer_config.ckpt_dir>/<run_name>")
    s.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    s.add_argument("--seed", type=int, help="seed when trainer_config.seed is null")
    s.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: bf16 mixed precision on CPUs with native bf16, else 32",
    )
    s.set_defaults(func=_train)

    s = sub.add_parser("evaluate", help="predict a labelled split and score it")
    s.add_argument("model_dirs", nargs="+", help="model run folders, as for predict")
    s.add_argument("--labels", required=True, help="labelled split to predict and score")
    s.add_argument("--out-prefix", required=True, help="writes PREFIX.json, .npz, .pred.slp")
    s.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    add_inference_arguments(s)
    s.set_defaults(func=_evaluate)

    s = sub.add_parser("predict", help="predict the frames of a video or of a labels file")
    s.add_argument(
        "model_dirs", nargs="*", help="[single_instance] or [centroid centered_instance]"
    )
    s.add_argument(
        "-m",
        "--model_paths",
        "--model-paths",
        action="append",
        metavar="MODEL_DIR",
        help="a model folder (sleap-nn spelling); repeat for a top-down pair",
    )
    source = s.add_mutually_exclusive_group(required=True)
    source.add_argument("--video", help="video file or image folder")
    source.add_argument("--labels", help=".slp or .pkg.slp: predict the frames of its videos")
    source.add_argument(
        "-i",
        "--data_path",
        "--data-path",
        help="sleap-nn spelling: a .slp is read as --labels, anything else as --video",
    )
    s.add_argument("--video-index", type=int, help="with --labels: only this video")
    s.add_argument("--only-labeled-frames", action="store_true", help="with --labels")
    s.add_argument("--only-suggested-frames", action="store_true", help="with --labels")
    s.add_argument("--exclude-user-labeled", action="store_true", help="with --labels")
    s.add_argument("-o", "--out", "--output_path", "--output-path", help="predictions .slp")
    s.add_argument("--frames", help="frame selection, e.g. 0-99,150 (default: every frame)")
    s.add_argument("--threads", type=int, default=1, help="torch threads (default: 1)")
    s.add_argument("--analysis-h5", help="also write SLEAP's analysis HDF5 here")
    s.add_argument("--csv", help="also write a CSV with one row per instance here")
    s.add_argument(
        "--tracking", action="store_true", help="track the predictions (the --tracking-* options)"
    )
    s.add_argument(
        "--tracker-model", metavar="RUN_DIR", help="with --tracking: a trained tracker (GTR)"
    )
    add_inference_arguments(s)
    add_tracker_arguments(s, prefix="tracking-")
    s.set_defaults(func=_predict)

    s = sub.add_parser("track", help="assign identities to predicted instances")
    s.add_argument("input", help="predictions (.slp) to track")
    s.add_argument("-o", "--out", "--output_path", required=True, help="tracked .slp")
    s.add_argument("--csv", help="also write a CSV with one row per instance here")
    s.add_argument(
        "--options",
        help="tracker options as JSON, e.g. '{\"max_tracks\": 2}' (the flags below win)",
    )
    s.add_argument(
        "--tracker-model",
        metavar="RUN_DIR",
        help="track with this trained tracking transformer (train-tracker's run directory); "
        "--options then overrides its tracker options",
    )
    add_tracker_arguments(s)
    s.set_defaults(func=_track)

    s = sub.add_parser(
        "train-tracker", help="train a tracking transformer (GTR) from a DREEM-style config"
    )
    s.add_argument("config", help="run config YAML: model, dataset, trainer, tracker, ...")
    s.add_argument("--run-dir", required=True, help="where best.ckpt and the config are written")
    s.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest for small models)"
    )
    s.add_argument("--seed", type=int, help="run seed when the config's trainer.seed is null")
    s.set_defaults(func=_train_tracker)

    s = sub.add_parser(
        "eval", aliases=["eval-pose"], help="pose metrics of any ground-truth / prediction pair"
    )
    s.add_argument("--gt", "--ground_truth_path", required=True, help="ground-truth labels")
    s.add_argument("--pred", "--predicted_path", required=True, help="predicted labels")
    s.add_argument("--oks-stddev", type=float, default=0.025, help="OKS sigma (0.025)")
    s.add_argument(
        "--out",
        "--save_metrics",
        help="metrics JSON (an .npz of raw matches is written beside it)",
    )
    s.set_defaults(func=_eval_pose)

    s = sub.add_parser("eval-tracking", help="MOTA / IDF1 / HOTA of tracked predictions")
    s.add_argument("--gt", required=True, help="ground-truth tracks (.slp)")
    s.add_argument("--pred", required=True, help="tracked predictions (.slp)")
    s.add_argument(
        "--match",
        default="centroid",
        choices=["centroid", "oks", "exact"],
        help="how predictions are matched to ground truth (default: centroid)",
    )
    s.add_argument(
        "--max-distance", type=float, default=20.0, help="centroid match radius, px (20)"
    )
    s.add_argument("--out", help="metrics JSON")
    s.set_defaults(func=_eval_tracking)

    s = sub.add_parser(
        "convert-legacy-config", help="SLEAP <= 1.4 training_config.json -> sleap-nn YAML"
    )
    s.add_argument("legacy_config", help="training_config.json (or the SLEAP model folder)")
    s.add_argument("out", help="the YAML to write")
    s.set_defaults(func=_convert_legacy_config)

    s = sub.add_parser(
        "check-yaml", help="syntax errors (file:line:column) and repeated keys of YAML files"
    )
    s.add_argument("files", nargs="+", help="config files (pipeline, model, tracker)")
    s.set_defaults(func=_check_yaml)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``pipeline-lib`` command."""
    from pipeline_lib.errors import (
        exit_after_disk_full,
        failure_line,
        is_disk_full,
        sigterm_raises,
    )
    from pipeline_lib.logs import setup_logging

    args = build_parser().parse_args(argv)
    setup_logging(args.verbose)
    try:
        with sigterm_raises():  # a scheduler's SIGTERM ends the command like Ctrl-C, with a line
            args.func(args)
    except (ValueError, OSError, RuntimeError, KeyboardInterrupt) as exc:
        # OSError: missing file, unwritable folder, full disk; KeyboardInterrupt: SIGINT/SIGTERM
        message, code = failure_line(exc) or (str(exc), 1)
        print(f"pipeline-lib {args.command}: error: {message}", file=sys.stderr)
        if argv is None and is_disk_full(exc):  # a real run, not a test calling main()
            exit_after_disk_full(code)
        return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
