"""Train one model from a sleap-nn training config into its run directory.

Resolves the config against the data (skeleton, part names, channels, crop size) using only the
frame shapes, builds the datasets of ``data_config.data_pipeline_fw`` (streamed from the image
cache or the videos, held in memory, or cached as PNG files; see ``pipeline_lib.data.pipelines``),
and runs Lightning with checkpoints that let a killed job resume where it stopped when the same
command is run again.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only

from pipeline_lib.config import config_to_dict, load_training_config
from pipeline_lib.config.training_config import HEAD_NAMES
from pipeline_lib.config.yaml_io import load_yaml
from pipeline_lib.data.cache import build_image_cache, cache_matches, file_sha256
from pipeline_lib.data.datasets import CROP_HEADS, SampleSpec, crop_margin_for
from pipeline_lib.data.frame_source import FrameShape, open_frame_source
from pipeline_lib.data.instances import auto_crop_size, frame_points, node_indices
from pipeline_lib.data.pipelines import SplitData, make_datasets
from pipeline_lib.data.transforms import make_transform, model_input_channels
from pipeline_lib.devices import resolve_precision
from pipeline_lib.io.atomic import atomic_path, write_json_atomic, write_yaml_atomic
from pipeline_lib.io.checkpoints import check_resumable
from pipeline_lib.io.labels import load_labels
from pipeline_lib.io.skeleton import skeleton_to_dict
from pipeline_lib.models.model import count_parameters
from pipeline_lib.provenance import write_job_environment
from pipeline_lib.training.callbacks import EpochLogWriter
from pipeline_lib.training.experiment_logger import mask_secrets, wandb_logger
from pipeline_lib.training.loaders import make_loader
from pipeline_lib.training.module import PoseModule
from pipeline_lib.training.remote_control import zmq_callbacks
from pipeline_lib.training.run_dir import (
    BEST_CKPT,
    INITIAL_CONFIG,
    STOPPED_CKPT,
    TRAINING_CONFIG,
    TRAINING_LOG,
    VIZ_DIR,
    WORK_DIR,
    backbone_of,
    head_of,
)
from pipeline_lib.training.run_lock import run_dir_lock
from pipeline_lib.training.trainer_setup import build_trainer, run_fit, training_accelerator
from pipeline_lib.training.visualize import PredictionVisualizer

log = logging.getLogger(__name__)

FRAME_CACHE_DIR = "frame_cache"  # inside the working folder: see _private_frame_cache

SUPPORTED_HEADS = HEAD_NAMES  # every model type of the sleap-nn format trains


def train_model(
    config_path: str | os.PathLike,
    train_labels: str | os.PathLike,
    val_labels: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    run_dir: str | os.PathLike,
    threads: int = 1,
    seed: int | None = None,
    precision: str = "auto",
) -> None:
    """Train the model described by ``config_path`` on the given splits into ``run_dir``.

    ``precision`` is Lightning's "32", "bf16-mixed" or "16-mixed", or "auto": bf16 mixed precision
    on CPUs with native bf16, fp32 elsewhere (see :func:`pipeline_lib.devices.resolve_precision`).
    The sleap-nn config has no such field, so it comes from the pipeline config's model entry.

    ``cache_dir`` holds the decoded frames from :func:`build_image_cache`; every data pipeline
    reads its frames from there. Without one, ``torch_dataset`` builds a private cache first
    (see :func:`_private_frame_cache`) and the caching pipelines decode the videos in order.
    ``seed`` is used when the config's
    ``trainer_config.seed`` is null. Rerunning after a kill resumes from
    ``run_dir/checkpoints/last.ckpt`` if the config and data are unchanged.

    The run directory is locked for the whole run (``run_lock``): a second training into it
    fails at once. SIGTERM or SIGINT stop it with ``TrainingInterrupted`` (``run_fit``).
    """
    with run_dir_lock(run_dir):
        _train_model(
            config_path, train_labels, val_labels, cache_dir, run_dir, threads, seed, precision
        )


def _train_model(
    config_path: str | os.PathLike,
    train_labels: str | os.PathLike,
    val_labels: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    run_dir: str | os.PathLike,
    threads: int,
    seed: int | None,
    precision: str,
) -> None:
    started = time.time()
    torch.set_num_threads(max(1, int(threads)))
    run_dir = Path(run_dir)
    work = run_dir / WORK_DIR
    work.mkdir(parents=True, exist_ok=True)

    user_cfg = load_training_config(config_path)
    cfg = config_to_dict(user_cfg)
    write_yaml_atomic(run_dir / INITIAL_CONFIG, mask_secrets(load_yaml(config_path)))
    head, _ = head_of(cfg)
    if head not in SUPPORTED_HEADS:
        raise NotImplementedError(
            f"{config_path}: model type '{head}' is not trainable yet (supported: {SUPPORTED_HEADS})"
        )

    train = load_labels(train_labels)
    val = load_labels(val_labels)
    if not val.labeled_frames:
        raise ValueError(f"Validation split {val_labels} has no labelled frames")
    if cache_dir is None and cfg["data_config"]["data_pipeline_fw"] == "torch_dataset":
        cache_dir = _private_frame_cache(work, {"train": train_labels, "val": val_labels}, threads)
    train_source = open_frame_source(cache_dir, "train", train_labels, train)
    val_source = open_frame_source(cache_dir, "val", val_labels, val)

    tc = cfg["trainer_config"]
    run_seed = tc.get("seed") if tc.get("seed") is not None else seed
    if run_seed is not None:
        L.seed_everything(int(run_seed), workers=True)

    resolved, spec = resolve_config(
        cfg, train, train_source.shapes, run_dir, str(train_labels), str(val_labels)
    )
    augment = bool(cfg["data_config"]["use_augmentations_train"])
    val_spec = dataclasses.replace(spec, crop_margin=0)
    train_ds, val_ds, cleanup_data = make_datasets(
        resolved["data_config"],
        SplitData("train", train, train_labels, train_source, spec),
        SplitData("val", val, val_labels, val_source, val_spec),
        run_dir,
        threads,
    )

    module = PoseModule(
        model_config=resolved["model_config"],
        head=head,
        n_nodes=1 if head == "centroid" else len(spec.node_indices),
        in_channels=backbone_of(resolved["model_config"])[1]["in_channels"],
        augmentation=cfg["data_config"]["augmentation_config"] if augment else None,
        optimizer={"name": tc["optimizer_name"], **tc["optimizer"]},
        lr_scheduler=tc["lr_scheduler"],
        ohkm=tc["online_hard_keypoint_mining"],
        crop_size=spec.crop_size,
        seed=run_seed,
        edges=_edge_indices(resolved, head),
        n_classes=len(spec.classes) or None,
    )
    resolved["model_config"]["total_params"] = count_parameters(module.model)

    precision = resolve_precision(precision, torch.device(training_accelerator(tc)))
    fingerprint = _fingerprint({**resolved, "precision": precision}, train_labels, val_labels)
    is_main = rank_zero_only.rank == 0
    resume = _resume_checkpoint(work, fingerprint, tc.get("resume_ckpt_path"), is_main)

    train_loader = make_loader(train_ds, tc["train_data_loader"], tc, run_seed, train=True)
    val_loader = make_loader(val_ds, tc["val_data_loader"], tc, run_seed, train=False)
    loggers = []
    if is_main and tc.get("use_wandb"):
        logger = wandb_logger(tc, run_dir, config=mask_secrets(resolved))
        wandb_section = resolved["trainer_config"].get("wandb") or {}
        resolved["trainer_config"]["wandb"] = {**wandb_section, "current_run_id": logger.version}
        loggers.append(logger)
    trainer = build_trainer(
        tc,
        work,
        run_dir,
        precision,
        callbacks=_callbacks(tc, work, run_dir, train_ds, val_ds, head),
        loggers=loggers,
    )
    log.info(
        "Training %s (%d parameters, precision %s) on %d samples, validating on %d; %s",
        head,
        resolved["model_config"]["total_params"],
        precision,
        len(train_ds),
        len(val_ds),
        f"resuming from {resume}" if resume else "from scratch",
    )
    run_fit(trainer, work, module, train_loader, val_loader, ckpt_path=resume, weights_only=True)

    if not trainer.is_global_zero:
        return  # the other processes of a multi-device run leave publishing to rank 0
    _finalise(run_dir, work, resolved, tc)
    cleanup_data()  # only after a successful fit: a failed run keeps its sample cache
    log.info("Training finished in %.1f s", time.time() - started)


def resolve_config(
    cfg: dict,
    train,
    frame_shapes: Sequence[FrameShape],
    run_dir: Path,
    train_path: str,
    val_path: str,
) -> tuple[dict, SampleSpec]:
    """Fill in what the data decides: skeleton, part names, channels, crop size, strides.

    ``frame_shapes`` are the (height, width, channels) of the training labelled frames, from
    the frame source's metadata: resolving never decodes a frame, so streaming starts at once.
    """
    resolved = copy.deepcopy(cfg)
    dc, mc = resolved["data_config"], resolved["model_config"]
    head, head_sec = head_of(resolved)
    confmaps = head_sec["confmaps"]
    skeleton = train.skeletons[0]
    pre = dc["preprocessing"]

    dc["train_labels_path"] = [train_path]
    dc["val_labels_path"] = [val_path]
    dc["skeletons"] = [skeleton_to_dict(skeleton)]
    if "part_names" in confmaps:
        if confmaps.get("part_names") is None:
            confmaps["part_names"] = list(skeleton.node_names)
        nodes = node_indices(skeleton, confmaps["part_names"])
    else:
        nodes = list(range(len(skeleton.node_names)))
    anchor_part = confmaps.get("anchor_part")
    anchor_index = None
    if anchor_part is not None:
        if anchor_part not in skeleton.node_names:
            raise ValueError(f"anchor_part '{anchor_part}' is not a node of {skeleton.node_names}")
        anchor_index = (
            nodes.index(skeleton.node_names.index(anchor_part))
            if head != "centroid"
            else skeleton.node_names.index(anchor_part)
        )
    if head == "centroid":
        nodes = list(range(len(skeleton.node_names)))

    _, backbone = backbone_of(mc)
    channels = {int(shape[2]) for shape in frame_shapes}
    in_ch = {model_input_channels(c, pre["ensure_rgb"], pre["ensure_grayscale"]) for c in channels}
    if len(in_ch) != 1:
        raise ValueError(
            f"Training frames have different channel counts {sorted(channels)}; set "
            "preprocessing.ensure_rgb or ensure_grayscale"
        )
    backbone["in_channels"] = in_ch.pop()
    head_strides = [
        int(sec["output_stride"])
        for name, sec in head_sec.items()
        if isinstance(sec, dict) and name != "class_vectors" and "output_stride" in sec
    ]
    if backbone["output_stride"] != min(head_strides):
        log.info(
            "Setting backbone output_stride %s to the finest head stride %s",
            backbone["output_stride"],
            min(head_strides),
        )
        backbone["output_stride"] = min(head_strides)
    classes: list[str] = []
    for sec_name in ("class_maps", "class_vectors"):
        sec = head_sec.get(sec_name)
        if sec is not None:
            if sec.get("classes") is None:
                sec["classes"] = [t.name for t in train.tracks]
            classes = list(sec["classes"])
            if not classes:
                raise ValueError(
                    f"{head} needs classes: the training labels have no tracks and "
                    f"{sec_name}.classes is not set"
                )
    if head == "bottomup":
        pafs = head_sec["pafs"]
        if pafs.get("edges") is None:
            pafs["edges"] = [
                [a.name, b.name] for a, b in ((e.source, e.destination) for e in skeleton.edges)
            ]
    max_stride = int(backbone["max_stride"])

    crop_size = None
    crop_margin = 0
    if head in CROP_HEADS:
        crop_size = pre.get("crop_size")
        if crop_size is None:
            geo = (dc.get("augmentation_config") or {}).get("geometric") or {}
            augment = bool(dc["use_augmentations_train"])
            rotation = augment and (
                geo.get("rotation_min", 0) != 0 or geo.get("rotation_max", 0) != 0
            )
            pts = []
            for lf, shape in zip(train.labeled_frames, frame_shapes, strict=True):
                tf = make_transform(
                    shape[:2], pre["scale"], 1, pre.get("max_height"), pre.get("max_width")
                )
                pts.extend(tf.points_to_model(frame_points(lf, nodes)))
            crop_size = auto_crop_size(
                pts,
                max_stride,
                pre.get("min_crop_size"),
                pre.get("crop_padding"),
                rotation=rotation,
                scale_max=geo.get("scale_max", 1.0) if augment else 1.0,
            )
        elif crop_size % max_stride:
            raise ValueError(
                f"preprocessing.crop_size {crop_size} is not a multiple of max_stride {max_stride}"
            )
        pre["crop_size"] = int(crop_size)
        crop_margin = crop_margin_for(
            int(crop_size), max_stride, bool(dc["use_augmentations_train"])
        )

    tc = resolved["trainer_config"]
    tc["ckpt_dir"] = str(run_dir.parent)
    tc["run_name"] = run_dir.name
    spec = SampleSpec(
        head=head,
        node_indices=tuple(nodes),
        anchor_index=anchor_index,
        scale=float(pre["scale"]),
        max_stride=max_stride,
        max_height=pre.get("max_height"),
        max_width=pre.get("max_width"),
        ensure_rgb=bool(pre["ensure_rgb"]),
        ensure_grayscale=bool(pre["ensure_grayscale"]),
        crop_size=crop_size,
        crop_margin=crop_margin,
        classes=tuple(classes),
    )
    return resolved, spec


def _callbacks(tc: dict, work: Path, run_dir: Path, train_ds, val_ds, head: str) -> list:
    """The run's own callbacks: the epoch log, prediction images, GUI progress and control.

    A stop command from the GUI's controller saves ``stopped.ckpt`` in the run directory (the
    full training state, resumable with ``resume_ckpt_path``) and training then finishes
    normally, publishing the best weights so far.
    """
    callbacks: list = [EpochLogWriter(work / TRAINING_LOG)]
    callbacks += zmq_callbacks(tc.get("zmq"), run_dir / STOPPED_CKPT, what=head)
    if tc.get("visualize_preds_during_training"):
        wandb_cfg = tc.get("wandb") or {}
        callbacks.append(
            PredictionVisualizer(
                run_dir / VIZ_DIR,
                [train_ds[0]],
                [val_ds[0]],
                keep=bool(tc.get("keep_viz")),
                upload_to_wandb=bool(tc.get("use_wandb") and wandb_cfg.get("save_viz_imgs_wandb")),
            )
        )
    return callbacks


def _private_frame_cache(work: Path, splits: dict[str, str | os.PathLike], threads: int) -> Path:
    """Streaming outside the workflow: decode the labelled frames once, in order, into the same
    lossless HDF5 cache the workflow's ``cache_images`` rule builds, and stream from that.

    Streaming straight from a compressed video means a random seek per sample, about 100 ms a
    frame for the 1024x1024 fly videos against 3 ms when read in order, which would starve
    training. The cache lives in the working folder, is reused when a killed run resumes with
    the same labels, and is removed when training ends.
    """
    out = work / FRAME_CACHE_DIR
    stale = {s: str(p) for s, p in splits.items() if not cache_matches(out / f"{s}.h5", p)}
    if stale:
        build_image_cache(stale, out, threads)
    return out


def _edge_indices(resolved: dict, head: str) -> list[tuple[int, int]]:
    """PAF edges of a bottom-up config as (src, dst) indices into the head's part list."""
    if head != "bottomup":
        return []
    head_sec = resolved["model_config"]["head_configs"][head]
    parts = head_sec["confmaps"]["part_names"]
    out = []
    for src, dst in head_sec["pafs"]["edges"]:
        pair = []
        for node in (src, dst):
            if isinstance(node, int):
                pair.append(node)
            elif node in parts:
                pair.append(parts.index(node))
            else:
                raise ValueError(f"PAF edge node '{node}' is not one of the part names {parts}")
        out.append((pair[0], pair[1]))
    return out


# Options that change how a run is fed, watched or stored, never what it learns: a rerun after
# a kill may change them and still resume (all data pipelines give bitwise-identical samples).
_NOT_IN_FINGERPRINT = {
    "data_config": (
        "data_pipeline_fw",
        "cache_img_path",
        "use_existing_imgs",
        "delete_cache_imgs_after_training",
    ),
    "trainer_config": (
        "resume_ckpt_path",
        "enable_progress_bar",
        "visualize_preds_during_training",
        "keep_viz",
        "use_wandb",
        "wandb",
        "zmq",
        "profiler",
        "save_ckpt",
        "model_ckpt",
    ),
}


def _fingerprint(resolved: dict, train_labels, val_labels) -> str:
    """Hash of what a resumed run must share with the interrupted one: config and data."""
    config = {
        section: (
            {k: v for k, v in value.items() if k not in _NOT_IN_FINGERPRINT.get(section, ())}
            if isinstance(value, dict)
            else value
        )
        for section, value in resolved.items()
    }
    payload = json.dumps(
        {"config": config, "train": file_sha256(train_labels), "val": file_sha256(val_labels)},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _resume_checkpoint(
    work: Path, fingerprint: str, resume_ckpt_path: str | None, is_main: bool = True
) -> str | None:
    """``last.ckpt`` from an interrupted run of the same job, else the configured resume path.

    A leftover checkpoint from a different config or different data is discarded, never resumed.
    Only the main process (rank 0 of a multi-process run) deletes or stamps anything; the other
    ranks start after it and reach the same answer from what it left. The chosen checkpoint is
    checked to hold only tensors and plain values before Lightning unpickles it
    (:func:`check_resumable`); one that does not is refused, naming the file.
    """
    found = _resume_candidate(work, fingerprint, resume_ckpt_path, is_main)
    if found is not None:
        check_resumable(found)
    return found


def _resume_candidate(
    work: Path, fingerprint: str, resume_ckpt_path: str | None, is_main: bool
) -> str | None:
    stamp = work / "fingerprint.json"
    last = work / "last.ckpt"
    if is_main:  # checkpoints half written when a previous attempt was killed
        for partial in work.glob(".*.tmp.ckpt"):
            partial.unlink(missing_ok=True)
    if (
        stamp.exists()
        and json.loads(stamp.read_text()).get("fingerprint") == fingerprint
        and last.exists()
    ):
        return str(last)
    if is_main:
        for old in work.glob("*.ckpt"):
            old.unlink()
        (work / TRAINING_LOG).unlink(missing_ok=True)
        write_json_atomic(stamp, {"fingerprint": fingerprint})
    if resume_ckpt_path:
        if not Path(resume_ckpt_path).exists():
            raise FileNotFoundError(
                f"trainer_config.resume_ckpt_path not found: {resume_ckpt_path}"
            )
        return str(resume_ckpt_path)
    return None


def _finalise(run_dir: Path, work: Path, resolved: dict, tc: dict) -> None:
    """Publish the final outputs atomically: the environment that trained (for the run's
    provenance; written first, so finished weights never lack it), best weights, resolved
    config, the epoch log.

    Then tidy the working folder as the checkpoint options ask: ``save_ckpt: false`` removes
    it entirely, otherwise ``last.ckpt`` stays only with ``model_ckpt.save_last``.
    """
    write_job_environment(run_dir)
    best = work / "best.ckpt"
    if not best.exists():
        best = work / "last.ckpt"
    with atomic_path(run_dir / BEST_CKPT) as tmp:
        shutil.copyfile(best, tmp)
    with atomic_path(run_dir / TRAINING_LOG) as tmp:
        shutil.copyfile(work / TRAINING_LOG, tmp)
    write_yaml_atomic(run_dir / TRAINING_CONFIG, mask_secrets(resolved))
    shutil.rmtree(work / FRAME_CACHE_DIR, ignore_errors=True)
    if not tc.get("save_ckpt"):
        shutil.rmtree(work, ignore_errors=True)
    elif not tc["model_ckpt"].get("save_last"):
        (work / "last.ckpt").unlink(missing_ok=True)
