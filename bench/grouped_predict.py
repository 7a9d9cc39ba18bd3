"""Many short clips through the workflow: one job per video against ``videos.per_job`` batches.

Cuts ``--clips`` clips of ``--frames`` frames from ``centered_pair_small.mp4`` (shared data) into
``bench/_grouped_work/clips`` (ignored by git), then runs the same config twice with
``snakemake --cores 2``, given sleap-nn's top-down asset models (``models.*.run_dir``), with
tracking switched off so only prediction is compared (``--track``: tracking too): once with
``videos.per_job: 1`` and once with ``--per-job``. Reports each run's wall time, the per-job times from the benchmark files and
the stage times from the logs (their difference is the per-job start-up: Python, imports, model
load), and checks that both runs wrote the same predictions for every clip (the decoded points,
scores and frames; the files' provenance holds a creation time and run time, so bytes differ).

    flock /tmp/heavy.lock .venv/bin/python bench/grouped_predict.py --clips 200 --per-job 100
    flock /tmp/heavy.lock .venv/bin/python bench/grouped_predict.py --start-up-only
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).with_name("snakemake")
ASSETS = ROOT.parent / "shared/data/sleap_nn_assets"
SOURCE = ASSETS / "datasets/centered_pair_small.mp4"
WORK = ROOT / "bench/_grouped_work"
_FINISHED = re.compile(r"rule \w+ finished in ([0-9.]+) s")


def cut_clips(n_clips: int, n_frames: int) -> Path:
    """``clip_0000.mp4`` ...: consecutive windows of the source video, cut by ffmpeg."""
    import imageio_ffmpeg

    folder = WORK / f"clips_{n_clips}x{n_frames}"
    if folder.is_dir() and len(list(folder.glob("*.mp4"))) == n_clips:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    total = 1100
    for i in range(n_clips):
        start = (i * n_frames) % (total - n_frames)
        subprocess.run(
            [ffmpeg, "-loglevel", "error", "-i", str(SOURCE), "-vf",
             f"trim=start_frame={start}:end_frame={start + n_frames},setpts=PTS-STARTPTS",
             "-an", "-c:v", "libx264", "-crf", "18", "-pix_fmt", "yuv420p",
             str(folder / f"clip_{i:04d}.mp4")],
            check=True,
        )  # fmt: skip
    return folder


def write_config(work: Path, clips: Path, per_job: int, track: bool) -> None:
    models = ASSETS / "model_ckpts"
    config = {
        "demo": {"enabled": False},
        "models": {
            "centroid": {"run_dir": str(models / "minimal_instance_centroid")},
            "centered": {"run_dir": str(models / "minimal_instance_centered_instance")},
        },
        "predictor": {"models": ["centroid", "centered"]},
        "videos": {"globs": [str(clips)], "per_job": per_job},
        "tracking": {"enabled": track, "max_tracks": 2},
        "resources": {
            rule: {"threads": 1, "gpu": 0} for rule in ("predict_video", "predict_batch")
        },
    }
    (work / "config").mkdir(parents=True, exist_ok=True)
    (work / "config/config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def run(work: Path, cores: int) -> float:
    cmd = [str(SNAKEMAKE), "-s", str(ROOT / "Snakefile"), "--directory", str(work),
           "--cores", str(cores), "--workflow-profile", "none", "--quiet", "all"]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"snakemake failed in {work}:\n{done.stderr[-4000:]}")
    return seconds


def job_times(work: Path, rule: str) -> tuple[list[float], list[float]]:
    """(wall seconds of each job from its benchmark file, seconds inside the stage from its log)."""
    wall = []
    for tsv in sorted((work / "results/benchmarks" / rule).glob("*.tsv")):
        with tsv.open() as fh:
            wall.append(float(next(csv.DictReader(fh, delimiter="\t"))["s"]))
    stage = []
    for log in sorted((work / "results/logs" / rule).glob("*.log")):
        found = _FINISHED.findall(log.read_text())
        if found:
            stage.append(float(found[-1]))
    return wall, stage


def decoded(path: Path) -> dict[str, np.ndarray]:
    import sleap_io as sio

    labels = sio.load_slp(str(path), open_videos=False)
    frames = [lf.frame_idx for lf in labels.labeled_frames for _ in lf.instances]
    points = [inst.numpy() for lf in labels.labeled_frames for inst in lf.instances]
    scores = [inst.score for lf in labels.labeled_frames for inst in lf.instances]
    return {"frames": np.array(frames), "points": np.array(points), "scores": np.array(scores)}


def same_predictions(a: Path, b: Path) -> bool:
    da, db = decoded(a), decoded(b)
    return all(np.array_equal(da[k], db[k], equal_nan=True) for k in da)


_STEPS = {
    "python_start": "pass",
    "snakemake_script_preamble": "import snakemake.script",
    "torch_import": "import torch",
    "pipeline_imports_with_torch": "import pipeline_lib.inference.predict",
    "model_load_with_imports": (
        "from pipeline_lib.inference.predictors import make_predictor; "
        "from pipeline_lib.inference.options import InferenceOptions; "
        f"make_predictor([{str(ASSETS / 'model_ckpts/minimal_instance_centroid')!r}, "
        f"{str(ASSETS / 'model_ckpts/minimal_instance_centered_instance')!r}], "
        "InferenceOptions.from_dict({}))"
    ),
}


def start_up_costs(repeats: int = 5) -> dict[str, float]:
    """Median wall seconds of a fresh interpreter doing each step of a job's start-up."""
    costs = {}
    for name, code in _STEPS.items():
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
            times.append(time.perf_counter() - started)
        costs[name] = round(float(np.median(times)), 2)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clips", type=int, default=200)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--per-job", type=int, default=100)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--start-up-only", action="store_true", help="only time a job's start-up")
    parser.add_argument("--track", action="store_true", help="also track (track_video/track_batch)")
    args = parser.parse_args()
    if args.start_up_only:
        print(json.dumps(start_up_costs(), indent=2))
        return
    clips = cut_clips(args.clips, args.frames)
    result: dict = {"clips": args.clips, "frames": args.frames, "cores": args.cores}
    result["track"] = args.track
    for label, per_job in (("per_video", 1), ("grouped", args.per_job)):
        work = WORK / f"run_{label}"
        shutil.rmtree(work, ignore_errors=True)
        write_config(work, clips, per_job, args.track)
        seconds = run(work, args.cores)
        rule = "predict_video" if per_job == 1 else "predict_batch"
        wall, stage = job_times(work, rule)
        result[label] = {
            "per_job": per_job,
            "wall_s": round(seconds, 1),
            "jobs": len(wall),
            "job_wall_s_mean": round(float(np.mean(wall)), 2),
            "stage_s_mean": round(float(np.mean(stage)), 2) if stage else None,
        }
        print(label, json.dumps(result[label]), flush=True)
    ids = sorted(p.stem for p in clips.glob("*.mp4"))
    outputs = ["results/predictions/{}.predictions.slp"]
    outputs += ["results/tracks/{}.tracked.slp"] if args.track else []
    result["identical_outputs"] = all(
        same_predictions(
            WORK / "run_per_video" / out.format(v), WORK / "run_grouped" / out.format(v)
        )
        for v in ids
        for out in outputs
    )
    result["speedup"] = round(result["per_video"]["wall_s"] / result["grouped"]["wall_s"], 2)
    result["start_up_s"] = start_up_costs()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
