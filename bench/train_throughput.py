"""Training throughput and start-up time: ours against sleap-nn 0.3.5, side by side.

Both tools train the same sleap-nn config on the same split for the same number of steps, in
alternating runs within one session. A small wrapper (bench/_lightning_timer.py) adds one
Lightning callback to whichever trainer runs, so both are timed the same way:

* start-up: from launching the command to the start of the first training batch;
* throughput: training images per second from the end of the first batch to the end of the
  last, validation loops subtracted (the first batch carries one-off warm-up costs).

sleap-nn runs from its own venv (``--peer-python``; ``bench/peer_venv.sh`` creates it), never
from ours. Held-out accuracy after the same steps: both trained models predict the test split
and are scored with our evaluation (which matches sleap-nn's numbers, see bench/RESULTS.md).

    .venv/bin/python bench/train_throughput.py --case single_fly --steps 60 --repeats 3 \
        --peer-python bench/.peer-venv/bin/python --out-dir results/bench/train_throughput
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from pipeline_lib.data.split import split_labels

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("PIPELINE_SHARED_DIR", PROJECT_ROOT.parent / "shared")) / "data"
TIMER = Path(__file__).with_name("_lightning_timer.py")
SAMPLES = SHARED_DATA / "sleap_nn_assets/sample_configs"

CASES = {
    "single_fly": {
        "labels": "dreem_assets/sleap/single_fly.slp",
        "config": "config_single_instance_unet_medium_rf.yaml",
        "scale": 0.5,
        "crop_size": None,
    },
    # Accuracy after a fixed step budget: at scale 0.5 neither tool's model leaves the all-zero
    # plateau within the few hundred CPU steps a benchmark can afford; at 0.25 both learn.
    "single_fly_quarter": {
        "labels": "dreem_assets/sleap/single_fly.slp",
        "config": "config_single_instance_unet_medium_rf.yaml",
        "scale": 0.25,
        "crop_size": None,
    },
    "two_flies_centered": {
        "labels": "dreem_assets/sleap/two_flies.slp",
        "config": "config_topdown_centered_instance_unet_medium_rf.yaml",
        "scale": 1.0,
        "crop_size": 144,
        "data_pipeline_fw": "torch_dataset_cache_img_memory",
    },
}


def prepare_split(case: dict, out: Path) -> dict[str, Path]:
    """Seeded 80/10/10 split of the case's labels, shared by both tools."""
    paths = {k: out / "data" / f"{k}.slp" for k in ("train", "val", "test")}
    if not all(p.exists() for p in paths.values()):
        paths["train"].parent.mkdir(parents=True, exist_ok=True)
        split_labels(
            [SHARED_DATA / case["labels"]],
            paths["train"],
            paths["val"],
            paths["test"],
            0.1,
            0.1,
            None,
            0,
            True,
        )
    return paths


def write_config(
    case: dict, split: dict[str, Path], steps: int, epochs: int, dst: Path, lr: float | None = None
) -> Path:
    """The sample config with the benchmark's data, step budget and no side channels."""
    cfg = yaml.safe_load((SAMPLES / case["config"]).read_text())
    dc, tc = cfg["data_config"], cfg["trainer_config"]
    dc["data_pipeline_fw"] = case.get("data_pipeline_fw", dc["data_pipeline_fw"])
    if lr is not None:
        tc["optimizer"]["lr"] = lr
    dc["train_labels_path"] = [str(split["train"])]
    dc["val_labels_path"] = [str(split["val"])]
    dc["preprocessing"]["scale"] = case["scale"]
    if case["crop_size"]:
        dc["preprocessing"]["crop_size"] = case["crop_size"]
    tc.update(
        {
            "max_epochs": epochs,
            "train_steps_per_epoch": steps // epochs,
            "min_train_steps_per_epoch": 1,
            "seed": 0,
            "enable_progress_bar": False,
            "visualize_preds_during_training": False,
            "use_wandb": False,
            "save_ckpt": True,
        }
    )
    tc["early_stopping"]["stop_training_on_plateau"] = False
    tc["zmq"] = {"publish_port": None, "controller_port": None, "controller_polling_timeout": 10}
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dst


def run_timed(python: str, entry: str, argv: list[str], timing: Path, log: Path, env: dict) -> dict:
    """Launch one training through the timer wrapper; return its timings."""
    t0 = time.time()
    env = {**env, "BENCH_T0": str(t0), "BENCH_TIMING_OUT": str(timing)}
    with log.open("w") as fh:
        proc = subprocess.run(
            [python, str(TIMER), entry, *argv], stdout=fh, stderr=subprocess.STDOUT, env=env
        )
    wall = time.time() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{entry} failed (exit {proc.returncode}); see {log}")
    ev = json.loads(timing.read_text())
    starts, ends, sizes = ev["batch_start"], ev["batch_end"], ev["batch_sizes"]
    val_time = sum(
        e - s
        for s, e in zip(ev["val_start"], ev["val_end"], strict=False)
        if ends[0] <= s <= ends[-1]
    )
    train_time = ends[-1] - ends[0] - val_time
    return {
        "startup_s": starts[0] - t0,
        "images_per_s": sum(sizes[1:]) / train_time,
        "steps": len(starts),
        "wall_s": wall,
    }


# Our variants: the tool name picks the pipeline's ``precision`` option.
OURS = {"ours": None, "ours-fp32": "32", "ours-bf16": "bf16-mixed"}


def ours_argv(
    cfg: Path, split: dict[str, Path], run_dir: Path, threads: int, tool: str = "ours"
) -> list[str]:
    argv = [
        "train",
        str(cfg),
        "--train",
        str(split["train"]),
        "--val",
        str(split["val"]),
        "--run-dir",
        str(run_dir),
        "--threads",
        str(threads),
    ]
    if OURS[tool]:
        argv += ["--precision", OURS[tool]]
    return argv


def peer_argv(cfg: Path, run_dir: Path) -> list[str]:
    return [
        "train",
        str(cfg),
        f"trainer_config.ckpt_dir={run_dir.parent}",
        f"trainer_config.run_name={run_dir.name}",
    ]


def held_out_accuracy(
    args: argparse.Namespace, case: dict, split: dict[str, Path], out: Path, env: dict
) -> dict:
    """Train each tool once for ``--accuracy-steps`` and score both on the test split.

    Both models predict the test frames with their own tool; our evaluation scores both
    prediction files against the same ground truth.
    """
    cfg = write_config(
        case,
        split,
        args.accuracy_steps,
        args.accuracy_epochs,
        out / "accuracy_config.yaml",
        args.accuracy_lr,
    )
    tools = args.tools.split(",")
    # The two trainings run at the same time, one thread each: only their accuracy is used.
    env = {**env, "OMP_NUM_THREADS": "1"}
    with ThreadPoolExecutor(len(tools)) as pool:
        runs = pool.map(lambda t: _score(t, args, cfg, split, out, env), tools)
        scores = dict(zip(tools, runs, strict=True))
    return scores


def _score(tool: str, args: argparse.Namespace, cfg: Path, split: dict, out: Path, env: dict):
    """Train one tool on the accuracy config, predict the test split, score it with ours."""
    run_dir = out / "accuracy" / tool
    pred = out / "accuracy" / f"{tool}.test.pred.slp"  # sleap-nn's; ours is named below
    metrics = out / "accuracy" / f"{tool}.test.json"
    log = out / "accuracy" / f"{tool}.log"
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    if tool in OURS:
        cmds = [
            [sys.executable, "-m", "pipeline_lib.cli", *ours_argv(cfg, split, run_dir, 1, tool)],
            [
                sys.executable,
                "-m",
                "pipeline_lib.cli",
                "evaluate",
                str(run_dir),
                "--labels",
                str(split["test"]),
                "--out-prefix",
                str(out / "accuracy" / f"{tool}.eval"),
            ],
        ]
        pred = out / "accuracy" / f"{tool}.eval.pred.slp"
    else:
        cmds = [
            [args.peer_python, "-m", "sleap_nn.cli", *peer_argv(cfg, run_dir)],
            [
                args.peer_python,
                "-m",
                "sleap_nn.cli",
                "predict",
                "--data_path",
                str(split["test"]),
                "-m",
                str(run_dir),
                "-o",
                str(pred),
            ],
        ]
    cmds.append(
        [
            sys.executable,
            "-m",
            "pipeline_lib.cli",
            "eval-pose",
            "--gt",
            str(split["test"]),
            "--pred",
            str(pred),
            "--out",
            str(metrics),
        ]
    )
    t0 = time.time()
    with log.open("w") as fh:
        for cmd in cmds:
            subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, check=True)
    m = json.loads(metrics.read_text())
    score = {
        "mAP": m["oks_voc"]["mAP"],
        "mAR": m["oks_voc"]["mAR"],
        "mOKS": m["mOKS"],
        "dist_p50": m["distance"]["p50"],
        "dist_p90": m["distance"]["p90"],
    }
    score["wall_s"] = time.time() - t0
    print("accuracy", tool, json.dumps(score), flush=True)
    return score


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", choices=sorted(CASES), required=True)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--peer-python", required=True, help="python of the sleap-nn 0.3.5 venv")
    ap.add_argument("--out-dir", type=Path, required=True)
    ap.add_argument("--tools", default="ours,sleap-nn")
    ap.add_argument("--accuracy-steps", type=int, help="also train this long and score test mAP")
    ap.add_argument("--accuracy-epochs", type=int, default=10)
    ap.add_argument("--accuracy-lr", type=float, help="learning rate of the accuracy runs")
    args = ap.parse_args()

    case = CASES[args.case]
    out = args.out_dir / args.case
    split = prepare_split(case, out)
    cfg = write_config(case, split, args.steps, args.epochs, out / "config.yaml")
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    tools = args.tools.split(",")
    results: dict[str, list[dict]] = {t: [] for t in tools}
    if args.accuracy_steps:
        acc = held_out_accuracy(args, case, split, out, env)
        (out / f"accuracy-{'-'.join(tools)}.json").write_text(json.dumps(acc, indent=2))
    for r in range(args.repeats):
        order = tools if r % 2 == 0 else tools[::-1]
        for tool in order:
            run_dir = out / "runs" / f"{tool}-{r}"
            if tool in OURS:
                res = run_timed(
                    sys.executable,
                    "pipeline_lib.cli:main",
                    ours_argv(cfg, split, run_dir, args.threads, tool),
                    out / f"timing-{tool}-{r}.json",
                    out / f"log-{tool}-{r}.txt",
                    env,
                )
            else:
                res = run_timed(
                    args.peer_python,
                    "sleap_nn.cli:cli",
                    peer_argv(cfg, run_dir),
                    out / f"timing-{tool}-{r}.json",
                    out / f"log-{tool}-{r}.txt",
                    env,
                )
            res["run_dir"] = str(run_dir)
            results[tool].append(res)
            print(tool, r, json.dumps(res), flush=True)
    if not args.repeats:
        return
    summary = {
        tool: {
            "median_images_per_s": statistics.median(x["images_per_s"] for x in runs),
            "median_startup_s": statistics.median(x["startup_s"] for x in runs),
            "runs": runs,
        }
        for tool, runs in results.items()
    }
    if "sleap-nn" in summary:
        peer = summary["sleap-nn"]["median_images_per_s"]
        for tool in set(summary) & set(OURS):
            summary[f"throughput_ratio {tool} / sleap-nn"] = (
                summary[tool]["median_images_per_s"] / peer
            )
    (out / f"summary-{'-'.join(tools)}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps({k: v for k, v in summary.items() if k != "runs"}, indent=2, default=str))


if __name__ == "__main__":
    main()
