"""Several videos in one job: one interpreter, one import, one model load (``videos.per_job``).

Why: a job per video pays Python start-up, the torch import and the model load before its first
frame (bench/RESULTS.md: about 4 s per job on a 2-core CPU), most of the run for short clips,
and on SLURM each job is also a round trip through the scheduler. A batch job pays that once.

The per-video results stay exactly what a job per video writes (the same functions write them).
Each video's outputs go to *staged* files, and the first of them gets a fingerprint of what made
it (the input files' sizes and time stamps, the video's parameters, the code version); each
staged file is then linked to its usual name. A video that fails does not stop the others: the
job ends with an error naming every failed video. Snakemake then removes the failed job's
outputs, but not the staged files, so the rerun only redoes what is missing or stale. Nothing here imports torch: the
stages (:mod:`pipeline_lib.inference.batch`, :mod:`pipeline_lib.tracking.batch`) do.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline_lib.io.atomic import atomic_path, write_text_atomic

log = logging.getLogger(__name__)

FINGERPRINT_SUFFIX = ".fingerprint"


class BatchError(RuntimeError):
    """Some videos of a batch failed; the message names each, and the finished ones are kept."""


def video_batches(video_ids: Sequence[str], per_job: int) -> dict[str, list[str]]:
    """``{"b0000": [ids...], ...}``: consecutive runs of ``per_job`` videos, in listing order."""
    per_job = max(1, int(per_job))
    ids = list(video_ids)
    width = max(4, len(str(max(0, len(ids) - 1) // per_job)))
    return {f"b{i // per_job:0{width}d}": ids[i : i + per_job] for i in range(0, len(ids), per_job)}


def _file_stamp(path: str | os.PathLike) -> list[Any]:
    stat = os.stat(path)
    return [os.path.normpath(str(path)), stat.st_size, stat.st_mtime_ns]


def fingerprint(inputs: Sequence[str], params: Mapping[str, Any], code: str) -> str:
    """What a video's staged outputs depend on; they are reused only when it matches."""
    material = {"inputs": [_file_stamp(p) for p in inputs], "params": params, "code": code}
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


def _sidecar(staged: Mapping[str, str]) -> Path:
    first = Path(next(iter(staged.values())))
    return first.with_name(first.name + FINGERPRINT_SUFFIX)


def _is_current(staged: Mapping[str, str], stamp: str) -> bool:
    sidecar = _sidecar(staged)
    return (
        all(Path(p).is_file() for p in staged.values())
        and sidecar.is_file()
        and sidecar.read_text() == stamp
    )


def publish(staged: str | os.PathLike, final: str | os.PathLike) -> None:
    """Give a staged file its final name: a hard link (no copy of the data), or an atomic copy
    where the two are on different file systems."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    final.unlink(missing_ok=True)
    try:
        os.link(staged, final)
    except OSError:
        with atomic_path(final) as tmp:
            shutil.copyfile(staged, tmp)


def run_batch(
    items: Mapping[str, Mapping[str, Any]],
    run_one: Callable[[str, Mapping[str, Any]], Any],
    code: str = "",
    what: str = "outputs",
) -> dict[str, Any]:
    """Run ``run_one(id, item)`` for each item whose staged outputs are missing or stale, and
    publish every item's staged outputs under their final names.

    Each item holds ``inputs`` (files its outputs depend on), ``params`` (JSON-able settings),
    ``staged`` (output name -> staged path, which ``run_one`` writes atomically) and
    ``outputs`` (output name -> final path).

    Raises:
        BatchError: naming every video that failed (each one's traceback is logged); the
            others' staged files are complete and are reused by the next run.
    """
    done: dict[str, str] = {}
    failed: dict[str, str] = {}
    for vid, item in items.items():
        staged = item["staged"]
        try:
            stamp = fingerprint(item["inputs"], item["params"], code)
            if _is_current(staged, stamp):
                done[vid] = "reused"
                log.info("video %s: staged %s are current, reused", vid, what)
            else:
                for path in staged.values():
                    Path(path).parent.mkdir(parents=True, exist_ok=True)
                run_one(vid, item)
                write_text_atomic(_sidecar(staged), stamp)
                done[vid] = "done"
            for name, path in staged.items():
                publish(path, item["outputs"][name])
        except Exception as exc:  # noqa: BLE001 -- one bad video must not stop the others
            source = item["inputs"][0] if item["inputs"] else ""
            failed[vid] = f"{source}: {type(exc).__name__}: {exc}"
            log.error("video %s (%s) failed:\n%s", vid, source, traceback.format_exc())
    if failed:
        raise BatchError(
            f"{len(failed)} of {len(items)} videos failed: "
            + "; ".join(f"video {vid} ({why})" for vid, why in failed.items())
            + f". The {len(done)} finished are kept (staged) and not redone when this job reruns"
        )
    return {"videos": done, "n_done": sum(v == "done" for v in done.values())}
