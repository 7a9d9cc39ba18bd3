"""Stream predictions into a SLEAP ``.slp`` file frame by frame, so memory stays flat.

Saving with ``sio.save_slp`` needs every ``LabeledFrame`` of a run in memory at once, which grows
with the video's length. :class:`PredictionsWriter` instead lets sleap-io write the file's header
(videos, skeleton, tracks, provenance) with no frames, then appends rows to the ``frames``,
``instances`` and ``pred_points`` tables as predictions arrive. The rows hold exactly the values
sleap-io's own writer (``write_lfs``) would store for the same predictions, so sleap-io and
SLEAP read the file just like one written by ``sio.save_slp``; only the HDF5 storage layout
differs (chunked, resizable tables instead of contiguous ones).

The file is built under a hidden temporary name beside the target and renamed over it only
when :meth:`PredictionsWriter.close` succeeds, so a crashed or killed run never leaves a
truncated file under the final name, and an existing file survives a failed run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import sleap_io as sio

from pipeline_lib.errors import require_free_space, writing
from pipeline_lib.io.atomic import temporary_sibling
from pipeline_lib.io.labels import is_embedded_video
from pipeline_lib.io.skeleton import stable_symmetries

# The row layouts of sleap-io's ``write_lfs`` (sleap_io/io/slp.py). They must match field for
# field: SLEAP and sleap-io read the tables by position.
INSTANCE_DTYPE = np.dtype(
    [
        ("instance_id", "i8"),
        ("instance_type", "u1"),
        ("frame_id", "u8"),
        ("skeleton", "u4"),
        ("track", "i4"),
        ("from_predicted", "i8"),
        ("score", "f4"),
        ("point_id_start", "u8"),
        ("point_id_end", "u8"),
        ("tracking_score", "f4"),
    ]
)
FRAME_DTYPE = np.dtype(
    [
        ("frame_id", "u8"),
        ("video", "u4"),
        ("frame_idx", "u8"),
        ("instance_id_start", "u8"),
        ("instance_id_end", "u8"),
    ]
)
POINT_DTYPE = np.dtype([("x", "f8"), ("y", "f8"), ("visible", "?"), ("complete", "?")])
PREDICTED_POINT_DTYPE = np.dtype(
    [("x", "f8"), ("y", "f8"), ("visible", "?"), ("complete", "?"), ("score", "f8")]
)
PREDICTED = 1  # sleap-io's InstanceType.PREDICTED

_TABLES = {
    "frames": FRAME_DTYPE,
    "instances": INSTANCE_DTYPE,
    "points": POINT_DTYPE,
    "pred_points": PREDICTED_POINT_DTYPE,
}
_CHUNK_ROWS = 4096  # 26-55 bytes per row: chunks of roughly 100-200 KiB
_METADATA_ROOM = 64 * 1024  # room left for HDF5's own bookkeeping when tables grow
_METADATA_ATTR_LIMIT = 64_000  # sleap-io's cap on the metadata/json attribute


class PredictionsWriter:
    """Append predicted instances to a ``.slp`` file without keeping them in memory.

    Use as a context manager::

        with PredictionsWriter(out, [video], skeleton, tracks) as writer:
            for idx, pred in predictions:
                writer.add(idx, pred.points, pred.point_scores, pred.scores)
            writer.close(provenance_update={"seconds": elapsed})

    Leaving the block normally closes the writer (if :meth:`close` was not called); leaving it
    with an exception deletes the temporary file and leaves ``path`` untouched. Until
    :meth:`close` returns, nothing exists under ``path`` (or its previous content is intact).

    Frames are stored in the order they are added; frames without instances are skipped, as
    sleap-io files of predictions only hold frames with instances. Rows are buffered and written
    every ``flush_every`` frames, so at most that many frames are held in memory.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        videos: list[sio.Video],
        skeleton: sio.Skeleton,
        tracks: list[sio.Track] | None = None,
        provenance: dict | None = None,
        flush_every: int = 256,
    ) -> None:
        self.path = Path(path)
        if flush_every < 1:
            raise ValueError(f"flush_every must be at least 1, got {flush_every} for {self.path}")
        if not videos:
            raise ValueError(f"PredictionsWriter for {self.path} needs at least one video")
        for video in videos:
            if is_embedded_video(video):
                raise ValueError(
                    f"Video {video.filename!r} has its frames embedded in a labels file; "
                    f"PredictionsWriter only writes references to external videos. Save "
                    f"predictions for {self.path} with sleap-io's writer (sio.save_slp) instead."
                )
        self.videos = list(videos)
        self.skeleton = skeleton
        self.tracks = list(tracks or [])
        self.flush_every = int(flush_every)
        self.n_frames = 0
        self.n_instances = 0
        self._n_points = 0
        self._n_nodes = len(skeleton.nodes)
        self._video_ids = [_video_id(i, v) for i, v in enumerate(self.videos)]
        self._seen = [bytearray() for _ in self.videos]  # bitmap of frame indices per video
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self._closed = False

        self._tmp = temporary_sibling(self.path)
        self._file: h5py.File | None = None
        with writing(self.path, cleanup=self._discard):
            header = sio.Labels(
                videos=self.videos,
                skeletons=[skeleton],
                tracks=self.tracks,
                provenance=_jsonable(dict(provenance or {})),
            )
            stable_symmetries(header.skeletons)  # same labels, same bytes
            # embed=False: store plain references to the video files (sleap-io's
            # RESTORE_ORIGINAL mode), never copies of their frames.
            sio.save_slp(header, str(self._tmp), embed=False, verbose=False)
            self._file = h5py.File(self._tmp, "a")
            for name, dtype in _TABLES.items():
                if name in self._file:
                    del self._file[name]
                self._file.create_dataset(
                    name, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(_CHUNK_ROWS,)
                )

    @property
    def buffered_frames(self) -> int:
        """Frames added but not yet written to the file (always fewer than ``flush_every``)."""
        return len(self._buffer)

    def add(
        self,
        frame_idx: int,
        points: np.ndarray,
        point_scores: np.ndarray,
        instance_scores: np.ndarray,
        video_index: int = 0,
        track_indices: list[int | None] | np.ndarray | None = None,
        tracking_scores: np.ndarray | None = None,
    ) -> None:
        """Add the predicted instances of one frame.

        ``points`` is ``(instances, nodes, 2)`` with NaN for missing nodes, ``point_scores`` is
        ``(instances, nodes)`` and ``instance_scores`` is ``(instances,)``. ``track_indices``
        index into the writer's ``tracks`` (``None`` or -1: no track); ``tracking_scores``
        default to NaN, which is what sleap-io stores for a ``tracking_score`` of ``None``.
        Each ``(video_index, frame_idx)`` may be added once.
        """
        if self._closed:
            raise RuntimeError(f"PredictionsWriter for {self.path} is already closed")
        where = f"frame {frame_idx} of video {video_index}"
        if not 0 <= video_index < len(self.videos):
            raise ValueError(
                f"video_index {video_index} is out of range for {where} in {self.path}: "
                f"the writer has {len(self.videos)} video(s)"
            )
        where = f"frame {frame_idx} of video {video_index} ({self.videos[video_index].filename})"
        if int(frame_idx) != frame_idx or frame_idx < 0:
            raise ValueError(f"Frame index must be a non-negative integer, got {where}")
        frame_idx = int(frame_idx)

        points = np.asarray(points, dtype=np.float64)
        n_inst = points.shape[0] if points.ndim == 3 else -1
        if points.ndim != 3 or points.shape[1:] != (self._n_nodes, 2):
            raise ValueError(
                f"Points of {where} have shape {points.shape}; expected (instances, "
                f"{self._n_nodes}, 2) for the skeleton's {self._n_nodes} nodes ({self.path})"
            )
        point_scores = _shaped(point_scores, (n_inst, self._n_nodes), "point_scores", where)
        instance_scores = _shaped(instance_scores, (n_inst,), "instance_scores", where)
        tracks = self._track_column(track_indices, n_inst, where)
        if tracking_scores is None:
            tracking = np.full(n_inst, np.nan)
        else:
            tracking = _shaped(tracking_scores, (n_inst,), "tracking_scores", where)

        self._mark_seen(video_index, frame_idx, where)
        if n_inst == 0:
            return

        pred_points = np.zeros(n_inst * self._n_nodes, dtype=PREDICTED_POINT_DTYPE)
        pred_points["x"] = points[..., 0].ravel()
        pred_points["y"] = points[..., 1].ravel()
        # sleap-io's PredictedInstance.from_numpy marks a point visible when its x is not NaN
        # and leaves "complete" False (a GUI flag for human-placed points).
        pred_points["visible"] = ~np.isnan(pred_points["x"])
        pred_points["score"] = point_scores.ravel()

        instances = np.zeros(n_inst, dtype=INSTANCE_DTYPE)
        instances["instance_id"] = self.n_instances + np.arange(n_inst)
        instances["instance_type"] = PREDICTED
        instances["frame_id"] = self.n_frames
        instances["skeleton"] = 0
        instances["track"] = tracks
        instances["from_predicted"] = -1
        instances["score"] = instance_scores
        starts = self._n_points + self._n_nodes * np.arange(n_inst)
        instances["point_id_start"] = starts
        instances["point_id_end"] = starts + self._n_nodes
        instances["tracking_score"] = tracking

        frame = np.array(
            [
                (
                    self.n_frames,
                    self._video_ids[video_index],
                    frame_idx,
                    self.n_instances,
                    self.n_instances + n_inst,
                )
            ],
            dtype=FRAME_DTYPE,
        )
        self._buffer.append((frame, instances, pred_points))
        self.n_frames += 1
        self.n_instances += n_inst
        self._n_points += len(pred_points)
        if len(self._buffer) >= self.flush_every:
            with writing(self.path, cleanup=self._discard):
                self._flush()

    def close(self, provenance_update: dict | None = None) -> None:
        """Write what is buffered, merge ``provenance_update`` into the file's provenance and
        move the finished file to ``path``.

        Values that JSON cannot hold are stored as close as it allows (numpy scalars as
        numbers, paths and other objects as strings, NaN and infinities as null), so a
        provenance entry can never make the predictions themselves fail to save. Calling
        ``close`` again after it succeeded does nothing.
        """
        if self._closed:
            return
        with writing(self.path, cleanup=self._discard):
            self._flush()
            if provenance_update:
                self._update_provenance(_jsonable(dict(provenance_update)))
            self._file.close()
            self._file = None
            os.replace(self._tmp, self.path)
        self._closed = True

    def abort(self) -> None:
        """Delete the temporary file; ``path`` keeps whatever it held before."""
        if not self._closed:
            self._discard()

    def __enter__(self) -> PredictionsWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def _track_column(self, track_indices, n_inst: int, where: str) -> np.ndarray:
        """Track numbers as stored in the file: an index into ``tracks``, or -1 for none."""
        if track_indices is None:
            return np.full(n_inst, -1, dtype=np.int32)
        values = [-1 if t is None else int(t) for t in track_indices]
        if len(values) != n_inst:
            raise ValueError(
                f"track_indices of {where} has {len(values)} entries for {n_inst} instances "
                f"({self.path})"
            )
        bad = [t for t in values if not -1 <= t < len(self.tracks)]
        if bad:
            raise ValueError(
                f"Track index {bad[0]} of {where} is out of range: the writer has "
                f"{len(self.tracks)} track(s) ({self.path})"
            )
        return np.asarray(values, dtype=np.int32)

    def _mark_seen(self, video_index: int, frame_idx: int, where: str) -> None:
        """Refuse a frame added twice; one bit per frame index keeps this check small."""
        seen = self._seen[video_index]
        byte, bit = divmod(frame_idx, 8)
        if byte >= len(seen):
            seen.extend(bytes(max(byte + 1 - len(seen), len(seen))))
        if seen[byte] >> bit & 1:
            raise ValueError(f"{where} was already added to {self.path}")
        seen[byte] |= 1 << bit

    def _flush(self) -> None:
        """Append the buffered rows to the file's tables and empty the buffer."""
        if not self._buffer:
            return
        tables = [np.concatenate([entry[k] for entry in self._buffer]) for k in range(3)]
        # A chunk is allocated whole (one more per table at most) and the metadata grows too.
        room = sum(t.nbytes + _CHUNK_ROWS * t.itemsize for t in tables) + _METADATA_ROOM
        require_free_space(self.path, room)
        for rows, name in zip(tables, ("frames", "instances", "pred_points"), strict=True):
            table = self._file[name]
            start = table.shape[0]
            table.resize((start + len(rows),))
            table[start:] = rows
        self._buffer.clear()
        self._file.flush()

    def _update_provenance(self, update: dict) -> None:
        """Merge ``update`` into the provenance where sleap-io keeps it.

        sleap-io (``write_metadata``) stores provenance as a JSON blob in the top-level
        ``provenance_json`` dataset (absent when empty), and mirrors it under the
        ``provenance`` key of the ``metadata/json`` attribute when that attribute stays under
        HDF5's 64 KB limit; readers prefer the dataset. Both are rewritten here.
        """
        meta = self._file["metadata"]
        metadata = json.loads(meta.attrs["json"])
        if "provenance_json" in self._file:
            provenance = json.loads(self._file["provenance_json"][()])
            del self._file["provenance_json"]
        else:
            provenance = metadata.get("provenance", {})
        provenance.update(update)
        self._file.create_dataset("provenance_json", data=np.bytes_(_dumps(provenance)))
        metadata["provenance"] = provenance
        blob = _dumps(metadata)
        if len(blob) > _METADATA_ATTR_LIMIT:
            del metadata["provenance"]  # the dataset holds it; sleap-io drops it the same way
            blob = _dumps(metadata)
        meta.attrs["json"] = np.bytes_(blob)

    def _discard(self) -> None:
        """Close and delete the temporary file, ignoring a file that is already gone.

        The file is emptied before it is closed: after a write failed on a full disk, HDF5
        cannot close it (it still has metadata to write) and crashes the process when it tries
        again at exit, unless the file's space is given back first.
        """
        with contextlib.suppress(OSError):
            os.truncate(self._tmp, 0)
        if self._file is not None:
            with contextlib.suppress(Exception):
                self._file.close()
            self._file = None
        with contextlib.suppress(FileNotFoundError):
            self._tmp.unlink()
        self._buffer.clear()
        self._closed = True


def _shaped(values: Any, shape: tuple[int, ...], name: str, where: str) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != shape:
        raise ValueError(f"{name} of {where} have shape {array.shape}; expected {shape}")
    return array


def _video_id(index: int, video: sio.Video) -> int:
    """The number sleap-io's ``write_lfs`` stores in a frame's ``video`` column.

    That is the video's position, except for a backend whose HDF5 dataset is named like
    ``video<N>/...`` (how sleap-io numbers frames it embeds), where it stores ``N``.
    """
    dataset = getattr(video.backend, "dataset", None) if video.backend is not None else None
    if isinstance(dataset, str):
        group = dataset.split("/")[0]
        if group.startswith("video") and group[5:].isdigit():
            return int(group[5:])
    return index


def _jsonable(value: Any) -> Any:
    """``value`` with everything JSON cannot store turned into something it can.

    sleap-io parses provenance with a JSON reader that rejects NaN, so non-finite floats
    become null; numpy values become Python numbers or lists; anything else unknown, a string.
    """
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Path):
        return value.as_posix()
    return str(value)


def _dumps(value: Any) -> str:
    """Compact JSON, as sleap-io writes its metadata."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
