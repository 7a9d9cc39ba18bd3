"""Rule predict_batch: predict several videos in one job with the models loaded once
(:mod:`pipeline_lib.batch` stages, fingerprints and reports the videos)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline_lib.batch import run_batch


def predict_batch(
    videos: Mapping[str, Mapping[str, Any]],
    model_dirs: Sequence[str],
    model_files: Sequence[str],
    options: Mapping[str, Any],
    threads: int = 1,
    code: str = "",
) -> dict[str, Any]:
    """Predict each video of ``videos`` (id -> ``{"path", "frames", "staged", "output"}``) into
    its staged ``.slp``, loading the models only once (and only when a video needs predicting),
    and link it to ``output``."""
    from pipeline_lib.inference.options import InferenceOptions
    from pipeline_lib.inference.predict import predict_video
    from pipeline_lib.inference.predictors import make_predictor

    opts = InferenceOptions.from_dict(dict(options))
    loaded: list[Any] = []

    def run_one(vid: str, item: Mapping[str, Any]) -> None:
        if not loaded:
            loaded.append(make_predictor(model_dirs, opts))
        video = videos[vid]
        predict_video(
            model_dirs,
            video["path"],
            item["staged"]["predictions"],
            opts,
            threads=threads,
            frames=video.get("frames") or None,
            predictor=loaded[0],
        )

    items = {
        vid: {
            "inputs": [video["path"], *model_files],
            "params": {"frames": video.get("frames") or "", "options": dict(options)},
            "staged": {"predictions": video["staged"]},
            "outputs": {"predictions": video["output"]},
        }
        for vid, video in videos.items()
    }
    return run_batch(items, run_one, code, what="predictions")
