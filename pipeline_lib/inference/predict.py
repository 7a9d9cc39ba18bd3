"""Run a trained predictor over a whole video and write a SLEAP ``.slp`` of predictions.

Frames are decoded in a background thread into a small bounded queue, so decoding overlaps the
network, and predictions are appended to the output file as they come
(:class:`~pipeline_lib.io.slp_stream.PredictionsWriter`): memory does not grow with the video's
length.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import sleap_io as sio
import torch

from pipeline_lib import __version__
from pipeline_lib.inference.frames import format_frame_selection, parse_frame_selection
from pipeline_lib.inference.options import InferenceOptions
from pipeline_lib.inference.predictors import FrameInstances, make_predictor, to_labeled_frame
from pipeline_lib.io.labels import is_embedded_video, load_labels, save_labels
from pipeline_lib.io.progress import Progress
from pipeline_lib.io.slp_stream import PredictionsWriter
from pipeline_lib.io.tables import save_analysis_h5, save_table_csv
from pipeline_lib.io.video import check_video_index, open_video
from pipeline_lib.provenance import model_record
from pipeline_lib.training.run_dir import TRAINING_CONFIG

log = logging.getLogger(__name__)


def predict_video(
    model_dirs: Sequence[str | os.PathLike],
    video_path: str | os.PathLike,
    out_path: str | os.PathLike,
    options: dict | InferenceOptions | None = None,
    threads: int = 1,
    frames: str | None = None,
    analysis_h5: str | os.PathLike | None = None,
    csv: str | os.PathLike | None = None,
    predictor=None,
) -> dict:
    """Predict the frames of ``video_path`` (all, or a selection such as ``"0-99,150"``) and
    save the predictions to ``out_path``; on request also as SLEAP's analysis HDF5
    (``analysis_h5``) and a tidy CSV with one row per instance (``csv``).

    Predictions are appended to the ``.slp`` as they come, so memory does not grow with the
    video's length (the analysis HDF5 and CSV are made from the finished file). ``predictor``:
    one already made from ``model_dirs`` and ``options`` (:func:`make_predictor`), so that a job
    predicting many videos loads its models once (:mod:`pipeline_lib.inference.batch`).
    """
    torch.set_num_threads(max(1, int(threads)))
    opts = options if isinstance(options, InferenceOptions) else InferenceOptions.from_dict(options)
    video = open_video(video_path)
    try:
        selected = parse_frame_selection(frames, video.shape[0])
    except ValueError as exc:
        raise ValueError(f"Frame selection for video {video_path}: {exc}") from None
    if predictor is None:
        predictor = make_predictor(model_dirs, opts)
    summary = _run(
        predictor, opts, [(video, selected)], out_path, model_dirs, {"video": str(video_path)}
    )
    if analysis_h5 is not None or csv is not None:
        labels = load_labels(out_path)
        if analysis_h5 is not None:
            save_analysis_h5(labels, analysis_h5, out_path)
        if csv is not None:
            save_table_csv(labels, csv)
    log.info("Predicted %s: %s", video_path, summary)
    return summary


def predict_labels(
    model_dirs: Sequence[str | os.PathLike],
    labels_path: str | os.PathLike,
    out_path: str | os.PathLike,
    options: dict | InferenceOptions | None = None,
    threads: int = 1,
    video_index: int | None = None,
    frames: str | None = None,
    only_labeled: bool = False,
    only_suggested: bool = False,
    exclude_user_labeled: bool = False,
) -> dict:
    """Predict frames of the videos of a labels file (``.slp``, or ``.pkg.slp`` whose frames are
    embedded) and save the predictions to ``out_path``.

    Which frames: those of ``video_index`` (default: every video), restricted to ``frames``
    (e.g. ``"0-99"``), to frames with labels (``only_labeled``) or to the suggested frames
    (``only_suggested``), minus frames holding user-labelled instances
    (``exclude_user_labeled``). Without any of these every frame of each video is predicted,
    except for embedded videos, which only hold their labelled frames.
    """
    torch.set_num_threads(max(1, int(threads)))
    opts = options if isinstance(options, InferenceOptions) else InferenceOptions.from_dict(options)
    labels = load_labels(labels_path)
    plan = labels_frame_plan(
        labels, video_index, frames, only_labeled, only_suggested, exclude_user_labeled
    )
    predictor = make_predictor(model_dirs, opts)
    summary = _run(predictor, opts, plan, out_path, model_dirs, {"labels": str(labels_path)})
    log.info("Predicted %s: %s", labels_path, summary)
    return summary


def _run(
    predictor,
    opts: InferenceOptions,
    plan: list[tuple[sio.Video, list[int]]],
    out_path: str | os.PathLike,
    model_dirs: Sequence[str | os.PathLike],
    source: dict,
) -> dict:
    """Predict every (video, frames) of ``plan`` into ``out_path``; return the run's summary.

    Videos in files are streamed to disk by :class:`PredictionsWriter`; frames embedded in a
    ``.pkg.slp`` (only its labelled frames, so few) are gathered and saved by sleap-io.
    """
    videos = [video for video, _ in plan]
    tracks = [sio.Track(name=name) for name in getattr(predictor, "classes", None) or []]
    provenance = _provenance(model_dirs, opts, source)
    embedded = any(is_embedded_video(v) for v in videos)
    sink_type = _LabelsInMemory if embedded else PredictionsWriter
    n_frames = sum(len(selected) for _, selected in plan)
    name = os.path.basename(str(source.get("video") or source.get("labels")))
    progress = Progress(n_frames, f"predict {name}")
    started = time.time()
    undecodable: dict[str, list[int]] = {}
    # closing: a failure or stop signal ends the bar's line before the error message is printed
    with (
        sink_type(out_path, videos, predictor.skeleton, tracks, provenance) as sink,
        contextlib.closing(progress),
    ):
        track_index = {t.name: i for i, t in enumerate(tracks)}
        for video_index, (video, selected) in enumerate(plan):
            failed: list[int] = []
            for batch_indices, images in _batches(video, selected, opts.batch_size * 2, failed):
                for idx, pred in zip(batch_indices, predictor.predict(images), strict=True):
                    _add(sink, video_index, idx, pred, track_index)
                progress.update(len(batch_indices))
            if failed:
                undecodable[str(video.filename)] = failed
                log.warning(
                    "Video %s: %d of %d selected frames could not be decoded and were not "
                    "predicted (frames %s); the file is probably truncated or corrupt",
                    video.filename,
                    len(failed),
                    len(selected),
                    format_frame_selection(failed),
                )
        progress.close()
        elapsed = time.time() - started
        n_failed = sum(len(f) for f in undecodable.values())
        summary = {
            "n_frames": int(n_frames),
            "n_frames_predicted": int(n_frames - n_failed),
            "n_frames_with_instances": sink.n_frames,
            "n_instances": sink.n_instances,
            "seconds": round(elapsed, 3),
            "fps": round((n_frames - n_failed) / elapsed, 2) if elapsed > 0 else None,
        }
        if undecodable:
            summary["undecodable_frames"] = {
                name: format_frame_selection(f) for name, f in undecodable.items()
            }
        sink.close(provenance_update={"summary": summary})
    if summary["n_frames_predicted"] and not summary["n_instances"]:
        log.warning(
            "No instance found in %d predicted frames of %s: lower --peak-threshold "
            "(inference.peak_threshold, now %g) or check that the model is trained (its "
            "training_log.csv and validation loss)",
            summary["n_frames_predicted"],
            name,
            opts.peak_threshold,
        )
    return summary


def _add(sink, video_index: int, frame_idx: int, pred, track_index: dict[str, int]) -> None:
    """Hand one frame's predictions to the output (frames without instances are skipped)."""
    if not len(pred.points):
        return
    tracks = None
    if pred.tracks is not None:
        tracks = [None if name is None else track_index[name] for name in pred.tracks]
    sink.add(
        frame_idx,
        pred.points,
        pred.point_scores,
        pred.scores,
        video_index=video_index,
        track_indices=tracks,
        tracking_scores=pred.track_scores,
    )


class _LabelsInMemory:
    """The :class:`PredictionsWriter` interface, gathering sleap-io objects and saving them with
    sleap-io on close: for predictions on frames embedded in a ``.pkg.slp``, which the stream
    writer does not handle and which are few (only labelled frames are embedded)."""

    def __init__(self, path, videos, skeleton, tracks, provenance) -> None:
        self.path, self.videos, self.skeleton, self.tracks = path, videos, skeleton, tracks
        self.provenance = dict(provenance)
        self.frames: list[sio.LabeledFrame] = []
        self.n_frames = self.n_instances = 0

    def add(
        self,
        frame_idx,
        points,
        point_scores,
        instance_scores,
        video_index=0,
        track_indices=None,
        tracking_scores=None,
    ) -> None:
        names = None
        if track_indices is not None:
            names = [None if t is None else self.tracks[t].name for t in track_indices]
        pred = FrameInstances(
            points, point_scores, instance_scores, tracks=names, track_scores=tracking_scores
        )
        by_name = {t.name: t for t in self.tracks}
        lf = to_labeled_frame(pred, self.videos[video_index], frame_idx, self.skeleton, by_name)
        self.frames.append(lf)
        self.n_instances += len(lf.instances)
        self.n_frames += 1

    def close(self, provenance_update: dict | None = None) -> None:
        labels = sio.Labels(
            labeled_frames=self.frames,
            videos=list(self.videos),
            skeletons=[self.skeleton],
            tracks=list(self.tracks),
        )
        labels.provenance.update({**self.provenance, **(provenance_update or {})})
        save_labels(labels, self.path)

    def __enter__(self) -> _LabelsInMemory:
        return self

    def __exit__(self, *exc) -> None:
        return None


def labels_frame_plan(
    labels: sio.Labels,
    video_index: int | None = None,
    frames: str | None = None,
    only_labeled: bool = False,
    only_suggested: bool = False,
    exclude_user_labeled: bool = False,
) -> list[tuple[sio.Video, list[int]]]:
    """(video, sorted frame indices) to predict for each selected video of ``labels``."""
    if video_index is not None and not 0 <= video_index < len(labels.videos):
        raise ValueError(
            f"video_index {video_index} is out of range: the labels have "
            f"{len(labels.videos)} video(s)"
        )
    videos = labels.videos if video_index is None else [labels.videos[video_index]]
    plan = []
    for video in videos:
        in_video = [lf for lf in labels.labeled_frames if lf.video is video]
        labeled = {lf.frame_idx for lf in in_video}
        _open(video)
        embedded = is_embedded_video(video)
        if only_labeled or (embedded and not only_suggested and frames is None):
            chosen = set(labeled)
        else:
            chosen = set(parse_frame_selection(None, _n_frames(video)))
        if only_suggested:
            chosen &= {s.frame_idx for s in labels.suggestions if s.video is video}
        if frames is not None:
            chosen &= set(parse_frame_selection(frames, _n_frames(video)))
        if exclude_user_labeled:
            chosen -= {lf.frame_idx for lf in in_video if lf.has_user_instances}
        plan.append((video, sorted(chosen)))
    return plan


def _open(video: sio.Video) -> None:
    """Open a video's reader (labels load with closed readers); errors name the file."""
    if isinstance(video.filename, str):
        check_video_index(video.filename)
    if video.backend is None:
        try:
            video.open()
        except Exception as exc:
            raise ValueError(
                f"Cannot open video {video.filename}: {type(exc).__name__}: {exc}"
            ) from exc


def _n_frames(video: sio.Video) -> int:
    if video.shape is None:
        raise ValueError(f"Cannot read the frame count of video {video.filename}")
    return int(video.shape[0])


def _provenance(model_dirs, opts: InferenceOptions, source: dict) -> dict:
    """What made a predictions file: package and library versions, models, options, input."""
    return {
        "pipeline_lib_version": __version__,
        "torch_version": torch.__version__,
        "sleap_io_version": sio.__version__,
        "model_dirs": [str(Path(d).resolve()) for d in model_dirs],
        "models": [model_record(d, TRAINING_CONFIG) for d in model_dirs],
        "inference_options": dict(opts.__dict__),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **source,
    }


def _batches(
    video: sio.Video, selected: list[int], size: int, failed: list[int] | None = None
) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """Yield (frame indices, frames) of ``selected`` in order, decoded by a background thread.

    Frames that do not decode are skipped and appended to ``failed`` (see
    :class:`_TolerantReader`), so a video whose end is missing is predicted up to where it
    breaks instead of failing the whole job, or hanging on frames that will never come.
    """
    q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()
    failed = [] if failed is None else failed

    def reader() -> None:
        try:
            source = _TolerantReader(video, selected, failed)
            idx_buf, frame_buf = [], []
            for i, frame in source:
                if stop.is_set():
                    return
                idx_buf.append(i)
                frame_buf.append(frame if frame.ndim == 3 else frame[..., None])
                if len(idx_buf) == size:
                    q.put((idx_buf, frame_buf))
                    idx_buf, frame_buf = [], []
            if idx_buf:
                q.put((idx_buf, frame_buf))
            q.put(None)
        except BaseException as exc:  # surface decode errors in the main thread
            q.put(exc)

    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise RuntimeError(f"Decoding {video.filename} failed: {item}") from item
            yield item
    finally:
        # Stopped early (an error downstream): let the reader see ``stop`` instead of leaving
        # it blocked on a full queue, holding decoded frames and the video open.
        stop.set()
        while thread.is_alive():
            with contextlib.suppress(queue.Empty):
                q.get(timeout=0.1)


class _TolerantReader:
    """Decode the ``selected`` frames of a video in order, skipping frames that do not decode.

    A recording cut short (disk full, camera crash, partial copy) keeps its frame count in the
    container header while the data of its last frames is gone. Readers then fail on the first
    missing frame, and OpenCV (sleap-io's default) even returns the last good frame again for
    every later index, which would be predicted as if it were real. So after a failure in a
    video file this reader never trusts the original reader again: it goes on with a fresh PyAV
    reader, which fails honestly. Two frames in a row that do not decode mean the data has ended:
    every remaining frame is reported as undecodable at once (no per-frame retries through a
    long missing tail). An isolated bad frame in the middle only costs that frame. Image folders
    and HDF5 datasets have no such state: each failing frame is skipped on its own.
    """

    def __init__(self, video: sio.Video, selected: list[int], failed: list[int]) -> None:
        self.video, self.selected, self.failed = video, selected, failed

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        source = self.video
        media = _is_media_file(self.video)
        switched = False
        streak = 0
        for pos, i in enumerate(self.selected):
            frame = self._read(source, i)
            if frame is not None:
                streak = 0
                yield i, frame
                continue
            self.failed.append(i)
            streak += 1
            if not media:
                continue
            fresh = None if switched or streak >= 2 else _fresh_reader(self.video)
            if streak >= 2 or (not switched and fresh is None):
                self.failed.extend(self.selected[pos + 1 :])
                return
            if fresh is not None:
                source, switched = fresh, True

    def _read(self, source: sio.Video, i: int) -> np.ndarray | None:
        try:
            return np.asarray(source[i])
        except Exception as exc:  # backends raise IndexError, StopIteration, OSError...
            reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            log.warning("Video %s: frame %d does not decode (%s)", self.video.filename, i, reason)
            return None


MEDIA_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv")


def _is_media_file(video: sio.Video) -> bool:
    filename = video.filename
    return isinstance(filename, str) and filename.lower().endswith(MEDIA_SUFFIXES)


def _fresh_reader(video: sio.Video) -> sio.Video | None:
    """The same video file opened anew with PyAV (None when that is not possible)."""
    try:
        fresh = sio.load_video(video.filename, plugin="pyav", grayscale=video.grayscale)
        fresh.shape  # noqa: B018 - opens the container now, inside the try
    except Exception:
        return None
    return fresh
