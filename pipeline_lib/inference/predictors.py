"""Predictors: frames in, instances (frame-pixel points with scores) out.

``SingleInstancePredictor`` runs one full-frame model. ``TopDownPredictor`` finds instance anchors
with a centroid model, crops around each at the centered-instance model's resolution, and reads the
part peaks of each crop. Both map coordinates back through the one chain in ``transforms.py``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import sleap_io as sio
import torch

from pipeline_lib.data.instances import crop_offsets, extract_crops, node_indices
from pipeline_lib.data.transforms import FrameTransform, coerce_channels, make_transform
from pipeline_lib.devices import autocast_dtype, pick_device, resolve_precision
from pipeline_lib.inference.filters import apply_filters, filters_enabled
from pipeline_lib.inference.options import InferenceOptions
from pipeline_lib.inference.peaks import find_global_peaks, find_local_peaks
from pipeline_lib.training.run_dir import TrainedModel, backbone_of, load_trained_model

log = logging.getLogger(__name__)


@dataclass
class FrameInstances:
    """Predicted instances of one frame, in frame pixels."""

    points: np.ndarray  # (I, N, 2), full skeleton order, NaN where not found
    point_scores: np.ndarray  # (I, N)
    scores: np.ndarray  # (I,)
    extra: dict = field(default_factory=dict)
    tracks: list[str | None] | None = None  # identities from multi-class models
    track_scores: np.ndarray | None = None


class _ModelRunner:
    """One trained model plus what it needs to turn frames into its input tensors."""

    def __init__(
        self,
        trained: TrainedModel,
        device: torch.device,
        options: InferenceOptions | None = None,
        full_frame: bool = True,
    ) -> None:
        self.trained = trained
        self.device = device
        self.pre = preprocessing_with_overrides(trained.preprocessing, options, full_frame)
        self.precision = resolve_precision(options.precision if options else "auto", device)
        self.autocast = autocast_dtype(self.precision, device)
        # Channels-last convolutions are faster on CPUs (bench/RESULTS.md, inference section).
        self.channels_last = device.type == "cpu"
        if self.channels_last:
            trained.model.to(memory_format=torch.channels_last)
        _, backbone = backbone_of(trained.config["model_config"])
        self.max_stride = int(backbone["max_stride"])
        self.in_channels = int(backbone.get("in_channels") or 1)
        self.output_stride = int(trained.confmaps_config["output_stride"])

    def transform(self, frame_hw: tuple[int, int], stride: int | None = None) -> FrameTransform:
        return make_transform(
            frame_hw,
            self.pre["scale"],
            self.max_stride if stride is None else stride,
            self.pre.get("max_height"),
            self.pre.get("max_width"),
        )

    def full_frames(self, frames: Sequence[np.ndarray]) -> tuple[list[FrameTransform], np.ndarray]:
        """Each frame's transform and the stacked (B, H, W, C) model inputs of a batch."""
        tfs = [self.transform(f.shape[:2]) for f in frames]
        images = np.stack(
            [tf.image_to_model(self.prepare(f)) for tf, f in zip(tfs, frames, strict=True)]
        )
        return tfs, images

    def prepare(self, frame: np.ndarray) -> np.ndarray:
        """A frame with the channels the network takes: the configured conversion first, then
        (as sleap-nn does) grey -> RGB or RGB -> grey when the video still differs from the
        network's ``in_channels``, e.g. a model trained on colour video run on a grey one."""
        image = coerce_channels(frame, self.pre["ensure_rgb"], self.pre["ensure_grayscale"])
        if image.shape[-1] != self.in_channels:
            image = coerce_channels(image, self.in_channels == 3, self.in_channels == 1)
        if image.shape[-1] != self.in_channels:
            raise ValueError(
                f"Frames have {image.shape[-1]} channels but the model in "
                f"{self.trained.run_dir} takes {self.in_channels}"
            )
        return image

    @torch.inference_mode()
    def outputs(self, images: np.ndarray) -> dict[str, torch.Tensor]:
        """(B, H, W, C) uint8 -> every head's output (float32) on the device."""
        x = torch.from_numpy(np.ascontiguousarray(images)).to(self.device)
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(
            self.device.type, dtype=self.autocast, enabled=self.autocast is not None
        ):
            outputs = self.trained.model(x)
        return {k: v.float().contiguous() for k, v in outputs.items()}

    def confmaps(self, images: np.ndarray) -> torch.Tensor:
        """(B, H, W, C) uint8 -> (B, N, h, w) confidence maps on the device."""
        return self.outputs(images)["confmaps"]

    def head_stride(self, name: str) -> int:
        """Output stride of one of the head's sections (confmaps, pafs, class_maps)."""
        return int(self.trained.head_config[name]["output_stride"])


def preprocessing_with_overrides(
    trained: dict, options: InferenceOptions | None, full_frame: bool
) -> dict:
    """A model's training preprocessing with the inference overrides that apply to it.

    With ``ensure_rgb`` or ``ensure_grayscale`` given, the other is turned off, so a video's
    channels can be converted to what the model was trained on.
    """
    pre = dict(trained)
    if options is None:
        return pre
    if options.ensure_rgb is not None or options.ensure_grayscale is not None:
        pre["ensure_rgb"] = bool(options.ensure_rgb)
        pre["ensure_grayscale"] = bool(options.ensure_grayscale)
    if full_frame:
        for key, value in (
            ("scale", options.input_scale),
            ("max_height", options.max_height),
            ("max_width", options.max_width),
        ):
            if value is not None:
                pre[key] = value
    elif options.crop_size is not None:
        pre["crop_size"] = int(options.crop_size)
    return pre


class SingleInstancePredictor:
    """One instance per frame from a single-instance model."""

    def __init__(self, model_dir: str | os.PathLike, options: InferenceOptions) -> None:
        self.options = options
        device = pick_device(options.device)
        self.runner = _ModelRunner(load_trained_model(model_dir, device), device, options)
        trained = self.runner.trained
        self.skeleton = trained.skeleton
        self.nodes = model_nodes(trained)

    def predict(self, frames: Sequence[np.ndarray]) -> list[FrameInstances]:
        out: list[FrameInstances] = []
        for start in range(0, len(frames), self.options.batch_size):
            batch = frames[start : start + self.options.batch_size]
            tfs, images = self.runner.full_frames(batch)
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


def find_anchors(
    runner: _ModelRunner, frames: Sequence[np.ndarray], options: InferenceOptions
) -> list[tuple[np.ndarray, np.ndarray]]:
    """A centroid model's anchor points (K, 2) in frame pixels and their confidences, per
    frame, best first (at most ``options.max_instances``)."""
    tfs, images = runner.full_frames(frames)
    pts, vals, sample, _ = find_local_peaks(
        runner.confmaps(images),
        threshold=options.peak_threshold,
        refinement=options.refinement,
        patch_size=options.integral_patch_size,
    )
    pts, vals, sample = pts.cpu().numpy(), vals.cpu().numpy(), sample.cpu().numpy()
    result = []
    for i, tf in enumerate(tfs):
        sel = sample == i
        p, v = pts[sel], vals[sel]
        order = np.argsort(-v, kind="stable")
        if options.max_instances is not None:
            order = order[: options.max_instances]
        result.append((tf.points_to_frame(p[order], runner.output_stride), v[order]))
    return result


class CentroidPredictor:
    """A centroid model on its own: where it puts each animal's anchor. Used to evaluate the
    first stage of a top-down predictor separately from the whole chain."""

    def __init__(self, model_dir: str | os.PathLike, options: InferenceOptions) -> None:
        self.options = options
        device = pick_device(options.device)
        self.runner = _ModelRunner(load_trained_model(model_dir, device), device, options)
        if self.runner.trained.head != "centroid":
            raise ValueError(
                f"{model_dir} is a {self.runner.trained.head} model, not a centroid one"
            )
        self.skeleton = self.runner.trained.skeleton
        self.anchor_part: str | None = self.runner.trained.confmaps_config.get("anchor_part")

    def find_centroids(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Anchor points (K, 2) in frame pixels and their confidences, per frame."""
        return find_anchors(self.runner, frames, self.options)


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
        self.centroid = _ModelRunner(load_trained_model(centroid_dir, device), device, options)
        self.centered = _ModelRunner(
            load_trained_model(centered_dir, device), device, options, full_frame=False
        )
        if self.centroid.trained.head != "centroid" or self.centered.trained.head not in (
            "centered_instance",
            "multi_class_topdown",
        ):
            raise ValueError(
                "A top-down predictor needs [centroid, centered_instance or multi_class_topdown] "
                f"models, got [{self.centroid.trained.head}, {self.centered.trained.head}]"
            )
        self.classes = self.centered.trained.classes
        self.skeleton = self.centered.trained.skeleton
        self.nodes = model_nodes(self.centered.trained)
        crop = self.centered.pre.get("crop_size")
        if crop is None:
            raise ValueError(f"{centered_dir}: training_config.yaml has no resolved crop_size")
        self.crop_size = int(crop)
        if self.crop_size % self.centered.max_stride:
            raise ValueError(
                f"inference.crop_size {self.crop_size} is not a multiple of the centered-instance "
                f"model's max_stride {self.centered.max_stride}"
            )

    def find_centroids(self, frames: Sequence[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Anchor points (K, 2) in frame pixels and their confidences, per frame."""
        return find_anchors(self.centroid, frames, self.options)

    def predict(self, frames: Sequence[np.ndarray]) -> list[FrameInstances]:
        out: list[FrameInstances] = []
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
            per_frame: list[list[tuple]] = [[] for _ in batch]
            if crops:
                all_crops = np.concatenate(crops)
                all_offsets = np.concatenate(offsets)
                pts_list, vals_list, probs_list = [], [], []
                chunk = max(self.options.batch_size, 1) * 4
                for s in range(0, len(all_crops), chunk):
                    outputs = self.centered.outputs(all_crops[s : s + chunk])
                    p, v = find_global_peaks(
                        outputs["confmaps"],
                        threshold=self.options.peak_threshold,
                        refinement=self.options.refinement,
                        patch_size=self.options.integral_patch_size,
                    )
                    pts_list.append(p.cpu().numpy())
                    vals_list.append(v.cpu().numpy())
                    if "class_vectors" in outputs:
                        probs_list.append(torch.softmax(outputs["class_vectors"], -1).cpu().numpy())
                pts, vals = np.concatenate(pts_list), np.concatenate(vals_list)
                probs = np.concatenate(probs_list) if probs_list else None
                for k, owner in enumerate(owners):
                    frame_pts = tfs[owner].points_to_frame(
                        pts[k], self.centered.output_stride, crop_offset=all_offsets[k]
                    )
                    per_frame[owner].append(
                        (frame_pts, vals[k], None if probs is None else probs[k])
                    )
            for items, (_, cent_vals) in zip(per_frame, centroids, strict=True):
                out.append(self._assemble(items, cent_vals))
        return out

    def _assemble(self, items: list[tuple], cent_vals: np.ndarray) -> FrameInstances:
        """One frame's crops -> instances (with identities for a multi-class model)."""
        n_nodes = len(self.skeleton.node_names)
        if not items:
            return _empty(n_nodes)
        full = np.full((len(items), n_nodes, 2), np.nan)
        scores = np.zeros((len(items), n_nodes))
        for j, (p, v, _) in enumerate(items):
            full[j, self.nodes] = p
            scores[j, self.nodes] = np.nan_to_num(v)
        keep = np.isfinite(full).all(axis=-1).any(axis=-1)
        inst_scores = np.array([_instance_score(scores[j], full[j]) for j in range(len(items))])
        result = FrameInstances(
            full[keep], scores[keep], inst_scores[keep], {"centroid_scores": cent_vals[keep]}
        )
        if self.classes and keep.any():
            from pipeline_lib.inference.class_assignment import assign_instances_by_class_vectors

            probs = np.stack([items[j][2] for j in np.flatnonzero(keep)])
            class_idx, class_scores = assign_instances_by_class_vectors(probs)
            result.tracks = [self.classes[c] if c >= 0 else None for c in class_idx]
            result.track_scores = np.asarray(class_scores, dtype=float)
        return result


class BottomUpPredictor:
    """Every part peak of a frame, grouped into animals by part affinity fields or, for a
    multi-class model, by class maps (which also name each animal)."""

    def __init__(self, model_dir: str | os.PathLike, options: InferenceOptions) -> None:
        self.options = options
        device = pick_device(options.device)
        self.runner = _ModelRunner(load_trained_model(model_dir, device), device, options)
        trained = self.runner.trained
        if trained.head not in ("bottomup", "multi_class_bottomup"):
            raise ValueError(f"{model_dir} is a {trained.head} model, not a bottom-up one")
        self.skeleton = trained.skeleton
        self.nodes = model_nodes(trained)
        self.classes = trained.classes
        if trained.head == "bottomup":
            parts = trained.confmaps_config["part_names"]
            self.edges = np.array(
                [
                    [e if isinstance(e, int) else parts.index(e) for e in pair]
                    for pair in trained.head_config["pafs"]["edges"]
                ],
                dtype=np.int64,
            ).reshape(-1, 2)

    def predict(self, frames: Sequence[np.ndarray]) -> list[FrameInstances]:
        out: list[FrameInstances] = []
        opts = self.options
        for start in range(0, len(frames), opts.batch_size):
            batch = frames[start : start + opts.batch_size]
            tfs, images = self.runner.full_frames(batch)
            outputs = self.runner.outputs(images)
            pts, vals, sample, chan = (
                t.cpu().numpy()
                for t in find_local_peaks(
                    outputs["confmaps"],
                    threshold=opts.peak_threshold,
                    refinement=opts.refinement,
                    patch_size=opts.integral_patch_size,
                )
            )
            for i, tf in enumerate(tfs):
                sel = _strongest_per_channel(sample == i, vals, chan, opts.max_peaks_per_node)
                out.append(self._frame(outputs, i, tf, pts[sel], vals[sel], chan[sel]))
        return out

    def _frame(self, outputs: dict, i: int, tf: FrameTransform, pts, vals, chan) -> FrameInstances:
        opts = self.options
        n_parts = len(self.nodes)
        cms_stride = self.runner.output_stride
        tracks = None
        if self.classes:
            from pipeline_lib.inference.class_assignment import classify_peaks_by_class_maps

            points, point_scores, inst_scores = classify_peaks_by_class_maps(
                pts,
                vals,
                chan,
                outputs["class_maps"][i].cpu().numpy(),
                n_parts,
                stride=self.runner.head_stride("class_maps"),
                cms_stride=cms_stride,
            )
            tracks = list(self.classes)
        else:
            from pipeline_lib.inference.paf_grouping import group_instances

            points, point_scores, inst_scores = group_instances(
                pts,
                vals,
                chan,
                outputs["pafs"][i].cpu().numpy(),
                self.edges,
                n_parts,
                paf_stride=self.runner.head_stride("pafs"),
                cms_stride=cms_stride,
                n_points=opts.paf_n_points,
                max_edge_length_ratio=opts.max_edge_length_ratio,
                dist_penalty_weight=opts.dist_penalty_weight,
                min_line_scores=opts.min_line_scores,
                min_instance_peaks=opts.min_instance_peaks,
                max_instances=opts.max_instances,
            )
        n_nodes = len(self.skeleton.node_names)
        full = np.full((len(points), n_nodes, 2), np.nan)
        scores = np.zeros((len(points), n_nodes))
        if len(points):
            full[:, self.nodes] = tf.points_to_frame(np.asarray(points), cms_stride)
            scores[:, self.nodes] = np.nan_to_num(np.asarray(point_scores))
        keep = np.isfinite(full).all(axis=-1).any(axis=-1)
        result = FrameInstances(full[keep], scores[keep], np.asarray(inst_scores, float)[keep])
        if tracks is not None:
            result.tracks = [t for t, k in zip(tracks, keep, strict=True) if k]
        return result


def model_nodes(trained: TrainedModel) -> list[int]:
    """Skeleton indices of a model's confidence-map channels.

    Some sleap-nn run directories name ``part_names`` that are not in their saved skeleton
    (the config was edited after the skeleton was written). sleap-nn then reads the channels
    in skeleton order; we do the same, with a warning, when the counts agree.
    """
    part_names = trained.confmaps_config.get("part_names")
    try:
        return node_indices(trained.skeleton, part_names)
    except ValueError:
        if part_names is None or len(part_names) != len(trained.skeleton.node_names):
            raise
        log.warning(
            "%s: part_names %s are not nodes of the skeleton %s; reading the channels in "
            "skeleton order",
            trained.run_dir,
            list(part_names),
            trained.skeleton.node_names,
        )
        return list(range(len(part_names)))


def make_predictor(model_dirs: Sequence[str | os.PathLike], options: InferenceOptions):
    """The predictor for a list of run directories: [single_instance], [bottomup],
    [multi_class_bottomup], or [centroid, centered_instance / multi_class_topdown]."""
    dirs = list(model_dirs)
    if len(dirs) == 1:
        head = head_of_dir(dirs[0])
        if head in ("bottomup", "multi_class_bottomup"):
            predictor = BottomUpPredictor(dirs[0], options)
        else:
            predictor = SingleInstancePredictor(dirs[0], options)
    elif len(dirs) == 2:
        predictor = TopDownPredictor(dirs[0], dirs[1], options)
    else:
        raise ValueError(
            f"Expected one model folder or a [centroid, centered_instance] pair, got {dirs}"
        )
    return FilteredPredictor(predictor, options) if filters_enabled(options) else predictor


class FilteredPredictor:
    """A predictor whose per-frame results go through the post-filters of ``options``; every
    other attribute (skeleton, classes, ...) is the wrapped predictor's."""

    def __init__(self, predictor, options: InferenceOptions) -> None:
        self.predictor = predictor
        self.options = options

    def predict(self, frames: Sequence[np.ndarray]) -> list[FrameInstances]:
        return [apply_filters(p, self.options) for p in self.predictor.predict(frames)]

    def __getattr__(self, name: str):
        if name == "predictor":  # not set yet (e.g. while unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.predictor, name)


def head_of_dir(model_dir: str | os.PathLike) -> str:
    """Model type recorded in a run directory's resolved config."""
    from pipeline_lib.given_models import read_folder_config
    from pipeline_lib.training.run_dir import head_of

    return head_of(read_folder_config(model_dir)[1])[0]


def to_labeled_frame(
    pred: FrameInstances,
    video: sio.Video,
    frame_idx: int,
    skeleton: sio.Skeleton,
    tracks: dict[str, sio.Track] | None = None,
) -> sio.LabeledFrame:
    """A SLEAP labelled frame of PredictedInstances from one frame's predictions.

    ``tracks`` maps identity names to the Track objects shared across frames; it is filled as
    new names appear (multi-class models).
    """
    tracks = {} if tracks is None else tracks
    instances = []
    for i in range(len(pred.points)):
        name = pred.tracks[i] if pred.tracks is not None else None
        track = tracks.setdefault(name, sio.Track(name=name)) if name is not None else None
        instances.append(
            sio.PredictedInstance.from_numpy(
                pred.points[i],
                skeleton=skeleton,
                point_scores=pred.point_scores[i],
                score=float(pred.scores[i]),
                track=track,
                tracking_score=float(pred.track_scores[i])
                if track is not None and pred.track_scores is not None
                else None,
            )
        )
    return sio.LabeledFrame(video=video, frame_idx=int(frame_idx), instances=instances)


def _strongest_per_channel(
    mask: np.ndarray, vals: np.ndarray, chan: np.ndarray, k: int
) -> np.ndarray:
    """Indices of at most ``k`` highest peaks per channel among ``mask``.

    Grouping scores every pair of candidate peaks along every edge, so a noisy map with
    hundreds of weak maxima would cost quadratic time for nothing.
    """
    idx = np.flatnonzero(mask)
    keep = []
    for c in np.unique(chan[idx]):
        members = idx[chan[idx] == c]
        keep.append(members[np.argsort(-vals[members], kind="stable")[:k]])
    return np.sort(np.concatenate(keep)) if keep else idx


def _instance_score(point_scores: np.ndarray, points: np.ndarray) -> float:
    """Mean confidence over all predicted nodes (a missing node counts as 0)."""
    s = np.where(np.isfinite(points).all(axis=-1), point_scores, 0.0)
    return float(s.mean()) if s.size else 0.0


def _empty(n_nodes: int) -> FrameInstances:
    return FrameInstances(np.zeros((0, n_nodes, 2)), np.zeros((0, n_nodes)), np.zeros((0,)))
