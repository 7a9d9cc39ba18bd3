"""The training and validation datasets for ``data_config.data_pipeline_fw``.

One entry point for the trainer, :func:`make_datasets`; the three pipelines differ only in
when the samples are built and where they are kept, never in their content:

    torch_dataset                   build each sample when it is read, from the frame source
                                    (the HDF5 image cache: the DAG's, or one the trainer builds
                                    by decoding in order): little memory, DataLoader workers
                                    do the reading
    torch_dataset_cache_img_memory  build every sample once into memory, after checking that
                                    they fit (:mod:`pipeline_lib.data.memory`)
    torch_dataset_cache_img_disk    build every sample once into PNG files under
                                    ``cache_img_path`` (default: the run directory), reuse them
                                    with ``use_existing_imgs``, delete them after a successful
                                    training with ``delete_cache_imgs_after_training``

Validation uses the same pipeline as training.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sleap_io as sio
from torch.utils.data import Dataset

from pipeline_lib.data.cache import file_sha256
from pipeline_lib.data.datasets import (
    SampleSpec,
    StreamingPoseDataset,
    build_in_memory,
    index_samples,
)
from pipeline_lib.data.frame_source import FrameSource
from pipeline_lib.data.memory import check_fits_in_memory
from pipeline_lib.data.sample_cache import (
    delete_sample_cache,
    open_sample_cache,
    write_sample_cache,
)

log = logging.getLogger(__name__)

PIPELINES = ("torch_dataset", "torch_dataset_cache_img_memory", "torch_dataset_cache_img_disk")


@dataclass(frozen=True)
class SplitData:
    """One split as the pipelines need it."""

    name: str  # "train" or "val": names the progress bars and the ``{name}_imgs`` cache folder
    labels: sio.Labels
    labels_path: str | os.PathLike
    source: FrameSource
    spec: SampleSpec


def make_datasets(
    data_config: dict,
    train: SplitData,
    val: SplitData,
    run_dir: str | os.PathLike,
    threads: int = 1,
    available_memory: int | None = None,
) -> tuple[Dataset, Dataset, Callable[[], None]]:
    """Train and val datasets, and the cleanup to call after a successful training.

    ``data_config`` is the (resolved) sleap-nn ``data_config`` section. ``threads`` decode and
    write in parallel when the samples are built up front (``cache_workers`` overrides it,
    ``parallel_caching: false`` forces one). ``available_memory`` (bytes) replaces the measured
    available memory in the in-memory pipeline's check.
    """
    mode = data_config.get("data_pipeline_fw") or "torch_dataset"
    if mode not in PIPELINES:
        raise ValueError(f"data_config.data_pipeline_fw must be one of {PIPELINES}, got '{mode}'")
    splits = (train, val)
    indexes = [index_samples(s.labels, s.spec, s.source.shapes) for s in splits]
    workers = _cache_threads(data_config, threads)

    if mode == "torch_dataset":
        log.info("torch_dataset: building samples on the fly from %s", type(train.source).__name__)
        datasets = [
            StreamingPoseDataset(s.source, ix, s.spec)
            for s, ix in zip(splits, indexes, strict=True)
        ]
        return datasets[0], datasets[1], _nothing

    if mode == "torch_dataset_cache_img_memory":
        check_fits_in_memory(indexes, available_memory)
        datasets = [
            build_in_memory(s.source, ix, s.spec, workers, desc=f"preprocess {s.name}")
            for s, ix in zip(splits, indexes, strict=True)
        ]
        return datasets[0], datasets[1], _nothing

    root = Path(data_config.get("cache_img_path") or run_dir)
    dirs = [root / f"{s.name}_imgs" for s in splits]
    datasets = []
    for s, ix, directory in zip(splits, indexes, dirs, strict=True):
        sha = file_sha256(s.labels_path)
        if not data_config.get("use_existing_imgs"):
            write_sample_cache(
                directory, s.source, ix, s.spec, sha, workers, desc=f"cache {s.name} samples"
            )
        datasets.append(open_sample_cache(directory, sha, s.spec, str(s.labels_path)))

    if data_config.get("delete_cache_imgs_after_training", True):

        def cleanup() -> None:
            for directory in dirs:
                delete_sample_cache(directory)

        return datasets[0], datasets[1], cleanup
    log.info("Keeping the sample caches %s after training", ", ".join(map(str, dirs)))
    return datasets[0], datasets[1], _nothing


def _cache_threads(data_config: dict, threads: int) -> int:
    """Threads that build samples up front: ``cache_workers`` if set, else ``threads``."""
    if data_config.get("parallel_caching") is False:
        return 1
    return max(1, int(data_config.get("cache_workers") or threads))


def _nothing() -> None:
    """Cleanup of pipelines that leave nothing behind."""
