"""The three ``data_pipeline_fw`` pipelines on real fly data: same samples, each option honoured.

A small split of two_flies (15 train, 8 val frames) with the DAG's HDF5 image cache; scales are
small so every test decodes and preprocesses little.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from pipeline_lib.data import frame_source, sample_cache
from pipeline_lib.data.cache import build_image_cache
from pipeline_lib.data.datasets import (
    InMemoryPoseDataset,
    SampleSpec,
    StreamingPoseDataset,
    index_samples,
)
from pipeline_lib.data.frame_source import CachedFrameSource, VideoFrameSource
from pipeline_lib.data.memory import (
    InsufficientMemoryError,
    available_memory_bytes,
    sample_bytes,
)
from pipeline_lib.data.pipelines import SplitData, make_datasets
from pipeline_lib.data.sample_cache import DiskSampleDataset, SampleCacheError
from pipeline_lib.data.split import split_labels
from pipeline_lib.io.labels import load_labels

NODES = tuple(range(13))
SPECS = {
    "single_instance": SampleSpec(
        "single_instance", NODES, None, 0.25, 16, None, None, False, False
    ),
    "centroid": SampleSpec("centroid", NODES, 1, 0.25, 16, None, None, False, False),
    "centered_instance": SampleSpec(
        "centered_instance", NODES, 1, 0.5, 16, None, None, False, False, 96, 16
    ),
    "multi_class_topdown": SampleSpec(
        "multi_class_topdown", NODES, 1, 0.5, 16, None, None, False, False, 64, 0, ("F", "M")
    ),
}
MODES = ("torch_dataset", "torch_dataset_cache_img_memory", "torch_dataset_cache_img_disk")


@pytest.fixture(scope="module")
def data(shared_data, tmp_path_factory):
    """Paths, labels and HDF5 image cache of a 15/8-frame split of two_flies."""
    tmp = tmp_path_factory.mktemp("pipelines")
    paths = {k: tmp / f"{k}.slp" for k in ("train", "val", "test")}
    split_labels(
        [shared_data / "dreem_assets/sleap/two_flies.slp"], *paths.values(), 0.06, 0.82, None, 0
    )
    build_image_cache({k: str(paths[k]) for k in ("train", "val")}, tmp / "cache", 2)
    labels = {k: load_labels(paths[k]) for k in ("train", "val")}
    return {"tmp": tmp, "paths": paths, "labels": labels, "cache": tmp / "cache"}


def _split(
    data, name: str, spec: SampleSpec, source: str = "cache", labels_from: str | None = None
):
    labels_name = labels_from or name
    labels, path = data["labels"][labels_name], data["paths"][labels_name]
    if source == "cache":
        src = CachedFrameSource(data["cache"], labels_name, path)
    else:
        src = VideoFrameSource(labels)
    if name == "val":
        spec = dataclasses.replace(spec, crop_margin=0)
    return SplitData(name, labels, path, src, spec)


def _make(data, mode, spec, run_dir, source="cache", available_memory=None, **options):
    config = {"data_pipeline_fw": mode, **options}
    return make_datasets(
        config,
        _split(data, "train", spec, source),
        _split(data, "val", spec, source),
        run_dir,
        threads=2,
        available_memory=available_memory,
    )


def _assert_same(a, b, n: int | None = None) -> None:
    assert len(a) == len(b)
    for i in range(len(a) if n is None else n):
        x, y = a[i], b[i]
        assert x["image"].dtype == torch.uint8 and x["image"].shape == y["image"].shape
        assert torch.equal(x["image"], y["image"]), f"image of sample {i} differs"
        np.testing.assert_array_equal(x["points"].numpy(), y["points"].numpy())
        assert torch.equal(x["class_ids"], y["class_ids"])


@pytest.fixture
def reads(monkeypatch):
    """Counts the frames decoded through any frame reader (in this process)."""
    calls: list[int] = []
    for cls in (frame_source._H5Reader, frame_source._VideoReader):
        original = cls.read

        def counted(self, row, _original=original):
            calls.append(row)
            return _original(self, row)

        monkeypatch.setattr(cls, "read", counted)
    return calls


@pytest.mark.parametrize("head", list(SPECS))
def test_three_pipelines_give_bitwise_identical_samples(data, tmp_path, head):
    spec = SPECS[head]
    built = {mode: _make(data, mode, spec, tmp_path / mode) for mode in MODES}
    for split in (0, 1):  # validation uses the training pipeline too
        assert isinstance(built["torch_dataset"][split], StreamingPoseDataset)
        assert isinstance(built["torch_dataset_cache_img_memory"][split], InMemoryPoseDataset)
        assert isinstance(built["torch_dataset_cache_img_disk"][split], DiskSampleDataset)
    reference = built["torch_dataset_cache_img_memory"]
    for mode in ("torch_dataset", "torch_dataset_cache_img_disk"):
        _assert_same(built[mode][0], reference[0])
        _assert_same(built[mode][1], reference[1])
    sample = reference[0][0]
    n_frames = len(data["labels"]["train"].labeled_frames)
    if head in ("centered_instance", "multi_class_topdown"):
        assert len(reference[0]) == 2 * n_frames  # one sample per fly
        size = spec.crop_size + 2 * spec.crop_margin
        assert tuple(sample["image"].shape) == (1, size, size)
        assert tuple(reference[1][0]["image"].shape) == (1, spec.crop_size, spec.crop_size)
    else:
        assert len(reference[0]) == n_frames
        assert tuple(sample["image"].shape) == (1, 256, 256)  # 1024 * 0.25
    if head == "multi_class_topdown":
        ids = torch.stack([reference[0][i]["class_ids"] for i in range(len(reference[0]))])
        assert set(ids.flatten().tolist()) == {0, 1}


def test_streaming_from_videos_matches_the_image_cache(data, tmp_path):
    spec = SPECS["centered_instance"]
    cached, _, _ = _make(data, "torch_dataset", spec, tmp_path)
    video, _, _ = _make(data, "torch_dataset", spec, tmp_path, source="video")
    assert isinstance(video.source, VideoFrameSource)
    _assert_same(video, cached, n=4)


def test_streaming_decodes_nothing_up_front(data, tmp_path, reads):
    for source in ("cache", "video"):
        train, val, _ = _make(data, "torch_dataset", SPECS["centered_instance"], tmp_path, source)
        assert reads == [] and not train.source.is_open and not val.source.is_open
    train[3]
    assert len(reads) == 1 and train.source.is_open
    reads.clear()
    _make(data, "torch_dataset_cache_img_memory", SPECS["centered_instance"], tmp_path)
    n_frames = len(data["labels"]["train"].labeled_frames) + len(
        data["labels"]["val"].labeled_frames
    )
    assert sorted(reads) == sorted(  # up front: every frame of both splits, each once
        list(range(len(data["labels"]["train"].labeled_frames)))
        + list(range(len(data["labels"]["val"].labeled_frames)))
    )
    assert len(reads) == n_frames


@pytest.mark.parametrize(
    "mode,source", [(m, "cache") for m in MODES] + [("torch_dataset", "video")]
)
def test_each_pipeline_feeds_a_dataloader_with_two_workers(data, tmp_path, mode, source):
    spec = SPECS["centered_instance"]
    train, _, _ = _make(data, mode, spec, tmp_path, source)
    if mode == "torch_dataset":
        train[0]  # the parent opens its handle first: workers must open their own
        assert train.source.is_open
    loader = DataLoader(train, batch_size=4, num_workers=2)
    batches = list(loader)
    images = torch.cat([b["image"] for b in batches])
    points = torch.cat([b["points"] for b in batches])
    assert images.shape[0] == len(train)
    for i in range(len(train)):
        assert torch.equal(images[i], train[i]["image"])
        np.testing.assert_array_equal(points[i].numpy(), train[i]["points"].numpy())


def test_streaming_dataset_pickles_without_its_handles(data, tmp_path):
    for source in ("cache", "video"):
        train, _, _ = _make(data, "torch_dataset", SPECS["centroid"], tmp_path, source)
        first = train[0]
        assert train.source.is_open
        clone = pickle.loads(pickle.dumps(train))
        assert not clone.source.is_open and clone._last is None
        _assert_same(clone, train, n=1)
        assert torch.equal(clone[0]["image"], first["image"])


def test_memory_estimate_matches_the_real_size(data, tmp_path):
    for head in ("centroid", "centered_instance"):
        spec = SPECS[head]
        train, val, _ = _make(data, "torch_dataset_cache_img_memory", spec, tmp_path)
        estimate = sum(
            sample_bytes(index_samples(s.labels, s.spec, s.source.shapes))
            for s in (_split(data, "train", spec), _split(data, "val", spec))
        )
        real = train.nbytes + val.nbytes
        assert abs(estimate - real) <= 0.03 * real
    assert available_memory_bytes() > 0


def test_too_little_memory_fails_before_decoding(data, tmp_path, reads):
    spec = SPECS["centroid"]
    with pytest.raises(InsufficientMemoryError) as err:
        _make(data, "torch_dataset_cache_img_memory", spec, tmp_path, available_memory=1 << 20)
    message = str(err.value)
    assert "GiB" in message and "torch_dataset_cache_img_disk" in message
    assert "0.00098 GiB" in message  # 1 MiB available, shown in GiB
    assert reads == []
    train, _, _ = _make(data, "torch_dataset_cache_img_memory", spec, tmp_path, 8 << 20)
    assert isinstance(train, InMemoryPoseDataset)  # 8 MiB is enough for ~1.3 MiB of samples


def test_disk_cache_is_lossless_png(data, tmp_path):
    spec = SPECS["centered_instance"]
    disk, _, _ = _make(data, "torch_dataset_cache_img_disk", spec, tmp_path / "run")
    memory, _, _ = _make(data, "torch_dataset_cache_img_memory", spec, tmp_path)
    directory = tmp_path / "run/train_imgs"  # cache_img_path None: the run directory
    files = sorted(directory.glob("*.png"))
    assert len(files) == len(memory) and not list(directory.glob("*.jp*g"))
    assert all(f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for f in files)
    for i in (0, len(files) - 1):
        pixels = cv2.imread(str(files[i]), cv2.IMREAD_UNCHANGED)
        assert np.array_equal(pixels, memory[i]["image"][0].numpy())
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["n_samples"] == len(memory) and len(manifest["fingerprint"]) == 64
    assert (tmp_path / "run/val_imgs/manifest.json").exists()


def _mtimes(directory: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in directory.iterdir()}


def test_use_existing_imgs_reuses_a_matching_cache(data, tmp_path, reads):
    spec = SPECS["centered_instance"]
    opts = {"cache_img_path": str(tmp_path / "imgs")}
    first, _, _ = _make(data, "torch_dataset_cache_img_disk", spec, tmp_path, **opts)
    before = _mtimes(tmp_path / "imgs/train_imgs")
    reads.clear()
    reused, _, _ = _make(
        data, "torch_dataset_cache_img_disk", spec, tmp_path, use_existing_imgs=True, **opts
    )
    assert reads == [] and _mtimes(tmp_path / "imgs/train_imgs") == before
    _assert_same(reused, first)
    _make(data, "torch_dataset_cache_img_disk", spec, tmp_path, use_existing_imgs=False, **opts)
    assert reads and _mtimes(tmp_path / "imgs/train_imgs") != before  # false rebuilds


def test_use_existing_imgs_rejects_other_labels_or_preprocessing(data, tmp_path):
    spec = SPECS["centroid"]
    opts = {"cache_img_path": str(tmp_path / "imgs"), "use_existing_imgs": True}
    _make(
        data, "torch_dataset_cache_img_disk", spec, tmp_path, cache_img_path=opts["cache_img_path"]
    )
    config = {"data_pipeline_fw": "torch_dataset_cache_img_disk", **opts}
    swapped = _split(data, "train", spec, labels_from="val")  # train_imgs came from train.slp
    with pytest.raises(SampleCacheError, match="different labels") as err:
        make_datasets(config, swapped, _split(data, "val", spec), tmp_path)
    assert str(tmp_path / "imgs/train_imgs") in str(err.value)
    rescaled = dataclasses.replace(spec, scale=0.5)
    with pytest.raises(SampleCacheError, match="different preprocessing.*scale"):
        _make(data, "torch_dataset_cache_img_disk", rescaled, tmp_path, **opts)
    with pytest.raises(SampleCacheError, match="missing") as err:
        _make(
            data,
            "torch_dataset_cache_img_disk",
            spec,
            tmp_path,
            cache_img_path=str(tmp_path / "nothing"),
            use_existing_imgs=True,
        )
    assert str(tmp_path / "nothing/train_imgs") in str(err.value)


def test_half_written_cache_is_never_taken_for_a_complete_one(data, tmp_path, monkeypatch):
    spec = SPECS["centered_instance"]
    root = tmp_path / "imgs"
    opts = {"cache_img_path": str(root)}
    real_write = sample_cache.write_png
    written: list[Path] = []

    def failing_write(path, image):
        if len(written) == 5:
            raise OSError("disk full (simulated)")
        written.append(path)
        real_write(path, image)

    monkeypatch.setattr(sample_cache, "write_png", failing_write)
    with pytest.raises(OSError, match="simulated"):
        _make(data, "torch_dataset_cache_img_disk", spec, tmp_path, **opts)
    monkeypatch.setattr(sample_cache, "write_png", real_write)
    assert written and written[0].parent.name.startswith(".train_imgs.partial-")
    assert list(root.iterdir()) == []  # the partial directory was removed, nothing published
    with pytest.raises(SampleCacheError, match="missing"):
        _make(data, "torch_dataset_cache_img_disk", spec, tmp_path, use_existing_imgs=True, **opts)

    # A killed run leaves its temporary directory behind, complete-looking inside.
    _make(data, "torch_dataset_cache_img_disk", spec, tmp_path, **opts)
    killed = root / ".train_imgs.partial-999999999-deadbeef"
    os.rename(root / "train_imgs", killed)
    with pytest.raises(SampleCacheError, match="missing"):
        _make(data, "torch_dataset_cache_img_disk", spec, tmp_path, use_existing_imgs=True, **opts)
    _make(data, "torch_dataset_cache_img_disk", spec, tmp_path, **opts)
    assert not killed.exists()  # a dead run's leftovers are cleared by the next build

    # A directory under the final name without a manifest is not a cache.
    (root / "train_imgs/manifest.json").unlink()
    with pytest.raises(SampleCacheError, match="incomplete"):
        _make(data, "torch_dataset_cache_img_disk", spec, tmp_path, use_existing_imgs=True, **opts)


def _tiny_config(shared_data: Path, out: Path, **data_config) -> Path:
    cfg = yaml.safe_load(
        (shared_data / "sleap_nn_assets/sample_configs/config_centroid_unet.yaml").read_text()
    )
    cfg["data_config"].update(data_config)
    cfg["data_config"]["preprocessing"]["scale"] = 0.25
    cfg["model_config"]["backbone_config"]["unet"]["filters"] = 8
    cfg["trainer_config"].update(
        {"max_epochs": 1, "train_steps_per_epoch": 2, "enable_progress_bar": False, "seed": 0}
    )
    cfg["trainer_config"]["early_stopping"]["stop_training_on_plateau"] = False
    out.write_text(yaml.safe_dump(cfg))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("delete", [True, False])
def test_delete_cache_imgs_after_training(data, shared_data, tmp_path, caplog, delete):
    from pipeline_lib.training.train import train_model

    cache_img_path = tmp_path / "imgs" if delete else None  # None: the run directory
    cfg = _tiny_config(
        shared_data,
        tmp_path / "centroid.yaml",
        data_pipeline_fw="torch_dataset_cache_img_disk",
        cache_img_path=str(cache_img_path) if cache_img_path else None,
        delete_cache_imgs_after_training=delete,
    )
    run = tmp_path / "run"
    paths = data["paths"]
    with caplog.at_level(logging.INFO, logger="pipeline_lib.data.sample_cache"):
        train_model(cfg, paths["train"], paths["val"], data["cache"], run, threads=2)
    assert (run / "best.ckpt").exists()
    root = cache_img_path or run
    messages = [r.getMessage() for r in caplog.records]
    written = [m for m in messages if "preprocessed samples as PNG" in m]
    assert len(written) == 2 and all(str(root) in m for m in written)  # written for this run
    assert any("Deleted the sample cache" in m for m in messages) == delete
    for name in ("train_imgs", "val_imgs"):
        assert (root / name / "manifest.json").exists() != delete
