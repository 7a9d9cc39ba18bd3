"""Prediction throughput, end to end from video file to written .slp: ours against sleap-nn 0.3.5.

Both tools run the *same sleap-nn run directories* (our predictor loads sleap-nn checkpoints
unchanged), on the same video, with the same batch size, in alternating runs within one session:

* ``centered_pair``: sleap-nn's own top-down pair from its test assets
  (``minimal_instance_centroid`` + ``minimal_instance_centered_instance``, trained on a frame of
  this video) on ``centered_pair_small.mp4`` (1100 frames, 384x384);
* ``two_flies``: a top-down pair that sleap-nn trains here from its sample configs
  (``config_centroid_unet.yaml`` at scale 0.5, ``config_topdown_centered_instance_unet_medium_rf``
  with crop 144) on the two_flies labels, predicting ``two_flies.mp4`` (128 frames, 1024x1024).

Per run: wall time from launching the command to its exit (start-up, decoding, network, peak
finding, writing the .slp), frames/s = frames / wall time, each tool's own in-loop frames/s, and
peak resident memory (ru_maxrss of the run, measured by a fresh launcher process).

The forward-pass-only bound is what the same networks cost alone on this machine, in our default
precision, on ready-made input tensors: centroid model on full frames in batches of the
prediction batch size, centered-instance model on as many crops per frame as the run found.
``bound_fps = 1 / (t_centroid_per_frame + crops_per_frame * t_centered_per_crop)``.

Memory at two video lengths: ``--long-copies N`` writes the case's video N times end to end
(frames re-encoded losslessly enough for detection) and predicts both lengths.

    .venv/bin/python bench/predict_throughput.py --case centered_pair --repeats 3 \\
        --peer-python bench/.peer-venv/bin/python --out-dir results/bench/predict
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import SAMPLES, SHARED_DATA, prepare_split  # noqa: E402

ASSET_RUNS = SHARED_DATA / "sleap_nn_assets/model_ckpts"
CASES = {
    "centered_pair": {
        "video": SHARED_DATA / "sleap_nn_assets/datasets/centered_pair_small.mp4",
        "models": [
            ASSET_RUNS / "minimal_instance_centroid",
            ASSET_RUNS / "minimal_instance_centered_instance",
        ],
    },
    "two_flies": {
        "video": SHARED_DATA / "dreem_assets/sleap/two_flies.mp4",
        "labels": "dreem_assets/sleap/two_flies.slp",
        "train": [
            ("centroid", "config_centroid_unet.yaml", {"scale": 0.5}),
            (
                "centered_instance",
                "config_topdown_centered_instance_unet_medium_rf.yaml",
                {"crop_size": 144},
            ),
        ],
    },
}
# Runs a command and prints its peak resident memory (KiB) as the last line of stderr.
LAUNCHER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.call(sys.argv[1:])\n"
    "print('MAXRSS_KB', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def train_peer_models(case: dict, out: Path, peer_python: str, steps: int) -> list[Path]:
    """Train the case's top-down pair with sleap-nn (once; reused by later sessions)."""
    split = prepare_split({"labels": case["labels"]}, out)
    run_dirs = []
    for name, sample, overrides in case["train"]:
        run_dir = out / "models" / name
        run_dirs.append(run_dir)
        if (run_dir / "best.ckpt").exists():
            continue
        cfg = yaml.safe_load((SAMPLES / sample).read_text())
        dc, tc = cfg["data_config"], cfg["trainer_config"]
        dc["train_labels_path"] = [str(split["train"])]
        dc["val_labels_path"] = [str(split["val"])]
        dc["preprocessing"].update(overrides)
        dc["data_pipeline_fw"] = "torch_dataset_cache_img_memory"
        tc.update(
            {
                "max_epochs": 10,
                "train_steps_per_epoch": steps // 10,
                "min_train_steps_per_epoch": 1,
                "seed": 0,
                "enable_progress_bar": False,
                "use_wandb": False,
                "save_ckpt": True,
            }
        )
        tc["optimizer"]["lr"] = 1e-3
        tc["early_stopping"]["stop_training_on_plateau"] = False
        cfg_path = out / f"{name}.yaml"
        cfg_path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        log = out / f"train-{name}.log"
        with log.open("w") as fh:
            subprocess.run(
                [
                    peer_python,
                    "-m",
                    "sleap_nn.cli",
                    "train",
                    str(cfg_path),
                    f"trainer_config.ckpt_dir={run_dir.parent}",
                    f"trainer_config.run_name={run_dir.name}",
                ],
                stdout=fh,
                stderr=subprocess.STDOUT,
                check=True,
            )
    return run_dirs


def repeat_video(src: Path, copies: int, dst: Path) -> Path:
    """``src`` played ``copies`` times end to end, for the memory-versus-length measurement."""
    if dst.exists():
        return dst
    import imageio_ffmpeg

    listing = dst.with_suffix(".txt")
    listing.write_text("".join(f"file '{src}'\n" for _ in range(copies)))
    subprocess.run(
        [
            imageio_ffmpeg.get_ffmpeg_exe(),
            "-loglevel",
            "error",
            "-f",
            "concat",
            "-safe",
            "0",
            "-i",
            str(listing),
            "-c",
            "copy",
            str(dst),
        ],
        check=True,
    )
    return dst


def run_tool(tool: str, args, models: list[Path], video: Path, out_slp: Path, log: Path) -> dict:
    """One timed prediction run; returns wall time, frames/s and peak memory."""
    if tool == "ours":
        cmd = [sys.executable, "-m", "pipeline_lib.cli", "predict", *map(str, models)]
        cmd += ["--video", str(video), "--out", str(out_slp), "--threads", str(args.threads)]
        cmd += ["--batch-size", str(args.batch_size), "--device", args.device]
        cmd += ["--precision", args.precision] if args.precision else []
        cmd += ["--frames", args.frames] if args.frames else []
        python = sys.executable
    else:
        cmd = [args.peer_python, "-m", "sleap_nn.cli", "predict", "--data_path", str(video)]
        for m in models:
            cmd += ["-m", str(m)]
        cmd += ["-o", str(out_slp), "--batch_size", str(args.batch_size), "--device", args.device]
        cmd += ["--frames", args.frames] if args.frames else []
        python = args.peer_python
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    if out_slp.exists():
        out_slp.unlink()
    t0 = time.time()
    with log.open("w") as fh:
        proc = subprocess.run(
            [python, "-c", LAUNCHER, *cmd], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    wall = time.time() - t0
    text = log.read_text()
    if proc.returncode != 0 or not out_slp.exists():
        raise RuntimeError(f"{tool} failed (exit {proc.returncode}); see {log}")
    import sleap_io as sio

    from pipeline_lib.inference.frames import parse_frame_selection

    labels = sio.load_slp(str(out_slp), open_videos=False)
    n_frames = len(parse_frame_selection(args.frames, int(sio.load_video(str(video)).shape[0])))
    in_loop = re.findall(r'"fps": ([0-9.]+)', text) or re.findall(r"throughput=([0-9.]+) fps", text)
    return {
        "wall_s": wall,
        "fps_end_to_end": n_frames / wall,
        "fps_in_loop": float(in_loop[-1]) if in_loop else None,
        "max_rss_mib": int(re.findall(r"MAXRSS_KB (\d+)", text)[-1]) / 1024,
        "n_frames": n_frames,
        "n_instances": sum(len(lf.instances) for lf in labels.labeled_frames),
    }


def forward_bound(models: list[Path], video: Path, crops_per_frame: float, args) -> dict:
    """Frames/s of the networks alone (no decoding, peaks or writing) in our precision.

    On a GPU the work is asynchronous: each timing waits for the device (``synchronize``). The
    crops are random pixels, not zeros, which can run faster than real data on some hardware.
    """
    import torch

    from pipeline_lib.inference.options import InferenceOptions
    from pipeline_lib.inference.predictors import make_predictor

    torch.set_num_threads(args.threads)
    opts = {"batch_size": args.batch_size, "device": args.device}
    if args.precision:
        opts["precision"] = args.precision
    predictor = make_predictor(models, InferenceOptions.from_dict(opts))
    import sleap_io as sio

    frame = np.asarray(sio.load_video(str(video))[0])
    frames = [frame] * args.batch_size
    _, images = predictor.centroid.full_frames(frames)
    crop = predictor.crop_size
    chunk = args.batch_size * 4
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 256, (chunk, crop, crop, images.shape[-1]), dtype=np.uint8)

    def wait(runner) -> None:
        if runner.device.type == "cuda":
            torch.cuda.synchronize(runner.device)

    def per_call(runner, batch: np.ndarray, reps: int = 10) -> float:
        for _ in range(2):
            runner.outputs(batch)
        wait(runner)
        start = time.perf_counter()
        for _ in range(reps):
            runner.outputs(batch)
        wait(runner)
        return (time.perf_counter() - start) / reps

    t_frame = per_call(predictor.centroid, images) / len(frames)
    t_crop = per_call(predictor.centered, crops) / chunk
    return {
        "device": str(predictor.centroid.device),
        "precision": predictor.centroid.precision,
        "centroid_ms_per_frame": 1000 * t_frame,
        "centered_ms_per_crop": 1000 * t_crop,
        "crops_per_frame": crops_per_frame,
        "bound_fps": 1.0 / (t_frame + crops_per_frame * t_crop),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(CASES), required=True)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--precision", help="our --precision (default: ours, i.e. auto)")
    ap.add_argument("--device", default="auto", help="both tools' --device (auto: CUDA if any)")
    ap.add_argument("--frames", help="predict only these frames, e.g. 0-99 (both tools)")
    ap.add_argument("--tools", default="ours,sleap-nn")
    ap.add_argument("--peer-python", required=True, help="python of the sleap-nn 0.3.5 venv")
    ap.add_argument("--train-steps", type=int, default=600, help="two_flies: sleap-nn steps")
    ap.add_argument("--long-copies", type=int, default=0, help="also predict the video N times")
    ap.add_argument("--out-dir", type=Path, required=True)
    args = ap.parse_args()

    case = CASES[args.case]
    out = args.out_dir / args.case
    out.mkdir(parents=True, exist_ok=True)
    models = case.get("models") or train_peer_models(case, out, args.peer_python, args.train_steps)
    videos = {"video": case["video"]}
    if args.long_copies:
        videos["long"] = repeat_video(
            case["video"], args.long_copies, out / f"long-x{args.long_copies}.mp4"
        )
    tools = args.tools.split(",")
    tag = f"{'-'.join(tools)}{'-' + args.precision if args.precision else ''}"
    results: dict = {}
    for key, video in videos.items():
        runs: dict[str, list[dict]] = {t: [] for t in tools}
        repeats = args.repeats if key == "video" else 1
        for r in range(repeats):
            for tool in tools if r % 2 == 0 else tools[::-1]:
                res = run_tool(
                    tool,
                    args,
                    models,
                    video,
                    out / f"{key}-{tool}-{r}.slp",
                    out / f"{key}-{tool}-{r}.log",
                )
                runs[tool].append(res)
                print(key, tool, r, json.dumps(res), flush=True)
        results[key] = {
            tool: {
                "median_fps_end_to_end": statistics.median(x["fps_end_to_end"] for x in rs),
                "median_fps_in_loop": statistics.median(
                    x["fps_in_loop"] for x in rs if x["fps_in_loop"] is not None
                ),
                "median_wall_s": statistics.median(x["wall_s"] for x in rs),
                "max_rss_mib": max(x["max_rss_mib"] for x in rs),
                "runs": rs,
            }
            for tool, rs in runs.items()
        }
        if {"ours", "sleap-nn"} <= set(tools):
            ours, peer = results[key]["ours"], results[key]["sleap-nn"]
            results[key]["ratio_end_to_end"] = (
                ours["median_fps_end_to_end"] / peer["median_fps_end_to_end"]
            )
            results[key]["ratio_in_loop"] = ours["median_fps_in_loop"] / peer["median_fps_in_loop"]
    if "ours" in tools:
        first = results["video"]["ours"]["runs"][0]
        crops = first["n_instances"] / first["n_frames"]
        results["forward_bound"] = forward_bound(models, case["video"], crops, args)
        results["ours_fraction_of_bound"] = (
            results["video"]["ours"]["median_fps_in_loop"] / results["forward_bound"]["bound_fps"]
        )
    (out / f"summary-{tag}.json").write_text(json.dumps(results, indent=2))
    printable = {
        k: (
            {
                t: {m: v for m, v in d.items() if m != "runs"} if isinstance(d, dict) else d
                for t, d in v.items()
            }
            if isinstance(v, dict)
            else v
        )
        for k, v in results.items()
    }
    print(json.dumps(printable, indent=2))


if __name__ == "__main__":
    main()
