"""Stress test of the classical tracker on ground-truth detections at reduced frame rates.

For each fly file, subsampling step, similarity and motion setting, the ground-truth poses are
turned into track-free PredictedInstances (score 1), shuffled within every frame (seeded, as in
``tests/test_classical_tracker.py``) and tracked with ``track_labels`` (default options apart
from ``similarity`` and ``use_motion``). Frames kept are every ``step``-th from frame 0.

Reported per combination: identity switches counted as in the tests (output and truth paired
by identical coordinates; losing the identity counts), CLEAR-MOT ID switches, MOTA, IDF1 and
HOTA from ``evaluate_tracking(match="exact")``, the number of output tracks, and tracking
speed (frames/s of the ``track_labels`` call alone, median of the repeats).

In ``two_flies_noisy_detections.slp`` the untracked instances are decoy detections: they stay
in the tracker's input but are not ground truth (tracks given to them count as false
positives in MOTA, and not at all in the switch count).

Run from anywhere, e.g. ``.venv/bin/python bench/tracker_stress.py --out table.md``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import sleap_io as sio

from pipeline_lib.evaluation.tracking_metrics import evaluate_tracking
from pipeline_lib.tracking.classical import track_labels
from pipeline_lib.tracking.gt_detections import (
    as_untracked_predictions,
    count_switches,
    load_subsampled,
    tracked_only,
)
from pipeline_lib.tracking.options import SIMILARITIES, TrackerOptions

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = "../shared/data"  # relative to the project root
FLY_DIR = Path("dreem_assets") / "sleap"
FILES = ("three_flies.slp", "two_flies.slp", "two_flies_noisy_detections.slp")


def n_output_tracks(tracked: sio.Labels) -> int:
    return len(
        {id(i.track) for lf in tracked.labeled_frames for i in lf.instances if i.track is not None}
    )


def bench_one(
    gt: sio.Labels, preds: sio.Labels, similarity: str, use_motion: bool, repeats: int
) -> dict[str, float | int]:
    options = TrackerOptions(similarity=similarity, use_motion=use_motion)
    times = []
    tracked = None
    for _ in range(repeats):
        start = time.perf_counter()
        tracked = track_labels(preds, options)
        times.append(time.perf_counter() - start)
    return {
        **score_tracking(gt, tracked),
        "tracks": n_output_tracks(tracked),
        "fps": len(preds.labeled_frames) / statistics.median(times),
    }


def score_tracking(gt: sio.Labels, tracked: sio.Labels) -> dict[str, float | int]:
    """Switches paired by identical coordinates, and CLEAR-MOT / IDF1 / HOTA (exact match)."""
    metrics = evaluate_tracking(gt, tracked, match="exact")
    return {
        "switches": count_switches(gt, tracked),
        "mot_switches": int(metrics["id_switches"]),
        "mota": float(metrics["mota"]),
        "idf1": float(metrics["idf1"]),
        "hota": float(metrics["hota"]),
    }


HEADER = (
    "| file | step | frames | similarity | motion | ID switches | CLEAR-MOT IDSW | MOTA | IDF1 "
    "| HOTA | tracks | frames/s |\n"
    "|---|---:|---:|---|---|---:|---:|---:|---:|---:|---:|---:|"
)


def format_row(name: str, step: int, n_frames: int, sim: str, motion: bool, r: dict) -> str:
    return (
        f"| {name} | {step} | {n_frames} | {sim} | {'on' if motion else 'off'} "
        f"| {r['switches']} | {r['mot_switches']} | {r['mota']:.3f} | {r['idf1']:.3f} "
        f"| {r['hota']:.3f} | {r['tracks']} | {r['fps']:.0f} |"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-root",
        default=DEFAULT_DATA_ROOT,
        help="shared data folder; a relative path is taken from the project root "
        f"(default: {DEFAULT_DATA_ROOT})",
    )
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--seed", type=int, default=0, help="seed of the within-frame shuffle")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per combination")
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    args = parser.parse_args(argv)

    data_root = Path(args.data_root)
    if not data_root.is_absolute():
        data_root = PROJECT_ROOT / data_root
    fly_dir = data_root / FLY_DIR
    missing = [name for name in FILES if not (fly_dir / name).is_file()]
    if missing:
        parser.error(f"missing {', '.join(missing)} under {args.data_root}/{FLY_DIR.as_posix()}")
    if any(s < 1 for s in args.steps) or args.repeats < 1:
        parser.error("--steps and --repeats must be >= 1")

    lines = [HEADER]
    print(HEADER, flush=True)
    total = time.perf_counter()
    for name in FILES:
        for step in args.steps:
            labels = load_subsampled(fly_dir / name, step)
            gt = tracked_only(labels)
            preds = as_untracked_predictions(labels, seed=args.seed)
            for similarity in SIMILARITIES:
                for use_motion in (False, True):
                    result = bench_one(gt, preds, similarity, use_motion, args.repeats)
                    row = format_row(
                        name.removesuffix(".slp"),
                        step,
                        len(preds.labeled_frames),
                        similarity,
                        use_motion,
                        result,
                    )
                    lines.append(row)
                    print(row, flush=True)
    print(f"\n({time.perf_counter() - total:.0f} s in total)", file=sys.stderr)
    if args.out is not None:
        args.out.write_text("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
