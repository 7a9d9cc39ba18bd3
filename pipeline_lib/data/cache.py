"""Lossless on-disk cache of the decoded frames of each split.

Decoding video is the slowest part of feeding a small network, and every model trained on the
same split needs the same frames. The cache stores each split's labelled frames, decoded once,
as raw uint8 arrays in one HDF5 file per split (``{split}.h5``), row ``i`` holding the ``i``-th
labelled frame of ``{split}.slp``. Preprocessing (resizing, cropping) stays in training because
it differs between models; raw frames are what they can all share. Training reads the rows it
needs through :mod:`pipeline_lib.data.frame_source`, one frame at a time when it streams.

Each file records the SHA-256 of the labels file it was built from, so a stale cache is detected
instead of silently feeding the wrong frames.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
import sleap_io as sio

from pipeline_lib.io.atomic import atomic_path, write_json_atomic
from pipeline_lib.io.labels import load_labels
from pipeline_lib.io.progress import Progress

log = logging.getLogger(__name__)

CACHE_FORMAT_VERSION = 1


class CacheError(RuntimeError):
    """The cache does not match the labels it is asked to serve."""


def file_sha256(path: str | os.PathLike) -> str:
    """Content hash of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def decode_labelled_frames(
    labels: sio.Labels, threads: int = 1, desc: str = "decode"
) -> list[np.ndarray]:
    """Decode every labelled frame of ``labels`` as (H, W, C) uint8, in labelled-frame order.

    Frames are grouped by video and read in increasing frame order (sequential reads are much
    faster than seeking), one video per worker thread; OpenCV releases the GIL while decoding.
    """
    by_video: dict[int, list[int]] = defaultdict(list)
    for i, lf in enumerate(labels.labeled_frames):
        by_video[id(lf.video)].append(i)
    out: list[np.ndarray | None] = [None] * len(labels.labeled_frames)
    progress = Progress(len(out), desc)

    def read_video(indices: list[int]) -> None:
        video = labels.labeled_frames[indices[0]].video
        for i in sorted(indices, key=lambda j: labels.labeled_frames[j].frame_idx):
            frame_idx = labels.labeled_frames[i].frame_idx
            try:
                frame = video[frame_idx]
            except Exception as exc:
                raise CacheError(
                    f"Could not decode frame {frame_idx} of video {video.filename}: {exc}"
                ) from exc
            if frame is None:
                raise CacheError(f"Frame {frame_idx} of video {video.filename} did not decode")
            frame = np.asarray(frame)
            out[i] = frame if frame.ndim == 3 else frame[..., None]
            progress.update()

    workers = max(1, min(int(threads), len(by_video)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(read_video, by_video.values()))
    progress.close()
    return out  # type: ignore[return-value]


def build_image_cache(
    split_paths: dict[str, str], out_dir: str | os.PathLike, threads: int = 1
) -> dict:
    """Decode the frames of every split into ``out_dir/{split}.h5`` and write a manifest."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest: dict = {"format_version": CACHE_FORMAT_VERSION, "splits": {}}
    for split, labels_path in split_paths.items():
        labels = load_labels(labels_path)
        frames = decode_labelled_frames(labels, threads, desc=f"cache {split}")
        target = out_dir / f"{split}.h5"
        with atomic_path(target) as tmp:
            _write_frames(tmp, frames, labels, file_sha256(labels_path))
        manifest["splits"][split] = {
            "file": target.name,
            "labels": str(labels_path),
            "n_frames": len(frames),
            "bytes": int(sum(f.nbytes for f in frames)),
        }
        log.info("Cached %d %s frames into %s", len(frames), split, target)
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


def _write_frames(
    path: Path, frames: list[np.ndarray], labels: sio.Labels, labels_sha: str
) -> None:
    """Store frames as one stacked dataset when they share a shape, else one dataset per frame."""
    with h5py.File(path, "w") as h5:
        h5.attrs["format_version"] = CACHE_FORMAT_VERSION
        h5.attrs["labels_sha256"] = labels_sha
        h5.attrs["n_frames"] = len(frames)
        frame_idx = np.array([lf.frame_idx for lf in labels.labeled_frames], dtype=np.int64)
        # track_times=False keeps reruns bitwise identical (HDF5 otherwise stamps mtimes).
        h5.create_dataset("frame_idx", data=frame_idx, track_times=False)
        shapes = {f.shape for f in frames}
        if len(shapes) == 1 and frames:
            shape = frames[0].shape
            ds = h5.create_dataset(
                "images",
                shape=(len(frames), *shape),
                dtype=np.uint8,
                chunks=(1, *shape),
                track_times=False,
            )
            for i, frame in enumerate(frames):
                ds[i] = frame
        else:
            grp = h5.create_group("frames")
            for i, frame in enumerate(frames):
                grp.create_dataset(str(i), data=frame, track_times=False)


def read_cached_frames(
    cache_dir: str | os.PathLike, split: str, labels_path: str | os.PathLike
) -> list[np.ndarray]:
    """Load a split's cached frames, checking they were built from this exact labels file."""
    path = Path(cache_dir) / f"{split}.h5"
    if not path.exists():
        raise CacheError(f"No cached frames for split '{split}' in {cache_dir} (expected {path})")
    expected_sha = file_sha256(labels_path)
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("labels_sha256") != expected_sha:
            raise CacheError(
                f"Image cache {path} was built from a different version of {labels_path}; "
                "rebuild the cache"
            )
        if "images" in h5:
            stacked = h5["images"][()]
            return [stacked[i] for i in range(stacked.shape[0])]
        grp = h5["frames"]
        return [grp[str(i)][()] for i in range(int(h5.attrs["n_frames"]))]
