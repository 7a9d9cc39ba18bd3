"""The GPU check's steps, each under its own time limit, and the table they end with.

Run by bench/gpu_check/run.sh inside the check's venv, from the repository root. The steps:

* ``tests``: the ``gpu``-marked tests (real training steps of a top-down pair and a bottom-up
  model in the default precision, a resume, prediction on a video, the tracking transformer,
  GPU claiming with the real ``nvidia-smi``);
* ``predict`` / ``predict-bf16``: bench/predict_throughput.py on sleap-nn's top-down pair and
  ``centered_pair_small.mp4``, ours vs sleap-nn 0.3.5, with the forward-pass bound of the same
  networks; then ours alone in bf16 mixed precision;
* ``train``: bench/train_throughput.py, the centered-instance model on the two-fly labels,
  ours (default precision), ours in bf16 and sleap-nn, images/s;
* ``accuracy``: the same model trained longer in fp32 and in bf16, scored on the test split:
  with ``train``'s speeds, what choosing the GPU precision default needs (issue 21, item 4).

Without CUDA every step shrinks to a few steps or frames (the rehearsal on a CPU machine proves
installation, data paths and markers, not speed). Every log and benchmark file is packed into
``gpu-check-results.tar.gz`` in ``--out``; ``summary.json`` and ``summary.md`` hold the table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
GPU_TESTS = ["tests/test_gpu_training.py", "tests/test_gpu_tracking.py"]


def sizes(cuda: bool) -> dict:
    """Step sizes: real ones on a GPU, token ones for the CPU rehearsal."""
    if cuda:
        return {
            "train_steps": 200,
            "accuracy_steps": 600,
            "accuracy_epochs": 10,
            "batch_size": 16,
            "frames": None,
        }
    return {
        "train_steps": 4,
        "accuracy_steps": 4,
        "accuracy_epochs": 2,
        "batch_size": 4,
        "frames": "0-7",
    }


def environment() -> dict:
    """Card, driver and versions: what the numbers were measured on."""
    import torch

    info: dict = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
    }
    for name in ("lightning", "sleap_io", "sleap_nn", "numpy", "cv2"):
        try:
            info[name] = __import__(name).__version__
        except Exception as exc:  # a missing peer is reported, not fatal
            info[name] = f"unavailable: {type(exc).__name__}: {exc}"
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            capability=f"{props.major}.{props.minor}",
            bf16_supported=torch.cuda.is_bf16_supported(),
            cudnn=torch.backends.cudnn.version(),
        )
    smi = (
        subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.max.sm",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if _has("nvidia-smi")
        else None
    )
    info["nvidia_smi"] = smi.stdout.strip() if smi is not None else "not found"
    from pipeline_lib.devices import resolve_precision

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    info["default_precision"] = resolve_precision("auto", device)
    return info


def _has(command: str) -> bool:
    from shutil import which

    return which(command) is not None


class Runner:
    """Runs the steps in order, each as a subprocess with a timeout cut to the time left."""

    def __init__(self, work: Path, budget_s: float) -> None:
        self.work = work
        self.deadline = time.monotonic() + budget_s
        self.results: dict[str, dict] = {}

    def step(self, name: str, limit_s: float, cmd: list[str], parse: Callable[[], dict]) -> None:
        left = self.deadline - time.monotonic() - 15  # keep time for the table and the archive
        timeout = min(limit_s, left)
        record: dict = {"command": " ".join(cmd)}
        if timeout < 20:
            record.update(status="skipped (no time left)", seconds=0.0)
            self.results[name] = record
            print(f"[{name}] skipped: no time left", flush=True)
            return
        log = self.work / f"{name}.log"
        print(f"[{name}] up to {timeout:.0f} s: {record['command']}", flush=True)
        start = time.monotonic()
        with log.open("w") as fh:
            # A session of its own: a step cut short takes its trainings and predictions with it
            # instead of leaving them on the GPU under the next step.
            proc = subprocess.Popen(
                cmd, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True
            )
            try:
                code = proc.wait(timeout=timeout)
                record["status"] = "ok" if code == 0 else f"failed (exit {code})"
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                record["status"] = f"timed out after {timeout:.0f} s"
        record["seconds"] = round(time.monotonic() - start, 1)
        try:
            record.update(parse())
        except Exception as exc:  # partial results still make the table
            record["parse_error"] = f"{type(exc).__name__}: {exc}"
        self.results[name] = record
        print(f"[{name}] {record['status']} in {record['seconds']} s", flush=True)


def pytest_counts(junit: Path) -> dict:
    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k, 0)) for k in ("tests", "failures", "errors", "skipped")}
    failed = [
        case.get("name")
        for case in suite.iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]
    skipped = {
        case.get("name"): (case.find("skipped").get("message") or "")[:160]
        for case in suite.iter("testcase")
        if case.find("skipped") is not None
    }
    return {**counts, "failed": failed, "skipped_why": skipped}


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def strip_runs(summary: dict) -> dict:
    """A benchmark summary without its per-run lists (they stay in the archive)."""
    if not isinstance(summary, dict):
        return summary
    return {k: strip_runs(v) for k, v in summary.items() if k != "runs"}


def run_steps(runner: Runner, cuda: bool, peer: bool, py: str) -> None:
    """The steps in order of importance; ``peer``: sleap-nn is installed (see prepare.sh)."""
    size = sizes(cuda)
    work = runner.work
    threads = str(min(8, os.cpu_count() or 1))
    junit = work / "tests.xml"
    runner.step(
        "tests",
        240,
        [py, "-m", "pytest", "-q", "-m", "gpu", "-rs", f"--junitxml={junit}", *GPU_TESTS],
        lambda: pytest_counts(junit),
    )
    frames = ["--frames", size["frames"]] if size["frames"] else []
    pair = "ours,sleap-nn" if peer else "ours"
    predict = [
        py,
        str(BENCH / "predict_throughput.py"),
        "--case",
        "centered_pair",
        "--repeats",
        "1",
        "--batch-size",
        str(size["batch_size"]),
        "--threads",
        threads,
        "--peer-python",
        py,
        *frames,
    ]
    runner.step(
        "predict",
        120,
        [*predict, "--tools", pair, "--out-dir", str(work / "predict")],
        lambda: strip_runs(
            read_json(work / f"predict/centered_pair/summary-{pair.replace(',', '-')}.json")
        ),
    )
    runner.step(
        "predict-bf16",
        60,
        [
            *predict,
            "--tools",
            "ours",
            "--precision",
            "bf16-mixed",
            "--out-dir",
            str(work / "predict"),
        ],
        lambda: strip_runs(read_json(work / "predict/centered_pair/summary-ours-bf16-mixed.json")),
    )
    tools = ("ours,ours-bf16" if cuda else "ours") + (",sleap-nn" if peer else "")
    train = [
        py,
        str(BENCH / "train_throughput.py"),
        "--case",
        "two_flies_centered",
        "--threads",
        threads,
        "--peer-python",
        py,
        "--out-dir",
        str(work / "train"),
    ]
    runner.step(
        "train",
        180,
        [
            *train,
            "--steps",
            str(size["train_steps"]),
            "--epochs",
            "2",
            "--repeats",
            "1",
            "--tools",
            tools,
        ],
        lambda: strip_runs(
            read_json(work / f"train/two_flies_centered/summary-{tools.replace(',', '-')}.json")
        ),
    )
    runner.step(
        "accuracy",
        180,
        [
            *train,
            "--repeats",
            "0",
            "--tools",
            "ours-fp32,ours-bf16",
            "--accuracy-steps",
            str(size["accuracy_steps"]),
            "--accuracy-epochs",
            str(size["accuracy_epochs"]),
        ],
        lambda: read_json(work / "train/two_flies_centered/accuracy-ours-fp32-ours-bf16.json"),
    )


def _num(value, fmt: str = "{:.1f}") -> str:
    return fmt.format(value) if isinstance(value, int | float) else "-"


def table(env: dict, results: dict[str, dict]) -> str:
    """The short markdown table printed last (the call's reply carries the end of stdout)."""
    rows = [
        ("card", f"{env.get('gpu', 'no CUDA GPU')} ({env.get('nvidia_smi', '')})"),
        (
            "versions",
            f"torch {env['torch']} (CUDA {env['torch_cuda']}), lightning "
            f"{env['lightning']}, sleap-nn {env['sleap_nn']}",
        ),
        ("default precision here", env["default_precision"]),
    ]
    t = results.get("tests", {})
    if "tests" in t:
        passed = t["tests"] - t["failures"] - t["errors"] - t["skipped"]
        rows.append(
            (
                "gpu tests",
                f"{passed} passed, {t['failures'] + t['errors']} failed"
                f"{' ' + ', '.join(t['failed']) if t['failed'] else ''}, {t['skipped']} skipped",
            )
        )
    p = results.get("predict", {})
    video = p.get("video", {})
    ours, peer = video.get("ours", {}), video.get("sleap-nn", {})
    bound = p.get("forward_bound", {})
    rows += [
        (
            "predict frames/s end to end: ours / sleap-nn",
            f"{_num(ours.get('median_fps_end_to_end'))} / {_num(peer.get('median_fps_end_to_end'))}"
            f" (x{_num(video.get('ratio_end_to_end'), '{:.2f}')})",
        ),
        (
            "predict frames/s in loop: ours / sleap-nn",
            f"{_num(ours.get('median_fps_in_loop'))} / {_num(peer.get('median_fps_in_loop'))}"
            f" (x{_num(video.get('ratio_in_loop'), '{:.2f}')})",
        ),
        (
            f"forward-pass bound ({bound.get('precision', '-')}), ours' fraction of it",
            f"{_num(bound.get('bound_fps'))} frames/s, {_num(p.get('ours_fraction_of_bound'), '{:.2f}')}",
        ),
    ]
    b = results.get("predict-bf16", {})
    b_ours = b.get("video", {}).get("ours", {})
    rows.append(
        (
            "ours bf16: end to end / in loop / bound frames/s",
            f"{_num(b_ours.get('median_fps_end_to_end'))} / "
            f"{_num(b_ours.get('median_fps_in_loop'))} / "
            f"{_num(b.get('forward_bound', {}).get('bound_fps'))}",
        )
    )
    tr = results.get("train", {})
    speeds = " / ".join(
        f"{tool} {_num(tr.get(tool, {}).get('median_images_per_s'))}"
        for tool in ("ours", "ours-bf16", "sleap-nn")
        if tool in tr
    )
    rows.append(("train images/s (centered instance)", speeds or "-"))
    acc = results.get("accuracy", {})
    rows.append(
        (
            "test mAP / mOKS after the accuracy run: fp32 ; bf16",
            " ; ".join(
                f"{_num(acc.get(t, {}).get('mAP'), '{:.3f}')} / "
                f"{_num(acc.get(t, {}).get('mOKS'), '{:.3f}')}"
                for t in ("ours-fp32", "ours-bf16")
            ),
        )
    )
    rows += [(f"step {name}", f"{r['status']}, {r['seconds']} s") for name, r in results.items()]
    lines = ["| what | result |", "| --- | --- |"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def _small_files(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    """Logs, configs and summaries; not checkpoints, videos or large prediction files (one
    file back from the machine is capped at 16 MiB)."""
    if member.isfile() and (member.name.endswith((".ckpt", ".mp4")) or member.size > 2**21):
        return None
    return member


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="where the summary and archive go")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for the steps")
    ap.add_argument("--budget", type=float, default=540, help="seconds for all steps")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    args.work.mkdir(parents=True, exist_ok=True)
    env = environment()
    (args.work / "environment.json").write_text(json.dumps(env, indent=2))
    print(json.dumps(env, indent=2), flush=True)
    runner = Runner(args.work, args.budget)
    try:
        peer = not str(env["sleap_nn"]).startswith("unavailable")
        run_steps(runner, bool(env["cuda_available"]), peer, sys.executable)
    finally:
        summary = {"environment": env, "steps": runner.results}
        (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        (args.work / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
        with tarfile.open(args.out / "gpu-check-results.tar.gz", "w:gz") as tar:
            tar.add(args.work, arcname="gpu-check-results", filter=_small_files)
        text = table(env, runner.results)
        (args.out / "summary.md").write_text(text)
        print(text, flush=True)
    failed = [n for n, r in runner.results.items() if r["status"] != "ok"]
    t = runner.results.get("tests", {})
    sys.exit(1 if failed or t.get("failures") or t.get("errors") else 0)


if __name__ == "__main__":
    main()
