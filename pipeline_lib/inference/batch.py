"""Predict several videos in one job: one interpreter, one model load (``videos.per_job``).

Why: a job per video pays Python start-up, the torch import and the model load before its first
frame (bench/RESULTS.md: about 3 s on a 2-core CPU), most of the run for short clips, and on
SLURM each job is also a round trip through the scheduler. A batch job pays that once.

The per-video results stay exactly what a job per video writes (the same function writes
them). Each video's predictions go to a *staged* file beside a fingerprint of what made it (the
video's size and time stamp, the model files', the options, the code version); the workflow
then links each staged file to its usual name (``results/predictions/{video}.predictions.slp``).
A video that fails does not stop the others: the job ends with an error naming every failed
video, and the finished ones stay staged, so the rerun predicts only what is missing or stale.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import traceback
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline_lib.io.atomic import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

FINGERPRINT_SUFFIX = ".fingerprint"


class BatchError(RuntimeError):
    """Some videos of a batch failed; the message names each, and the finished ones are kept."""


def _file_stamp(path: str | os.PathLike) -> list[Any]:
    stat = os.stat(path)
    return [os.path.normpath(str(path)), stat.st_size, stat.st_mtime_ns]


def fingerprint(
    video: Mapping[str, Any],
    model_files: Sequence[str],
    options: Mapping[str, Any],
    code: str,
) -> str:
    """What a staged prediction depends on; a staged file is reused only when it matches."""
    material = {
        "video": _file_stamp(video["path"]),
        "frames": video.get("frames") or "",
        "models": [_file_stamp(p) for p in model_files],
        "options": dict(options),
        "code": code,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()


def _is_current(staged: Path, stamp: str) -> bool:
    sidecar = staged.with_name(staged.name + FINGERPRINT_SUFFIX)
    return staged.is_file() and sidecar.is_file() and sidecar.read_text() == stamp


def predict_batch(
    videos: Mapping[str, Mapping[str, Any]],
    model_dirs: Sequence[str],
    model_files: Sequence[str],
    options: Mapping[str, Any],
    marker: str | os.PathLike,
    threads: int = 1,
    code: str = "",
) -> dict[str, Any]:
    """Predict each video of ``videos`` (id -> ``{"path", "frames", "staged"}``) into its staged
    file, loading the models once; write ``marker`` (what was done) when every video succeeded.

    Raises:
        BatchError: naming every video that failed (each one's traceback is logged); the
            others' staged files are complete and are reused by the next run.
    """
    from pipeline_lib.inference.options import InferenceOptions
    from pipeline_lib.inference.predict import predict_video
    from pipeline_lib.inference.predictors import make_predictor

    opts = InferenceOptions.from_dict(dict(options))
    predictor = None
    done: dict[str, str] = {}
    failed: dict[str, str] = {}
    for vid, video in videos.items():
        staged = Path(video["staged"])
        try:
            stamp = fingerprint(video, model_files, options, code)
            if _is_current(staged, stamp):
                done[vid] = "reused"
                log.info("video %s: staged predictions are current, reused (%s)", vid, staged)
                continue
            if predictor is None:
                predictor = make_predictor(model_dirs, opts)  # once, for every video
            staged.parent.mkdir(parents=True, exist_ok=True)
            predict_video(
                model_dirs,
                video["path"],
                staged,
                opts,
                threads=threads,
                frames=video.get("frames") or None,
                predictor=predictor,
            )
            write_text_atomic(staged.with_name(staged.name + FINGERPRINT_SUFFIX), stamp)
            done[vid] = "predicted"
        except Exception as exc:  # noqa: BLE001 -- one bad video must not stop the others
            failed[vid] = f"{video['path']}: {type(exc).__name__}: {exc}"
            log.error("video %s (%s) failed:\n%s", vid, video["path"], traceback.format_exc())
    if failed:
        raise BatchError(
            f"{len(failed)} of {len(videos)} videos failed: "
            + "; ".join(f"video {vid} ({why})" for vid, why in failed.items())
            + f". The {len(done)} finished are kept (staged) and not predicted again when "
            "this job reruns"
        )
    summary = {"videos": done, "n_predicted": sum(v == "predicted" for v in done.values())}
    write_json_atomic(marker, summary)
    return summary


def video_batches(video_ids: Sequence[str], per_job: int) -> dict[str, list[str]]:
    """``{"b0000": [ids...], ...}``: consecutive runs of ``per_job`` videos, in listing order."""
    per_job = max(1, int(per_job))
    ids = list(video_ids)
    width = max(4, len(str(max(0, len(ids) - 1) // per_job)))
    return {f"b{i // per_job:0{width}d}": ids[i : i + per_job] for i in range(0, len(ids), per_job)}
