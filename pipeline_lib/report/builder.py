"""Build the run report under one folder from the files the pipeline wrote.

Layout of ``out_dir`` (the workflow registers these for ``snakemake --report``)::

    summary.md              demo PASS/FAIL line and every table, human readable
    summary.json            the same numbers, machine readable
    pose_metrics.csv        one row per evaluated model and split
    tracking_metrics.csv    one row per video with ground-truth identities
    videos.csv              instances and tracks per video
    training_curves/{model}.png
    example_frames/{video}.png
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pipeline_lib
from pipeline_lib.io.atomic import write_json_atomic, write_text_atomic
from pipeline_lib.io.labels import LabelsError, load_labels
from pipeline_lib.report import figures
from pipeline_lib.report.inputs import (
    TRACKING_KEYS,
    TRACKING_OPTIONAL_KEYS,
    load_pose_row,
    load_tracking_row,
    load_training_log,
    read_json,
    training_summary,
    video_counts,
)
from pipeline_lib.report.tables import markdown_table, write_csv
from pipeline_lib.report.targets import (
    MOTA_TARGET,
    POSE_MAP_TARGET,
    check_demo_targets,
    targets_line,
)

log = logging.getLogger(__name__)

POSE_COLUMNS = [
    ("model", "model"),
    ("split", "split"),
    ("n_frames", "frames"),
    ("n_gt_instances", "GT instances"),
    ("n_matched", "matched"),
    ("mOKS", "mOKS"),
    ("mAP", "mAP"),
    ("mAR", "mAR"),
    ("dist_p50", "dist p50 (px)"),
    ("dist_p90", "dist p90 (px)"),
    ("mPCK", "mPCK"),
]
TRAINING_COLUMNS = [
    ("model", "model"),
    ("epochs", "epochs"),
    ("best_val_loss", "best val loss"),
    ("best_epoch", "best epoch"),
    ("final_train_loss", "final train loss"),
    ("elapsed_s", "time (s)"),
]
VIDEO_COLUMNS = [
    ("video", "video"),
    ("n_frames", "frames"),
    ("n_instances", "instances"),
    ("instances_per_frame", "instances/frame"),
    ("max_instances_per_frame", "max/frame"),
    ("n_tracks", "tracks"),
    ("n_untracked_instances", "untracked"),
    ("example_frames", "example frames"),
]
TRACKING_COLUMNS = [
    ("video", "video"),
    ("mota", "MOTA"),
    ("idf1", "IDF1"),
    ("id_switches", "ID switches"),
    ("hota", "HOTA"),
    ("fragmentations", "fragmentations"),
    ("false_positives", "false positives"),
    ("misses", "misses"),
]


def build_report(
    out_dir: str | os.PathLike,
    pose_metrics: Mapping[str, str],
    training_logs: Mapping[str, str],
    tracked: Mapping[str, str],
    tracking_metrics: Mapping[str, str],
    n_example_frames: int = 4,
    *,
    demo_models: Sequence[str] = (),
    demo_videos: Sequence[str] = (),
    pose_map_target: float = POSE_MAP_TARGET,
    mota_target: float = MOTA_TARGET,
    provenance: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Write the report and return its summary (the content of ``summary.json``).

    Args:
        pose_metrics: ``"model/split"`` -> ``metrics.{split}.json`` from evaluate_model.
        training_logs: model -> ``training_log.csv``.
        tracked: video id -> tracked (or predicted) ``.slp``; its video is read for the
            example frames, which are skipped with a note when the video cannot be opened.
        tracking_metrics: video id -> ``{video}.tracking_metrics.json``.
        demo_models / demo_videos: what the demo targets apply to (empty: not a demo run).
        provenance: ``provenance.json`` of the run (pipeline_lib.provenance); copied into
            ``summary.json`` and summarised in ``summary.md`` so the numbers travel with what
            produced them.
    """
    out = Path(out_dir)
    curves_dir = out / "training_curves"
    frames_dir = out / "example_frames"
    curves_dir.mkdir(parents=True, exist_ok=True)
    frames_dir.mkdir(parents=True, exist_ok=True)

    pose_rows = [load_pose_row(key, path) for key, path in sorted(pose_metrics.items())]

    training_rows = []
    for model, path in sorted(training_logs.items()):
        frame = load_training_log(path)
        row = training_summary(model, frame)
        figure = curves_dir / f"{model}.png"
        figures.plot_training_curve(frame, f"{model}: training curve", figure)
        row["figure"] = figure.relative_to(out).as_posix()
        training_rows.append(row)

    video_rows = [
        _video_row(v, p, frames_dir, out, n_example_frames) for v, p in sorted(tracked.items())
    ]
    tracking_rows = [load_tracking_row(v, p) for v, p in sorted(tracking_metrics.items())]

    targets = check_demo_targets(
        pose_rows, tracking_rows, demo_models, demo_videos, pose_map_target, mota_target
    )
    summary = {
        "pipeline_lib_version": pipeline_lib.__version__,
        "demo_targets": targets,
        "pose": pose_rows,
        "training": training_rows,
        "videos": video_rows,
        "tracking": tracking_rows,
        "provenance": read_json(provenance) if provenance is not None else None,
    }

    write_csv(
        out / "pose_metrics.csv", pose_rows, [k for k, _ in POSE_COLUMNS] + ["n_pred_instances"]
    )
    tracking_keys = ["video", *TRACKING_KEYS, *TRACKING_OPTIONAL_KEYS]
    write_csv(out / "tracking_metrics.csv", tracking_rows, tracking_keys)
    write_csv(out / "videos.csv", video_rows, [k for k, _ in VIDEO_COLUMNS] + ["note"])
    write_json_atomic(out / "summary.json", summary)
    write_text_atomic(out / "summary.md", _markdown(summary))
    log.info("Report written to %s", out)
    return summary


def _video_row(video: str, path: str, frames_dir: Path, out: Path, n_frames: int) -> dict[str, Any]:
    """Counts for one video plus its example-frame montage (or a note saying why there is none)."""
    row = video_counts(video, path)
    row["example_frames"] = None
    row["note"] = None
    if n_frames <= 0:
        return row
    try:
        labels = load_labels(path, require_videos=True)
    except LabelsError as exc:
        row["note"] = f"no example frames: {exc}"
        log.warning("%s: %s", video, row["note"])
        return row
    figure = frames_dir / f"{video}.png"
    shown = figures.example_frames(labels, n_frames, figure)
    if shown:
        row["example_frames"] = figure.relative_to(out).as_posix()
        row["frames_shown"] = shown
    else:
        row["note"] = "no example frames: no frame has an instance"
    return row


def _markdown(summary: dict[str, Any]) -> str:
    parts = [
        "# Pipeline report",
        "",
        f"pipeline_lib {summary['pipeline_lib_version']}",
        "",
        targets_line(summary["demo_targets"]),
        "",
        "## Pose accuracy",
        "",
        "mOKS: mean object keypoint similarity of matched instances; mAP/mAR: average "
        "precision/recall over the OKS thresholds of the metrics file (0.50:0.05:0.95); "
        "dist: keypoint error in pixels; mPCK: mean fraction of keypoints closer than each "
        "pixel threshold.",
        "",
        markdown_table(summary["pose"], POSE_COLUMNS),
        "## Training",
        "",
        markdown_table(summary["training"], TRAINING_COLUMNS),
    ]
    for row in summary["training"]:
        parts.append(f"![{row['model']}]({row['figure']})")
        parts.append("")
    parts += [
        "## Videos",
        "",
        markdown_table(summary["videos"], VIDEO_COLUMNS),
    ]
    notes = [f"- {r['video']}: {r['note']}" for r in summary["videos"] if r.get("note")]
    if notes:
        parts += [*notes, ""]
    parts += [
        "## Tracking accuracy",
        "",
        markdown_table(summary["tracking"], TRACKING_COLUMNS),
    ]
    if summary.get("provenance"):
        parts += _provenance_markdown(summary["provenance"])
    return "\n".join(parts)


#: Packages named in the report's provenance section (provenance.json lists them all).
REPORT_PACKAGES = ("torch", "lightning", "sleap-io", "snakemake", "numpy", "opencv-python-headless")


def _training_job_summary(env: dict[str, Any] | None) -> str:
    """Node, devices and threads of the job that trained a model (they decide its weights)."""
    if not env:
        return "not recorded (run directory from before jobs recorded their environment)"
    hw = env.get("hardware") or {}
    gpus = ", ".join(g["name"] for g in hw.get("gpus") or []) or "no GPU"
    text = (
        f"{env.get('created_utc')} on {(env.get('platform') or {}).get('node')}: "
        f"{hw.get('cpu_model')}, {gpus}, torch {(env.get('torch') or {}).get('version')} "
        f"with {(env.get('torch') or {}).get('num_threads')} threads"
    )
    if env.get("slurm_job_id"):
        text += f", SLURM job {env['slurm_job_id']}"
    return text


def _provenance_markdown(prov: dict[str, Any]) -> list[str]:
    """The provenance section: enough to tell whether two reports can be compared number for
    number (same code, configs, seeds, packages and kind of machine)."""
    project = prov.get("project") or {}
    commit = project.get("git_commit")
    if commit:
        revision = f"git {commit[:12]} ({project.get('git_branch')})"
        if project.get("git_dirty"):
            revision += f", with uncommitted changes to {project.get('git_changed_files')} files"
    else:
        revision = f"git revision unknown ({project.get('git_error')})"
    hw = prov.get("hardware") or {}
    torch = prov.get("torch") or {}
    ram = hw.get("ram_bytes")
    gpus = ", ".join(g["name"] for g in hw.get("gpus") or []) or "none"
    packages = prov.get("packages") or {}
    rows = [
        {"what": "project", "value": f"{project.get('name')} {project.get('version')}, {revision}"},
        {"what": "written", "value": prov.get("created_utc")},
        {
            "what": "packages",
            "value": ", ".join(f"{n} {packages.get(n)}" for n in REPORT_PACKAGES if n in packages),
        },
        {"what": "python", "value": (prov.get("python") or {}).get("version")},
        {
            "what": "CPU",
            "value": f"{hw.get('cpu_model')}; {hw.get('cpu_count_usable')} of "
            f"{hw.get('cpu_count')} cores usable",
        },
        {"what": "RAM", "value": f"{ram / 1024**3:.1f} GiB" if ram else None},
        {"what": "GPUs", "value": gpus},
        {
            "what": "job threads",
            "value": ", ".join(f"{k} {v}" for k, v in (prov.get("job_threads") or {}).items())
            or torch.get("num_threads"),
        },
        {
            "what": "seeds",
            "value": ", ".join(f"{k} {v}" for k, v in (prov.get("seeds") or {}).items()),
        },
    ]
    for model, env in (prov.get("training_jobs") or {}).items():
        rows.append({"what": f"trained {model}", "value": _training_job_summary(env)})
    for label, rec in (prov.get("config_files") or {}).items():
        rows.append({"what": label, "value": f"{rec['path']} (sha256 {rec['sha256'][:12]})"})
    return [
        "",
        "## Provenance",
        "",
        "From provenance.json, written with the results; summary.json has all of it.",
        "",
        markdown_table(rows, [("what", "what"), ("value", "value")]),
    ]
