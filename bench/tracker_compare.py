"""Identity tracking on held-out ground-truth detections: our tracking transformer, our classical
tracker and sleap-nn 0.3.5's tracker, side by side.

Test inputs are the ground-truth poses of ``three_flies`` and ``two_flies_noisy_detections``
(every ``step``-th frame), shuffled within every frame (seeded) and stripped of tracks, as in
``bench/tracker_stress.py``; the decoys of the noisy file stay in the input. Each is scored with
``evaluate_tracking(match="exact")`` against its own ground truth.

The transformer is trained on the *other* fly file, never on the file it is scored on:
``two_flies`` for ``three_flies``, ``three_flies`` for ``two_flies_noisy_detections`` (whose
frames are those of ``two_flies``). It is trained on the same frame step it tracks at, on every
phase of it (frames 0, 4, 8, ... and 1, 5, 9, ... at step 4), so each step gives it every frame.

sleap-nn runs ``sleap-nn track --tracking`` on the same untracked file with its defaults
(``--peer-python``, its own venv from ``bench/peer_venv.sh``); its tracking time includes its
start-up, ours is the ``track`` call alone, so frames/s of the two are not comparable as such.

    .venv/bin/python bench/tracker_compare.py --steps 1 4 8 --train-config bench/configs/gtr_flies.yaml \\
        --peer-python bench/.peer-venv/bin/python --out-dir results/bench/tracker_compare
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import sleap_io as sio
import yaml

from pipeline_lib.tracking.classical import track_labels
from pipeline_lib.tracking.gt_detections import (
    as_untracked_predictions,
    load_subsampled,
    tracked_only,
)
from pipeline_lib.tracking.options import TrackerOptions

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tracker_stress import score_tracking  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
FLIES = Path(os.environ.get("PIPELINE_SHARED_DIR", PROJECT_ROOT.parent / "shared")) / (
    "data/dreem_assets/sleap"
)
#: test file -> the file its transformer is trained on (never the same animals' frames)
CASES = {"three_flies": "two_flies", "two_flies_noisy_detections": "three_flies"}
VIDEO_OF = {"two_flies_noisy_detections": "two_flies.mp4"}


def with_video(labels: sio.Labels, name: str) -> sio.Labels:
    """The labels pointing at the fly video by absolute path (the files store bare names)."""
    video = FLIES / VIDEO_OF.get(name, f"{name}.mp4")
    labels.replace_filenames(new_filenames=[str(video.resolve())])
    return labels


def training_labels(name: str, step: int, out: Path) -> list[Path]:
    """The tracked ground truth of ``name`` at ``step``, one file per phase, for the trainer.

    Phase ``p`` keeps frames ``p, p + step, ...``: every labelled frame is used once, and each
    clip still advances ``step`` frames at a time, as the tracker will.
    """
    paths = []
    for phase in range(step):
        path = out / f"train-{name}-s{step}-p{phase}.slp"
        if not path.exists():
            subsampled = load_subsampled(FLIES / f"{name}.slp", step, offset=phase)
            labels = with_video(tracked_only(subsampled), name)
            sio.save_slp(labels, str(path), embed=False)
        paths.append(path)
    return paths


def merged(base: dict, overrides: dict) -> dict:
    """``base`` with ``overrides`` applied section by section (nested mappings merged)."""
    out = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merged(out[key], value)
        else:
            out[key] = value
    return out


def train_gtr(
    train_name: str, step: int, args, out: Path, variant: str = "", overrides: dict | None = None
) -> tuple[Path, float]:
    """Train (once) the transformer on ``train_name`` at ``step``; its run dir and seconds.

    ``variant`` names a config variant (``overrides`` merged into the training config)."""
    from pipeline_lib.tracking.gtr.stage import workflow_tracker_config
    from pipeline_lib.tracking.gtr.training import train_tracker

    tag = "".join(c if c.isalnum() else "_" for c in variant)
    run_dir = out / f"gtr{'-' + tag if tag else ''}-{train_name}-s{step}"
    if (run_dir / "best.ckpt").exists():
        return run_dir, float("nan")
    config = workflow_tracker_config(args.train_config, training_labels(train_name, step, out))
    config = merged(config, overrides or {})
    config.setdefault("trainer", {})
    if args.train_steps:
        config["trainer"]["max_steps"] = args.train_steps
    started = time.perf_counter()
    train_tracker(config, run_dir, threads=args.threads, seed=0)
    return run_dir, time.perf_counter() - started


def score(gt: sio.Labels, tracked: sio.Labels, seconds: float, n_frames: int) -> dict:
    return {
        **score_tracking(gt, tracked),
        "fps": n_frames / seconds if seconds > 0 else float("nan"),
    }


def run_sleap_nn(untracked: Path, out: Path, peer_python: str) -> tuple[sio.Labels, float]:
    started = time.perf_counter()
    subprocess.run(
        [peer_python, "-m", "sleap_nn.cli", "track", "--data_path", str(untracked)]
        + ["--tracking", "-o", str(out)],
        check=True,
        capture_output=True,
    )
    return sio.load_slp(str(out), open_videos=False), time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--train-config", required=True, help="DREEM-shaped tracker training config")
    ap.add_argument("--train-steps", type=int, help="override trainer.max_steps")
    ap.add_argument("--seed", type=int, default=0, help="seed of the within-frame shuffle")
    ap.add_argument("--peer-python", help="python of the sleap-nn 0.3.5 venv (omit to skip)")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="NAME=YAML",
        help="also train and score a transformer whose training config has these overrides, "
        "e.g. 'no geometry={model: {geometry_bias: null}}' (repeatable)",
    )
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args()
    out = args.out_dir
    out.mkdir(parents=True, exist_ok=True)

    from pipeline_lib.tracking.track import build_tracker

    variants = {}
    for spec in args.variant:
        name, _, overrides = spec.partition("=")
        variants[name.strip()] = yaml.safe_load(overrides) or {}

    rows = []
    for test_name, train_name in CASES.items():
        for step in args.steps:
            labels = with_video(load_subsampled(FLIES / f"{test_name}.slp", step), test_name)
            gt = tracked_only(labels)
            untracked = as_untracked_predictions(labels, seed=args.seed)
            n = len(untracked.labeled_frames)
            untracked_path = out / f"test-{test_name}-s{step}.slp"
            sio.save_slp(untracked, str(untracked_path), embed=False)
            results = {}
            started = time.perf_counter()
            tracked = track_labels(untracked, TrackerOptions())
            results["ours classical"] = score(gt, tracked, time.perf_counter() - started, n)
            run_dir, train_s = train_gtr(train_name, step, args, out)
            tracker = build_tracker({"method": "gtr", "model": str(run_dir)})
            started = time.perf_counter()
            tracked = tracker.track(untracked)
            results["ours transformer"] = score(gt, tracked, time.perf_counter() - started, n)
            results["ours transformer"]["train_s"] = train_s
            for name, overrides in variants.items():
                run_dir, train_s = train_gtr(train_name, step, args, out, name, overrides)
                tracker = build_tracker({"method": "gtr", "model": str(run_dir)})
                started = time.perf_counter()
                tracked = tracker.track(untracked)
                key = f"ours transformer ({name})"
                results[key] = score(gt, tracked, time.perf_counter() - started, n)
                results[key]["train_s"] = train_s
            if args.peer_python:
                peer, seconds = run_sleap_nn(
                    untracked_path, out / f"sleap-nn-{test_name}-s{step}.slp", args.peer_python
                )
                results["sleap-nn 0.3.5"] = score(gt, peer, seconds, n)
            for tool, r in results.items():
                row = {"file": test_name, "step": step, "frames": n, "tool": tool, **r}
                rows.append(row)
                print(json.dumps(row), flush=True)
    (out / "summary.json").write_text(json.dumps(rows, indent=2))
    print(yaml.safe_dump(rows, sort_keys=False), file=sys.stderr)


if __name__ == "__main__":
    main()
