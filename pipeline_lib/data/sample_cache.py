"""On-disk cache of preprocessed training samples (``torch_dataset_cache_img_disk``).

For datasets too large to hold in memory, each sample is built once (the same
:func:`~pipeline_lib.data.datasets.build_samples` as the other pipelines) and written as one
lossless PNG, so training reads one small file per sample instead of decoding and resizing a
video frame. PNG rather than sleap-nn's JPEG: JPEG would change the pixels the network trains
on, and the samples must be bitwise those of the other pipelines. A low compression level keeps
writing fast; the files are still far smaller than raw frames.

A cache directory (``train_imgs`` / ``val_imgs``) holds ``0000000.png`` ... one per sample,
``samples.npz`` (points and class ids of every sample) and ``manifest.json`` with a fingerprint:
the SHA-256 of the labels file, the preprocessing spec and the format version. It is written
into a hidden temporary directory that is renamed into place only when complete, so a killed
run never leaves a directory under the final name; ``use_existing_imgs`` reuses a cache only
when its fingerprint matches, and says precisely why it does not.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import uuid
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline_lib.data.datasets import SampleIndex, SampleSpec, as_item, build_all_samples
from pipeline_lib.data.frame_source import FrameSource
from pipeline_lib.io.json_io import dumps_strict

log = logging.getLogger(__name__)

SAMPLE_CACHE_VERSION = 1
MANIFEST = "manifest.json"
METADATA = "samples.npz"
PNG_COMPRESSION = 1  # 0-9; 1 writes several times faster than the default 3, ~10 % larger


class SampleCacheError(RuntimeError):
    """A sample cache that cannot be used; the message names the directory and the reason."""


def spec_to_dict(spec: SampleSpec) -> dict:
    """The preprocessing spec as JSON-ready data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(spec)))


def cache_fingerprint(labels_sha256: str, spec: SampleSpec) -> str:
    """What a reusable cache must share with the run: labels, preprocessing, format."""
    payload = {
        "format_version": SAMPLE_CACHE_VERSION,
        "labels_sha256": labels_sha256,
        "spec": spec_to_dict(spec),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def sample_file(directory: Path, idx: int) -> Path:
    """Path of the PNG of sample ``idx``."""
    return directory / f"{idx:07d}.png"


def write_sample_cache(
    target: str | os.PathLike,
    source: FrameSource,
    index: SampleIndex,
    spec: SampleSpec,
    labels_sha256: str,
    threads: int = 1,
    desc: str = "cache samples",
) -> Path:
    """Build every sample of ``index`` into ``target`` (replacing what is there), atomically."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_leftovers(target)
    tmp = target.parent / f".{target.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        n = len(index)
        points = np.empty((n, index.max_instances, index.n_nodes, 2), dtype=np.float32)
        class_ids = np.empty((n, index.max_instances), dtype=np.int64)

        def store(i: int, image: np.ndarray, pts: np.ndarray, ids: np.ndarray) -> None:
            write_png(sample_file(tmp, i), image)
            points[i] = pts
            class_ids[i] = ids

        build_all_samples(source, index, spec, store, threads, desc)
        np.savez(tmp / METADATA, points=points, class_ids=class_ids)
        manifest = {
            "format_version": SAMPLE_CACHE_VERSION,
            "fingerprint": cache_fingerprint(labels_sha256, spec),
            "labels_sha256": labels_sha256,
            "spec": spec_to_dict(spec),
            "n_samples": n,
            "image_shape": list(index.image_shape),
        }
        (tmp / MANIFEST).write_text(dumps_strict(manifest) + "\n")  # last: completes it
        _replace_dir(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info("Cached %d preprocessed samples as PNG in %s", n, target)
    return target


def write_png(path: Path, image: np.ndarray) -> None:
    """Write an (H, W, C) uint8 image losslessly; C is 1, 3 or 4."""
    if image.dtype != np.uint8:
        raise ValueError(f"Sample images must be uint8 to cache as PNG, got {image.dtype}")
    if not cv2.imwrite(str(path), image, [cv2.IMWRITE_PNG_COMPRESSION, PNG_COMPRESSION]):
        raise SampleCacheError(f"Could not write {path} (disk full or not writable?)")


def open_sample_cache(
    directory: str | os.PathLike, labels_sha256: str, spec: SampleSpec, labels_path: str = ""
) -> DiskSampleDataset:
    """The dataset of an existing cache, after checking it was built from these labels and
    this preprocessing; :class:`SampleCacheError` says what is wrong otherwise."""
    directory = Path(directory)
    hint = (
        "set data_config.use_existing_imgs: false to rebuild it, or point cache_img_path at a "
        "cache of this run"
    )
    if not directory.is_dir():
        raise SampleCacheError(
            f"use_existing_imgs: the sample cache {directory} is missing (no such directory); "
            "set data_config.use_existing_imgs: false to build it"
        )
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise SampleCacheError(
            f"use_existing_imgs: the sample cache {directory} is incomplete or not a sample "
            f"cache (no readable {MANIFEST}: {exc}); {hint}"
        ) from exc
    if manifest.get("format_version") != SAMPLE_CACHE_VERSION:
        raise SampleCacheError(
            f"use_existing_imgs: the sample cache {directory} has format version "
            f"{manifest.get('format_version')}, this version of the pipeline writes "
            f"{SAMPLE_CACHE_VERSION}; {hint}"
        )
    if manifest.get("labels_sha256") != labels_sha256:
        raise SampleCacheError(
            f"use_existing_imgs: the sample cache {directory} was built from different labels "
            f"than {labels_path or 'this run'} (labels SHA-256 {manifest.get('labels_sha256')}, "
            f"expected {labels_sha256}); {hint}"
        )
    wanted = spec_to_dict(spec)
    have = manifest.get("spec") or {}
    changed = [f"{k}: {have.get(k)!r} -> {v!r}" for k, v in wanted.items() if have.get(k) != v]
    if changed or manifest.get("fingerprint") != cache_fingerprint(labels_sha256, spec):
        raise SampleCacheError(
            f"use_existing_imgs: the sample cache {directory} was built with different "
            f"preprocessing ({'; '.join(changed) or 'fingerprint differs'}); {hint}"
        )
    n = int(manifest["n_samples"])
    n_png = sum(1 for name in os.listdir(directory) if name.endswith(".png"))
    try:
        with np.load(directory / METADATA) as meta:
            points, class_ids = meta["points"], meta["class_ids"]
    except (OSError, KeyError, ValueError) as exc:
        raise SampleCacheError(
            f"use_existing_imgs: the sample cache {directory} is incomplete ({METADATA} "
            f"unreadable: {exc}); {hint}"
        ) from exc
    if n_png != n or len(points) != n or len(class_ids) != n:
        raise SampleCacheError(
            f"use_existing_imgs: the sample cache {directory} is incomplete ({n_png} PNG files "
            f"and {len(points)} metadata rows for {n} samples); {hint}"
        )
    log.info("Reusing %d cached samples in %s", n, directory)
    return DiskSampleDataset(directory, points, class_ids)


def delete_sample_cache(directory: str | os.PathLike) -> None:
    """Remove a cache directory (nothing happens if it is already gone)."""
    directory = Path(directory)
    if directory.exists():
        shutil.rmtree(directory)
        log.info("Deleted the sample cache %s", directory)


class DiskSampleDataset(Dataset):
    """Samples read back from a sample cache: one PNG per ``__getitem__``."""

    def __init__(self, directory: str | os.PathLike, points: np.ndarray, class_ids: np.ndarray):
        self.directory = Path(directory)
        self.points = np.ascontiguousarray(points, dtype=np.float32)
        self.class_ids = np.ascontiguousarray(class_ids, dtype=np.int64)

    def __len__(self) -> int:
        return int(self.points.shape[0])

    def __getitem__(self, idx: int) -> dict[str, torch.Tensor]:
        path = sample_file(self.directory, int(idx))
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SampleCacheError(
                f"Could not read cached sample {path}; was the cache deleted during training?"
            )
        if image.ndim == 2:
            image = image[..., None]
        return as_item(image, self.points[idx], self.class_ids[idx])


def _replace_dir(tmp: Path, target: Path) -> None:
    """Rename the finished ``tmp`` to ``target``, moving an older ``target`` out of the way."""
    if target.exists():
        old = target.parent / f".{target.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        os.rename(target, old)
        os.rename(tmp, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, target)


def _remove_leftovers(target: Path) -> None:
    """Delete temporary directories of ``target`` left by runs that were killed."""
    for prefix in (f".{target.name}.partial-", f".{target.name}.old-"):
        for path in target.parent.glob(f"{prefix}*"):
            pid = path.name[len(prefix) :].split("-")[0]
            if pid.isdigit() and int(pid) != os.getpid() and _alive(int(pid)):
                continue  # another live run is writing it
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    """True if a process with this id exists (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
