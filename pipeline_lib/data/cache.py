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
import threading
from pathlib import Path

import h5py
import numpy as np
import sleap_io as sio

from pipeline_lib.io.atomic import atomic_path, write_json_atomic
from pipeline_lib.io.labels import load_labels

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

    Reads through the same frame source as :func:`write_frame_cache`: each thread decodes its
    share of the frames in increasing order (sequential reads are much faster than seeking).
    """
    # Imported here: frame_source builds on this module's CacheError and file_sha256.
    from pipeline_lib.data.frame_source import VideoFrameSource, for_each_frame

    source = VideoFrameSource(labels)
    out: list[np.ndarray | None] = [None] * len(source)

    def keep(row: int, frame: np.ndarray) -> None:
        out[row] = frame

    for_each_frame(source, range(len(source)), keep, threads, desc)
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
        target = out_dir / f"{split}.h5"
        n_frames, n_bytes = write_frame_cache(
            labels, labels_path, target, threads, f"cache {split}"
        )
        manifest["splits"][split] = {
            "file": target.name,
            "labels": str(labels_path),
            "n_frames": n_frames,
            "bytes": n_bytes,
        }
        log.info("Cached %d %s frames into %s", n_frames, split, target)
    write_json_atomic(out_dir / "manifest.json", manifest)
    return manifest


def write_frame_cache(
    labels: sio.Labels,
    labels_path: str | os.PathLike,
    target: str | os.PathLike,
    threads: int = 1,
    desc: str = "cache",
) -> tuple[int, int]:
    """Stream the labelled frames of ``labels`` into one HDF5 file; return (frames, bytes).

    Frame shapes come from the videos' metadata, so the file is laid out before decoding and
    each frame is written as soon as it is decoded: memory stays at a few frames whatever the
    size of the project. Threads decode different videos (or runs of one video) in order, which
    is what makes this fast (random seeks in compressed video cost ~30x a sequential read). The
    file appears under its name only once complete.

    One stacked ``images`` dataset when every frame has the same shape, else one dataset per
    frame under ``frames/``; ``frame_idx`` and the labels' SHA-256 are recorded.
    """
    # Imported here: frame_source builds on this module's CacheError and file_sha256.
    from pipeline_lib.data.frame_source import VideoFrameSource, for_each_frame

    source = VideoFrameSource(labels)
    shapes = source.shapes
    frame_idx = np.array([lf.frame_idx for lf in labels.labeled_frames], dtype=np.int64)
    lock = threading.Lock()
    with atomic_path(target) as tmp, h5py.File(tmp, "w") as h5:
        h5.attrs["format_version"] = CACHE_FORMAT_VERSION
        h5.attrs["labels_sha256"] = file_sha256(labels_path)
        h5.attrs["n_frames"] = len(shapes)
        # track_times=False keeps reruns bitwise identical (HDF5 otherwise stamps mtimes).
        h5.create_dataset("frame_idx", data=frame_idx, track_times=False)
        # Space is allocated when each dataset is created, in row order, so the file's bytes do
        # not depend on which thread finished first: rebuilds are bitwise identical.
        if shapes and len(set(shapes)) == 1:
            images = h5.create_dataset(
                "images",
                shape=(len(shapes), *shapes[0]),
                dtype=np.uint8,
                dcpl=_early_allocation(),
                track_times=False,
            )

            def store(row: int, frame: np.ndarray) -> None:
                images[row] = frame

        else:
            group = h5.create_group("frames")
            for row, shape in enumerate(shapes):
                group.create_dataset(
                    str(row),
                    shape=shape,
                    dtype=np.uint8,
                    dcpl=_early_allocation(),
                    track_times=False,
                )

            def store(row: int, frame: np.ndarray) -> None:
                group[str(row)][...] = frame

        def write(row: int, frame: np.ndarray) -> None:
            if tuple(frame.shape) != tuple(shapes[row]):
                lf = labels.labeled_frames[row]
                raise CacheError(
                    f"Frame {lf.frame_idx} of {lf.video.filename} decoded as {frame.shape}, "
                    f"but the video reports frames of {shapes[row]}"
                )
            with lock:  # h5py serialises access anyway; the lock makes that explicit
                store(row, np.asarray(frame, dtype=np.uint8))

        for_each_frame(source, range(len(shapes)), write, threads, desc)
    return len(shapes), int(sum(int(np.prod(s)) for s in shapes))


def _early_allocation() -> h5py.h5p.PropDCID:
    """Dataset creation properties that allocate the file space at creation time."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    return dcpl


def cache_matches(path: str | os.PathLike, labels_path: str | os.PathLike) -> bool:
    """True when ``path`` is a complete frame cache built from this exact labels file."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        with h5py.File(path, "r") as h5:
            return h5.attrs.get("labels_sha256") == file_sha256(labels_path)
    except OSError:
        return False


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
