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
from pipeline_lib.io.labels import save_labels
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
    n_frames = len(selected)
    started = time.time()
    progress = Progress(n_frames, f"predict {os.path.basename(str(video_path))}")
    frames_out: list[sio.LabeledFrame] = []
    tracks: dict[str, sio.Track] = {}
    n_instances = 0
    for indices, images in _batches(video, selected, opts.batch_size * 2):
        for idx, pred in zip(indices, predictor.predict(images), strict=True):
            if len(pred.points):
                frames_out.append(to_labeled_frame(pred, video, idx, predictor.skeleton, tracks))
                n_instances += len(pred.points)
        progress.update(len(indices))
    progress.close()
    elapsed = time.time() - started
    labels = sio.Labels(
        labeled_frames=frames_out,
        videos=[video],
        skeletons=[predictor.skeleton],
        tracks=list(tracks.values()),
    )
    labels.provenance.update(
        {
            "pipeline_lib_version": __version__,
            "model_dirs": [str(d) for d in model_dirs],
            "inference_options": opts.__dict__,
            "video": str(video_path),
        }
    )
    save_labels(labels, out_path)
    if analysis_h5 is not None:
        save_analysis_h5(labels, analysis_h5)
    if csv is not None:
        save_table_csv(labels, csv)
    summary = {
        "n_frames": int(n_frames),
        "n_frames_with_instances": len(frames_out),
        "n_instances": n_instances,
        "seconds": round(elapsed, 3),
        "fps": round(n_frames / elapsed, 2) if elapsed > 0 else None,
    }
    log.info("Predicted %s: %s", video_path, summary)
    return summary


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
