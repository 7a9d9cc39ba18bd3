"""Random access to the labelled frames of one split, from the image cache or the videos.

Training needs two things from the frames of a split: their shapes (to resolve the config and
to size the samples) before anything is decoded, and random access to single frames (to build
a sample on demand in a DataLoader worker, or all of them once for an image cache). A frame
source provides both. Row ``i`` is the ``i``-th labelled frame of the split's labels, as in the
HDF5 image cache of :mod:`pipeline_lib.data.cache`.

Decoder handles (HDF5 files, video readers) cannot cross a ``fork`` or be pickled, so a source
holds only paths and metadata; :meth:`FrameSource.read` opens a reader lazily in the process
that uses it (and again after a fork), and pickling drops it. That is what lets DataLoaders
with ``num_workers > 0`` stream frames.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import sleap_io as sio

from pipeline_lib.data.cache import CacheError, file_sha256
from pipeline_lib.io.progress import Progress
from pipeline_lib.io.video import check_video_index

log = logging.getLogger(__name__)

FrameShape = tuple[int, int, int]  # (height, width, channels) of a decoded frame

# Readers a forked process inherited from its parent. They are kept referenced, never closed or
# garbage-collected: freeing an FFmpeg reader in the child joins decoder threads that only
# exist in the parent, which deadlocks the DataLoader worker.
_INHERITED: list[FrameReader] = []


class FrameReadError(RuntimeError):
    """A labelled frame that cannot be decoded; the message names the file and frame."""


class FrameReader:
    """Open decoder handles of one source, for one thread; close it when done."""

    def read(self, row: int) -> np.ndarray:
        """The frame of row ``row`` as (H, W, C) uint8."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the handles."""

    def __enter__(self) -> FrameReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FrameSource:
    """Shapes of a split's labelled frames and per-process random access to them."""

    shapes: list[FrameShape]

    def __init__(self) -> None:
        self._reader: FrameReader | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return len(self.shapes)

    def open_reader(self) -> FrameReader:
        """New, independent handles (one per thread; the caller closes them)."""
        raise NotImplementedError

    def sort_key(self, row: int) -> Any:
        """Key under which reading rows in increasing order is sequential (fast) decoding."""
        return row

    def read(self, row: int) -> np.ndarray:
        """Decode one frame with this process's reader, opened on first use and after a fork."""
        if self._reader is None or self._pid != os.getpid():
            self._forget_inherited()
            self._reader = self.open_reader()
            self._pid = os.getpid()
        return self._reader.read(row)

    @property
    def is_open(self) -> bool:
        """True when this process holds decoder handles for :meth:`read`."""
        return self._reader is not None and self._pid == os.getpid()

    def close(self) -> None:
        """Close this process's reader (it reopens on the next :meth:`read`)."""
        if self._reader is not None and self._pid == os.getpid():
            self._reader.close()
        self._forget_inherited()
        self._reader = None
        self._pid = None

    def _forget_inherited(self) -> None:
        """Park a reader inherited through ``fork`` where it is never freed (see _INHERITED)."""
        if self._reader is not None and self._pid != os.getpid():
            _INHERITED.append(self._reader)
        self._reader = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_reader"] = None  # handles never cross processes
        state["_pid"] = None
        return state


# --------------------------------------------------------------------------- HDF5 image cache


class CachedFrameSource(FrameSource):
    """Frames of a split from ``{cache_dir}/{split}.h5`` (built by ``build_image_cache``)."""

    def __init__(
        self, cache_dir: str | os.PathLike, split: str, labels_path: str | os.PathLike
    ) -> None:
        super().__init__()
        self.path = Path(cache_dir) / f"{split}.h5"
        if not self.path.exists():
            raise CacheError(
                f"No cached frames for split '{split}' in {cache_dir} (expected {self.path})"
            )
        expected_sha = file_sha256(labels_path)
        with h5py.File(self.path, "r") as h5:
            if h5.attrs.get("labels_sha256") != expected_sha:
                raise CacheError(
                    f"Image cache {self.path} was built from a different version of "
                    f"{labels_path}; rebuild the cache"
                )
            n = int(h5.attrs["n_frames"])
            self.stacked = "images" in h5
            if self.stacked:
                shape = tuple(int(s) for s in h5["images"].shape[1:])
                self.shapes = [_frame_shape(shape)] * n
            else:
                self.shapes = [_frame_shape(h5["frames"][str(i)].shape) for i in range(n)]

    def open_reader(self) -> FrameReader:
        return _H5Reader(self.path, self.stacked)


class _H5Reader(FrameReader):
    def __init__(self, path: Path, stacked: bool) -> None:
        self.h5 = h5py.File(path, "r")
        self.stacked = stacked

    def read(self, row: int) -> np.ndarray:
        data = self.h5["images"][row] if self.stacked else self.h5["frames"][str(row)][()]
        return _as_hwc(data)

    def close(self) -> None:
        self.h5.close()


# --------------------------------------------------------------------------- videos


class VideoFrameSource(FrameSource):
    """Frames decoded from the videos of the labels (files, image folders or embedded).

    Keeps each video's filename and backend metadata, not the labels' ``Video`` objects, so it
    pickles small and never shares a reader with the labels.
    """

    def __init__(self, labels: sio.Labels) -> None:
        super().__init__()
        self.videos: list[tuple[Any, dict]] = []
        video_index: dict[int, int] = {}
        self.rows: list[tuple[int, int]] = []
        for lf in labels.labeled_frames:
            key = id(lf.video)
            if key not in video_index:
                video_index[key] = len(self.videos)
                self.videos.append(_probe(lf.video))
            self.rows.append((video_index[key], int(lf.frame_idx)))
        self.shapes = [_frame_shape(self.videos[v][1]["shape"][1:]) for v, _ in self.rows]

    def open_reader(self) -> FrameReader:
        return _VideoReader(self.videos, self.rows)

    def sort_key(self, row: int) -> Any:
        return self.rows[row]


def _probe(video: sio.Video) -> tuple[Any, dict]:
    """(filename, backend metadata incl. shape and grayscale) of a video, from a closed copy.

    Opening a private copy once records what the backend detects (shape, grayscale), so readers
    in other processes open it without detecting again and decode exactly the same pixels.
    """
    if isinstance(video.filename, str):
        check_video_index(video.filename)
    copy = _closed_copy(video.filename, video.backend_metadata)
    try:
        copy.open()
        shape = copy.shape
    except Exception as exc:
        raise FrameReadError(
            f"Could not open video {video.filename}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        copy.close()
    if shape is None:
        raise FrameReadError(f"Could not read the frame size of video {video.filename}")
    meta = dict(copy.backend_metadata)
    meta["shape"] = tuple(int(s) for s in shape)
    return copy.filename, meta


def _closed_copy(filename: Any, metadata: dict) -> sio.Video:
    """A ``Video`` with no open backend (``open_backend=False`` stops sleap-io opening it)."""
    return sio.Video(
        filename=filename, backend=None, backend_metadata=dict(metadata), open_backend=False
    )


class _VideoReader(FrameReader):
    def __init__(self, videos: list[tuple[Any, dict]], rows: list[tuple[int, int]]) -> None:
        self.videos = videos
        self.rows = rows
        self.open: dict[int, sio.Video] = {}

    def read(self, row: int) -> np.ndarray:
        v, frame_idx = self.rows[row]
        filename = self.videos[v][0]
        try:
            video = self.open.get(v)
            if video is None:
                video = _closed_copy(*self.videos[v])
                video.open()
                self.open[v] = video
            frame = video[frame_idx]
        except Exception as exc:
            raise FrameReadError(
                f"Could not decode frame {frame_idx} of video {filename}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if frame is None:
            raise FrameReadError(f"Frame {frame_idx} of video {filename} did not decode")
        return _as_hwc(frame)

    def close(self) -> None:
        for video in self.open.values():
            video.close()
        self.open.clear()


# --------------------------------------------------------------------------- helpers


def open_frame_source(
    cache_dir: str | os.PathLike | None,
    split: str,
    labels_path: str | os.PathLike,
    labels: sio.Labels,
) -> FrameSource:
    """The split's frames from the image cache when there is one, else from its videos."""
    if cache_dir is not None:
        return CachedFrameSource(cache_dir, split, labels_path)
    return VideoFrameSource(labels)


def for_each_frame(
    source: FrameSource,
    rows: Sequence[int],
    fn: Callable[[int, np.ndarray], None],
    threads: int,
    desc: str,
) -> None:
    """Call ``fn(row, frame)`` once for every distinct row, decoding in parallel threads.

    Rows are put in decoding order and split into one contiguous run per thread, each read by
    its own reader, so every thread decodes sequentially (seeking in a compressed video costs
    far more than decoding the next frame). OpenCV and h5py release the GIL while decoding.
    """
    order = sorted(set(int(r) for r in rows), key=source.sort_key)
    if not order:
        return
    workers = max(1, min(int(threads), len(order)))
    size = -(-len(order) // workers)
    chunks = [order[i : i + size] for i in range(0, len(order), size)]
    progress = Progress(len(order), desc)
    failed = threading.Event()

    def work(chunk: list[int]) -> None:
        with source.open_reader() as reader:
            for row in chunk:
                if failed.is_set():
                    return
                try:
                    fn(row, reader.read(row))
                except BaseException:
                    failed.set()
                    raise
                progress.update()

    try:
        with ThreadPoolExecutor(max_workers=len(chunks)) as pool:
            list(pool.map(work, chunks))
    finally:
        progress.close()


def _frame_shape(shape: Sequence[int]) -> FrameShape:
    """(H, W, C) of a stored frame shape that may lack the channel axis."""
    dims = tuple(int(s) for s in shape)
    if len(dims) == 2:
        return (dims[0], dims[1], 1)
    if len(dims) != 3:
        raise ValueError(f"Frames must be (H, W) or (H, W, C), got shape {dims}")
    return (dims[0], dims[1], dims[2])


def _as_hwc(frame: Any) -> np.ndarray:
    """A decoded frame as (H, W, C) with the channel axis restored for grayscale."""
    frame = np.asarray(frame)
    return frame if frame.ndim == 3 else frame[..., None]
