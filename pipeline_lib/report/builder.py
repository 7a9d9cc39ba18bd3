"""Build the run report under one folder from the files the pipeline wrote.

Layout of ``out_dir`` (the workflow registers these for ``snakemake --report``)::

    summary.md              demo PASS/FAIL line and every table, human readable
    summary.json            the same numbers, machine readable
    pose_metrics.csv        one row per evaluated model and split
    tracking_metrics.csv    one row per video with ground-truth identities
    videos.csv              instances and tracks per video
    training_curves/{model}.png
    example_frames/{video}.png
    pose_figures/{model}.{split}.png  per-node error, error distribution, PCK curve
    summary.html, pose_accuracy.html, tracking.html, provenance.html   the pages of report.html
    headline.html           what was run and the headline numbers, for the report's home page
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
from pipeline_lib.report import figures, html
from pipeline_lib.report.checks import all_warnings, expected_tracks_flag
from pipeline_lib.report.frames import render_example_frames
from pipeline_lib.report.inputs import (
    TRACKING_KEYS,
    TRACKING_OPTIONAL_KEYS,
    load_pose_row,
    load_tracking_row,
    load_training_log,
    read_json,
    split_pose_key,
    training_summary,
    video_counts,
)
from pipeline_lib.report.pose_figures import load_matches, plot_pose_figures
from pipeline_lib.report.tables import fmt, markdown_table, write_csv
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
    ("expected_animals", "animals"),
    ("track_flag", "flag"),
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


#: Videos with an example-frame montage in the report (``report.example_videos``).
DEFAULT_EXAMPLE_VIDEOS = 24


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
    pose_npz: Mapping[str, str] | None = None,
    expected_animals: Mapping[str, int | None] | None = None,
    peak_threshold: float | None = None,
    max_example_videos: int | None = DEFAULT_EXAMPLE_VIDEOS,
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
        pose_npz: ``"model/split"`` -> ``metrics.{split}.npz`` (raw matches) for the pose
            figures and the per-node table; keys without one get neither.
        expected_animals: video id -> number of animals (``max_tracks``) when known; a video
            with more tracks is flagged.
        peak_threshold: the inference peak threshold, named in the warning of an empty video.
        max_example_videos: draw example frames for at most this many videos, the most
            doubtful first (:func:`example_videos`); None draws them for every video.
    """
    out = Path(out_dir)
    curves_dir = out / "training_curves"
    frames_dir = out / "example_frames"
    curves_dir.mkdir(parents=True, exist_ok=True)
    frames_dir.mkdir(parents=True, exist_ok=True)
    expected_animals = expected_animals or {}

    pose_rows = [load_pose_row(key, path) for key, path in sorted(pose_metrics.items())]

    training_rows = []
    for model, path in sorted(training_logs.items()):
        frame = load_training_log(path)
        row = training_summary(model, frame)
        figure = curves_dir / f"{model}.png"
        figures.plot_training_curve(frame, f"{model}: training curve", figure)
        row["figure"] = figure.relative_to(out).as_posix()
        training_rows.append(row)

    video_rows = [_video_row(v, p, expected_animals.get(v)) for v, p in sorted(tracked.items())]
    drawn = example_videos(video_rows, max_example_videos)
    for row in video_rows:
        if row["video"] in drawn:
            _add_example_frames(row, tracked[row["video"]], frames_dir, out, n_example_frames)
        elif n_example_frames > 0:
            row["note"] = (
                f"no example frames: drawn for the {len(drawn)} most doubtful of "
                f"{len(video_rows)} videos (report.example_videos)"
            )
    tracking_rows = [load_tracking_row(v, p) for v, p in sorted(tracking_metrics.items())]

    targets = check_demo_targets(
        pose_rows, tracking_rows, demo_models, demo_videos, pose_map_target, mota_target
    )
    per_node = _pose_figures(out, pose_npz or {})
    warnings = all_warnings(pose_rows, video_rows, tracking_rows, peak_threshold)
    for warning in warnings:
        log.warning("%s", warning)
    summary = {
        "pipeline_lib_version": pipeline_lib.__version__,
        "demo_targets": targets,
        "warnings": warnings,
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
    html.write_pages(out, _html_pages(summary, per_node))
    log.info("Report written to %s", out)
    return summary


def _video_row(video: str, path: str, expected: int | None) -> dict[str, Any]:
    """Counts for one video and a flag when it has more tracks than animals."""
    row = video_counts(video, path)
    row["expected_animals"] = expected
    row["track_flag"] = expected_tracks_flag(row, expected)
    row["example_frames"] = None
    row["note"] = None
    return row


def example_videos(rows: Sequence[dict[str, Any]], limit: int | None) -> set[str]:
    """Which videos get an example-frame montage.

    Drawing a montage decodes and renders frames, about a quarter of a second per video: with
    hundreds of videos it would be most of the report's time and a page nobody scrolls. So at
    most ``limit`` videos are drawn, the most doubtful first: more tracks than animals, then
    the lowest mean instance score (videos without predictions have nothing to draw)."""
    if limit is None or len(rows) <= limit:
        return {r["video"] for r in rows}

    def doubt(row: dict[str, Any]) -> tuple:
        score = row.get("mean_instance_score")
        return (row["track_flag"] is None, score if score is not None else 2.0, row["video"])

    candidates = sorted((r for r in rows if r["n_instances"]), key=doubt)
    return {r["video"] for r in candidates[:limit]}


def _add_example_frames(
    row: dict[str, Any], path: str, frames_dir: Path, out: Path, n_frames: int
) -> None:
    """The video's example-frame montage, or a note saying why there is none."""
    if n_frames <= 0:
        return
    video = row["video"]
    try:
        labels = load_labels(path, require_videos=True)
    except LabelsError as exc:
        row["note"] = f"no example frames: {exc}"
        log.warning("%s: %s", video, row["note"])
        return
    figure = frames_dir / f"{video}.png"
    picks = render_example_frames(labels, n_frames, figure)
    if picks:
        row["example_frames"] = figure.relative_to(out).as_posix()
        row["frames_shown"] = [p.frame_idx for p in picks]
        row["frames_why"] = [p.reason for p in picks]
    else:
        row["note"] = "no example frames: no frame has an instance"


def _pose_figures(out: Path, pose_npz: Mapping[str, str]) -> list[dict[str, Any]]:
    """Figure and per-node error rows of every evaluation that saved its raw matches."""
    fig_dir = out / "pose_figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    blocks = []
    for key, path in sorted(pose_npz.items()):
        model, split = split_pose_key(key)
        plot_pose_figures(path, f"{model} on {split}", fig_dir / f"{model}.{split}.png")
        matches = load_matches(path)
        rows = html.per_node_rows(matches["nodes"], matches["distances"])
        blocks.append({"title": f"{model} on {split}", "rows": rows})
    return blocks


def headline(summary: dict[str, Any]) -> list[str]:
    """The few numbers a reader looks for first: what ran, pose accuracy, tracking."""
    lines = []
    models = sorted({r["model"] for r in summary["pose"]})
    if models:
        lines.append(f"Evaluated models: {', '.join(models)}")
    for r in summary["pose"]:
        lines.append(
            f"{r['model']} on {r['split']}: mAP {fmt(r['mAP'])}, mOKS {fmt(r['mOKS'])}, "
            f"{r['n_matched']} of {r['n_gt_instances']} ground-truth instances matched"
        )
    videos = summary["videos"]
    if videos:
        n_inst = sum(v["n_instances"] for v in videos)
        lines.append(f"{len(videos)} videos predicted: {n_inst} instances")
    for r in summary["tracking"]:
        lines.append(
            f"{r['video']}: MOTA {fmt(r['mota'])}, IDF1 {fmt(r['idf1'])}, "
            f"{fmt(r['id_switches'])} identity switches"
        )
    return lines


def _html_pages(
    summary: dict[str, Any], per_node: list[dict[str, Any]]
) -> dict[str, tuple[str, dict[str, Any]]]:
    """Template and context of each page of the report (and of the home-page fragment)."""
    top = {
        "targets": summary["demo_targets"],
        "targets_text": targets_line(summary["demo_targets"]).replace("**", ""),
        "headline": headline(summary),
        "warnings": summary["warnings"],
    }
    tables = {
        "pose": summary["pose"],
        "pose_columns": POSE_COLUMNS,
        "training": summary["training"],
        "training_columns": TRAINING_COLUMNS,
        "videos": summary["videos"],
        "video_columns": VIDEO_COLUMNS,
        "tracking": summary["tracking"],
        "tracking_columns": TRACKING_COLUMNS,
    }
    prov = summary.get("provenance")
    videos = {f"{r['video']}:" for r in summary["videos"]}
    video_warnings = [w for w in summary["warnings"] if w.split(" ", 1)[0] in videos]
    # The section pages carry every column of their CSV file; the summary keeps the short set.
    shown = {c[0] for c in TRACKING_COLUMNS}
    full = {
        "pose_columns": [*POSE_COLUMNS, ("n_pred_instances", "predicted")],
        "tracking_columns": TRACKING_COLUMNS
        + [(k, k) for k in TRACKING_OPTIONAL_KEYS if k not in shown],
    }
    return {
        "summary.html": ("summary", {"title": "Run summary", **top, **tables}),
        "headline.html": ("headline", top),
        "pose_accuracy.html": (
            "pose",
            {
                "title": "Pose accuracy",
                "explain": POSE_EXPLANATION,
                "per_node": per_node,
                "node_columns": html.NODE_COLUMNS,
                **tables,
                **full,
            },
        ),
        "tracking.html": (
            "tracking",
            {"title": "Tracking", "warnings": video_warnings, **tables, **full},
        ),
        "provenance.html": (
            "provenance",
            {
                "title": "Provenance",
                "rows": provenance_rows(prov) if prov else [],
                "columns": [("what", "what"), ("value", "value")],
            },
        ),
    }


POSE_EXPLANATION = (
    "mOKS: mean object keypoint similarity of matched instances; mAP/mAR: average "
    "precision/recall over the OKS thresholds of the metrics file (0.50:0.05:0.95); "
    "dist: keypoint error in pixels; mPCK: mean fraction of keypoints closer than each "
    "pixel threshold."
)


def _markdown(summary: dict[str, Any]) -> str:
    parts = [
        "# Pipeline report",
        "",
        f"pipeline_lib {summary['pipeline_lib_version']}",
        "",
        targets_line(summary["demo_targets"]),
        "",
        *[f"- Warning: {w}" for w in summary["warnings"]],
        "",
        "## Pose accuracy",
        "",
        POSE_EXPLANATION,
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
    """The provenance section of summary.md."""
    return [
        "",
        "## Provenance",
        "",
        "From provenance.json, written with the results; summary.json has all of it.",
        "",
        markdown_table(provenance_rows(prov), [("what", "what"), ("value", "value")]),
    ]


def provenance_rows(prov: dict[str, Any]) -> list[dict[str, Any]]:
    """What/value rows: enough to tell whether two reports can be compared number for number
    (same code, configs, seeds, packages and kind of machine)."""
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
    return rows
