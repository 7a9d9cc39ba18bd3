"""Run a trained predictor over a whole video and write a SLEAP ``.slp`` of predictions.

Frames are decoded in a background thread into a small bounded queue, so decoding overlaps the
network and memory does not grow with the video's length (only the small per-instance results
are kept until the file is written).
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Iterator, Sequence

import numpy as np
import sleap_io as sio
import torch

from pipeline_lib import __version__
from pipeline_lib.inference.frames import parse_frame_selection
from pipeline_lib.inference.predictors import InferenceOptions, make_predictor, to_labeled_frame
from pipeline_lib.io.labels import load_labels, save_labels
from pipeline_lib.io.progress import Progress
from pipeline_lib.io.tables import save_analysis_h5, save_table_csv
from pipeline_lib.io.video import open_video

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
) -> dict:
    """Predict the frames of ``video_path`` (all, or a selection such as ``"0-99,150"``) and
    save the predictions to ``out_path``; on request also as SLEAP's analysis HDF5
    (``analysis_h5``) and a tidy CSV with one row per instance (``csv``)."""
    torch.set_num_threads(max(1, int(threads)))
    opts = options if isinstance(options, InferenceOptions) else InferenceOptions.from_dict(options)
    predictor = make_predictor(model_dirs, opts)
    video = open_video(video_path)
    selected = parse_frame_selection(frames, video.shape[0])
    started = time.time()
    tracks: dict[str, sio.Track] = {}
    progress = Progress(len(selected), f"predict {os.path.basename(str(video_path))}")
    frames_out = _predict_frames(predictor, video, selected, opts.batch_size, tracks, progress)
    progress.close()
    elapsed = time.time() - started
    labels = _predicted_labels(frames_out, [video], predictor, tracks)
    labels.provenance.update(_provenance(model_dirs, opts, {"video": str(video_path)}))
    save_labels(labels, out_path)
    if analysis_h5 is not None:
        save_analysis_h5(labels, analysis_h5)
    if csv is not None:
        save_table_csv(labels, csv)
    summary = _summary(len(selected), frames_out, elapsed)
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
    started = time.time()
    tracks: dict[str, sio.Track] = {}
    progress = Progress(
        sum(len(f) for _, f in plan), f"predict {os.path.basename(str(labels_path))}"
    )
    frames_out: list[sio.LabeledFrame] = []
    for video, selected in plan:
        frames_out += _predict_frames(predictor, video, selected, opts.batch_size, tracks, progress)
    progress.close()
    elapsed = time.time() - started
    out = _predicted_labels(frames_out, [v for v, _ in plan], predictor, tracks)
    out.provenance.update(_provenance(model_dirs, opts, {"labels": str(labels_path)}))
    save_labels(out, out_path)
    summary = _summary(sum(len(f) for _, f in plan), frames_out, elapsed)
    log.info("Predicted %s: %s", labels_path, summary)
    return summary


def _summary(n_frames: int, frames_out: list[sio.LabeledFrame], elapsed: float) -> dict:
    """What a prediction run reports: frames, frames with instances, instances, speed."""
    return {
        "n_frames": int(n_frames),
        "n_frames_with_instances": len(frames_out),
        "n_instances": sum(len(lf.instances) for lf in frames_out),
        "seconds": round(elapsed, 3),
        "fps": round(n_frames / elapsed, 2) if elapsed > 0 else None,
    }


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
        embedded = bool(getattr(video.backend, "embedded_frame_inds", None))
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


def _predict_frames(
    predictor,
    video: sio.Video,
    selected: list[int],
    batch_size: int,
    tracks: dict[str, sio.Track],
    progress: Progress,
) -> list[sio.LabeledFrame]:
    """Predicted labelled frames (frames with at least one instance) of ``selected``."""
    out: list[sio.LabeledFrame] = []
    for indices, images in _batches(video, selected, batch_size * 2):
        for idx, pred in zip(indices, predictor.predict(images), strict=True):
            if len(pred.points):
                out.append(to_labeled_frame(pred, video, idx, predictor.skeleton, tracks))
        progress.update(len(indices))
    return out


def _predicted_labels(frames_out, videos, predictor, tracks: dict[str, sio.Track]) -> sio.Labels:
    return sio.Labels(
        labeled_frames=frames_out,
        videos=list(videos),
        skeletons=[predictor.skeleton],
        tracks=list(tracks.values()),
    )


def _provenance(model_dirs, opts: InferenceOptions, source: dict) -> dict:
    """What made a predictions file: package and library versions, models, options, input."""
    return {
        "pipeline_lib_version": __version__,
        "torch_version": torch.__version__,
        "sleap_io_version": sio.__version__,
        "model_dirs": [str(d) for d in model_dirs],
        "inference_options": dict(opts.__dict__),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        **source,
    }


def _batches(
    video: sio.Video, selected: list[int], size: int
) -> Iterator[tuple[list[int], list[np.ndarray]]]:
    """Yield (frame indices, frames) of ``selected`` in order, decoded by a background thread."""
    q: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    def reader() -> None:
        try:
            idx_buf, frame_buf = [], []
            for i in selected:
                if stop.is_set():
                    return
                frame = np.asarray(video[i])
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
        stop.set()
