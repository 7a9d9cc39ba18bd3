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

import numpy as np
import sleap_io as sio

from pipeline_lib.evaluation.tracking_metrics import evaluate_tracking
from pipeline_lib.tracking.classical import track_labels
from pipeline_lib.tracking.options import SIMILARITIES, TrackerOptions

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = "../shared/data"  # relative to the project root
FLY_DIR = Path("dreem_assets") / "sleap"
FILES = ("three_flies.slp", "two_flies.slp", "two_flies_noisy_detections.slp")


def load_subsampled(path: Path, step: int) -> sio.Labels:
    """All instances of every ``step``-th labelled frame from frame 0 (indices unchanged)."""
    labels = sio.load_slp(str(path), open_videos=False)
    frames = [lf for lf in labels.labeled_frames if lf.frame_idx % step == 0]
    return sio.Labels(
        labeled_frames=frames,
        videos=labels.videos,
        skeletons=labels.skeletons,
        tracks=labels.tracks,
    )


def ground_truth(labels: sio.Labels) -> sio.Labels:
    """The same frames keeping only instances with a track (decoys are not ground truth)."""
    frames = [
        sio.LabeledFrame(
            video=lf.video,
            frame_idx=lf.frame_idx,
            instances=[i for i in lf.instances if i.track is not None],
        )
        for lf in labels.labeled_frames
    ]
    return sio.Labels(
        labeled_frames=frames,
        videos=labels.videos,
        skeletons=labels.skeletons,
        tracks=labels.tracks,
    )


def as_untracked_predictions(labels: sio.Labels, seed: int) -> sio.Labels:
    """Shuffled, track-free PredictedInstances (score 1) with the same points."""
    rng = np.random.default_rng(seed)
    frames = []
    for lf in labels.labeled_frames:
        insts = [
            sio.PredictedInstance.from_numpy(
                points_data=inst.numpy(),
                point_scores=np.ones(len(inst.skeleton)),
                skeleton=inst.skeleton,
                score=1.0,
            )
            for inst in lf.instances
        ]
        order = rng.permutation(len(insts))
        frames.append(
            sio.LabeledFrame(
                video=lf.video, frame_idx=lf.frame_idx, instances=[insts[k] for k in order]
            )
        )
    return sio.Labels(labeled_frames=frames, videos=labels.videos, skeletons=labels.skeletons)


def count_switches(gt: sio.Labels, tracked: sio.Labels) -> int:
    """Times a ground-truth track maps to a different output track than in its previous frame.

    Same rule as the tests: output and truth are paired by identical coordinates, losing the
    identity (an untracked output instance) counts as a switch, untracked GT is not scored.
    """
    out_frames = {(Path(lf.video.filename).name, lf.frame_idx): lf for lf in tracked.labeled_frames}
    previous: dict[str, str | None] = {}
    switches = 0
    for lf in sorted(gt.labeled_frames, key=lambda f: f.frame_idx):
        out = out_frames[(Path(lf.video.filename).name, lf.frame_idx)]
        for inst in lf.instances:
            if inst.track is None:
                continue
            pose = inst.numpy()
            match = [o for o in out.instances if np.array_equal(o.numpy(), pose, equal_nan=True)]
            if len(match) != 1:
                raise RuntimeError(f"frame {lf.frame_idx}: no unique output for a GT instance")
            pred = match[0].track.name if match[0].track is not None else None
            key = inst.track.name
            if key in previous and (pred is None or previous[key] != pred):
                switches += 1
            previous[key] = pred
    return switches


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
    metrics = evaluate_tracking(gt, tracked, match="exact")
    return {
        "switches": count_switches(gt, tracked),
        "mot_switches": int(metrics["id_switches"]),
        "mota": float(metrics["mota"]),
        "idf1": float(metrics["idf1"]),
        "hota": float(metrics["hota"]),
        "tracks": n_output_tracks(tracked),
        "fps": len(preds.labeled_frames) / statistics.median(times),
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
            gt = ground_truth(labels)
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
