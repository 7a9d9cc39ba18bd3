"""Predictors: frames in, instances (frame-pixel points with scores) out.

``SingleInstancePredictor`` runs one full-frame model. ``TopDownPredictor`` finds instance anchors
with a centroid model, crops around each at the centered-instance model's resolution, and reads the
part peaks of each crop. Both map coordinates back through the one chain in ``transforms.py``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, fields

import numpy as np
import sleap_io as sio
import torch

from pipeline_lib.data.instances import crop_offsets, extract_crops, node_indices
from pipeline_lib.data.transforms import FrameTransform, coerce_channels, make_transform
from pipeline_lib.devices import pick_device
from pipeline_lib.inference.peaks import find_global_peaks, find_local_peaks
from pipeline_lib.training.run_dir import TrainedModel, load_trained_model


@dataclass
class InferenceOptions:
    """User-facing inference settings (the ``inference`` section of the pipeline config)."""

    batch_size: int = 4
    peak_threshold: float = 0.2
    refinement: str | None = "integral"
    integral_patch_size: int = 5
    max_instances: int | None = None
    device: str = "auto"

    @classmethod
    def from_dict(cls, data: dict | None) -> InferenceOptions:
        """Strict construction: unknown keys are an error naming them."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"Unknown inference option(s) {unknown}; valid: {sorted(known)}")
        if data.get("refinement") in ("none", "None"):
            data["refinement"] = None
        opts = cls(**data)
        if opts.refinement not in (None, "integral", "local"):
            raise ValueError(
                f"inference.refinement must be integral, local or none, got {opts.refinement!r}"
            )
        if opts.batch_size < 1:
            raise ValueError(f"inference.batch_size must be >= 1, got {opts.batch_size}")
        return opts


@dataclass
class FrameInstances:
    """Predicted instances of one frame, in frame pixels."""

    points: np.ndarray  # (I, N, 2), full skeleton order, NaN where not found
    point_scores: np.ndarray  # (I, N)
    scores: np.ndarray  # (I,)
    extra: dict = field(default_factory=dict)


class _ModelRunner:
    """One trained model plus what it needs to turn frames into its input tensors."""

    def __init__(self, trained: TrainedModel, device: torch.device) -> None:
        self.trained = trained
        self.device = device
        pre = trained.preprocessing
        self.pre = pre
        backbone = trained.config["model_config"]["backbone_config"]["unet"]
        self.max_stride = int(backbone["max_stride"]) * int(backbone.get("stem_stride") or 1)
        self.output_stride = int(trained.confmaps_config["output_stride"])

    def transform(self, frame_hw: tuple[int, int], stride: int | None = None) -> FrameTransform:
        return make_transform(
            frame_hw,
            self.pre["scale"],
            self.max_stride if stride is None else stride,
            self.pre.get("max_height"),
            self.pre.get("max_width"),
        )

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        return coerce_channels(frame, self.pre["ensure_rgb"], self.pre["ensure_grayscale"])

    @torch.inference_mode()
    def confmaps(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, C) uint8 -> (B, N, h, w) confidence maps on the device."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        return self.trained.model(x)["confmaps"].float()


class SingleInstancePredictor:
    """One instance per frame from a single-instance model."""

    def __init__(self, model_dir: str | os.PathLike, options: InferenceOptions) -> None:
        self.options = options
        device = pick_device(options.device)
        self.runner = _ModelRunner(load_trained_model(model_dir, device), device)
        trained = self.runner.trained
        self.skeleton = trained.skeleton
        self.nodes = node_indices(self.skeleton, trained.confmaps_config.get("part_names"))

    def predict(self, frames: Sequence[np.ndarray]) -> list[FrameInstances]:
        out: list[FrameInstances] = []
        for start in range(0, len(frames), self.options.batch_size):
            batch = frames[start : start + self.options.batch_size]
            tfs = [self.runner.transform(f.shape[:2]) for f in batch]
            images = np.stack(
                [
                    tf.image_to_model(self.runner.prepare(f))
                    for tf, f in zip(tfs, batch, strict=True)
                ]
            )
            pts, vals = find_global_peaks(
                self.runner.confmaps(images),
                threshold=self.options.peak_threshold,
                refinement=self.options.refinement,
                patch_size=self.options.integral_patch_size,
            )
            pts, vals = pts.cpu().numpy(), vals.cpu().numpy()
            for tf, p, v in zip(tfs, pts, vals, strict=True):
                full = np.full((1, len(self.skeleton.node_names), 2), np.nan)
                full_scores = np.zeros((1, len(self.skeleton.node_names)))
                full[0, self.nodes] = tf.points_to_frame(p, self.runner.output_stride)
                full_scores[0, self.nodes] = np.nan_to_num(v)
                if not np.isfinite(full).any():
                    out.append(_empty(len(self.skeleton.node_names)))
                    continue
                out.append(
                    FrameInstances(
                        full, full_scores, np.array([_instance_score(full_scores[0], full[0])])
                    )
                )
        return out


class TopDownPredictor:
    """Centroid model -> crops -> centered-instance model."""

    def __init__(
        self,
        centroid_dir: str | os.PathLike,
        centered_dir: str | os.PathLike,
        options: InferenceOptions,
    ) -> None:
        self.options = options
        device = pick_device(options.device)
        self.centroid = _ModelRunner(load_trained_model(centroid_dir, device), device)
        self.centered = _ModelRunner(load_trained_model(centered_dir, device), device)
        if (
            self.centroid.trained.head != "centroid"
            or self.centered.trained.head != "centered_instance"
        ):
            raise ValueError(
                f"A top-down predictor needs [centroid, centered_instance] models, got "
                f"[{self.centroid.trained.head}, {self.centered.trained.head}]"
            )
        self.skeleton = self.centered.trained.skeleton
        self.nodes = node_indices(
            self.skeleton, self.centered.trained.confmaps_config.get("part_names")
        )
        crop = self.centered.pre.get("crop_size")
        if crop is None:
            raise ValueError(f"{centered_dir}: training_config.yaml has no resolved crop_size")
        self.crop_size = int(crop)

    def find_centroids(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Anchor points (K, 2) in frame pixels and their confidences, per frame."""
        tfs = [self.centroid.transform(f.shape[:2]) for f in frames]
        images = np.stack(
            [tf.image_to_model(self.centroid.prepare(f)) for tf, f in zip(tfs, frames, strict=True)]
        )
        pts, vals, sample, _ = find_local_peaks(
            self.centroid.confmaps(images),
            threshold=self.options.peak_threshold,
            refinement=self.options.refinement,
            patch_size=self.options.integral_patch_size,
        )
        pts, vals, sample = pts.cpu().numpy(), vals.cpu().numpy(), sample.cpu().numpy()
        result = []
        for i, tf in enumerate(tfs):
            sel = sample == i
            p, v = pts[sel], vals[sel]
            order = np.argsort(-v, kind="stable")
            if self.options.max_instances is not None:
                order = order[: self.options.max_instances]
            result.append((tf.points_to_frame(p[order], self.centroid.output_stride), v[order]))
        return result

    def predict(self, frames: Sequence[np.ndarray]) -> list[FrameInstances]:
        out: list[FrameInstances] = []
        n_nodes = len(self.skeleton.node_names)
        for start in range(0, len(frames), self.options.batch_size):
            batch = frames[start : start + self.options.batch_size]
            centroids = self.find_centroids(batch)
            crops, offsets, owners, tfs = [], [], [], []
            for i, (frame, (cents, _)) in enumerate(zip(batch, centroids, strict=True)):
                tf = self.centered.transform(frame.shape[:2], stride=1)
                tfs.append(tf)
                if len(cents) == 0:
                    continue
                image = tf.image_to_model(self.centered.prepare(frame))
                offs = crop_offsets(tf.points_to_model(cents), self.crop_size)
                crops.append(extract_crops(image, offs, self.crop_size))
                offsets.append(offs)
                owners.extend([i] * len(offs))
            per_frame: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in batch]
            if crops:
                all_crops = np.concatenate(crops)
                all_offsets = np.concatenate(offsets)
                pts_list, vals_list = [], []
                for s in range(0, len(all_crops), max(self.options.batch_size, 1) * 4):
                    p, v = find_global_peaks(
                        self.centered.confmaps(all_crops[s : s + self.options.batch_size * 4]),
                        threshold=self.options.peak_threshold,
                        refinement=self.options.refinement,
                        patch_size=self.options.integral_patch_size,
                    )
                    pts_list.append(p.cpu().numpy())
                    vals_list.append(v.cpu().numpy())
                pts, vals = np.concatenate(pts_list), np.concatenate(vals_list)
                for k, owner in enumerate(owners):
                    frame_pts = tfs[owner].points_to_frame(
                        pts[k], self.centered.output_stride, crop_offset=all_offsets[k]
                    )
                    per_frame[owner].append((frame_pts, vals[k]))
            for items, (_, cent_vals) in zip(per_frame, centroids, strict=True):
                if not items:
                    out.append(_empty(n_nodes))
                    continue
                full = np.full((len(items), n_nodes, 2), np.nan)
                scores = np.zeros((len(items), n_nodes))
                for j, (p, v) in enumerate(items):
                    full[j, self.nodes] = p
                    scores[j, self.nodes] = np.nan_to_num(v)
                keep = np.isfinite(full).all(axis=-1).any(axis=-1)
                inst_scores = np.array(
                    [_instance_score(scores[j], full[j]) for j in range(len(items))]
                )
                out.append(
                    FrameInstances(
                        full[keep],
                        scores[keep],
                        inst_scores[keep],
                        {"centroid_scores": cent_vals[keep]},
                    )
                )
        return out


def make_predictor(model_dirs: Sequence[str | os.PathLike], options: InferenceOptions):
    """The predictor for a list of run directories: [single_instance] or [centroid, centered]."""
    dirs = list(model_dirs)
    if len(dirs) == 1:
        return SingleInstancePredictor(dirs[0], options)
    if len(dirs) == 2:
        return TopDownPredictor(dirs[0], dirs[1], options)
    raise ValueError(
        f"Expected one model folder or a [centroid, centered_instance] pair, got {dirs}"
    )


def to_labeled_frame(
    pred: FrameInstances, video: sio.Video, frame_idx: int, skeleton: sio.Skeleton
) -> sio.LabeledFrame:
    """A SLEAP labelled frame of PredictedInstances from one frame's predictions."""
    instances = [
        sio.PredictedInstance.from_numpy(
            pred.points[i],
            skeleton=skeleton,
            point_scores=pred.point_scores[i],
            score=float(pred.scores[i]),
        )
        for i in range(len(pred.points))
    ]
    return sio.LabeledFrame(video=video, frame_idx=int(frame_idx), instances=instances)


def _instance_score(point_scores: np.ndarray, points: np.ndarray) -> float:
    """Mean confidence over all predicted nodes (a missing node counts as 0)."""
    s = np.where(np.isfinite(points).all(axis=-1), point_scores, 0.0)
    return float(s.mean()) if s.size else 0.0


def _empty(n_nodes: int) -> FrameInstances:
    return FrameInstances(np.zeros((0, n_nodes, 2)), np.zeros((0, n_nodes)), np.zeros((0,)))
