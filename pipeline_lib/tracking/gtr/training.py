"""Training the global tracking transformer on clips of tracked labels, into a run directory.

What one clip teaches. A clip is ``clip_length`` consecutive labelled frames of one video
(:class:`~pipeline_lib.tracking.gtr.data.ClipDataset`). Every frame of it that has an earlier
frame in the clip is a query frame: its detections are the queries, and the detections of the
``tracker.window_size`` labelled frames before it (fewer at the start of the clip) are the
window. That is the situation the tracker is in -- the network scores the current frame against
the recent past, with time counted from the window's first frame -- rather than a query against
every earlier frame of a long clip, which tracking never shows it. The loss is
:func:`~pipeline_lib.tracking.gtr.loss.association_loss` with the network's learned
``no_match_logit``: per query, cross-entropy over the window's tracks plus "no match". A batch's
loss is the mean over all its query detections of known track, so a frame with three animals
counts three times as much as a frame with one; accuracy
(:func:`~pipeline_lib.tracking.gtr.loss.association_accuracy`) is averaged the same way.

Detections that ``handle_missing: ignore`` keeps without a position (NaN centroid) are left out
of windows and queries: they carry no position, and the data contract keeps them out of
attention and the loss.

The network sees crops only with ``tracker.use_vis_feats`` (as when tracking), and only then are
the clips' frames decoded (``ClipDataset(decode_frames=...)``): ~3 ms a frame on the fly videos
when the labelled frames are consecutive, ~50-100 ms when they are not (every frame is then a
seek). Without visual features the crops are zeros and the positions the same as with decoding.

Train at the frame rate you will track at: the windows of a clip are its consecutive *labelled*
frames, so a model trained on every frame sees displacements and time offsets four times smaller
than when tracking every 4th frame (on three_flies that turned 0 ID switches into ~30); labels of
every 4th frame train it for that.

Run directory (like the pose models', see :mod:`pipeline_lib.training.run_dir`)::

    {run_dir}/
        tracker_config.yaml   the resolved run config (absolute data paths, seeds, max_window)
        best.ckpt             weights with the lowest validation loss (the last epoch's without
                              a validation set)
        training_log.csv      one row per epoch: loss and association accuracy, train and val
        test_metrics.json     loss and accuracy of best.ckpt on dataset.test_dataset, if given
        checkpoints/          working state: best.ckpt, last.ckpt, the live log and the
                              fingerprint that decides whether a rerun may resume

The four published files are written atomically at the end, so a killed job never leaves a
``best.ckpt`` or ``tracker_config.yaml`` that looks complete. Rerunning with the same config and
data resumes from ``checkpoints/last.ckpt``; only ``trainer.max_epochs`` / ``max_steps``,
``num_workers``, the test set and the tracker options other than ``window_size`` and
``use_vis_feats`` may change (so a finished run can be extended by raising ``max_epochs``). A
different config or data starts over.

Reproducibility: the run seed (``trainer.seed``, else the ``seed`` argument) seeds the weights,
the clip order of every epoch and -- when a dataset section sets no ``seed`` of its own -- the
datasets' clip subsample and augmentations. The same seed gives the same losses.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import logging
import os
import random
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from torch.utils.data import DataLoader, Sampler

from pipeline_lib.data.cache import file_sha256
from pipeline_lib.devices import resolve_precision
from pipeline_lib.io.atomic import atomic_path, write_json_atomic
from pipeline_lib.tracking.gtr.data import ClipDataset, ClipDatasetOptions, collate
from pipeline_lib.tracking.gtr.detections import Detections
from pipeline_lib.tracking.gtr.loss import association_accuracy, association_loss
from pipeline_lib.tracking.gtr.model import GlobalTrackingTransformer, GTRModelConfig
from pipeline_lib.tracking.gtr.run_config import (
    TRACKER_CONFIG,
    RunConfig,
    load_run_config,
    resolve_max_window,
    write_resolved_config,
)
from pipeline_lib.training.callbacks import EpochLogWriter, _num
from pipeline_lib.training.run_dir import BEST_CKPT, TRAINING_LOG, WORK_DIR
from pipeline_lib.training.run_lock import run_dir_lock
from pipeline_lib.training.train import _resume_checkpoint
from pipeline_lib.training.trainer_setup import (
    checkpoint_callbacks,
    resolve_devices,
    run_fit,
    training_accelerator,
)

log = logging.getLogger(__name__)

TEST_METRICS = "test_metrics.json"
LOG_COLUMNS = (
    "epoch",
    "step",
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "learning_rate",
    "elapsed_s",
)

__all__ = [
    "LOG_COLUMNS",
    "TEST_METRICS",
    "TRACKER_CONFIG",
    "ClipTerms",
    "GTRTrainingModule",
    "clip_terms",
    "query_windows",
    "train_tracker",
    "training_window_span",
]


# ============================================================================================
# What a clip contributes
# ============================================================================================


def query_windows(frames: Sequence[int], window_size: int) -> Iterator[tuple[int, int, int]]:
    """``(query_frame, first_window_frame, position)`` for each query frame of a clip.

    ``frames`` are the clip's distinct frame indices in increasing order. The window of the
    frame at ``position`` i (i >= 1) is the frames at positions ``max(0, i - window_size)`` to
    ``i - 1``.
    """
    for i in range(1, len(frames)):
        yield int(frames[i]), int(frames[max(0, i - window_size)]), i


def training_window_span(datasets: Sequence[ClipDataset], window_size: int) -> int:
    """Longest training window in video frames, first window frame to query frame inclusive.

    Read from the clips' frame indices: nothing is decoded.
    """
    span = 1
    for ds in datasets:
        for idx in range(len(ds)):
            frames = np.unique(ds.clip_frames(idx))
            for query, first, _ in query_windows(frames.tolist(), window_size):
                span = max(span, query - first + 1)
    return span


@dataclasses.dataclass
class ClipTerms:
    """Summed loss and correct count over the query detections of known track of some clips."""

    loss_sum: torch.Tensor
    n_queries: int
    n_correct: float

    def add(self, other: ClipTerms) -> ClipTerms:
        return ClipTerms(
            self.loss_sum + other.loss_sum,
            self.n_queries + other.n_queries,
            self.n_correct + other.n_correct,
        )


def clip_terms(
    model: GlobalTrackingTransformer, clip: Detections, window_size: int, use_vis_feats: bool
) -> ClipTerms:
    """Loss (summed over queries) and correct count of one clip (see the module docstring)."""
    placed = torch.isfinite(clip.centroids).all(dim=1)
    if not bool(placed.all()):
        clip = clip.select(placed)
    total = ClipTerms(clip.boxes.new_zeros(()), 0, 0.0)
    frames = torch.unique(clip.frames).tolist()  # sorted
    for query_frame, first, _ in query_windows(frames, window_size):
        in_window = (clip.frames >= first) & (clip.frames < query_frame)
        window = clip.select(in_window)
        query = clip.select(clip.frames == query_frame)
        n = int((query.track_ids >= 0).sum())
        if n == 0 or len(window) == 0:
            continue
        logits = model(window, query, use_vis_feats=use_vis_feats)
        no_match = model.no_match_logit
        loss = association_loss(logits, query.track_ids, window.track_ids, no_match)
        accuracy = association_accuracy(logits, query.track_ids, window.track_ids, no_match)
        total = total.add(ClipTerms(loss * n, n, float(accuracy) * n))
    return total


# ============================================================================================
# Lightning module
# ============================================================================================


class GTRTrainingModule(L.LightningModule):
    """Trains a :class:`GlobalTrackingTransformer` on batches of clips (lists of Detections).

    Args:
        model_config: the ``model:`` section as a plain dict (GTRModelConfig.to_dict()).
        window_size: labelled frames before a query frame that form its window.
        use_vis_feats: give the network the crops (as the tracker will).
        optimizer: ``{name, lr, weight_decay, betas, eps}``.
        scheduler: ReduceLROnPlateau options, or None.
        monitor: the logged value the scheduler watches (``val_loss``, else ``train_loss``).
        scheduler_every: epochs between scheduler steps (the validation interval).
    """

    def __init__(
        self,
        model_config: dict[str, Any],
        window_size: int,
        use_vis_feats: bool,
        optimizer: dict[str, Any],
        scheduler: dict[str, Any] | None = None,
        monitor: str = "val_loss",
        scheduler_every: int = 1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = GlobalTrackingTransformer(GTRModelConfig.from_dict(model_config))
        self.window_size = int(window_size)
        self.use_vis_feats = bool(use_vis_feats)
        self.optimizer_cfg = dict(optimizer)
        self.scheduler_cfg = dict(scheduler) if scheduler is not None else None
        self.monitor = monitor
        self.scheduler_every = int(scheduler_every)

    def transfer_batch_to_device(
        self, batch: list[Detections], device: torch.device, dataloader_idx: int
    ) -> list[Detections]:
        return [clip.to(device) for clip in batch]

    def _batch_terms(self, batch: list[Detections]) -> ClipTerms:
        total = ClipTerms(self.model.no_match_logit.new_zeros(()), 0, 0.0)
        for clip in batch:
            total = total.add(clip_terms(self.model, clip, self.window_size, self.use_vis_feats))
        return total

    def _step(self, batch: list[Detections], stage: str) -> torch.Tensor | None:
        terms = self._batch_terms(batch)
        if terms.n_queries == 0:
            return None  # no query of known track (single-frame clips): nothing to learn
        loss = terms.loss_sum / terms.n_queries
        n = terms.n_queries
        self.log(f"{stage}_loss", loss, on_step=False, on_epoch=True, batch_size=n)
        self.log(
            f"{stage}_accuracy", terms.n_correct / n, on_step=False, on_epoch=True, batch_size=n
        )
        return loss

    def training_step(self, batch: list[Detections], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "train")

    def validation_step(self, batch: list[Detections], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "val")

    def test_step(self, batch: list[Detections], batch_idx: int) -> torch.Tensor | None:
        return self._step(batch, "test")

    def configure_optimizers(self) -> Any:
        opt = self.optimizer_cfg
        cls = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW}[opt["name"]]
        optimizer = cls(
            self.parameters(),
            lr=float(opt["lr"]),
            betas=tuple(opt["betas"]),
            eps=float(opt["eps"]),
            weight_decay=float(opt["weight_decay"]),
        )
        if self.scheduler_cfg is None:
            return optimizer
        sch = self.scheduler_cfg
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=float(sch["factor"]),
            patience=int(sch["patience"]),
            threshold=float(sch["threshold"]),
            threshold_mode=sch["threshold_mode"],
            cooldown=int(sch["cooldown"]),
            min_lr=float(sch["min_lr"]),
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {
                "scheduler": scheduler,
                "monitor": self.monitor,
                "interval": "epoch",
                "frequency": self.scheduler_every,
            },
        }


# ============================================================================================
# Data loading
# ============================================================================================


class ClipSampler(Sampler[int]):
    """Every clip once per epoch, in a seeded order per epoch (``shuffle``) or in order.

    ``set_epoch`` (Lightning calls it before each epoch, also after a resume) also moves the
    dataset to that epoch's augmentation draws, so a resumed run sees the same clips as an
    uninterrupted one. Workers are not persistent: each epoch's workers start from the dataset
    in its new epoch.
    """

    def __init__(self, dataset: ClipDataset, shuffle: bool, seed: int) -> None:
        self.dataset = dataset
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.dataset.set_epoch(self.epoch)

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        if not self.shuffle:
            return iter(range(n))
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(n).tolist())


def _loader(dataset: ClipDataset, options: Any, seed: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=options.batch_size,
        sampler=ClipSampler(dataset, options.shuffle, seed),
        num_workers=options.num_workers,
        collate_fn=collate,
        persistent_workers=False,
    )


# ============================================================================================
# Callbacks
# ============================================================================================


class GTREpochLog(EpochLogWriter):
    """``training_log.csv`` with association accuracy beside the losses (see LOG_COLUMNS)."""

    columns = LOG_COLUMNS

    def epoch_metrics(self, trainer: L.Trainer) -> dict:
        metrics = trainer.callback_metrics
        val_ran = trainer.val_dataloaders is not None and _val_ran(trainer)
        return {
            "train_loss": _num(metrics.get("train_loss")),
            "train_accuracy": _num(metrics.get("train_accuracy")),
            "val_loss": _num(metrics.get("val_loss")) if val_ran else float("nan"),
            "val_accuracy": _num(metrics.get("val_accuracy")) if val_ran else float("nan"),
        }


def _val_ran(trainer: L.Trainer) -> bool:
    """Whether validation ran in the epoch that just ended (else its metrics are stale)."""
    every = trainer.check_val_every_n_epoch or 1
    return (trainer.current_epoch + 1) % every == 0


# ============================================================================================
# Entry point
# ============================================================================================


def train_tracker(
    config: str | os.PathLike | dict | RunConfig,
    run_dir: str | os.PathLike,
    threads: int = 1,
    seed: int | None = None,
    callbacks: Sequence[Callback] | None = None,
) -> dict[str, Any]:
    """Train the tracking transformer that ``config`` describes into ``run_dir``.

    Args:
        config: a run-config YAML path, mapping or :class:`RunConfig`
            (see :mod:`pipeline_lib.tracking.gtr.run_config`).
        run_dir: the run directory (created); see the module docstring for its layout.
        threads: torch CPU threads while training (restored afterwards). One suits small
            transformers: on this 2-core machine the d_model 32 model ran 14.5 steps/s with 1
            thread and 12.7 with 2 (and far slower with 2 when the other core is busy); the
            default d_model 128 model with crops gained from 2 (3.7 -> 4.6 steps/s).
        seed: the run seed when ``trainer.seed`` is null.
        callbacks: extra Lightning callbacks (progress reporting, stopping, ...).

    Returns:
        A summary: ``run_dir``, ``best_ckpt``, ``epochs``, ``steps``, ``best_val_loss``,
        ``final_train_loss``, ``resumed_from`` (None when started afresh), ``n_parameters``,
        ``train_clips``, ``val_clips``, ``elapsed_s`` and ``test`` (metrics or None).
    """
    started = time.time()
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(threads)))
    try:
        with run_dir_lock(run_dir):  # one training per run directory
            return _train(load_run_config(config), Path(run_dir), seed, callbacks or [], started)
    finally:
        torch.set_num_threads(previous_threads)


def _train(
    config: RunConfig, run_dir: Path, seed: int | None, extra: Sequence[Callback], started: float
) -> dict[str, Any]:
    tc = config.trainer
    run_seed = tc.seed if tc.seed is not None else seed
    config = _seed_datasets(config, run_seed)
    work = run_dir / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)

    base = config.dataset_base_dir()
    decode = config.tracker.use_vis_feats  # a positions-only model never reads the crops
    train_ds = ClipDataset(config.train_dataset, base, decode_frames=decode)
    val_ds = (
        ClipDataset(config.val_dataset, base, decode_frames=decode)
        if config.val_dataset is not None
        else None
    )
    ws = config.tracker.window_size
    config = resolve_max_window(
        config, training_window_span([d for d in (train_ds, val_ds) if d is not None], ws)
    )
    if run_seed is not None:
        L.seed_everything(int(run_seed), workers=True, verbose=False)
    has_val = val_ds is not None
    module = GTRTrainingModule(
        model_config=config.model.to_dict(),
        window_size=ws,
        use_vis_feats=config.tracker.use_vis_feats,
        optimizer=dataclasses.asdict(config.optimizer),
        scheduler=None if config.scheduler is None else dataclasses.asdict(config.scheduler),
        monitor="val_loss" if has_val else "train_loss",
        scheduler_every=tc.check_val_every_n_epoch if has_val else 1,
    )
    n_parameters = sum(p.numel() for p in module.model.parameters())

    device_tc = _lightning_trainer_config(config)
    accelerator, devices = resolve_devices(device_tc)
    precision = resolve_precision(tc.precision, torch.device(training_accelerator(device_tc)))
    fingerprint = _fingerprint(config, [train_ds] + ([val_ds] if has_val else []), precision)
    resume = _resume_checkpoint(work, fingerprint, None, is_main=_is_main())
    if resume is None and _is_main():
        _remove_published(run_dir)

    loader_seed = int(run_seed) if run_seed is not None else random.SystemRandom().randrange(2**31)
    train_loader = _loader(train_ds, config.train_dataloader, loader_seed)
    val_loader = _loader(val_ds, config.val_dataloader, loader_seed) if has_val else None
    trainer = L.Trainer(
        accelerator=accelerator,
        devices=devices,
        max_epochs=tc.max_epochs if tc.max_epochs is not None else -1,
        max_steps=tc.max_steps if tc.max_steps is not None else -1,
        check_val_every_n_epoch=tc.check_val_every_n_epoch,
        limit_train_batches=tc.limit_train_batches,
        limit_val_batches=tc.limit_val_batches,
        gradient_clip_val=tc.gradient_clip_val,
        precision=precision,
        callbacks=[*_checkpoints(work, has_val), GTREpochLog(work / TRAINING_LOG), *extra],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=str(run_dir),
    )
    log.info(
        "Training the tracking transformer (%d parameters, precision %s) on %d clips, "
        "validating on %d; %s",
        n_parameters,
        precision,
        len(train_ds),
        len(val_ds) if has_val else 0,
        f"resuming from {resume}" if resume else "from scratch",
    )
    with warnings.catch_warnings():
        # Without a validation set the module's validation_step is simply not used.
        warnings.filterwarnings("ignore", message=r".*validation_step.* no `val_dataloader`")
        run_fit(
            trainer, work, module, train_loader, val_loader, ckpt_path=resume, weights_only=True
        )
    train_ds.close()
    if val_ds is not None:
        val_ds.close()
    if not trainer.is_global_zero:
        return {"run_dir": str(run_dir)}  # rank 0 publishes

    best = work / "best.ckpt" if has_val and (work / "best.ckpt").exists() else work / "last.ckpt"
    if not best.exists():
        raise RuntimeError(
            f"Training wrote no checkpoint in {work}: no training step ran (are all clips "
            "single frames?)"
        )
    test = _test_metrics(trainer, module, config, best, loader_seed)
    _publish(run_dir, work, best, config, test)
    rows = _read_log(run_dir / TRAINING_LOG)
    val_losses = [float(r["val_loss"]) for r in rows if r["val_loss"] not in ("", "nan")]
    summary = {
        "run_dir": str(run_dir),
        "best_ckpt": str(run_dir / BEST_CKPT),
        "epochs": len(rows),
        "steps": int(trainer.global_step),
        "best_val_loss": min(val_losses) if val_losses else None,
        "final_train_loss": float(rows[-1]["train_loss"]) if rows else None,
        "resumed_from": resume,
        "n_parameters": n_parameters,
        "train_clips": len(train_ds),
        "val_clips": len(val_ds) if has_val else 0,
        "elapsed_s": round(time.time() - started, 2),
        "test": test,
    }
    log.info("Tracker training finished: %s", summary)
    return summary


def _seed_datasets(config: RunConfig, run_seed: int | None) -> RunConfig:
    """Datasets without a seed of their own take the run seed (recorded in the resolved config)."""
    if run_seed is None:
        return config
    changes = {}
    for key in ("train_dataset", "val_dataset", "test_dataset"):
        options: ClipDatasetOptions | None = getattr(config, key)
        if options is not None and options.seed is None:
            changes[key] = dataclasses.replace(options, seed=int(run_seed))
    return dataclasses.replace(config, **changes)


def _lightning_trainer_config(config: RunConfig) -> dict[str, Any]:
    """The trainer options under the names of :mod:`pipeline_lib.training.trainer_setup`."""
    tc = config.trainer
    devices = tc.devices
    return {
        "trainer_accelerator": tc.accelerator,
        "trainer_devices": None if isinstance(devices, list) else devices,
        "trainer_device_indices": devices if isinstance(devices, list) else None,
    }


def _checkpoints(work: Path, has_val: bool) -> list[ModelCheckpoint]:
    """best (lowest val loss) + last with validation, last only without."""
    if has_val:
        return checkpoint_callbacks({}, work)
    # The newest epoch as the one "top" checkpoint, named last: Lightning writes save_last
    # only after a top-k save, so save_top_k=0 wrote no last.ckpt to resume from until the end.
    return [
        ModelCheckpoint(
            dirpath=work,
            filename="last",
            monitor=None,
            save_top_k=1,
            enable_version_counter=False,
        )
    ]


def _is_main() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return rank_zero_only.rank == 0


# Parts of the resolved config that may change between a killed run and its rerun: they
# change how long training runs, how it is fed, or only what tracking does afterwards.
_NOT_IN_FINGERPRINT = {
    "trainer": ("max_epochs", "max_steps"),
    "dataloader": ("num_workers",),
}


def _fingerprint(config: RunConfig, datasets: Sequence[ClipDataset], precision: str) -> str:
    """Hash of what a resumed run must share with the interrupted one: config and data."""
    resolved = config.to_dict()
    resolved["dataset"].pop("test_dataset", None)
    resolved["dataloader"].pop("test_dataloader", None)
    resolved["trainer"] = {
        k: v for k, v in resolved["trainer"].items() if k not in _NOT_IN_FINGERPRINT["trainer"]
    }
    resolved["dataloader"] = {
        name: {k: v for k, v in loader.items() if k not in _NOT_IN_FINGERPRINT["dataloader"]}
        for name, loader in resolved["dataloader"].items()
    }
    tracker = resolved.pop("tracker")
    resolved["tracker"] = {k: tracker[k] for k in ("window_size", "use_vis_feats")}
    data = sorted({seq.labels_path for ds in datasets for seq in ds.sequences})
    payload = json.dumps(
        {
            "config": resolved,
            "precision": precision,
            "data": {path: _content_hash(Path(path)) for path in data},
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _content_hash(path: Path) -> str:
    """sha256 of a file; of the names, sizes and modification times inside a folder."""
    if path.is_file():
        return file_sha256(path)
    entries = sorted(
        (str(p.relative_to(path)), p.stat().st_size, p.stat().st_mtime_ns)
        for p in path.rglob("*")
        if p.is_file()
    )
    return hashlib.sha256(json.dumps(entries).encode()).hexdigest()


def _test_metrics(
    trainer: L.Trainer,
    module: GTRTrainingModule,
    config: RunConfig,
    best: Path,
    seed: int,
) -> dict[str, float] | None:
    """Loss and accuracy of the best weights on the test clips, when a test set is given."""
    if config.test_dataset is None:
        return None
    test_ds = ClipDataset(
        config.test_dataset,
        config.dataset_base_dir(),
        decode_frames=config.tracker.use_vis_feats,
    )
    loader = _loader(test_ds, config.test_dataloader, seed)
    results = trainer.test(module, loader, ckpt_path=str(best), verbose=False, weights_only=True)
    test_ds.close()
    metrics = results[0] if results else {}
    return {
        "test_loss": float(metrics.get("test_loss", float("nan"))),
        "test_accuracy": float(metrics.get("test_accuracy", float("nan"))),
        "test_clips": len(test_ds),
        "checkpoint": str(best.name),
    }


def _publish(run_dir: Path, work: Path, best: Path, config: RunConfig, test: dict | None) -> None:
    """Publish the outputs atomically; the working folder stays for resuming/extending."""
    with atomic_path(run_dir / BEST_CKPT) as tmp:
        shutil.copyfile(best, tmp)
    with atomic_path(run_dir / TRAINING_LOG) as tmp:
        shutil.copyfile(work / TRAINING_LOG, tmp)
    if test is not None:
        write_json_atomic(run_dir / TEST_METRICS, test)
    write_resolved_config(config, run_dir / TRACKER_CONFIG)


def _remove_published(run_dir: Path) -> None:
    """A fresh start removes an earlier run's outputs: until this run publishes its own, the
    folder must not look like a finished model of this config."""
    for name in (TRACKER_CONFIG, BEST_CKPT, TRAINING_LOG, TEST_METRICS):
        (run_dir / name).unlink(missing_ok=True)


def _read_log(path: Path) -> list[dict[str, str]]:
    with path.open() as fh:
        return list(csv.DictReader(fh))
