"""Prediction figures during training (sleap-nn's ``visualize_preds_during_training``/``keep_viz``).

After every validation epoch the model is run on a few fixed samples and one PNG per sample is
written to the viz folder (``train.0003.png``, ``validation.0003.png``: sleap-nn's names), so a
user can see while training runs whether the confidence maps sharpen on the animals. Each figure
shows the exact model input (what ``PoseModule._prepare`` makes without augmentation) with the
ground truth and the predicted peaks, the maximum projection of the confidence maps and, where
the model has them, the PAF magnitude and the class maps.

Coordinates follow ``pipeline_lib.data.transforms``: pixel centres sit on integer coordinates
and grid cell ``j`` of a map with stride ``s`` is model-input pixel ``j * s``; maps are
upsampled with that same alignment, so markers and maps line up with the image.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import lightning as L
import numpy as np
import torch

from pipeline_lib.inference.options import InferenceOptions
from pipeline_lib.inference.peaks import find_global_peaks, find_local_peaks
from pipeline_lib.io.atomic import atomic_path

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from pipeline_lib.training.module import PoseModule

log = logging.getLogger(__name__)

GLOBAL_PEAK_HEADS = ("single_instance", "centered_instance", "multi_class_topdown")
LOCAL_PEAK_HEADS = ("centroid", "bottomup", "multi_class_bottomup")
SPLITS = ("train", "validation")
PANEL_INCHES = 2.5  # one square panel; small so rendering stays cheap
DPI = 80
REFINEMENT = InferenceOptions().refinement  # so the dots are what prediction would report
PATCH_SIZE = InferenceOptions().integral_patch_size
# Files this callback writes (and temporary names of interrupted writes), e.g. train.0003.png,
# train_1.0003.png, .validation.0003.k2j4.tmp.png; only these are removed when keep=False.
_OWN_FILE = re.compile(r"^\.?(train|validation)(_\d+)?\.\d{4,}(\..+\.tmp)?\.png$")


@dataclass
class VizData:
    """Everything one figure shows, in model-input pixels.

    ``image`` is (H, W, C) in [0, 1]; points are (K, 2) xy without NaN; maps are (H, W).
    """

    image: np.ndarray
    gt_points: np.ndarray
    pred_points: np.ndarray
    confmap: np.ndarray
    pafs: np.ndarray | None = None
    class_maps: np.ndarray | None = None


class PredictionVisualizer(L.Callback):
    """Writes prediction figures of fixed samples after every validation epoch.

    Args:
        viz_dir: folder of the PNGs (created on first write); sleap-nn uses ``<run>/viz``.
        train_samples, val_samples: samples as returned by ``PoseSampleDataset.__getitem__``
            (``image`` uint8 (C, H, W), ``points`` (I, N, 2), ``class_ids`` (I,)), typically
            the first of each dataset. Training samples of crop heads may carry the
            augmentation margin; they are cropped exactly as in validation.
        keep: keep the figures after training (``keep_viz``); otherwise they are deleted at
            the end of fit.
        upload_to_wandb: also log each figure to a ``WandbLogger`` of the trainer
            (``save_viz_imgs_wandb``).
        peak_threshold: confidence below which no peak is drawn (inference's default).
    """

    def __init__(
        self,
        viz_dir: str | Path,
        train_samples: Sequence[dict[str, Any]],
        val_samples: Sequence[dict[str, Any]],
        keep: bool,
        upload_to_wandb: bool = False,
        peak_threshold: float = 0.2,
    ) -> None:
        self.viz_dir = Path(viz_dir)
        self.samples = {
            "train": [_own_copy(s) for s in train_samples],
            "validation": [_own_copy(s) for s in val_samples],
        }
        self.keep = keep
        self.upload_to_wandb = upload_to_wandb
        self.peak_threshold = peak_threshold
        self._said_no_wandb = False

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        epoch = int(trainer.current_epoch)
        try:
            written = self._write_figures(trainer, pl_module, epoch)
        except Exception:  # a diagnostic figure must never stop a long training run
            log.warning("Could not write the prediction figures of epoch %d", epoch, exc_info=True)
            return
        if self.upload_to_wandb:
            self._upload(trainer, written)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.keep and trainer.is_global_zero:
            remove_viz_dir(self.viz_dir)

    def _write_figures(
        self, trainer: L.Trainer, pl_module: L.LightningModule, epoch: int
    ) -> dict[str, Path]:
        """Predict and save every sample; returns ``{wandb key: png}``."""
        written: dict[str, Path] = {}
        with _eval_mode(pl_module), torch.no_grad(), trainer.precision_plugin.forward_context():
            for split, samples in self.samples.items():
                for i, sample in enumerate(samples):
                    data = predict_sample(pl_module, sample, self.peak_threshold)
                    name = split if i == 0 else f"{split}_{i}"
                    path = self.viz_dir / f"{name}.{epoch:04d}.png"
                    save_figure(render_figure(data, f"{name} - epoch {epoch}"), path)
                    written[f"viz/{name}"] = path
        return written

    def _upload(self, trainer: L.Trainer, written: dict[str, Path]) -> None:
        """Log the figures to every WandbLogger (one only exists when wandb is installed)."""
        loggers = _wandb_loggers(trainer)
        if not loggers:
            if not self._said_no_wandb:
                log.debug("save_viz_imgs_wandb: no WandbLogger (wandb missing or not enabled)")
                self._said_no_wandb = True
            return
        for logger in loggers:
            for key, path in written.items():
                try:
                    logger.log_image(key=key, images=[str(path)], step=trainer.global_step)
                except Exception:  # e.g. network trouble: the local PNG is still there
                    log.warning("Could not upload %s to wandb", path, exc_info=True)


def predict_sample(
    pl_module: PoseModule, sample: dict[str, torch.Tensor], threshold: float = 0.2
) -> VizData:
    """Run the model on one sample as validation would and collect what the figure shows.

    The caller sets eval mode and no_grad (see :class:`PredictionVisualizer`).
    """
    batch = {k: torch.as_tensor(v).unsqueeze(0).to(pl_module.device) for k, v in sample.items()}
    images, _ = pl_module._prepare(batch, augment=False)
    outputs = pl_module.model(images)
    hw = (int(images.shape[-2]), int(images.shape[-1]))
    stride = _stride(pl_module, "confmaps")
    confmaps = outputs["confmaps"].float()
    peaks = predicted_peaks(confmaps, pl_module.head, stride, threshold)[0]
    # _prepare centre-crops crop heads' samples from their margin: shift the labels the same way.
    offset = (batch["image"].shape[-1] - images.shape[-1]) // 2
    gt = batch["points"][0].reshape(-1, 2).float().cpu().numpy() - offset
    data = VizData(
        image=images[0].float().permute(1, 2, 0).cpu().numpy(),
        gt_points=gt[np.isfinite(gt).all(axis=1)],
        pred_points=peaks,
        confmap=upsample_map(_max_projection(confmaps[0]), stride, hw),
    )
    if "pafs" in outputs:
        data.pafs = upsample_map(paf_magnitude(outputs["pafs"][0]), _stride(pl_module, "pafs"), hw)
    if "class_maps" in outputs:
        maps = _max_projection(outputs["class_maps"][0])
        data.class_maps = upsample_map(maps, _stride(pl_module, "class_maps"), hw)
    return data


def predicted_peaks(
    confmaps: torch.Tensor, head: str, output_stride: int, threshold: float = 0.2
) -> list[np.ndarray]:
    """Peaks of each sample's confidence maps as (K, 2) xy in model-input pixels.

    One global peak per node for single-animal and top-down instance heads (nodes below the
    threshold are left out), every local peak for centroid and bottom-up heads, as inference
    finds them. Grid cell ``j`` is model-input pixel ``j * output_stride``.
    """
    confmaps = confmaps.detach().float()
    if head in GLOBAL_PEAK_HEADS:
        points, _ = find_global_peaks(confmaps, threshold, REFINEMENT, PATCH_SIZE)
        per_sample = [p[torch.isfinite(p).all(dim=-1)] for p in points]
    elif head in LOCAL_PEAK_HEADS:
        points, _, sample_idx, _ = find_local_peaks(confmaps, threshold, REFINEMENT, PATCH_SIZE)
        per_sample = [points[sample_idx == b] for b in range(confmaps.shape[0])]
    else:
        raise ValueError(f"Unknown model type '{head}'")
    return [p.cpu().numpy().astype(np.float64) * float(output_stride) for p in per_sample]


def paf_magnitude(pafs: torch.Tensor) -> np.ndarray:
    """(h, w) largest PAF vector length over edges; channels are (edge0_x, edge0_y, ...)."""
    xy = pafs.detach().float().reshape(-1, 2, *pafs.shape[-2:])
    return xy.norm(dim=1).amax(dim=0).cpu().numpy()


def upsample_map(grid: np.ndarray, stride: int, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear (h, w) map -> (H, W) image pixels with cell ``j`` landing on pixel ``j * stride``.

    The same alignment as the targets and peak coordinates, so a map's maximum sits under its
    marker; beyond the last cell the border value is repeated.
    """
    grid = np.ascontiguousarray(grid, dtype=np.float32)
    matrix = np.array([[stride, 0.0, 0.0], [0.0, stride, 0.0]], dtype=np.float64)
    return cv2.warpAffine(
        grid,
        matrix,
        (int(hw[1]), int(hw[0])),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def render_figure(data: VizData, title: str) -> Figure:
    """Small figure: image with ground truth and predictions, then one panel per map.

    Built with matplotlib's object API (no pyplot), so no figure is registered globally and
    nothing has to be closed; nothing needs a display.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    maps = [("confidence maps (max)", data.confmap)]
    if data.pafs is not None:
        maps.append(("PAF magnitude (max)", data.pafs))
    if data.class_maps is not None:
        maps.append(("class maps (max)", data.class_maps))
    fig = Figure(figsize=(PANEL_INCHES * (1 + len(maps)), PANEL_INCHES + 0.3), dpi=DPI)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 1 + len(maps), squeeze=False)[0]
    _draw_image(axes[0], data.image)
    axes[0].scatter(*data.gt_points.T, s=30, facecolors="none", edgecolors="lime", label="truth")
    axes[0].scatter(*data.pred_points.T, s=24, marker="x", c="red", label="predicted")
    axes[0].legend(loc="upper right", fontsize=6, framealpha=0.6)
    axes[0].set_title("input", fontsize=8)
    for ax, (name, image) in zip(axes[1:], maps, strict=True):
        _draw_image(ax, data.image, dim=0.5)
        alpha = np.clip(image, 0.0, 1.0) * 0.85  # zero stays transparent over the image
        ax.imshow(image, cmap="inferno", vmin=0.0, vmax=1.0, alpha=alpha, interpolation="none")
        ax.set_title(name, fontsize=8)
    h, w = data.image.shape[:2]
    for ax in axes:
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        ax.set_axis_off()
    fig.suptitle(title, fontsize=9)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=0.84, wspace=0.04)
    return fig


def save_figure(fig: Figure, path: str | Path) -> None:
    """PNG written atomically: a reader never sees a half-written file."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=DPI, format="png")


def remove_viz_dir(viz_dir: str | Path) -> None:
    """Delete this callback's PNGs, then the folder if that empties it.

    Only files named like ours go, so a viz_dir pointed at a folder holding anything else
    (a run folder, say) loses nothing but the figures.
    """
    viz_dir = Path(viz_dir)
    if not viz_dir.is_dir():
        return
    for path in viz_dir.iterdir():
        if path.is_file() and _OWN_FILE.match(path.name):
            path.unlink(missing_ok=True)
    if any(viz_dir.iterdir()):
        log.info("Kept %s: it holds files that are not prediction figures", viz_dir)
    else:
        viz_dir.rmdir()


def _draw_image(ax: Any, image: np.ndarray, dim: float = 1.0) -> None:
    """Grayscale or RGB (any other channel count: the first channel) at its own pixel grid."""
    img = np.clip(image, 0.0, 1.0) * dim
    if img.shape[-1] == 3:
        ax.imshow(img, interpolation="nearest")
    else:
        ax.imshow(img[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")


def _max_projection(maps: torch.Tensor) -> np.ndarray:
    """(C, h, w) -> (h, w) maximum over channels, float32 on the CPU."""
    return maps.detach().float().amax(dim=0).cpu().numpy()


def _stride(pl_module: PoseModule, section: str) -> int:
    return int(pl_module.head_cfg[section]["output_stride"])


def _own_copy(sample: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A private copy, so the callback does not pin a dataset's storage or see it change."""
    return {k: torch.as_tensor(v).clone() for k, v in sample.items()}


@contextlib.contextmanager
def _eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Eval mode for the duration; afterwards every submodule gets back its own mode.

    Restoring per submodule (not ``module.train()``) keeps deliberately frozen parts, such as
    a backbone held in eval mode, as they were.
    """
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _wandb_loggers(trainer: L.Trainer) -> list[Any]:
    """The trainer's WandbLoggers; Lightning can only build one when wandb is installed."""
    try:
        from lightning.pytorch.loggers import WandbLogger
    except ImportError:  # pragma: no cover - part of Lightning
        return []
    return [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
